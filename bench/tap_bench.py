"""Benchmark: one check-in button press, from tap to next question, bot against bare PTB.

Creates N active participants in a fresh SQLite file (or the empty database named by
--database-url), opens a check-in for each with /checkin, then presses the first answer
button of each one's newest question, one press per participant per round, through the real
Application and handlers (Yes, pain 0, not stiff, nothing new: with the defaults each of
those four is pressed equally often). Only presses that bring a next question count; the
press that closes a check-in with its summary runs but is not counted, and the participant
starts a new check-in, untimed.

Each counted press is timed twice with `time.perf_counter`: from `process_update` receiving
the update to the fake Bot API accepting the next question ("to next question", the figure
she feels), and to `process_update` returning ("whole update", which adds what the handler
does after sending). A bare python-telegram-bot Application with one CallbackQueryHandler
(answer, edit the message with a tick, send the next question with 11 buttons) does the
same Telegram work against the same fake, in the same run, in interleaved blocks
(bot, baseline, baseline, bot, ...) after a warm-up, so a shared machine's drift hits both.

Transport (`--transport`):

- `http` (the default): as deployed, each side talks HTTP to Telegram. One fake Bot API
  server (`bot.devtools.bot_api_server`) runs on 127.0.0.1 in this process's threads, and
  both Applications use PTB's default `HTTPXRequest` against it, with their own tokens. They
  share the server and its `FakeTelegram`, so both pay the same HTTP, JSON and lookup cost
  (the fake finds an edited message by scanning every message it holds). The fake stamps
  each accepted send in its server thread with `time.perf_counter`, which is process-wide.
- `inprocess`: our own overhead, no network. Both sides hand their calls to the same
  `FakeTelegram` through the in-process `FakeRequest` transport.

The clock keeps running in real time; only the rate limiter's waits are virtual
(`bot_data.sleep = clock.virtual_sleep`), so pacing moves the clock instead of sleeping.
Each participant presses once per round, so per-chat pacing never holds a press back.

    .venv/bin/python bench/tap_bench.py --write-docs
    .venv/bin/python bench/tap_bench.py --transport inprocess
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from bot import clock
from bot.app import BotApplication, build_application
from bot.config import Settings
from bot.content import consent_text
from bot.db import Database
from bot.devtools.bot_api_server import running_server
from bot.devtools.fake_telegram import FakeMessage, FakeRequest, FakeTelegram
from bot.devtools.updates import UpdateFactory
from bot.models import Consent, Lifecycle, Participant, Schedule
from bot.pseudonym import pseudonym_for

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
START_MARK = "<!-- tap-bench:start -->"
END_MARK = "<!-- tap-bench:end -->"
FIRST_USER = 5_100_000_000  # above 2**32: Telegram ids need 64 bits
PSEUDONYM_KEY = "bench-pseudonym-key"
CALLBACK_PREFIX = "ci:"
BASELINE_TICK = "\n\n✓"
BASELINE_QUESTION = (
    "What was your worst joint pain in the last day?\n0 = no pain, 10 = worst you can imagine"
)
BOT_TOKEN = "123456:BENCH"
BASELINE_TOKEN = "654321:BASELINE"
TRANSPORTS = {
    "http": "over HTTP: fake Bot API server on 127.0.0.1, PTB's default HTTPXRequest",
    "inprocess": "in-process FakeRequest: our own overhead, no network",
}


# ---------------------------------------------------------------- counting and statistics


@dataclass
class SqlCounter:
    """Counts SQL statements, transactions begun and commits on one engine."""

    statements: int = 0
    begins: int = 0
    commits: int = 0

    def attach(self, db: Database) -> None:
        """Listens on the database's engine (SQLAlchemy events fire on the sync engine)."""
        engine = db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._on_statement)
        event.listen(engine, "begin", self._on_begin)
        event.listen(engine, "commit", self._on_commit)

    def snapshot(self) -> tuple[int, int, int]:
        """Returns the counts so far as (statements, begins, commits)."""
        return self.statements, self.begins, self.commits

    def _on_statement(self, *_args: Any) -> None:
        self.statements += 1

    def _on_begin(self, *_args: Any) -> None:
        self.begins += 1

    def _on_commit(self, *_args: Any) -> None:
        self.commits += 1


