"""Free text, unknown commands, attachments, groups and strangers: nobody meets silence."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func
from sqlmodel import SQLModel, select

from bot import clock
from bot.logging_setup import CAPPED_LOGGERS, RedactSecrets, configure_logging
from bot.models import Answer, CheckIn, CheckInStatus, Participant, ProcessedUpdate, RateSlot
from bot.paths import content_dir
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant

ROOT = Path(__file__).resolve().parent.parent
MY_MESSAGE_FILES = ("lifecycle", "fallback", "help")


async def open_checkin(h: Harness, participant: Participant) -> CheckIn:
    """Stores a check-in that was just sent to her and has no answers yet."""
    assert participant.id is not None
    now = clock.now()
    async with h.db.session() as session:
        checkin = CheckIn(
            participant_id=participant.id,
            questionnaire_id="daily_checkin",
            questionnaire_version="1",
            due_at=now,
            window_closes_at=now + timedelta(hours=6),
            sent_at=now,
            status=CheckInStatus.sent,
        )
        session.add(checkin)
    return checkin


async def set_awaiting(h: Harness, participant: Participant, awaiting: str | None) -> None:
    """Marks what her next typed message means."""
    async with h.db.session() as session:
        row = await session.get(Participant, participant.id)
        assert row is not None
        row.awaiting = awaiting
        session.add(row)


async def row_counts(h: Harness) -> dict[str, int]:
    """Counts the rows of every table except bookkeeping (update ids, send pacing)."""
    counts: dict[str, int] = {}
    async with h.db.session() as session:
        for table in SQLModel.metadata.sorted_tables:
            if table.name in (ProcessedUpdate.__tablename__, RateSlot.__tablename__):
                continue
            result = await session.exec(select(func.count()).select_from(table))
            counts[table.name] = int(result.one())
    return counts


async def test_text_where_nothing_is_expected_gets_a_helpful_reply(harness: Harness) -> None:
    await make_active_participant(harness.db)
    await harness.send(PATIENT, "hello, is anyone there?")
    reply = harness.last(PATIENT)
    for expected in ("/checkin", "/help", "care team", "call 999", "around the clock"):
        assert expected in reply.text
    assert [label for label, _ in reply.buttons()] == ["What can you do?", "My privacy"]

    await harness.press(PATIENT, "What can you do?")
    assert "not a doctor" in harness.last(PATIENT).text
    await harness.press(PATIENT, "My privacy", message=reply)
    assert "code name" in harness.last(PATIENT).text


async def test_edited_text_gets_a_helpful_reply_too(harness: Harness) -> None:
    await make_active_participant(harness.db)
    await harness.process(harness.updates.message(PATIENT, "typo fixed", edited=True))
    assert "/checkin" in harness.last(PATIENT).text


async def test_text_after_leaving_says_she_has_left(harness: Harness) -> None:
    await make_active_participant(harness.db)
    await harness.command(PATIENT, "stop")
    await harness.press(PATIENT, "Leave the study")
    await harness.press(PATIENT, "Yes, leave the study")
    await harness.send(PATIENT, "hello")
    text = harness.last(PATIENT).text
    assert "left the study" in text and "call 999" in text


async def test_unknown_command_gets_the_commands_that_exist(harness: Harness) -> None:
    await make_active_participant(harness.db)
    await harness.command(PATIENT, "unsubscribe")
    reply = harness.last(PATIENT)
    assert "don't know that command" in reply.text
    assert "/help" in reply.text
    assert reply.buttons()


async def test_someone_who_never_started_is_nudged_to_start(harness: Harness) -> None:
    stranger = PATIENT + 7
    await harness.send(stranger, "hi")
    await harness.command(stranger, "whatever")
    await harness.process(harness.updates.photo(stranger, caption="look"))
    await harness.command(stranger, "stop")
    texts = harness.texts(stranger)
    assert len(texts) == 4
    assert all("/start" in t for t in texts)
    async with harness.db.session() as session:
        assert (await session.exec(select(Participant))).all() == []


@pytest.mark.parametrize("kind", ["photo", "voice", "sticker", "video", "document"])
async def test_attachments_get_a_reply_and_nothing_is_stored(harness: Harness, kind: str) -> None:
    await make_active_participant(harness.db)
    before = await row_counts(harness)
    if kind == "photo":
        # A neutral caption: captions with safety signals are in tests/test_free_text_safety.py.
        update = harness.updates.photo(PATIENT, caption="my garden this morning")
    elif kind == "voice":
        update = harness.updates.voice(PATIENT)
    elif kind == "sticker":
        update = harness.updates.sticker(PATIENT)
    elif kind == "video":
        video = {"file_id": "vd", "file_unique_id": "uvd", "width": 1, "height": 1, "duration": 1}
        update = harness.updates.message(PATIENT, None, extra={"video": video})
    else:
        document = {"file_id": "d1", "file_unique_id": "ud1", "file_name": "scan.pdf"}
        update = harness.updates.message(PATIENT, None, extra={"document": document})
    await harness.process(update)
    text = harness.last(PATIENT).text
    assert "can't open" in text and "care team" in text
    assert await row_counts(harness) == before
    assert not any(method == "getFile" for method, _ in harness.fake.calls)


async def test_group_commands_get_a_private_chat_note_and_group_text_is_ignored(
    harness: Harness,
) -> None:
    group = -100_555
    await harness.process(
        harness.updates.command(PATIENT, "help", chat_id=group, chat_type="group")
    )
    assert "private chat" in harness.last(group).text
    await harness.process(
        harness.updates.message(PATIENT, "hello all", chat_id=group, chat_type="supergroup")
    )
    assert len(harness.texts(group)) == 1


async def test_typed_note_goes_to_the_checkin_that_asked_for_it(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    checkin = await open_checkin(harness, p)
    await set_awaiting(harness, p, f"note:{checkin.id}")
    await harness.send(PATIENT, "knees stiff in the morning")
    async with harness.db.session() as session:
        notes = (await session.exec(select(Answer).where(Answer.item_code == "note"))).all()
    assert [n.value for n in notes] == ["knees stiff in the morning"]


async def test_text_during_an_open_checkin_goes_to_the_checkin(harness: Harness) -> None:
    p = await make_active_participant(harness.db)
    await open_checkin(harness, p)
    await harness.send(PATIENT, "abc")
    reply = harness.last(PATIENT)
    assert any(data.startswith("ci:") for _, data in reply.buttons())


@pytest.mark.parametrize(
    ("awaiting", "expected"),
    [
        ("onb:time", "already"),  # she finished set-up: onboarding says so
        ("set:time", "18:30"),  # /settings stores the typed time
        ("reconsent", "I agree"),  # the new consent text waits for a tap
    ],
)
async def test_awaited_onboarding_text_goes_to_onboarding(
    harness: Harness, awaiting: str, expected: str
) -> None:
    p = await make_active_participant(harness.db)
    await open_checkin(harness, p)  # an open check-in must not steal awaited input
    await set_awaiting(harness, p, awaiting)
    await harness.send(PATIENT, "18:30")
    reply = harness.last(PATIENT)
    assert expected in reply.text + " ".join(label for label, _ in reply.buttons())
    assert not any(data.startswith("ci:") for _, data in reply.buttons())
    async with harness.db.session() as session:
        assert (await session.exec(select(Answer))).all() == []


async def test_typed_text_with_nothing_open_never_reaches_the_checkin_flow(
    harness: Harness,
) -> None:
    await make_active_participant(harness.db)
    await harness.send(PATIENT, "5")
    assert "/checkin" in harness.last(PATIENT).text
    async with harness.db.session() as session:
        assert (await session.exec(select(CheckIn))).all() == []


def _message_keys(name: str) -> dict[str, str]:
    data = yaml.safe_load((content_dir() / "messages" / "en" / f"{name}.yaml").read_text())
    return {f"{name}.{key}": str(value) for key, value in data.items()}


def test_every_lifecycle_and_fallback_message_is_used_and_fits_telegram() -> None:
    sources = "\n".join(
        path.read_text() for path in (ROOT / "handlers").rglob("*.py") if path.is_file()
    )
    # Keys built at run time, such as f"lifecycle.btn_pause_{choice}", count by their prefix.
    prefixes = re.findall(r'f"([a-z_]+\.[a-z_]+)\{', sources)
    for name in MY_MESSAGE_FILES:
        for key, text in _message_keys(name).items():
            assert f'"{key}"' in sources or any(key.startswith(p) for p in prefixes), key
            assert len(text.format(emergency="112 or 999", study="x" * 80, date="x" * 30)) < 4096


def test_lifecycle_and_fallback_messages_read_at_grade_eight_or_lower() -> None:
    import textstat

    for name in MY_MESSAGE_FILES:
        for key, text in _message_keys(name).items():
            words = re.sub(r"/\w+", "command", text)  # a /command reads as one plain word
            if len(words.split()) >= 12:
                assert textstat.flesch_kincaid_grade(words) <= 8, key


# ---------------------------------------------------------------- logging


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Runs the app's logging set-up at DEBUG and restores every level afterwards."""
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in CAPPED_LOGGERS}
    saved_root, saved_filters = root.level, {h: list(h.filters) for h in root.handlers}
    configure_logging(logging.DEBUG, secrets=["123456:TEST-token_abc"])
    caplog.set_level(logging.DEBUG)
    try:
        yield caplog
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        root.setLevel(saved_root)
        for handler, filters in saved_filters.items():
            handler.filters[:] = filters


