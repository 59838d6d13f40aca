"""`adherence-bot run` as a service: one poller at a time, /healthz and /metrics on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.devtools.bot_api_server import FakeBotApiServer, running_server
from bot.devtools.fake_telegram import FakeTelegram
from tests.test_run_e2e import TOKEN, _free_port, _stop, _wait_for


@pytest.fixture
def server() -> Iterator[FakeBotApiServer]:
    """A fake Bot API over HTTP that knows the bot's token."""
    with running_server(FakeTelegram(valid_token=TOKEN, username="service_test_bot")) as s:
        yield s


def _start(
    server: FakeBotApiServer, tmp_path: Path, database_url: str, log: Path, **extra: str
) -> subprocess.Popen[str]:
    """Starts `adherence-bot run` with its log in a file the test can read while it runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WEBHOOK_"))}
    env.update(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server.root_url,
            "DATABASE_URL": database_url,
            "EMERGENCY_NUMBER": "112",
            "PSEUDONYM_KEY": "service-pseudonym-key",
            "HEALTH_PORT": "0",
            **extra,
        }
    )
    script = Path(sys.executable).parent / "adherence-bot"
    with log.open("w") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [str(script), "run"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )


def test_a_second_poller_waits_says_so_and_takes_over_when_the_first_stops(
    server: FakeBotApiServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    fake = server.fake
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _start(server, tmp_path, url, first_log)
    second: subprocess.Popen[str] | None = None
    try:
        _wait_for(lambda: bool(fake.calls_to("getUpdates")), "the first poller", first)
        second = _start(server, tmp_path, url, second_log)
        waiting = second
        _wait_for(lambda: "another instance" in second_log.read_text(), "a plain word", waiting)
        polls_while_waiting = len(fake.calls_to("getUpdates"))
        _out, err = _stop(first)
        assert first.returncode == 0, err
        stopped_at = len(fake.calls_to("getUpdates"))
        assert stopped_at - polls_while_waiting <= 3  # only the first one was polling
        _wait_for(lambda: "polls now" in second_log.read_text(), "the take-over", waiting)
        _wait_for(lambda: len(fake.calls_to("getUpdates")) > stopped_at, "its getUpdates", waiting)
        _out, _err = _stop(waiting)
        assert waiting.returncode == 0
        log = first_log.read_text() + second_log.read_text()
        assert "Traceback" not in log and "Conflict" not in log
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.mark.postgres
def test_run_on_postgres_answers_healthz_and_serves_metrics(
    server: FakeBotApiServer, tmp_path: Path, pg_url: str
) -> None:
    port = _free_port()
    proc = _start(server, tmp_path, pg_url, tmp_path / "bot.log", HEALTH_PORT=str(port))
    base = f"http://127.0.0.1:{port}"

    def fetch(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()
        except OSError:
            return 0, ""

    try:
        _wait_for(lambda: bool(server.fake.calls_to("getUpdates")), "polling", proc)
        # The first dispatcher tick comes a second after start-up.
        deadline = time.monotonic() + 15
        status, body = fetch("/healthz")
        while status != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            status, body = fetch("/healthz")
        assert status == 200, body
        health = json.loads(body)
        assert health["database"] == "ok" or health.get("status") == "ok"
        status, metrics = fetch("/metrics")
        assert status == 200
        for name in ("adherence_due_backlog", "adherence_sends_total", "adherence_update_seconds"):
            assert name in metrics
        _out, err = _stop(proc)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