def describe(seconds: list[float]) -> dict[str, float]:
    """Returns median, p90 and mean in milliseconds, and how many values there were."""
    ms = [s * 1000 for s in seconds]
    return {
        "median_ms": statistics.median(ms),
        "p90_ms": statistics.quantiles(ms, n=10, method="inclusive")[8],
        "mean_ms": statistics.fmean(ms),
        "presses": len(ms),
    }


@dataclass
class Press:
    """One timed press: to the next question, to the end of the update, which item it was."""

    visible: float
    whole: float
    counted: bool
    item: str = ""


@dataclass
class Samples:
    """The counted presses of one side and what they cost."""

    visible: list[float] = field(default_factory=list)
    whole: list[float] = field(default_factory=list)
    by_item: dict[str, list[float]] = field(default_factory=dict)
    statements: int = 0
    begins: int = 0
    commits: int = 0
    uncounted: int = 0  # presses that closed a check-in (summary, no next question)

    def add(self, press: Press) -> None:
        """Keeps one counted press."""
        self.visible.append(press.visible)
        self.whole.append(press.whole)
        self.by_item.setdefault(press.item, []).append(press.visible)


def first_checkin_button(message: FakeMessage) -> str | None:
    """Returns the callback data of the message's first button if it is a check-in button."""
    buttons = message.buttons()
    if buttons and buttons[0][1].startswith(CALLBACK_PREFIX):
        return buttons[0][1]
    return None


def next_question(
    fake: FakeTelegram, marks: tuple[int, int], chat_id: int
) -> tuple[FakeMessage, float] | None:
    """Returns the newest question sent to the chat since `marks`, and when the fake took it.

    `marks` are the lengths of `fake.messages` and `fake.accept_times` before the press; in
    a press every new message is a send, so the two lists grow in step.
    """
    new = fake.messages[marks[0] :]
    accepted = fake.accept_times[marks[1] :]
    if len(new) != len(accepted):
        raise RuntimeError("the fake stored a message it did not accept as a send")
    for index in range(len(new) - 1, -1, -1):
        if new[index].chat_id == chat_id and first_checkin_button(new[index]):
            return new[index], accepted[index]
    return None


def marks(fake: FakeTelegram) -> tuple[int, int]:
    """Returns how many messages and accepted sends the fake holds now."""
    return len(fake.messages), len(fake.accept_times)


# ---------------------------------------------------------------- the bot side


def bench_settings(database_url: str, api_root: str | None = None) -> Settings:
    """Returns settings for the run, ignoring any .env on the machine.

    `api_root` is the fake server's root URL (TELEGRAM_API_BASE_URL); `Settings` adds the
    `/bot` prefix PTB expects.
    """
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_bot_token=BOT_TOKEN,
        telegram_api_base_url=api_root,
        database_url=database_url,
        emergency_number="999",
        pseudonym_key=PSEUDONYM_KEY,
        default_timezone="Europe/London",
    )


async def seed(db: Database, participants: int) -> list[int]:
    """Creates consented, onboarded, active participants (as tests/factories.py does)."""
    version = consent_text("en").version
    at = clock.now()
    uids = [FIRST_USER + i for i in range(participants)]
    async with db.session() as session:
        people = [
            Participant(
                telegram_user_id=uid,
                chat_id=uid,
                pseudonym=pseudonym_for(uid, PSEUDONYM_KEY),
                locale="en",
                country="GB",
                timezone="Europe/London",
                status=Lifecycle.active,
                medicine="anastrozole",
                consent_version=version,
                onboarded_at=at,
            )
            for uid in uids
        ]
        session.add_all(people)
        await session.flush()
        for p in people:
            pid = p.id or 0
            session.add(Consent(participant_id=pid, version=version, accepted_at=at))
            session.add(Schedule(participant_id=pid, local_time="19:00", timezone="Europe/London"))
    return uids


