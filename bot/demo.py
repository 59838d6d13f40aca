"""The offline demo: chat with the real bot in a terminal as a patient, with no token.

The same Application, handlers, database code and dispatcher run as in production; only the
Bot API is an in-process fake (`FakeTelegram`). Inline buttons are shown as numbered choices,
and `:next` jumps the one clock to her next check-in so it can be tried at once. Pictures and
documents (/mytrend, /doctorcard) are written to `data/demo/` and their paths printed; pages
sent as Telegram HTML (/learn) are shown as plain text, bold in a terminal that can show it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import col, select

from bot import clock
from bot.app import BotApplication, build_application
from bot.config import Settings
from bot.content import t
from bot.db import Database
from bot.devtools.fake_telegram import FakeMessage, FakeRequest, FakeTelegram
from bot.devtools.updates import UpdateFactory
from bot.models import (
    CheckIn,
    CheckInStatus,
    OutboxState,
    OutgoingMessage,
    Participant,
    ProcessedUpdate,
)
from bot.paths import data_dir

DEMO_USER_ID = 5_000_000_042  # above 2**32, like real Telegram ids
DEMO_TOKEN = "123456:offline-demo"
DEMO_PSEUDONYM_KEY = "offline-demo-only-pseudonym-key"
DEMO_EMERGENCY_NUMBER = "112"
INDENT = "     "
BOLD, NOT_BOLD = "\033[1m", "\033[22m"  # ANSI, only when writing to a terminal
PNG_MAGIC = b"\x89PNG"

Writer = Callable[[str], None]


def demo_settings(base: Settings, database_url: str) -> Settings:
    """Returns the settings for the demo: offline, open enrollment, demo-only secrets."""
    return base.model_copy(
        update={
            "telegram_bot_token": DEMO_TOKEN,
            "telegram_api_base_url": None,
            "webhook_url": None,
            "database_url": database_url,
            "open_enrollment": True,
            # Never the study's real key: demo pseudonyms must not match real ones.
            "pseudonym_key": DEMO_PSEUDONYM_KEY,
            "emergency_number": base.emergency_number or DEMO_EMERGENCY_NUMBER,
        }
    )


def chosen_button(
    message: FakeMessage | None, key: str, write: Callable[[str], None]
) -> str | None:
    """Returns the callback data of the button shown as [key], or says why there is none."""
    if message is None:
        write(t("cli.demo.no_buttons"))
        return None
    keyed = choice_keys(message)
    data = next((d for k, _label, d in keyed if k == key), None)
    if data is None:
        keys = ", ".join(k for k, _l, _d in keyed)
        write(t("cli.demo.no_such_button", number=key, keys=keys))
    return data


class Transcript:
    """What a terminal chat has shown so far: each message as last printed, and the pop-ups.

    Shared by `make demo` and `python -m bot.devtools.chat`, so both print a new message,
    an edited one and a pop-up the same way.
    """

    def __init__(self, write: Callable[[str], None], *, files_dir: Path, ansi: bool) -> None:
        self.write = write
        self.files_dir = files_dir
        self.ansi = ansi
        self._seen: dict[int, str] = {}
        self._popups = 0

    def show(self, messages: Iterable[FakeMessage], answered: list[dict[str, object]]) -> int:
        """Prints messages sent or edited since the last call and new pop-ups; returns how many."""
        shown = 0
        for message in messages:
            snapshot = json.dumps([message.text, message.reply_markup], sort_keys=True)
            previous = self._seen.get(message.message_id)
            if previous == snapshot:
                continue
            label = t("cli.demo.bot") if previous is None else t("cli.demo.updated")
            self._seen[message.message_id] = snapshot
            self.write(render_message(label, message, ansi=self.ansi))
            saved = save_file(message, self.files_dir) if previous is None else None
            if saved is not None:
                self.write(INDENT + t("cli.demo.file_saved", path=shown_path(saved)) + "\n")
            shown += 1
        popups, self._popups = answered[self._popups :], len(answered)
        for answer in popups:
            if answer.get("text"):
                self.write(f"{t('cli.demo.popup')}: {answer['text']}\n")
                shown += 1
        return shown


class Demo:
    """One demo session: the real bot over a fake Bot API, printing what the patient sees."""

    def __init__(
        self,
        settings: Settings,
        write: Writer,
        *,
        user_id: int = DEMO_USER_ID,
        files_dir: Path | None = None,
        ansi: bool = False,
    ):
        self.settings = settings
        self.write = write
        self.user_id = user_id
        self.files_dir = files_dir or data_dir() / "demo"  # where pictures and papers go
        self.ansi = ansi  # bold as ANSI codes (a terminal), else plain text
        self.fake = FakeTelegram()
        self.db = Database(settings.database_url)
        self.app: BotApplication = build_application(
            settings, self.db, request=FakeRequest(self.fake), with_updater=False
        )
        # The rate limiter waits by moving the demo clock, so nothing stalls in real time.
        self.app.bot_data.sleep = clock.virtual_sleep
        self.updates = UpdateFactory(self.app.bot)
        self.transcript = Transcript(self.write, files_dir=self.files_dir, ansi=self.ansi)

    async def start(self) -> None:
        """Connects the application to the fake server and prints the welcome."""
        await self.app.initialize()
        if self.app.post_init:
            await self.app.post_init(self.app)
        # A kept database remembers the updates it processed: go on after them, or every line
        # typed would be dropped as a replay and get no reply.
        async with self.db.session() as session:
            last = (await session.exec(select(func.max(ProcessedUpdate.update_id)))).one()
        if last is not None:
            self.updates.continue_after(int(last))
        self.write(t("cli.demo.welcome", study=self.settings.study_name))

    async def stop(self) -> None:
        """Shuts the application and the database down."""
        await self.app.shutdown()
        await self.db.dispose()

    # ------------------------------------------------------------ one line of input

    async def handle(self, line: str) -> bool:
        """Acts on one line of input; returns False when the person asked to quit."""
        text = line.strip()
        if not text:
            return True
        if text.startswith(":"):
            return await self._demo_command(text)
        if is_choice_key(text):
            if not await self._press(text.lower()):
                return True
        else:
            await self.app.process_update(self.updates.message(self.user_id, text))
        await self._tick(quiet=True)
        self.show_new(say_if_none=True)
        return True

    async def _demo_command(self, text: str) -> bool:
        name, _, rest = text.partition(" ")
        if name in {":quit", ":q", ":exit"}:
            return False
        if name == ":help":
            self.write(t("cli.demo.help"))
        elif name == ":say" and rest.strip():
            await self.app.process_update(self.updates.message(self.user_id, rest.strip()))
            await self._tick(quiet=True)
            self.show_new(say_if_none=True)
        elif name == ":next":
            await self._jump_to_next()
        elif name == ":wait":
            await self._wait(rest.strip())
        elif name == ":tick":
            await self._tick(quiet=False)
            self.show_new()
        elif name == ":time":
            local, zone = await self._local_now()
            utc = clock.now().strftime("%H:%M")
            self.write(t("cli.demo.clock", local=local, zone=zone, utc=utc))
        else:
            self.write(t("cli.demo.unknown_command", command=name))
        return True

    async def _press(self, key: str) -> bool:
        """Presses the button shown as [key] on the newest message with buttons."""
        message = self.newest_with_buttons()
        data = chosen_button(message, key, self.write)
        if message is None or data is None:
            return False
        await self.app.process_update(self.updates.callback(self.user_id, data, message))
        return True

    async def _tick(self, *, quiet: bool) -> None:
        """Runs one dispatcher tick, as the bot's periodic job would."""
        try:
            from bot.dispatcher import run_tick
        except ImportError:
            if not quiet:
                self.write(t("cli.demo.tick_unavailable"))
            return
        await run_tick(self.app.bot_data, self.app.bot)

    async def _jump_to_next(self) -> None:
        target = await self.next_event_at()
        if target is None:
            self.write(t("cli.demo.nothing_planned"))
            return
        delta = target - clock.now()
        if delta > timedelta(0):
            clock.advance(delta + timedelta(seconds=1))
            local, zone = await self._local_now()
            minutes = round(delta.total_seconds() / 60)
            self.write(t("cli.demo.jumped", minutes=minutes, local=local, zone=zone))
        await self._tick(quiet=False)
        self.show_new()

    async def _wait(self, minutes_text: str) -> None:
        if not minutes_text.isdigit():
            self.write(t("cli.demo.bad_minutes"))
            return
        clock.advance(timedelta(minutes=int(minutes_text)))
        local, zone = await self._local_now()
        self.write(t("cli.demo.waited", minutes=int(minutes_text), local=local, zone=zone))
        await self._tick(quiet=False)
        self.show_new()

    # ------------------------------------------------------------ what is planned

    async def _participant(self) -> Participant | None:
        async with self.db.session() as session:
            query = select(Participant).where(Participant.telegram_user_id == self.user_id)
            return (await session.exec(query)).first()

    async def next_event_at(self) -> datetime | None:
        """Returns when her next check-in, reminder or held message falls due, if any."""
        participant = await self._participant()
        if participant is None or participant.id is None:
            return None
        pid = participant.id
        async with self.db.session() as session:
            due = (
                await session.exec(
                    select(func.min(CheckIn.due_at)).where(
                        CheckIn.participant_id == pid,
                        CheckIn.status == CheckInStatus.scheduled,
                    )
                )
            ).first()
            reminder = (
                await session.exec(
                    select(func.min(CheckIn.next_reminder_at)).where(
                        CheckIn.participant_id == pid,
                        col(CheckIn.status).in_([CheckInStatus.sent, CheckInStatus.partial]),
                    )
                )
            ).first()
            held = (
                await session.exec(
                    select(func.min(OutgoingMessage.not_before)).where(
                        OutgoingMessage.participant_id == pid,
                        OutgoingMessage.state == OutboxState.queued,
                    )
                )
            ).first()
        found = [_aware(v) for v in (due, reminder, held) if v is not None]
        return min(found) if found else None

    async def _local_now(self) -> tuple[str, str]:
        participant = await self._participant()
        zone = (participant.timezone if participant else None) or self.settings.default_timezone
        local = clock.now().astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M")
        return local, zone

    # ------------------------------------------------------------ showing the chat

    def newest_with_buttons(self) -> FakeMessage | None:
        """Returns the newest message in her chat that still has inline buttons."""
        for message in reversed(self.fake.chat(self.user_id)):
            if message.buttons():
                return message
        return None

    def show_new(self, *, say_if_none: bool = False) -> int:
        """Prints messages sent or edited since the last call and pop-ups; returns how many."""
        shown = self.transcript.show(self.fake.chat(self.user_id), self.fake.answered_callbacks)
        if shown == 0 and say_if_none:
            self.write(t("cli.demo.nothing_new"))
        return shown


