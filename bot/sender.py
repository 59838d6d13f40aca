"""The one path out: every message the bot starts is rendered, paced and sent here.

The dispatcher claims outbox rows (state 'claimed', attempts+1, a short lease it renews while
it is alive) and hands each id to `send_claimed`. In one transaction this module renders the
row at send time, reserves a cross-process rate slot and marks the row 'sending' (the one
row whose outcome a crash leaves unknown); it then calls Telegram once and records what
happened in a second transaction. The delivery policy (the same as for replies):

- success (or a harmless 400 such as "message is not modified") -> 'sent';
- 429 RetryAfter -> every send pauses; the row is queued again (not a failure, not uncertain);
- 403 Forbidden -> she blocked the bot: unreachable, her open check-ins missed/blocked;
- other 400 -> failed for good;
- failed before the request left (connection refused, DNS, no free connection) -> retried
  with backoff, at most five attempts;
- outcome unknown (a time-out after the request left, a lost connection, a 5xx, or a crash
  mid-send, found by its expired lease): Telegram has no idempotency key, so
  * alerts to the care team (`AT_LEAST_ONCE`) are retried: a duplicate costs a glance;
  * everything the bot starts for a patient becomes 'uncertain' and is not re-sent blindly.
    A check-in gets one more try later, only if she has not answered and nothing else has
    reached her since (`bot.dispatcher.resend_uncertain_checkins`), so no check-in reaches
    her more than twice.

Stored errors name the exception class and Telegram's description, never the message text.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Bot, Message
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot import clock, ops, ratelimit
from bot.clock import Sleeper
from bot.config import Settings
from bot.lifecycle import mark_reachable
from bot.models import (
    CheckIn,
    CheckInStatus,
    Lifecycle,
    MissedReason,
    OutboxState,
    OutgoingMessage,
    Participant,
)
from bot.outbox import RenderedMessage, keyboard
from bot.scheduling import participant_zone, reminder_time
from bot.services import Services

log = logging.getLogger(__name__)

MAX_NETWORK_ATTEMPTS = 5
# Kinds sent at least once: an outcome-unknown send is tried again (alerts and the daily
# digest to the care team: a duplicate costs a glance, a lost one can cost a patient).
AT_LEAST_ONCE = ("alert", "digest", "broadcast_progress", "broadcast_report")
# How far ahead a reserved slot may lie before the row goes back to the queue (after a 429).
MAX_SLOT_WAIT = timedelta(seconds=30)
HARMLESS_400 = ("message is not modified", "query is too old", "message to edit not found")
CHECKIN_KINDS = ("checkin", "reminder")
# Kinds that still go to someone who withdrew: the one notice that the care team withdrew her.
AFTER_WITHDRAWAL_KINDS = ("care_team_change",)
# Kinds a pause holds back (other kinds, e.g. re-consent, still reach her while paused).
PAUSE_STOPS_KINDS = (*CHECKIN_KINDS, "broadcast")
# Why a broadcast row was skipped, stored as its last_error (read by bot.broadcasts.tally).
SKIPPED = "Skipped: "
# Kinds put back in the queue when their chat is not ready, instead of waiting for it: a
# delivery to a busy chat (she is tapping through a check-in) must not hold up a broadcast's
# deliveries to everyone else. (Progress edits are queued only once her chat is ready.)
DEFERRABLE_KINDS = ("broadcast",)
CHAT_DEFER_AFTER = timedelta(milliseconds=100)
OPEN_STATUSES = (CheckInStatus.sent, CheckInStatus.partial)


class Outcome(StrEnum):
    """What happened to one claimed outbox row."""

    sent = "sent"
    cancelled = "cancelled"
    failed = "failed"
    retry = "retry"  # failed before it left, or an at-least-once kind: queued again
    uncertain = "uncertain"  # may have been delivered; not sent again blindly
    rate_limited = "rate_limited"  # 429: queued again after retry_after
    blocked = "blocked"  # 403
    released = "released"  # not attempted (lease would run out); queued again untouched
    deferred = "deferred"  # its chat is busy for a while: queued again, the batch goes on
    gone = "gone"  # the row was no longer ours


@dataclass(frozen=True)
class SendResult:
    """The outcome of one row, and until when every send is paused after a 429."""

    outcome: Outcome
    paused_until: datetime | None = None
    kind: str = "unknown"  # the row's kind, once it was loaded (metrics)


def error_text(exc: BaseException) -> str:
    """Returns a storable error: the class name and Telegram's description, never message text."""
    if isinstance(exc, TelegramError):
        name = type(exc).__name__
        # Telegram's own description often starts with the same word ("Forbidden: bot was
        # blocked by the user"): say it once.
        if exc.message.lower().startswith(name.lower() + ":"):
            return exc.message[:200]
        return f"{name}: {exc.message}"[:200]
    return type(exc).__name__[:200]