class BotSide:
    """The real Application over a real database, pressing through the real handlers."""

    def __init__(
        self, app: BotApplication, fake: FakeTelegram, db: Database, uids: list[int]
    ) -> None:
        self.app = app
        self.fake = fake
        self.db = db
        self.updates = UpdateFactory(app.bot)
        self.queue = deque(uids)
        self.question: dict[int, FakeMessage | None] = dict.fromkeys(uids)
        self.sql = SqlCounter()
        self.sql.attach(db)
        self.samples = Samples()
        self.profiler: cProfile.Profile | None = None

    async def start_checkin(self, uid: int) -> FakeMessage:
        """Sends /checkin for her (untimed) and returns the question it shows."""
        before = marks(self.fake)
        await self.app.process_update(self.updates.command(uid, "checkin"))
        found = next_question(self.fake, before, uid)
        if found is None:
            texts = [m.text[:80] for m in self.fake.messages[before[0] :]]
            raise RuntimeError(f"/checkin showed no check-in question: {texts}")
        self.question[uid] = found[0]
        return found[0]

    async def press(self, uid: int | None = None) -> Press:
        """Presses the first button of the next participant's (or her) newest question, timed."""
        if uid is None:
            uid = self.queue[0]
            self.queue.rotate(-1)
        message = self.question.get(uid) or await self.start_checkin(uid)
        data = first_checkin_button(message)
        assert data is not None
        update = self.updates.callback(uid, data, message)
        before, sql_before = marks(self.fake), self.sql.snapshot()
        if self.profiler is not None:
            self.profiler.enable()
        started = time.perf_counter()
        await self.app.process_update(update)
        ended = time.perf_counter()
        if self.profiler is not None:
            self.profiler.disable()
        sql_after = self.sql.snapshot()
        found = next_question(self.fake, before, uid)
        self.question[uid] = found[0] if found else None  # None: summary; a new one next time
        if found is None:
            return Press(0.0, ended - started, counted=False)
        self.samples.statements += sql_after[0] - sql_before[0]
        self.samples.begins += sql_after[1] - sql_before[1]
        self.samples.commits += sql_after[2] - sql_before[2]
        return Press(found[1] - started, ended - started, counted=True, item=data.split(":")[2])


async def make_bot_side(
    database_url: str, participants: int, fake: FakeTelegram, api_root: str | None
) -> BotSide:
    """Builds the real bot and opens one check-in per participant.

    With `api_root` the bot talks HTTP to the fake server there through PTB's default
    request; without, it hands its calls to `fake` in-process, as the test harness does.
    """
    settings = bench_settings(database_url, api_root)
    db = Database(database_url)
    await db.create_all()
    uids = await seed(db, participants + 1)
    request = FakeRequest(fake) if api_root is None else None
    app = build_application(settings, db, request=request, with_updater=False)
    # The sender's rate limiter waits by moving the clock, never by really sleeping.
    app.bot_data.sleep = clock.virtual_sleep
    await app.initialize()
    if app.post_init:
        await app.post_init(app)
    # The last one only warms up: one whole check-in, so that every code path (the offers
    # rules are read on first use, for instance) has run once before anything is timed.
    *uids, warmer = uids
    side = BotSide(app, fake, db, uids)
    while (await side.press(warmer)).counted:
        pass
    for uid in uids:
        await side.start_checkin(uid)
    return side


# ---------------------------------------------------------------- the baseline side


def baseline_keyboard() -> InlineKeyboardMarkup:
    """Returns an 11-button 0-10 scale on two rows, like the bot's pain question."""
    values = [str(v) for v in range(11)]
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(v, callback_data=f"ci:0:pain:{v}") for v in row]
            for row in (values[:6], values[6:])
        ]
    )