def _aware(value: datetime) -> datetime:
    # Aggregates bypass the column type, so SQLite hands back a naive UTC value.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _scale_label(label: str) -> str | None:
    """Returns the number a scale button shows (ignoring a tick mark), else None."""
    bare = label.replace("✓", "").strip()
    return bare if bare.isdigit() else None


def is_choice_key(text: str) -> bool:
    """Tells whether typed input presses a button (a number, or one letter) rather than talks."""
    return text.isdigit() or (len(text) == 1 and text.isalpha() and text.isascii())


def choice_keys(message: FakeMessage) -> list[tuple[str, str, str]]:
    """Returns (key to type, label, callback data) for each button, row by row.

    Buttons are numbered 1, 2, 3 ... On a message with number buttons (the 0-10 scales) the
    number typed is the number shown on the button, and any other button gets a letter.
    """
    buttons = message.buttons()
    keyed: list[tuple[str, str, str]] = []
    if any(_scale_label(label) is not None for label, _ in buttons):
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        for label, data in buttons:
            number = _scale_label(label)
            keyed.append((number if number is not None else next(letters), label, data))
    else:
        keyed = [(str(i), label, data) for i, (label, data) in enumerate(buttons, start=1)]
    return keyed


class _TerminalHtml(HTMLParser):
    """Turns Telegram HTML into terminal text: bold kept (ANSI) or dropped, links as text (url)."""

    def __init__(self, *, ansi: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.ansi = ansi
        self.out: list[str] = []
        self._links: list[tuple[str, int]] = []  # (href, where its text starts in `out`)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("b", "strong") and self.ansi:
            self.out.append(BOLD)
        elif tag == "a":
            self._links.append((dict(attrs).get("href") or "", len(self.out)))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("b", "strong") and self.ansi:
            self.out.append(NOT_BOLD)
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.out[start:]).replace(BOLD, "").replace(NOT_BOLD, "")
            if href and href != label.strip():
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        self.out.append(data)