def test_debug_logging_keeps_payload_dumping_libraries_quiet() -> None:
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in CAPPED_LOGGERS}
    saved_root = root.level
    try:
        configure_logging("DEBUG")
        assert logging.getLogger("handlers.fallback").isEnabledFor(logging.DEBUG)
        # PTB logs whole updates and the API URL (token) at DEBUG; httpx logs URLs at INFO;
        # SQLAlchemy and aiosqlite log SQL parameters (what she typed).
        assert not logging.getLogger("telegram.ext.Application").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("telegram.Bot").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert not logging.getLogger("sqlalchemy.engine.Engine").isEnabledFor(logging.INFO)
        assert not logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        root.setLevel(saved_root)


def test_known_secrets_are_redacted_from_log_records() -> None:
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "url %s", ("/bot1:abcdef/x",), None
    )
    RedactSecrets(["1:abcdef"]).filter(record)
    assert record.getMessage() == "url /bot[redacted]/x"


# The logging fixture comes first, so the bot is built (and logs its API URL) under DEBUG.
async def test_a_full_flow_at_debug_leaves_no_patient_text_name_or_token_in_the_logs(
    debug_logging: pytest.LogCaptureFixture, harness: Harness
) -> None:
    newcomer, member = PATIENT + 50, PATIENT
    who = {"first_name": "Zuleika", "username": "zuleika_private"}
    me = {"first_name": "Marisol", "username": "marisol_private"}

    await harness.process(harness.updates.command(newcomer, "start", **who))
    await harness.process(harness.updates.message(newcomer, "SECRET-TYPED-ONE", **who))

    p = await make_active_participant(harness.db, telegram_user_id=member)
    await harness.process(harness.updates.message(member, "SECRET-TYPED-TWO my knees", **me))
    checkin = await open_checkin(harness, p)
    await harness.process(harness.updates.message(member, "SECRET-TYPED-THREE", **me))
    await set_awaiting(harness, p, f"note:{checkin.id}")
    await harness.process(harness.updates.message(member, "SECRET-NOTE-FOUR", **me))
    await harness.process(harness.updates.photo(member, caption="SECRET-CAPTION-FIVE", **me))
    await harness.process(harness.updates.message(member, "/nonsense SECRET-ARG-SIX", **me))
    await harness.process(harness.updates.command(member, "stop", **me))
    await harness.press(member, "Pause messages")
    await harness.press(member, "1 week")
    await harness.process(harness.updates.command(member, "resume", **me))
    await harness.process(harness.updates.command(member, "stop", **me))
    await harness.press(member, "I'm thinking about stopping my medicine")
    await harness.process(harness.updates.command(member, "delete_my_data", **me))
    await harness.press(member, "Yes, delete my data")
    assert (await harness.db.engine.dispose()) is None  # connection logging is capped too

    forbidden = [
        "SECRET",
        "Zuleika",
        "zuleika_private",
        "Marisol",
        "marisol_private",
        "my knees",
        "123456:TEST-token_abc",
        "TEST-token_abc",
    ]
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = debug_logging.records
    assert any(r.levelno == logging.DEBUG for r in records)  # DEBUG really was on
    for record in records:
        rendered = " ".join(
            [formatter.format(record), str(record.msg), repr(record.args), record.exc_text or ""]
        )
        for secret in forbidden:
            assert secret not in rendered, (record.name, secret)