async def baseline_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answers the press, ticks the pressed message and sends the next question."""
    query = update.callback_query
    if query is None or not isinstance(query.message, Message):
        return
    await query.answer()
    await query.edit_message_text(
        (query.message.text or "") + BASELINE_TICK, reply_markup=query.message.reply_markup
    )
    await context.bot.send_message(
        query.message.chat.id, BASELINE_QUESTION, reply_markup=baseline_keyboard()
    )


class BaselineSide:
    """A bare PTB Application doing the same Telegram calls per press, and nothing else."""

    def __init__(self, app: Any, fake: FakeTelegram, uids: list[int]) -> None:
        self.app = app
        self.fake = fake
        self.updates = UpdateFactory(app.bot)
        self.queue = deque(uids)
        self.question: dict[int, FakeMessage] = {}
        self.samples = Samples()

    async def press(self) -> Press:
        """Presses the first button of the next participant's newest question, timed."""
        uid = self.queue[0]
        self.queue.rotate(-1)
        message = self.question[uid]
        data = first_checkin_button(message)
        assert data is not None
        update = self.updates.callback(uid, data, message)
        before = marks(self.fake)
        started = time.perf_counter()
        await self.app.process_update(update)
        ended = time.perf_counter()
        found = next_question(self.fake, before, uid)
        if found is None:
            raise RuntimeError("the baseline sent no next question")
        self.question[uid] = found[0]
        return Press(found[1] - started, ended - started, counted=True, item="pain")


async def make_baseline_side(
    uids: list[int], fake: FakeTelegram, api_root: str | None
) -> BaselineSide:
    """Builds the bare Application on the same fake and sends each chat a first question."""
    builder = Application.builder().token(BASELINE_TOKEN).updater(None)
    if api_root is None:
        request = FakeRequest(fake)
        builder = builder.request(request).get_updates_request(request)
    else:
        builder = builder.base_url(api_root + "/bot")  # PTB's default HTTPXRequest
    app = builder.build()
    app.add_handler(CallbackQueryHandler(baseline_press, pattern=r"^ci:"))
    await app.initialize()
    side = BaselineSide(app, fake, uids)
    for uid in uids:
        await app.bot.send_message(uid, BASELINE_QUESTION, reply_markup=baseline_keyboard())
        side.question[uid] = fake.messages[-1]
    return side


# ---------------------------------------------------------------- the run


async def run_block(side: BotSide | BaselineSide, presses: int, keep: bool) -> None:
    """Runs presses until `presses` of them brought a next question; keeps them if asked."""
    done = 0
    while done < presses:
        press = await side.press()
        if not press.counted:
            side.samples.uncounted += keep
            continue
        done += 1
        if keep:
            side.samples.add(press)


@contextmanager
def fake_api(transport: str) -> Iterator[tuple[FakeTelegram, str | None]]:
    """Yields the fake both sides use, and the root URL of its HTTP server (None in-process).

    The fake stamps each accepted send with perf_counter (in the server thread over HTTP;
    the clock is process-wide): the moment the question is out.
    """
    fake = FakeTelegram(time_source=time.perf_counter)
    if transport == "inprocess":
        yield fake, None
        return
    with running_server(fake) as server:
        yield fake, server.root_url


