"""`adherence-bot run` as a user starts it: a real process against a Bot API over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.devtools.bot_api_server import FakeBotApiServer, command_update, running_server
from bot.devtools.fake_telegram import FakeTelegram

TOKEN = "123456:AAE-e2e_token"
PATIENT = 5_000_000_777
DEADLINE = 20.0  # seconds for the whole start-up / reply / shutdown dance


def _wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    # A subprocess runs in real time, so this test has to poll; every wait is bounded.
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if condition():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"bot exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def server() -> Iterator[FakeBotApiServer]:
    """A fake Bot API that knows the bot's token."""
    with running_server(FakeTelegram(valid_token=TOKEN, username="e2e_test_bot")) as s:
        yield s


@pytest.fixture
def bot_process(server: FakeBotApiServer, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Starts `adherence-bot run` from an unrelated folder, pointed at the fake server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WEBHOOK_"))}
    env.update(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server.root_url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.db'}",
            "EMERGENCY_NUMBER": "112",
            "PSEUDONYM_KEY": "e2e-pseudonym-key",
            "OPEN_ENROLLMENT": "true",
        }
    )
    script = Path(sys.executable).parent / "adherence-bot"
    proc = subprocess.Popen(
        [str(script), "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"bot did not stop on SIGINT:\n{out}\n{err}")
    return out, err


def test_run_connects_publishes_commands_polls_and_stops_cleanly(
    server: FakeBotApiServer, bot_process: subprocess.Popen[str]
) -> None:
    fake = server.fake
    _wait_for(lambda: bool(fake.calls_to("getUpdates")), "the first getUpdates", bot_process)
    methods = [m for m, _ in fake.calls]
    assert methods.index("getMe") < methods.index("getUpdates")
    assert "setMyCommands" in methods
    polled = fake.calls_to("getUpdates")[0]
    assert "my_chat_member" in polled["allowed_updates"]
    out, err = _stop(bot_process)
    assert bot_process.returncode == 0, err
    assert "running (long polling)" in out and "@e2e_test_bot" in out
    assert "Bot stopped." in out
    assert "Traceback" not in err
    assert TOKEN not in out + err


def test_run_answers_a_start_delivered_by_get_updates(
    server: FakeBotApiServer, bot_process: subprocess.Popen[str]
) -> None:
    fake = server.fake
    _wait_for(lambda: bool(fake.calls_to("getUpdates")), "the first getUpdates", bot_process)
    server.updates.put(command_update(PATIENT, "/start"))
    _wait_for(lambda: bool(fake.chat(PATIENT)), "a reply to /start", bot_process)
    reply = fake.texts(PATIENT)[0]
    assert reply.strip()
    assert "something went wrong" not in reply
    _out, err = _stop(bot_process)
    assert bot_process.returncode == 0, err
    assert "Traceback" not in err and "handler failed" not in err, err


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_webhook_mode_registers_the_secret_and_refuses_requests_without_it(
    server: FakeBotApiServer, tmp_path: Path
) -> None:
    import json
    import urllib.error
    import urllib.request

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WEBHOOK_"))}
    env.update(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server.root_url + "/bot",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'hook.db'}",
            "EMERGENCY_NUMBER": "112",
            "PSEUDONYM_KEY": "e2e-pseudonym-key",
            "OPEN_ENROLLMENT": "true",
            "WEBHOOK_URL": "https://bot.example.org/telegram",
            "WEBHOOK_SECRET": "s3cret-Token_1",
            "WEBHOOK_LISTEN": "127.0.0.1",
            "WEBHOOK_PORT": str(port),
        }
    )
    script = Path(sys.executable).parent / "adherence-bot"
    proc = subprocess.Popen(
        [str(script), "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fake = server.fake
        _wait_for(lambda: bool(fake.calls_to("setWebhook")), "setWebhook", proc)
        hook = fake.calls_to("setWebhook")[0]
        assert hook["url"] == "https://bot.example.org/telegram"
        assert hook["secret_token"] == "s3cret-Token_1"
        assert "my_chat_member" in hook["allowed_updates"]

        body = json.dumps({"update_id": 1, **command_update(PATIENT, "/start")}).encode()

        def post(secret: str | None) -> int:
            headers = {"Content-Type": "application/json"}
            if secret:
                headers["X-Telegram-Bot-Api-Secret-Token"] = secret
            request = urllib.request.Request(f"http://127.0.0.1:{port}/", body, headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)
            except OSError:
                return 0  # not listening yet

        _wait_for(lambda: post("wrong-secret") == 403, "the webhook to refuse a bad secret", proc)
        assert not fake.chat(PATIENT)
        assert post("s3cret-Token_1") == 200
        _wait_for(lambda: bool(fake.chat(PATIENT)), "a reply to /start via the webhook", proc)
        _out, err = _stop(proc)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
