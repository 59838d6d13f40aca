"""Chat, as a patient, with the bot that `adherence-bot run` starts, with no Telegram account.

`python -m bot.devtools.chat --port 8081` serves the fake Bot API (`bot_api_server`) on
127.0.0.1:8081 and reads what you type: a message or /command is queued for the bot's
getUpdates, a number (or letter) presses that button of the newest message with buttons,
and whatever the bot sends or edits is printed, its buttons numbered as in `make demo`.
Pictures and documents are written to `data/chat/` and their paths printed. Start the bot in
another terminal with TELEGRAM_API_BASE_URL=http://127.0.0.1:8081 (the README shows the
whole command).

Unlike `make demo`, the bot here is a separate, real process on the real clock: the
dispatcher sends check-ins when they fall due, and they are printed when they arrive.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from bot.content import t
from bot.demo import DEMO_USER_ID, Transcript, chosen_button, is_choice_key
from bot.devtools.bot_api_server import FakeBotApiServer
from bot.devtools.fake_telegram import FakeMessage
from bot.paths import data_dir

Writer = Callable[[str], None]
POLL_SECONDS = 0.05  # how often the chat looks for what the bot sent
SETTLE_SECONDS = 0.6  # an answer is complete once nothing new came for this long
WAIT_SECONDS = 15.0  # how long to wait for an answer before saying none came


class Chat:
    """One person chatting through a fake Bot API server that a real bot process polls."""

    def __init__(
        self,
        server: FakeBotApiServer,
        write: Writer,
        *,
        user_id: int = DEMO_USER_ID,
        files_dir: Path | None = None,
        ansi: bool = False,
    ) -> None:
        self.server = server
        self.write = write
        self.user_id = user_id
        self.files_dir = files_dir or data_dir() / "chat"
        self.ansi = ansi
        self.transcript = Transcript(write, files_dir=self.files_dir, ansi=ansi)
        # The watcher thread and the input loop both print; one of them at a time.
        self._lock = threading.Lock()
        # Set while the input loop waits for an answer: the watcher leaves it to the loop.
        self.busy = threading.Event()

    # ------------------------------------------------------------ what she does

    def handle(self, line: str) -> bool:
        """Acts on one line of input; returns False when the person asked to quit."""
        text = line.strip()
        if not text:
            return True
        if text.startswith(":"):
            name, _, rest = text.partition(" ")
            if name in {":quit", ":q", ":exit"}:
                return False
            if name == ":help":
                self.write(t("cli.chat.help"))
            elif name == ":say" and rest.strip():
                self.server.send_text(self.user_id, rest.strip())
            else:
                self.write(t("cli.chat.unknown_command", command=name))
            return True
        if is_choice_key(text):
            self.press(text.lower())
        else:
            self.server.send_text(self.user_id, text)
        return True

    def press(self, key: str) -> bool:
        """Queues her tap on the button shown as [key] of the newest message with buttons."""
        message = self.newest_with_buttons()
        data = chosen_button(message, key, self.write)
        if message is None or data is None:
            return False
        self.server.press(self.user_id, data, message)
        return True

    # ------------------------------------------------------------ what the bot sent

    def _chat(self) -> list[FakeMessage]:
        return list(self.server.fake.chat(self.user_id))

    def newest_with_buttons(self) -> FakeMessage | None:
        """Returns the newest message in her chat that still has inline buttons."""
        return next((m for m in reversed(self._chat()) if m.buttons()), None)

    def show_new(self) -> int:
        """Prints messages sent or edited since the last call, and pop-ups; returns how many."""
        with self._lock:
            return self.transcript.show(self._chat(), self.server.fake.answered_callbacks)

    def wait_for_answer(
        self, *, timeout: float = WAIT_SECONDS, settle: float = SETTLE_SECONDS
    ) -> int:
        """Prints the bot's answer once it has arrived whole; says so when none came in time."""
        shown, last = 0, time.monotonic()
        deadline = last + timeout
        while time.monotonic() < deadline:
            new = self.show_new()
            if new:
                shown, last = shown + new, time.monotonic()
            elif shown and time.monotonic() - last >= settle:
                break
            time.sleep(POLL_SECONDS)
        if shown == 0:
            self.write(t("cli.chat.no_reply", seconds=round(timeout), url=self.server.root_url))
        return shown


def _watch(chat: Chat, stop: threading.Event) -> None:
    """Prints what the bot sends on its own (a check-in falling due) while she is not typing."""
    while not stop.wait(0.5):
        if not chat.busy.is_set():
            chat.show_new()


def run_chat(
    lines: Iterable[str],
    chat: Chat,
    *,
    echo: bool = False,
    watch: bool = False,
    wait: float = WAIT_SECONDS,
) -> None:
    """Reads `lines` until they end or `:quit`, waiting after each for the bot's answer."""
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(chat, stop), daemon=True)
    if watch:
        watcher.start()
    try:
        for line in lines:
            if echo:
                chat.write(f"{t('cli.demo.prompt')}{line.rstrip()}")
            chat.busy.set()
            try:
                if not chat.handle(line):
                    break
                text = line.strip()
                if text and (not text.startswith(":") or text.startswith(":say ")):
                    chat.wait_for_answer(timeout=wait)
            finally:
                chat.busy.clear()
    finally:
        stop.set()
        if watch:
            watcher.join(timeout=2)
    chat.write(t("cli.chat.bye"))


def _tty_lines(prompt: str) -> Iterator[str]:
    while True:
        try:
            yield input(prompt)
        except EOFError:
            return


def main(argv: list[str] | None = None) -> int:
    """Serves the fake Bot API and chats with the bot that polls it, until :quit or Ctrl+C."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.devtools.chat",
        description="Chat with `adherence-bot run` through a fake Bot API, without Telegram.",
    )
    parser.add_argument("--port", type=int, default=8081, help="port to serve on (8081)")
    parser.add_argument(
        "--wait", type=float, default=WAIT_SECONDS, help="seconds to wait for each answer"
    )
    args = parser.parse_args(argv)

    def write(text: str) -> None:
        print(text, flush=True)

    try:
        server = FakeBotApiServer(port=args.port)
    except OSError as exc:
        write(t("cli.chat.port_busy", port=args.port, reason=exc.strerror or exc))
        return 1
    server.start()
    interactive = sys.stdin.isatty()
    chat = Chat(server, write, ansi=sys.stdout.isatty())
    write(t("cli.chat.welcome", url=server.root_url))
    lines: Iterable[str] = _tty_lines(t("cli.demo.prompt")) if interactive else sys.stdin
    try:
        run_chat(lines, chat, echo=not interactive, watch=interactive, wait=args.wait)
    except KeyboardInterrupt:
        write("")
        write(t("cli.chat.bye"))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