def retry_after_seconds(exc: RetryAfter) -> float:
    """Returns RetryAfter's delay in seconds, whichever type this PTB version hands out."""
    with warnings.catch_warnings():
        # PTB 22 warns that the attribute will become a timedelta; accept either.
        warnings.simplefilter("ignore")
        value: Any = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def close_checkin(checkin: CheckIn, *, reason: MissedReason, at: datetime) -> None:
    """Closes a check-in as missed with exactly one reason."""
    checkin.status = CheckInStatus.missed
    checkin.missed_reason = reason
    checkin.closed_at = at
    checkin.next_reminder_at = None


def participant_block(participant: Participant | None) -> MissedReason | None:
    """Returns why nothing may be sent to her right now, if anything stops it."""
    if participant is None:
        return MissedReason.withdrawn
    if participant.has_left:
        return MissedReason.withdrawn
    if participant.chat_id is None or not participant.reachable:
        return MissedReason.blocked
    if participant.status == Lifecycle.paused:
        return MissedReason.paused
    return None


async def _why_not_send(
    session: AsyncSession, row: OutgoingMessage, participant: Participant | None, at: datetime
) -> bool:
    """Tells whether the row must be cancelled, closing its check-in when it is one."""
    checkin = await session.get(CheckIn, row.checkin_id) if row.checkin_id else None
    if row.participant_id is not None:
        reason = participant_block(participant)
        # A pause stops check-ins and reminders; other kinds (e.g. re-consent) still go.
        if reason == MissedReason.paused and row.kind not in PAUSE_STOPS_KINDS:
            reason = None
        if row.kind in AFTER_WITHDRAWAL_KINDS and participant is not None:
            reachable = participant.reachable and participant.chat_id is not None
            if participant.status == Lifecycle.withdrawn and reachable:
                reason = None
        if reason is not None:
            scheduled = checkin is not None and checkin.status == CheckInStatus.scheduled
            if checkin is not None and scheduled and row.kind == "checkin":
                close_checkin(checkin, reason=reason, at=at)
            return True
    if checkin is None or row.kind not in CHECKIN_KINDS:
        return False
    if checkin.status in (CheckInStatus.missed, CheckInStatus.completed):
        return True
    if row.kind == "reminder" and checkin.status not in OPEN_STATUSES:
        return True
    if checkin.window_closes_at <= at:
        if checkin.status == CheckInStatus.scheduled:
            close_checkin(checkin, reason=MissedReason.not_sent_outage, at=at)
        return True
    return False


def _append_id(ids: str, message_id: int) -> str:
    """Appends a Telegram message id to a comma-separated list, dropping the oldest if full."""
    parts = [p for p in ids.split(",") if p] + [str(message_id)]
    while len(",".join(parts)) > 500:
        parts.pop(0)
    return ",".join(parts)


async def record_checkin_send(
    *,
    session: AsyncSession,
    row: OutgoingMessage,
    message_id: int | None,
    settings: Settings,
    at: datetime,
) -> None:
    """Records a delivered check-in or reminder on its CheckIn (status, times, message ids).

    A check-in's automatic reminder is planned here, to fit before her quiet hours
    (`bot.scheduling.reminder_time`); none is planned when no time fits.
    """
    if row.checkin_id is None or row.kind not in CHECKIN_KINDS:
        return
    checkin = await session.get(CheckIn, row.checkin_id)
    if checkin is None:
        return
    if row.kind == "checkin":
        if checkin.status == CheckInStatus.scheduled:
            checkin.status = CheckInStatus.sent
        if checkin.sent_at is None:
            checkin.sent_at = at
            participant = await session.get(Participant, checkin.participant_id)
            tz = (
                participant_zone(participant, default=settings.default_timezone)
                if participant is not None
                else settings.default_timezone
            )
            checkin.next_reminder_at = reminder_time(
                sent_at=at,
                tz=tz,
                quiet=settings.quiet_window,
                delay=timedelta(minutes=settings.reminder_delay_minutes),
                closes_at=checkin.window_closes_at,
            )
    else:
        checkin.reminder_count += 1
    if message_id is not None:
        checkin.message_ids = _append_id(checkin.message_ids, message_id)
    session.add(checkin)


