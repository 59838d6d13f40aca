"""`python -m bot.devtools.chat`: a person chats with `adherence-bot run` through the fake
Bot API, without Telegram. Driven from scripted input, never from a terminal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from telegram import Bot
from telegram.constants import ParseMode

from bot.content import t
from bot.demo import DEMO_USER_ID
from bot.devtools.bot_api_server import running_server
from bot.devtools.chat import Chat, main, run_chat

TOKEN = "123:fake"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


class Screen:
    """Collects what the chat prints."""

    def __init__(self) -> None:
        self.chunks: list[str] = []

    def write(self, text: str) -> None:
        """Records one printed block."""
        self.chunks.append(text)

    @property
    def text(self) -> str:
        """Returns everything printed so far."""
        return "\n".join(self.chunks)


def free_port() -> int:
    """Returns a port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_chat_queues_her_words_and_taps_and_prints_what_the_bot_sends(
    tmp_path: Path,
) -> None:
    screen = Screen()
    with running_server() as server:
        chat = Chat(server, screen.write, files_dir=tmp_path / "files")
        chat.handle("/start")
        [update] = server.updates.take(0, 0)
        assert update["message"]["text"] == "/start"
        assert update["message"]["entities"][0]["type"] == "bot_command"

        # The bot answers over HTTP, as `adherence-bot run` does.
        async with Bot(TOKEN, base_url=f"{server.root_url}/bot") as bot:
            await bot.send_message(
                DEMO_USER_ID,
                "<b>Welcome</b> &amp; hello",
                parse_mode=ParseMode.HTML,
                reply_markup={"inline_keyboard": [[{"text": "I agree", "callback_data": "c:1"}]]},
            )
            assert chat.wait_for_answer(timeout=5, settle=0.1) == 1
            assert "bot: Welcome & hello" in screen.text and "[1] I agree" in screen.text

            chat.handle("1")
            pressed = server.updates.take(update["update_id"] + 1, 0)
            assert [u["callback_query"]["data"] for u in pressed] == ["c:1"]

            await bot.send_photo(DEMO_USER_ID, photo=PNG, caption="Your last 30 days")
            assert chat.wait_for_answer(timeout=5, settle=0.1) == 1
        [saved] = (tmp_path / "files").glob("*.png")
        assert saved.read_bytes() == PNG
        assert t("cli.demo.file_saved", path=str(saved)) in screen.text

        chat.handle("7")
        assert t("cli.demo.no_such_button", number="7", keys="1") in screen.text
        chat.handle(":dance")
        assert t("cli.chat.unknown_command", command=":dance") in screen.text
        assert chat.handle(":quit") is False


async def test_chat_says_so_when_no_bot_answers(tmp_path: Path) -> None:
    screen = Screen()
    with running_server() as server:
        chat = Chat(server, screen.write, files_dir=tmp_path)
        run_chat(["hello", ":quit", "never read"], chat, echo=True, wait=0.2)
        assert t("cli.chat.no_reply", seconds=0, url=server.root_url) in screen.text
    assert "never read" not in screen.text
    assert screen.chunks[-1] == t("cli.chat.bye")


def test_chat_on_a_busy_port_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        assert main(["--port", str(port)]) == 1
    assert "--port 8082" in capsys.readouterr().out


def test_a_person_chats_with_adherence_bot_run_through_the_chat_client(tmp_path: Path) -> None:
    port = free_port()
    chat = subprocess.Popen(
        [sys.executable, "-m", "bot.devtools.chat", "--port", str(port), "--wait", "40"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    bot: subprocess.Popen[str] | None = None
    try:
        assert chat.stdout is not None and chat.stdin is not None
        assert "Fake Telegram at" in chat.stdout.readline()  # serving: start the bot now
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WEBHOOK_"))}
        # What the chat's welcome (and the README) tells a person to type, in a fresh folder.
        env.update(
            {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_BASE_URL": f"http://127.0.0.1:{port}",
                "EMERGENCY_NUMBER": "112",
                "PSEUDONYM_KEY": "offline-try-only",
                "OPEN_ENROLLMENT": "true",
                "DATABASE_URL": f"sqlite:///{tmp_path / 'try.db'}",
                "HEALTH_PORT": "0",
            }
        )
        bot = subprocess.Popen(
            [str(Path(sys.executable).parent / "adherence-bot"), "run"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = chat.communicate("/start\n1\n:quit\n", timeout=120)
    finally:
        if chat.poll() is None:
            chat.kill()
        if bot is not None:
            bot.send_signal(signal.SIGINT)
            try:
                bot.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                bot.kill()
                bot.communicate()
    assert chat.returncode == 0, err
    assert "you> /start" in out
    assert t("onboarding.agree") in out and "[1]" in out  # her consent, a numbered button
    assert "bot (updated)" in out  # her tap ticked her choice on the pressed message
    assert "which medicine" in out
    assert out.rstrip().endswith(t("cli.chat.bye"))