async def bench(
    args: argparse.Namespace, database_url: str, fake: FakeTelegram, api_root: str | None
) -> dict[str, Any]:
    """Runs the benchmark and returns the figures."""
    bot = await make_bot_side(database_url, args.participants, fake, api_root)
    base = await make_baseline_side(list(bot.queue), fake, api_root)
    order: list[BotSide | BaselineSide] = [bot, base]
    for side in order:  # warm-up: caches, first-use code paths, SQLite pages; thrown away
        await run_block(side, args.warmup, keep=False)
    bot.samples = Samples()
    if args.profile:
        bot.profiler = cProfile.Profile()
    started = time.perf_counter()
    left = args.presses
    while left > 0:
        n = min(args.block, left)
        for side in order:
            await run_block(side, n, keep=True)
        order.reverse()  # bot, baseline, baseline, bot: neither always goes first
        left -= n
    wall = time.perf_counter() - started
    await bot.app.shutdown()
    await base.app.shutdown()
    await bot.db.dispose()

    presses = len(bot.samples.visible)
    b, s = bot.samples, base.samples
    # ru_maxrss is in KiB on Linux: the whole process (both sides), start-up included.
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result: dict[str, Any] = {
        "transport": args.transport,
        "to_next_question": {"bot": describe(b.visible), "baseline": describe(s.visible)},
        "whole_update": {"bot": describe(b.whole), "baseline": describe(s.whole)},
        "presses": presses,
        "participants": args.participants,
        "warmup": args.warmup,
        "block": args.block,
        "closing_presses_not_counted": b.uncounted,
        # Which question was answered: the work after it differs (offers before the note).
        "bot_by_item_median_ms": {
            item: statistics.median(values) * 1000 for item, values in b.by_item.items()
        },
        "sql_statements_per_press": b.statements / presses,
        "transactions_per_press": b.begins / presses,
        "commits_per_press": b.commits / presses,
        "peak_rss_mb": maxrss_mb,
        "wall_seconds": wall,
        "database": "sqlite" if database_url.startswith("sqlite") else "postgresql",
    }
    for kind in ("to_next_question", "whole_update"):
        pair = result[kind]
        pair["ratio_median"] = pair["bot"]["median_ms"] / pair["baseline"]["median_ms"]
    if bot.profiler is not None:
        result["profile"] = profile_report(bot.profiler, presses, b.uncounted, args.profile)
    return result


def profile_report(profiler: cProfile.Profile, presses: int, closing: int, top: int) -> str:
    """Returns the top cumulative entries from bot/ and handlers/ over the timed bot presses."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"/(bot|handlers)/", top)
    # Closing presses are profiled too; a coroutine's ncalls counts each time it resumes.
    heading = f"cProfile over {presses} timed bot presses and {closing} closing ones"
    return heading + " (times inflated by profiling):\n" + out.getvalue()


# ---------------------------------------------------------------- reporting


def git_revision() -> str:
    """Returns the short commit, marked when bot/, handlers/ or content/ have local changes."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "bot", "handlers", "content"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" with uncommitted changes" if dirty else "")