def terminal_text(html_text: str, *, ansi: bool = False) -> str:
    """Returns Telegram HTML as terminal text: no tags, entities decoded, links as text (url)."""
    parser = _TerminalHtml(ansi=ansi)
    parser.feed(html_text)
    parser.close()
    return "".join(parser.out)


def save_file(message: FakeMessage, folder: Path) -> Path | None:
    """Writes the picture or document a message carries into `folder`; None when it has none."""
    if message.file is None:
        return None
    if message.photo:
        ext = "png" if message.file.startswith(PNG_MAGIC) else "jpg"
        name = f"picture-{message.message_id}.{ext}"
    else:
        stem, dot, ext = (message.document_name or "document").rpartition(".")
        name = f"{stem}-{message.message_id}.{ext}" if dot else f"{ext}-{message.message_id}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(message.file)
    return path


def shown_path(path: Path) -> str:
    """Returns a path as a person can use it from here: relative when below this folder."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def render_message(label: str, message: FakeMessage, *, ansi: bool = False) -> str:
    """Formats one bot message for the terminal, each button with the key that presses it."""
    text = message.text
    if message.parse_mode and message.parse_mode.upper() == "HTML":
        text = terminal_text(text, ansi=ansi)
    lines = text.splitlines() or [""]
    out = [f"{label}: {lines[0]}"] + [f"{INDENT}{line}" if line else "" for line in lines[1:]]
    keys = iter(choice_keys(message))
    for row in message.button_rows():
        cells = []
        for _ in row:
            key, text, _data = next(keys)
            if _scale_label(text) == key:
                cells.append(f"[{key} ✓]" if "✓" in text else f"[{key}]")
            else:
                cells.append(f"[{key}] {text}")
        out.append(INDENT + "   ".join(cells))
    return "\n".join(out) + "\n"


async def run_demo(
    lines: Iterable[str],
    write: Writer,
    *,
    settings: Settings,
    echo: bool = False,
    files_dir: Path | None = None,
    ansi: bool = False,
) -> Demo:
    """Drives one demo session from `lines` until they end or `:quit`; returns the session."""
    demo = Demo(settings, write, files_dir=files_dir, ansi=ansi)
    await demo.start()
    try:
        for line in lines:
            if echo:
                write(f"{t('cli.demo.prompt')}{line.rstrip()}")
            if not await demo.handle(line):
                break
    finally:
        await demo.stop()
    write(t("cli.demo.bye"))
    return demo


def _tty_lines(prompt: str) -> Iterator[str]:
    while True:
        try:
            yield input(prompt)
        except EOFError:
            return


def fresh_database(path: Path, *, keep: bool) -> str:
    """Returns the demo's SQLite URL, removing last run's file unless asked to keep it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not keep:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def main(*, keep: bool = False, database: str | None = None) -> int:
    """Runs the demo in this terminal (or from a pipe) and returns the exit code."""
    from bot.cli_common import EXIT_CONFIG, load_settings
    from bot.logging_setup import configure_logging
    from bot.migrate import upgrade_to_head

    base = load_settings()
    if base is None:
        return EXIT_CONFIG
    path = Path(database) if database else data_dir() / "demo.db"
    url = fresh_database(path, keep=keep)
    configure_logging(logging.WARNING)
    upgrade_to_head(url)
    settings = demo_settings(base, url)
    print(t("cli.demo.database", path=path), flush=True)
    interactive = sys.stdin.isatty()
    lines: Iterable[str] = _tty_lines(t("cli.demo.prompt")) if interactive else sys.stdin

    def write(text: str) -> None:
        print(text, flush=True)

    try:
        asyncio.run(
            run_demo(
                lines,
                write,
                settings=settings,
                echo=not interactive,
                files_dir=data_dir() / "demo",
                ansi=sys.stdout.isatty(),
            )
        )
    except KeyboardInterrupt:
        print(flush=True)
        print(t("cli.demo.bye"), flush=True)
    return 0