async def mark_blocked(*, session: AsyncSession, participant_id: int, at: datetime) -> None:
    """Marks her unreachable (she blocked the bot), closes her open check-ins, stops her queue."""
    participant = await session.get(Participant, participant_id)
    if participant is not None:
        await mark_reachable(session=session, participant=participant, reachable=False)
    checkins = await session.exec(
        select(CheckIn).where(
            CheckIn.participant_id == participant_id,
            col(CheckIn.status).in_([CheckInStatus.scheduled, CheckInStatus.sent]),
            col(CheckIn.due_at) <= at,
        )
    )
    for checkin in checkins.all():
        close_checkin(checkin, reason=MissedReason.blocked, at=at)
        session.add(checkin)
    queued = await session.exec(
        select(OutgoingMessage).where(
            OutgoingMessage.participant_id == participant_id,
            OutgoingMessage.state == OutboxState.queued,
        )
    )
    for other in queued.all():
        other.state = OutboxState.cancelled
        other.last_error = "Forbidden: participant unreachable"
        session.add(other)


async def release(*, services: Services, row_id: int, not_before: datetime) -> None:
    """Puts a claimed but unattempted row back in the queue, not before `not_before`."""
    async with services.db.session() as session:
        row = await session.get(OutgoingMessage, row_id)
        if row is None or row.state != OutboxState.claimed:
            return
        row.state = OutboxState.queued
        row.attempts = max(0, row.attempts - 1)
        row.lease_until = None
        row.not_before = max(row.not_before, not_before)
        session.add(row)


def _skip_note(row: OutgoingMessage, participant: Participant | None) -> str | None:
    """Returns why a broadcast row is skipped, for its report (other kinds keep no note)."""
    if row.broadcast_id is None:
        return None
    if participant is None or participant.status == Lifecycle.deleted:
        return SKIPPED + "deleted"
    if participant.status == Lifecycle.withdrawn:
        return SKIPPED + "withdrawn"
    if participant.chat_id is None or not participant.reachable:
        return SKIPPED + "unreachable"
    return SKIPPED + "paused"


def _finish_row(row: OutgoingMessage, state: OutboxState, error: str | None = None) -> None:
    """Ends a claimed row's attempt in one state, dropping its lease."""
    row.state = state
    row.lease_until = None
    if error is not None:
        row.last_error = error[:200]


async def _prepare(
    services: Services, row_id: int, at: datetime
) -> tuple[OutgoingMessage, RenderedMessage, datetime] | Outcome:
    """Renders a claimed row, reserves its send slot and marks it in flight, in one transaction.

    Returns the row, what to send and when, or why it will not be sent.
    """
    async with services.db.session() as session:
        row = await session.get(OutgoingMessage, row_id)
        if row is None or row.state != OutboxState.claimed:
            return Outcome.gone
        participant = (
            await session.get(Participant, row.participant_id) if row.participant_id else None
        )
        if await _why_not_send(session, row, participant, at):
            _finish_row(row, OutboxState.cancelled, _skip_note(row, participant))
            session.add(row)
            return Outcome.cancelled
        renderer = services.renderers.get(row.kind)
        if renderer is None:
            _finish_row(row, OutboxState.failed, f"NoRenderer: {row.kind}")
            session.add(row)
            log.error("no renderer registered for outbox kind %s", row.kind)
            return Outcome.failed
        try:
            rendered = await renderer(session, row, participant)
        except Exception as exc:
            # The row fails, the tick goes on; log the class only (messages may hold text).
            log.error("renderer for %s failed on row %s: %s", row.kind, row.id, type(exc).__name__)
            await session.rollback()
            failed = await session.get(OutgoingMessage, row_id)
            assert failed is not None
            _finish_row(failed, OutboxState.failed, f"RenderError: {type(exc).__name__}")
            session.add(failed)
            return Outcome.failed
        if rendered.skip:
            reason = rendered.extra.get("skip_reason")
            _finish_row(row, OutboxState.cancelled, SKIPPED + reason if reason else None)
            session.add(row)
            return Outcome.cancelled
        if row.kind in DEFERRABLE_KINDS:
            ready = await ratelimit.chat_ready_at(session, chat_id=row.chat_id)
            if ready is not None and ready - at > CHAT_DEFER_AFTER:
                row.state = OutboxState.queued
                row.attempts = max(0, row.attempts - 1)
                row.lease_until = None
                row.not_before = max(row.not_before, ready)
                session.add(row)
                return Outcome.deferred
        [slot] = await ratelimit.reserve_in(
            session,
            db=services.db,
            chat_id=row.chat_id,
            per_second=services.settings.global_rate_per_second,
        )
        if slot - at > MAX_SLOT_WAIT:
            # Every send is paused (a 429): hand the row back rather than hold it.
            row.state = OutboxState.queued
            row.attempts = max(0, row.attempts - 1)
            row.lease_until = None
            row.not_before = max(row.not_before, slot)
            session.add(row)
            return Outcome.released
        # From here on a crash leaves this row's outcome unknown (and only this row's).
        row.state = OutboxState.sending
        session.add(row)
        return row, rendered, slot