def machine() -> str:
    """Returns usable cores, Python version and OS in a few words."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores, Python {platform.python_version()}, {platform.system()}"


def print_figures(result: dict[str, Any]) -> None:
    """Prints the figures as a small table."""
    print(f"transport:       {result['transport']} ({TRANSPORTS[result['transport']]})")
    print(f"presses:         {result['presses']} per side, timed after warm-up")
    print(f"{'ms per press':30}{'median':>9}{'p90':>9}{'mean':>9}")
    for kind, title in (
        ("to_next_question", "to next question"),
        ("whole_update", "whole update"),
    ):
        pair = result[kind]
        for name in ("bot", "baseline"):
            f = pair[name]
            label = f"{title}, {name}"
            print(f"{label:30}{f['median_ms']:9.2f}{f['p90_ms']:9.2f}{f['mean_ms']:9.2f}")
        print(f"{title + ', bot / baseline':30}{pair['ratio_median']:8.1f}x (medians)")
    by_item = ", ".join(f"{k} {v:.1f}" for k, v in result["bot_by_item_median_ms"].items())
    print(f"bot by answer:   {by_item} (median ms to next question)")
    print(f"SQL statements:  {result['sql_statements_per_press']:6.1f} per bot press")
    print(f"transactions:    {result['transactions_per_press']:6.1f} begun per bot press")
    print(f"commits:         {result['commits_per_press']:6.1f} per bot press")
    print(f"peak memory:     {result['peak_rss_mb']:6.0f} MB (resident set size, both sides)")
    print(f"wall time:       {result['wall_seconds']:6.1f} s for the timed rounds")
    print(f"load average:    {result['load_at_start']:6.2f} at the start (other work shows)")
    if "profile" in result:
        print(result["profile"])


def docs_section(result: dict[str, Any], label: str | None) -> str:
    """Returns the generated part of the 'Tap to next question' section."""
    rev = result["commit"]
    caption = f"{label} (commit {rev})" if label else f"commit {rev}"
    vis, whole = result["to_next_question"], result["whole_update"]
    by_item = ", ".join(f"{k} {v:.1f} ms" for k, v in result["bot_by_item_median_ms"].items())

    def row(title: str, pair: dict[str, Any], key: str) -> str:
        """Returns one table row: bot, baseline and their ratio."""
        bot, base = pair["bot"][key], pair["baseline"][key]
        return f"| {title} | {bot:.2f} ms | {base:.2f} ms | {bot / base:.1f}x |"

    heading = (
        f"Figures {caption}, run on {result['date']}, {result['machine']}, {result['database']},"
        f" {TRANSPORTS[result['transport']]} on both sides:"
    )
    lines = [
        textwrap.fill(heading, width=95),
        "",
        f"    {result['command']}",
        "",
        "| per press | bot | bare PTB baseline | bot / baseline |",
        "|---|---:|---:|---:|",
        row("tap to next question, median", vis, "median_ms"),
        row("tap to next question, p90", vis, "p90_ms"),
        row("tap to next question, mean", vis, "mean_ms"),
        row("whole update, median", whole, "median_ms"),
        row("whole update, p90", whole, "p90_ms"),
        f"| SQL statements | {result['sql_statements_per_press']:.1f} | 0 | |",
        f"| transactions begun / commits | {result['transactions_per_press']:.1f}"
        f" / {result['commits_per_press']:.1f} | 0 | |",
    ]
    footer = (
        f"{result['presses']} timed presses per side over {result['participants']} participants"
        f" ({result['warmup']} warm-up presses each thrown away, turns of {result['block']});"
        f" bot medians by the question answered: {by_item}. Peak resident memory of the whole"
        f" run (both sides): {result['peak_rss_mb']:.0f} MB. Load average at the start:"
        f" {result['load_at_start']:.2f}."
    )
    return "\n".join(lines) + "\n\n" + textwrap.fill(footer, width=95)


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replaces the text between the tap-bench markers, or appends a new section."""
    block = f"{START_MARK}\n{section}\n{END_MARK}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START_MARK) + r".*?" + re.escape(END_MARK), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n## Tap to next question\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Parses arguments and runs the benchmark (about half a minute with the defaults)."""
    parser = argparse.ArgumentParser(prog="bench/tap_bench.py")
    parser.add_argument("--presses", type=int, default=800, help="timed presses per side")
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50, help="presses per side thrown away")
    parser.add_argument("--block", type=int, default=25, help="presses per side in one turn")
    parser.add_argument(
        "--transport",
        choices=sorted(TRANSPORTS),
        default="http",
        help="http: a fake Bot API server over HTTP (default); inprocess: no network",
    )
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--write-docs", action="store_true", help=f"update docs/{DOCS.name}")
    parser.add_argument("--label", default=None, help="caption for the docs table")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print N entries")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    if args.presses < 10 or args.participants < 1 or args.block < 1 or args.warmup < 0:
        parser.error("need --presses >= 10, --participants >= 1, --block >= 1, --warmup >= 0")
    if args.profile and args.write_docs:
        parser.error("profiled timings are inflated: do not write them to the docs")
    clock.reset()  # real time: only the rate limiter's waits are virtual
    load = os.getloadavg()[0]  # other work on a shared machine shows in the figures
    with tempfile.TemporaryDirectory() as tmp, fake_api(args.transport) as (fake, api_root):
        url = args.database_url or f"sqlite:///{Path(tmp) / 'tap.db'}"
        result = asyncio.run(bench(args, url, fake, api_root))
    result["command"] = shlex.join([".venv/bin/python", "bench/tap_bench.py", *raw])
    result["commit"] = git_revision()
    # The wall-clock date of the run, not the bot's clock (which virtual waits may move).
    result["date"] = datetime.now(UTC).strftime("%Y-%m-%d")
    result["machine"] = machine()
    result["load_at_start"] = load
    print_figures(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.write_docs:
        write_docs(docs_section(result, args.label))
        print(f"updated {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
