"""An update PTB cannot parse is skipped, named in the log by id only, and never stops polling."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Update
from telegram.ext import ExtBot
from telegram.request import BaseRequest, RequestData

from bot.devtools.bot_api_server import FakeBotApiServer, command_update, running_server
from bot.devtools.fake_telegram import FakeTelegram
from bot.logging_setup import CAPPED_LOGGERS, WithholdLibraryDetails, configure_logging
from bot.safe_bot import SafeBot, parse_update

TOKEN = "123456:AAE-malformed_token"
NAME = "Margarethe Quill"
FREE_TEXT = "my secret symptom text 8472"
# Any of these in a log line means patient content leaked.
LEAKS = ("Margarethe", "Quill", "secret symptom", "8472")
HER = 5_000_000_901  # sends the update PTB cannot parse
OTHER = 5_000_000_902  # sends a good /start right after
DEADLINE = 10.0  # seconds for any one wait on the bot process


def good_update(update_id: int, user_id: int, text: str) -> dict[str, Any]:
    """Returns a well-formed update as Telegram sends it."""
    return {"update_id": update_id, **command_update(user_id, text, first_name="Ana")}


def malformed_payload() -> dict[str, Any]:
    """Returns a message (without update_id) that PTB 22.8 fails on: its date is a string."""
    payload = command_update(HER, FREE_TEXT, first_name=NAME)
    payload["message"]["date"] = "yesterday"
    return payload


class CannedRequest(BaseRequest):
    """A PTB transport that answers getUpdates with a fixed result and records every call."""

    def __init__(self, result: list[Any]) -> None:
        self.result = result
        self.calls: list[tuple[str, dict[str, Any], object]] = []

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        params = dict(request_data.parameters) if request_data else {}
        self.calls.append((url.rsplit("/", 1)[-1], params, read_timeout))
        return 200, json.dumps({"ok": True, "result": self.result}).encode()


def test_ptb_really_fails_on_the_malformed_message() -> None:
    with pytest.raises(TypeError):
        Update.de_json({"update_id": 2, **malformed_payload()}, ExtBot(TOKEN))


async def test_a_malformed_update_becomes_a_bare_update_and_one_warning_with_only_its_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, last = good_update(1, OTHER, "/start"), good_update(3, OTHER, "/help")
    request = CannedRequest([first, {"update_id": 2, **malformed_payload()}, last])
    bot = SafeBot(TOKEN, request=request, get_updates_request=request)
    # WARNING and above: PTB's own CRITICAL dump of the batch would show up here too.
    with caplog.at_level(logging.WARNING):
        updates = await bot.get_updates(offset=1, timeout=10, allowed_updates=["message"])
    assert [u.update_id for u in updates] == [1, 2, 3]
    assert updates[0].to_dict() == Update.de_json(first, bot).to_dict()
    assert updates[2].to_dict() == Update.de_json(last, bot).to_dict()
    assert updates[0].message is not None and updates[0].message.text == "/start"
    bare = updates[1]
    assert bare.to_dict() == {"update_id": 2}
    assert bare.effective_user is None and bare.effective_message is None
    assert bot.malformed_updates == 1
    [warning] = [r for r in caplog.records if r.name == "bot.safe_bot"]
    assert "update 2" in warning.getMessage() and "TypeError" in warning.getMessage()
    assert warning.exc_info is None
    assert not any(leak in caplog.text for leak in LEAKS), caplog.text


async def test_good_updates_are_fetched_exactly_as_ptb_fetches_them() -> None:
    batch = [good_update(7, OTHER, "/start"), good_update(8, OTHER, "hello")]
    ours, theirs = CannedRequest(batch), CannedRequest(batch)
    safe = SafeBot(TOKEN, request=ours, get_updates_request=ours)
    plain = ExtBot(TOKEN, request=theirs, get_updates_request=theirs)
    kwargs: dict[str, Any] = {"offset": 7, "limit": 50, "timeout": 10, "allowed_updates": ["x"]}
    got, expected = await safe.get_updates(**kwargs), await plain.get_updates(**kwargs)
    assert [u.to_dict() for u in got] == [u.to_dict() for u in expected]
    assert ours.calls == theirs.calls  # same method, parameters and read timeout (5 + 10)
    assert ours.calls[0][2] == 15.0
    assert safe.malformed_updates == 0


async def test_an_update_without_a_readable_id_is_skipped_and_named_by_position(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = CannedRequest(
        [
            malformed_payload(),  # no update_id at all
            {"update_id": "Margarethe Quill", **malformed_payload()},
            "my secret symptom text 8472",
            good_update(4, OTHER, "/start"),
        ]
    )
    bot = SafeBot(TOKEN, request=request, get_updates_request=request)
    with caplog.at_level(logging.WARNING):
        updates = await bot.get_updates(offset=1)
    assert [u.update_id for u in updates] == [4]
    assert bot.malformed_updates == 3
    # Only this module's records: other loggers' state depends on the tests run before.
    messages = [r.getMessage() for r in caplog.records if r.name == "bot.safe_bot"]
    assert len(messages) == 3
    assert all("position" in m for m in messages), messages
    assert not any(leak in caplog.text for leak in LEAKS), caplog.text


def test_parse_update_for_a_webhook_applies_the_same_rule(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = SafeBot(TOKEN)
    good = parse_update(good_update(5, OTHER, "/start"), bot)
    assert good is not None and good.message is not None and good.message.text == "/start"
    with caplog.at_level(logging.WARNING):
        bare = parse_update({"update_id": 6, **malformed_payload()}, bot)
    assert bare is not None and bare.to_dict() == {"update_id": 6}
    assert bot.malformed_updates == 1
    assert "update 6" in caplog.text and "TypeError" in caplog.text
    assert not any(leak in caplog.text for leak in LEAKS), caplog.text
    assert parse_update(malformed_payload(), bot) is None  # no id: nothing to hand on
    assert bot.malformed_updates == 2


# ---------------------------------------------------------------- library log records


def _formatted(record: logging.LogRecord) -> str:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(WithholdLibraryDetails())
    assert handler.filter(record)
    return handler.format(record)


def _record(
    name: str, level: int, msg: str, *args: object, exc: bool = False
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            # Raised inside bot/ so that one of our frames is in the traceback.
            configure_logging(NAME)
        except ValueError:
            exc_info = sys.exc_info()
    return logging.getLogger(name).makeRecord(name, level, __file__, 1, msg, args, exc_info)


def test_ptb_critical_parse_error_keeps_class_and_our_frames_but_no_content() -> None:
    batch = [{"update_id": 2, **malformed_payload()}]
    record = _record("telegram.Bot", logging.CRITICAL, "Received data was %r", batch, exc=True)
    shown = _formatted(record)
    assert not any(leak in shown for leak in LEAKS), shown
    assert "ValueError" in shown and "details withheld" in shown
    assert "bot/logging_setup.py:" in shown  # where in our code it was raised
    assert "Received data was [withheld]" in shown
    assert "Traceback" not in shown


def test_library_args_are_withheld_at_every_level_but_plain_templates_stay() -> None:
    for level in (logging.DEBUG, logging.INFO, logging.WARNING):
        record = _record("telegram.ext.Application", level, "update %s: %d", NAME, 8472)
        assert _formatted(record).endswith("update [withheld]: [withheld]")
    plain = _record("telegram.ext.Application", logging.INFO, "Application started")
    assert _formatted(plain).endswith("telegram.ext.Application: Application started")
    ours = _record("bot.dispatcher", logging.INFO, "sent %s", "7 messages")
    assert _formatted(ours).endswith("sent 7 messages")  # our loggers are not touched


def test_configure_logging_installs_the_filter_before_secret_redaction() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    saved = root.handlers[:], root.level
    capped = {name: logging.getLogger(name).level for name in CAPPED_LOGGERS}
    root.handlers[:] = [handler]
    try:
        configure_logging("DEBUG", secrets=[TOKEN])
        configure_logging("DEBUG", secrets=[TOKEN])  # twice: still one of each
        kinds = [type(f).__name__ for f in handler.filters]
        assert kinds == ["WithholdLibraryDetails", "RedactSecrets"]
        assert logging.getLogger("telegram").level == logging.INFO
        record = _record("bot.cli", logging.INFO, "token %s", TOKEN)
        assert handler.filter(record)
        assert record.getMessage() == "token [redacted]"  # RedactSecrets still works
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, was in capped.items():
            logging.getLogger(name).setLevel(was)


# ---------------------------------------------------------------- the real process


@pytest.fixture
def server() -> Iterator[FakeBotApiServer]:
    """A fake Bot API over HTTP that knows the bot's token."""
    with running_server(FakeTelegram(valid_token=TOKEN, username="malformed_test_bot")) as s:
        yield s