def sent_before_the_request_left(exc: BaseException) -> bool:
    """Tells whether a network failure happened before Telegram could have seen the request.

    PTB wraps httpx: a refused connection, a DNS failure, a connect time-out or no free
    connection in the pool mean nothing left this machine, so sending again is safe.
    """
    cause = exc.__cause__
    names = {type(c).__name__ for c in (cause, getattr(cause, "__cause__", None)) if c}
    return bool(names & {"ConnectError", "ConnectTimeout", "PoolTimeout"})


async def send_claimed(
    *, services: Services, bot: Bot, row_id: int, sleep: Sleeper | None = None
) -> SendResult:
    """Sends one claimed outbox row through Telegram, records the result and counts it."""
    result = await _send_claimed(services=services, bot=bot, row_id=row_id, sleep=sleep)
    ops.record_send(result.kind, result.outcome)
    if result.outcome == Outcome.rate_limited:
        ops.record_429()
    return result


async def _send_claimed(
    *, services: Services, bot: Bot, row_id: int, sleep: Sleeper | None
) -> SendResult:
    """Sends one claimed row and records what happened in the database."""
    sleep = sleep or services.sleep or clock.real_sleep
    prepared = await _prepare(services, row_id, clock.now())
    if isinstance(prepared, Outcome):
        if prepared == Outcome.released:
            return SendResult(prepared, paused_until=await ratelimit.paused_until(db=services.db))
        return SendResult(prepared)
    row, rendered, slot = prepared
    kind = row.kind
    await ratelimit.wait_until(slot, sleep)
    edit_id = rendered.extra.get("edit_message_id")
    try:
        if isinstance(edit_id, int):
            # An update of a message already in that chat (another copy of an alert).
            edited = await bot.edit_message_text(
                text=rendered.text,
                chat_id=row.chat_id,
                message_id=edit_id,
                reply_markup=keyboard(rendered.buttons),
            )
            message_id = edited.message_id if isinstance(edited, Message) else edit_id
        else:
            message = await bot.send_message(
                chat_id=row.chat_id,
                text=rendered.text,
                reply_markup=keyboard(rendered.buttons),
                protect_content=rendered.protect_content,
                parse_mode=rendered.extra.get("parse_mode"),
            )
            message_id = message.message_id
    except RetryAfter as exc:
        until = clock.now() + timedelta(seconds=retry_after_seconds(exc))
        await ratelimit.pause_all(db=services.db, until=until)
        await _requeue_after_429(services, row_id, until, error_text(exc))
        log.warning("Telegram asked to pause sending for %.0f s", retry_after_seconds(exc))
        return SendResult(Outcome.rate_limited, paused_until=until, kind=kind)
    except Forbidden as exc:
        await _record_forbidden(services, row_id, error_text(exc))
        return SendResult(Outcome.blocked, kind=kind)
    except BadRequest as exc:
        if any(text in exc.message.lower() for text in HARMLESS_400):
            await _record_sent(services, row_id, None)
            return SendResult(Outcome.sent, kind=kind)
        await _record_failed(services, row_id, error_text(exc))
        log.warning("Telegram refused outbox row %s: %s", row_id, error_text(exc))
        return SendResult(Outcome.failed, kind=kind)
    except ChatMigrated as exc:
        await _record_failed(services, row_id, error_text(exc))
        return SendResult(Outcome.failed, kind=kind)
    except (NetworkError, TelegramError) as exc:
        if sent_before_the_request_left(exc) or row.kind in AT_LEAST_ONCE:
            outcome = await _record_retry(services, row_id, error_text(exc))
            return SendResult(outcome, kind=kind)
        outcome = await record_uncertain(services, row_id, error_text(exc))
        return SendResult(outcome, kind=kind)
    except Exception as exc:
        # Unknown failure inside the library: do not guess whether it left; never resend.
        log.error("send of outbox row %s failed: %s", row_id, type(exc).__name__)
        outcome = await record_uncertain(services, row_id, error_text(exc))
        return SendResult(outcome, kind=kind)
    await _record_sent(services, row_id, message_id)
    return SendResult(Outcome.sent, kind=kind)


