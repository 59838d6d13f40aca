"""The one path out: pacing, 429, 403, timeouts, retries and what is stored about failures."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from bot import clock, ratelimit
from bot.models import CheckIn, CheckInStatus, MissedReason, OutboxState, OutgoingMessage
from bot.models import Participant as ParticipantRow
from bot.outbox import enqueue
from tests.conftest import PATIENT, Harness
from tests.dispatch_helpers import add_participant, checkins_of, move_to, outbox, prepare, reload
from tests.dispatch_helpers import tick as run_tick

SECRET = "Private words about her pain"


@pytest.fixture
async def h(harness: Harness) -> Harness:
    """The harness in virtual time with simple renderers."""
    prepare(harness)
    return harness


async def queue(h: Harness, chat_id: int, n: int = 1, **payload: object) -> list[int]:
    """Queues n test messages to a chat; returns their row ids."""
    ids = []
    async with h.db.session() as session:
        for _ in range(n):
            row = await enqueue(
                session, kind="test", chat_id=chat_id, payload={"text": SECRET, **payload}
            )
            assert row.id is not None
            ids.append(row.id)
    return ids


async def row(h: Harness, row_id: int) -> OutgoingMessage:
    """Returns a fresh copy of one outbox row."""
    found = await reload(h.db, OutgoingMessage, row_id)
    assert found is not None
    return found


# ---------------------------------------------------------------- pacing


async def test_messages_to_one_chat_are_at_least_a_second_apart(h: Harness) -> None:
    await queue(h, PATIENT, 4)
    report = await run_tick(h)
    assert report.sent == 4
    times = [m.sent_at for m in h.fake.chat(PATIENT)]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= 1.0


async def test_messages_to_a_group_are_three_seconds_apart(h: Harness) -> None:
    group = -1001234567890
    await queue(h, group, 3)
    await run_tick(h)
    times = [m.sent_at for m in h.fake.chat(group)]
    assert [(b - a).total_seconds() >= 3.0 for a, b in itertools.pairwise(times)] == [
        True,
        True,
    ]


async def test_never_more_than_thirty_sends_in_any_second(h: Harness) -> None:
    for i in range(150):
        await queue(h, PATIENT + i)
    report = await run_tick(h)
    assert report.sent == 150
    assert 20 <= h.fake.max_accepted_in_any_second() <= 30


# ---------------------------------------------------------------- 429


# PTB 22 warns inside RetryAfter's constructor that retry_after will become a timedelta.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_retry_after_pauses_every_send_and_the_row_goes_once_afterwards(
    h: Harness,
) -> None:
    ids = [*(await queue(h, PATIENT)), *(await queue(h, PATIENT + 1)), *(await queue(h, 42))]
    h.fake.fail_next("sendMessage", status=429, description="Too Many Requests", retry_after=30)
    start = clock.now()
    report = await run_tick(h)
    assert report.rate_limited == 1 and report.sent == 0
    limited = await row(h, ids[0])
    assert limited.state == OutboxState.queued and not limited.uncertain
    assert limited.attempts == 0  # a 429 is not a failed attempt
    assert limited.not_before >= start + timedelta(seconds=30)
    # Another worker (any process) asking for a slot now is held until the pause ends.
    assert await ratelimit.reserve(db=h.db, chat_id=777, per_second=28) >= start + timedelta(
        seconds=30
    )
    move_to(start + timedelta(seconds=15))
    assert (await run_tick(h)).sent == 0
    move_to(start + timedelta(seconds=31))
    assert (await run_tick(h)).sent == 3
    for chat in (PATIENT, PATIENT + 1, 42):
        [message] = h.fake.chat(chat)
        assert message.sent_at >= start + timedelta(seconds=30)
    assert len(h.fake.calls_to("sendMessage")) == 4  # three sends plus the refused one


# ---------------------------------------------------------------- 403


async def test_blocked_participant_is_marked_unreachable_and_sends_stop(h: Harness) -> None:
    p = await add_participant(h.db, uid=PATIENT, local_time="09:30")
    h.fake.block(PATIENT)
    move_to(datetime(2026, 1, 12, 9, 30, 5, tzinfo=UTC))
    report = await run_tick(h)
    assert report.blocked == 1
    [failed] = await outbox(h.db, kind="checkin")
    assert failed.state == OutboxState.failed
    assert failed.last_error == "Forbidden: bot was blocked by the user"
    stored = await reload(h.db, ParticipantRow, p.id)
    assert stored.reachable is False and stored.unreachable_since == clock.now()
    assert stored.status == "active"  # blocking is not a lifecycle change
    [first, upcoming] = await checkins_of(h.db, p.id or 0)
    assert (first.status, first.missed_reason) == (CheckInStatus.missed, MissedReason.blocked)
    # The next day nothing is attempted; the check-in is recorded as missed/blocked.
    move_to(upcoming.due_at + timedelta(seconds=5))
    await run_tick(h)
    assert len(h.fake.calls_to("sendMessage")) == 1
    closed = await reload(h.db, CheckIn, upcoming.id)
    assert closed.missed_reason == MissedReason.blocked


# ---------------------------------------------------------------- timeouts


async def test_timeout_after_delivery_is_uncertain_and_never_sent_again(h: Harness) -> None:
    [row_id] = await queue(h, PATIENT)
    h.fake.timeout_next("sendMessage", delivered=True)
    report = await run_tick(h)
    assert report.uncertain == 1 and report.sent == 0
    first = await row(h, row_id)
    assert (first.state, first.uncertain, first.attempts) == (OutboxState.uncertain, True, 1)
    assert first.last_error == "TimedOut: fake server timed out"
    assert len(h.fake.chat(PATIENT)) == 1  # it did arrive
    move_to(clock.now() + timedelta(hours=2))
    assert (await run_tick(h)).sent == 0  # not re-sent blindly: it may have arrived
    assert len(h.fake.calls_to("sendMessage")) == 1


async def test_a_5xx_leaves_the_outcome_unknown_and_is_not_resent(h: Harness) -> None:
    [row_id] = await queue(h, PATIENT)
    h.fake.fail_next("sendMessage", status=502, description="Bad Gateway")
    report = await run_tick(h)
    assert report.uncertain == 1
    assert (await row(h, row_id)).state == OutboxState.uncertain
    move_to(clock.now() + timedelta(hours=1))
    await run_tick(h)
    assert len(h.fake.calls_to("sendMessage")) == 1


# ---------------------------------------------------------------- other errors


async def test_a_send_that_never_left_is_retried_with_backoff_then_fails(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    from telegram.error import NetworkError

    [row_id] = await queue(h, PATIENT)
    bot = h.app.bot
    real_send = bot.send_message
    refused = {"left": 5}

    async def refuse_connection(*args: object, **kwargs: object) -> object:
        """Fails as PTB does when the connection is refused (nothing reached Telegram)."""
        if refused["left"]:
            refused["left"] -= 1
            try:
                raise httpx.ConnectError("connection refused")
            except httpx.ConnectError as exc:
                raise NetworkError("httpx.ConnectError: connection refused") from exc
        return await real_send(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(
        type(bot), "send_message", lambda self, *a, **k: refuse_connection(*a, **k)
    )
    waits = []
    for _ in range(5):
        await run_tick(h)
        current = await row(h, row_id)
        if current.state != OutboxState.queued:
            break
        waits.append(round((current.not_before - clock.now()).total_seconds()))
        move_to(current.not_before)
    assert waits == [2, 4, 8, 16]
    final = await row(h, row_id)
    assert (final.state, final.attempts) == (OutboxState.failed, 5)
    assert final.last_error.startswith("NetworkError: httpx.ConnectError")
    assert h.fake.chat(PATIENT) == []


async def test_bad_request_fails_for_good_and_stores_no_message_text(h: Harness) -> None:
    [row_id] = await queue(h, PATIENT)
    h.fake.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    report = await run_tick(h)
    assert report.failed == 1
    failed = await row(h, row_id)
    assert failed.state == OutboxState.failed
    assert failed.last_error == "BadRequest: Chat not found"
    assert SECRET not in (failed.last_error or "")
    move_to(clock.now() + timedelta(hours=1))
    await run_tick(h)
    assert len(h.fake.calls_to("sendMessage")) == 1


async def test_message_is_not_modified_counts_as_success(h: Harness) -> None:
    [row_id] = await queue(h, PATIENT)
    h.fake.fail_next("sendMessage", status=400, description="Bad Request: message is not modified")
    report = await run_tick(h)
    assert report.sent == 1
    assert (await row(h, row_id)).state == OutboxState.sent


async def test_renderer_may_cancel_a_send(h: Harness) -> None:
    [row_id] = await queue(h, PATIENT, skip=True)
    report = await run_tick(h)
    assert report.cancelled == 1
    assert (await row(h, row_id)).state == OutboxState.cancelled
    assert h.fake.calls_to("sendMessage") == []


async def test_kind_without_a_renderer_fails_without_sending(h: Harness) -> None:
    async with h.db.session() as session:
        unknown = await enqueue(session, kind="nobody_renders_this", chat_id=PATIENT)
    await run_tick(h)
    failed = await row(h, unknown.id or 0)
    assert failed.state == OutboxState.failed
    assert failed.last_error == "NoRenderer: nobody_renders_this"


async def test_sent_row_records_message_id_and_runs_the_after_send_hook(h: Harness) -> None:
    seen: list[int] = []

    async def hook(session: object, sent: OutgoingMessage, message_id: int) -> None:
        seen.append(message_id)

    h.app.bot_data.after_send["test"] = hook  # type: ignore[assignment]
    [row_id] = await queue(h, PATIENT)
    await run_tick(h)
    sent = await row(h, row_id)
    message = h.fake.last(PATIENT)
    assert (sent.state, sent.telegram_message_id, sent.sent_at) == (
        OutboxState.sent,
        message.message_id,
        clock.now(),
    )
    assert seen == [message.message_id]