def _wait_for(
    condition: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[bytes],
    server: FakeBotApiServer,
    stderr: Path,
) -> None:
    # A real process runs on the real clock, so this polls; every wait is bounded.
    end = time.monotonic() + DEADLINE
    while not condition():
        polls = len(server.fake.calls_to("getUpdates"))
        if proc.poll() is not None:
            tail = stderr.read_text("utf-8", "replace")[-2000:]
            pytest.fail(
                f"the bot exited ({proc.returncode}) before {what} ({polls} polls):\n{tail}"
            )
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what} ({polls} getUpdates calls so far)")
        time.sleep(0.05)


def test_a_malformed_update_neither_stops_the_bot_nor_reaches_its_logs(
    server: FakeBotApiServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WEBHOOK_"))}
    env.update(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server.root_url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
            "EMERGENCY_NUMBER": "112",
            "PSEUDONYM_KEY": "malformed-pseudonym-key",
            "OPEN_ENROLLMENT": "true",
            "HEALTH_PORT": "0",  # no ops server: a fixed port would clash with other runs
        }
    )
    script = Path(sys.executable).parent / "adherence-bot"
    # Files, not pipes: a flooding bot would otherwise block on a full pipe and hide the flood.
    out_path, err_path = tmp_path / "bot.out", tmp_path / "bot.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [str(script), "run", "--log-level", "DEBUG"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=err,
        )
    fake = server.fake
    try:
        _wait_for(
            lambda: bool(fake.calls_to("getUpdates")),
            "the first getUpdates",
            proc,
            server,
            err_path,
        )
        polls_before = len(fake.calls_to("getUpdates"))
        bad_id = server.updates.put(malformed_payload())
        server.updates.put(command_update(OTHER, "/start"))

        def consent_asked() -> bool:
            buttons = [label for m in fake.chat(OTHER) for label, _ in m.buttons()]
            return "I agree" in buttons

        _wait_for(consent_asked, "the consent question for the other user", proc, server, err_path)
        polls = len(fake.calls_to("getUpdates")) - polls_before
        confirmed = lambda: any(  # noqa: E731
            int(p.get("offset") or 0) > bad_id for p in fake.calls_to("getUpdates")
        )
        _wait_for(confirmed, "a getUpdates that confirms the bad update", proc, server, err_path)
        assert polls < 50, f"{polls} getUpdates calls: polling is looping on the bad update"
        assert not fake.chat(HER)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    printed = out_path.read_text("utf-8", "replace") + err_path.read_text("utf-8", "replace")
    assert proc.returncode == 0, printed[-3000:]
    leaked = [line for line in printed.splitlines() if any(leak in line for leak in LEAKS)]
    assert not leaked, f"{len(leaked)} log lines carry her name or text, e.g. {leaked[:2]}"
    assert f"update {bad_id}" in printed and "TypeError" in printed  # the id-only warning
    assert "Traceback" not in printed