async def _record_sent(services: Services, row_id: int, message_id: int | None) -> None:
    """Records a delivered row, updates its check-in and runs the kind's after-send hook."""
    at = clock.now()
    async with services.db.session() as session:
        row = await session.get(OutgoingMessage, row_id)
        if row is None:
            return
        row.state = OutboxState.sent
        row.sent_at = at
        row.telegram_message_id = message_id
        row.lease_until = None
        session.add(row)
        await record_checkin_send(
            session=session,
            row=row,
            message_id=message_id,
            settings=services.settings,
            at=at,
        )
        hook = services.after_send.get(row.kind)
        if hook is not None and message_id is not None:
            await hook(session, row, message_id)


async def _close_checkin_of(
    session: AsyncSession, row: OutgoingMessage, reason: MissedReason, at: datetime
) -> None:
    """Closes the row's check-in when the check-in message itself could not go out."""
    if row.kind != "checkin" or row.checkin_id is None:
        return
    checkin = await session.get(CheckIn, row.checkin_id)
    if checkin is not None and checkin.status == CheckInStatus.scheduled:
        close_checkin(checkin, reason=reason, at=at)
        session.add(checkin)


async def _record_failed(services: Services, row_id: int, error: str) -> None:
    """Records a permanent failure."""
    at = clock.now()
    async with services.db.session() as session:
        row = await session.get(OutgoingMessage, row_id)
        if row is None:
            return
        row.state = OutboxState.failed
        row.last_error = error
        row.lease_until = None
        session.add(row)
        await _close_checkin_of(session, row, MissedReason.not_sent_outage, at)


async def _record_forbidden(services: Services, row_id: int, error: str) -> None:
    """Records a 403: the row fails and she is marked unreachable."""
    at = clock.now()
    async with services.db.session() as session:
        row = await session.get(OutgoingMessage, row_id)
        if row is None:
            return
        row.state = OutboxState.failed
        row.last_error = error
        row.lease_until = None
        session.add(row)
        await _close_checkin_of(session, row, MissedReason.blocked, at)
        if row.participant_id is not None:
            await mark_blocked(session=session, participant_id=row.participant_id, at=at)


async def _requeue_after_429(services: Services, row_id: int, until: datetime, error: str) -> None:
    """Queues the row again after retry_after; the attempt does not count."""
    async with services.db.session() as session:
        row = await session.get(OutgoingMessage, row_id)
        if row is None:
            return
        row.state = OutboxState.queued
        row.attempts = max(0, row.attempts - 1)
        row.not_before = until
        row.lease_until = None
        row.last_error = error
        session.add(row)


# An uncertain check-in may be sent once more after this long, if she has not answered.
UNCERTAIN_RESEND_AFTER = timedelta(minutes=10)


def mark_uncertain(row: OutgoingMessage, error: str, at: datetime) -> None:
    """Ends a row whose outcome is unknown; a check-in may get one more try later."""
    row.uncertain = True
    _finish_row(row, OutboxState.uncertain, error)
    # Read by `bot.dispatcher.resend_uncertain_checkins`: not before this instant.
    row.not_before = at + UNCERTAIN_RESEND_AFTER


async def record_uncertain(services: Services, row_id: int, error: str) -> Outcome:
    """Records a send whose outcome is unknown; it is not re-sent blindly."""
    async with services.db.session() as session:
        row = await session.get(OutgoingMessage, row_id)
        if row is None:
            return Outcome.gone
        mark_uncertain(row, error, clock.now())
        session.add(row)
    log.warning("outbox row %s: outcome unknown", row_id)
    return Outcome.uncertain


async def _record_retry(services: Services, row_id: int, error: str) -> Outcome:
    """Queues the row again with exponential backoff, or fails it after the last attempt."""
    at = clock.now()
    async with services.db.session() as session:
        row = await session.get(OutgoingMessage, row_id)
        if row is None:
            return Outcome.gone
        row.last_error = error
        row.lease_until = None
        if row.attempts >= MAX_NETWORK_ATTEMPTS:
            row.state = OutboxState.failed
            await _close_checkin_of(session, row, MissedReason.not_sent_outage, at)
            outcome = Outcome.failed
        else:
            row.state = OutboxState.queued
            row.not_before = at + timedelta(seconds=2**row.attempts)
            outcome = Outcome.retry
        session.add(row)
    return outcome
