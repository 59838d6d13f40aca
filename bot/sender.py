"""The one path out: every message the bot starts is rendered, paced and sent here.

The dispatcher claims outbox rows in batches (state 'claimed', attempts+1, a short lease it
renews while it is alive) and hands their ids to `send_batch`. The cost is paid per round,
not per row: one transaction renders a round at send time and reserves its send instants,
locking and writing the pacing rows of the global key and of each chat once for the round
(instants at most ROUND_AHEAD away). Then each row costs one short transaction, which records
the row sent before it (outbox row and check-in) and marks this one 'sending', and its one
Telegram call: at most one row is ever in flight, so a crash leaves only that one uncertain.
A round that falls behind its instants takes new ones (late sends bunched with another
worker's on-time ones could go over the global rate). The delivery policy (the same as for
replies):

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

import asyncio
import logging
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
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
    participant: Participant | None = None,
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
            if participant is None or participant.id != checkin.participant_id:
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


# A round reserves send instants at most this far ahead (about two seconds at the default
# rate), so a batch never holds more of the shared pace than it is about to use.
ROUND_AHEAD = timedelta(seconds=2)
# Before a wait longer than this, the last send is recorded first rather than with the next.
SETTLE_BEFORE_WAIT = timedelta(milliseconds=50)
# A row more than this late for its reserved instant takes new instants for the rest of its
# round (at least half a global interval): late sends bunched with other workers' on-time
# ones could otherwise go over the global rate in some second.
LATE_FLOOR = timedelta(milliseconds=15)


def _late_after(settings: Settings) -> timedelta:
    """Returns how late a row may go on its reserved instant."""
    return max(timedelta(seconds=0.5 / settings.global_rate_per_second), LATE_FLOOR)


@dataclass
class _Ready:
    """A claimed row rendered and given its send instant, not yet marked 'sending'."""

    row: OutgoingMessage
    rendered: RenderedMessage
    slot: datetime
    participant: Participant | None
    checkin: CheckIn | None = None  # as loaded when the round was prepared


@dataclass
class _Round:
    """What preparing a round decided: rows to send, rows settled, rows for the next round."""

    ready: list[_Ready]
    settled: list[SendResult]
    later: list[int]
    paused: bool = False  # every send is paused (a 429): the round's rows went back


# A rendered row waiting for its send instant: the row, what to send, her, its check-in.
_Candidate = tuple[OutgoingMessage, RenderedMessage, Participant | None, CheckIn | None]


class _RenderFailed(Exception):
    """A renderer raised: the round's transaction is dropped and this row fails alone."""

    def __init__(self, row_id: int, kind: str, name: str) -> None:
        super().__init__(name)
        self.row_id = row_id
        self.kind = kind
        self.name = name


def _give_back(row: OutgoingMessage, not_before: datetime) -> None:
    """Queues a claimed row again untouched; the attempt does not count."""
    row.state = OutboxState.queued
    row.attempts = max(0, row.attempts - 1)
    row.lease_until = None
    row.not_before = max(row.not_before, not_before)


async def _preload(session: AsyncSession, rows: list[OutgoingMessage]) -> list[Any]:
    """Loads the rows' participants and check-ins in two queries, so that `session.get` in
    the checks and renderers finds them in the session instead of asking one by one.

    The caller keeps the returned list for as long as it needs them: the session holds its
    objects only weakly.
    """
    people = {row.participant_id for row in rows if row.participant_id is not None}
    checkins = {row.checkin_id for row in rows if row.checkin_id is not None}
    loaded: list[Any] = []
    if people:
        loaded += (
            await session.exec(select(Participant).where(col(Participant.id).in_(people)))
        ).all()
    if checkins:
        loaded += (await session.exec(select(CheckIn).where(col(CheckIn.id).in_(checkins)))).all()
    return loaded


async def _render_row(
    session: AsyncSession, services: Services, row: OutgoingMessage, at: datetime
) -> tuple[RenderedMessage, Participant | None] | Outcome:
    """Renders one claimed row, or ends it (cancelled, failed) and says why."""
    participant = (
        await session.get(Participant, row.participant_id) if row.participant_id else None
    )
    if await _why_not_send(session, row, participant, at):
        _finish_row(row, OutboxState.cancelled, _skip_note(row, participant))
        return Outcome.cancelled
    renderer = services.renderers.get(row.kind)
    if renderer is None:
        _finish_row(row, OutboxState.failed, f"NoRenderer: {row.kind}")
        log.error("no renderer registered for outbox kind %s", row.kind)
        return Outcome.failed
    try:
        rendered = await renderer(session, row, participant)
    except Exception as exc:
        # Log the class only (messages may hold text); the caller fails this row alone.
        log.error("renderer for %s failed on row %s: %s", row.kind, row.id, type(exc).__name__)
        raise _RenderFailed(row.id or 0, row.kind, type(exc).__name__) from exc
    if rendered.skip:
        reason = rendered.extra.get("skip_reason")
        _finish_row(row, OutboxState.cancelled, SKIPPED + reason if reason else None)
        return Outcome.cancelled
    return rendered, participant


async def _prepare_round(services: Services, ids: list[int], at: datetime) -> _Round:
    """Renders claimed rows and reserves their send instants, in one transaction.

    The pacing rows of the global key and of every chat in the round are locked and
    written once for the whole round (`ratelimit.lock_keys`); rows whose instant lies more
    than ROUND_AHEAD away are left for the next round, still claimed. No row is marked
    'sending' here: that happens one row at a time, just before its request leaves.
    """
    done = _Round(ready=[], settled=[], later=[])
    async with services.db.session() as session:
        found = await session.exec(select(OutgoingMessage).where(col(OutgoingMessage.id).in_(ids)))
        by_id = {row.id: row for row in found.all()}
        rows = [by_id[i] for i in ids if i in by_id and by_id[i].state == OutboxState.claimed]
        done.settled += [SendResult(Outcome.gone)] * (len(ids) - len(rows))
        loaded = await _preload(session, rows)
        candidates: list[_Candidate] = []
        for row in rows:
            outcome = await _render_row(session, services, row, at)
            if isinstance(outcome, Outcome):
                session.add(row)
                done.settled.append(SendResult(outcome, kind=row.kind))
            else:
                # Preloaded: found in the session, no query.
                checkin = await session.get(CheckIn, row.checkin_id) if row.checkin_id else None
                candidates.append((row, *outcome, checkin))
        if candidates:
            await _reserve_round(session, services, candidates, at, done)
        del loaded  # held until here (see `_preload`)
    return done


async def _reserve_round(
    session: AsyncSession,
    services: Services,
    candidates: list[_Candidate],
    at: datetime,
    done: _Round,
    before: dict[int, datetime] | None = None,
) -> None:
    """Gives each candidate its send instant (global and per-chat pacing, as `reserve_in`).

    `before` holds the instants of rows reserved once already and not sent (their round
    fell behind): their chat's pace is taken back, unless someone else reserved it since.
    """
    db = services.db
    tats = await ratelimit.lock_keys(
        session, db, [ratelimit.chat_key(row.chat_id)[0] for row, *_ in candidates], at
    )
    global_interval = timedelta(seconds=1.0 / services.settings.global_rate_per_second)
    global_next = tats[ratelimit.GLOBAL_KEY]
    changed: dict[str, datetime] = {}
    for index, (row, rendered, participant, checkin) in enumerate(candidates):
        key, chat_interval, _ = ratelimit.chat_key(row.chat_id)
        chat_tat = tats[key]
        earlier = (before or {}).get(row.id or 0)
        if earlier is not None and chat_tat == earlier + chat_interval:
            chat_tat = earlier
        if row.kind in DEFERRABLE_KINDS and chat_tat - at > CHAT_DEFER_AFTER:
            # Her chat is busy: queue this one again rather than hold everyone behind it.
            _give_back(row, chat_tat)
            session.add(row)
            done.settled.append(SendResult(Outcome.deferred, kind=row.kind))
            continue
        slot = max(at, global_next, chat_tat)
        if done.ready and slot - at > ROUND_AHEAD:
            done.later = [c[0].id or 0 for c in candidates[index:]]
            break
        if slot - at > MAX_SLOT_WAIT:
            # Every send is paused (a 429): hand the rows back rather than hold them.
            until = global_next if global_next > at else None
            for rest, *_ in candidates[index:]:
                _give_back(rest, slot)
                session.add(rest)
                done.settled.append(SendResult(Outcome.released, until, kind=rest.kind))
            done.paused = True
            break
        done.ready.append(_Ready(row, rendered, slot, participant, checkin))
        global_next = slot + global_interval
        tats[key] = max(chat_tat, slot) + chat_interval
        changed[ratelimit.GLOBAL_KEY] = global_next
        changed[key] = tats[key]
    await ratelimit.store_keys(session, db, changed)


async def _fail_render(services: Services, row_id: int, name: str) -> None:
    """Fails a row whose renderer raised, in a transaction of its own."""
    async with services.db.session() as session:
        row = await session.get(OutgoingMessage, row_id)
        if row is not None and row.state == OutboxState.claimed:
            _finish_row(row, OutboxState.failed, f"RenderError: {name}")
            session.add(row)


async def release_many(*, services: Services, row_ids: list[int], not_before: datetime) -> None:
    """Puts claimed but unattempted rows back in the queue in one statement."""
    if not row_ids:
        return
    table = col(OutgoingMessage.not_before)
    async with services.db.session() as session:
        await session.exec(
            sa.update(OutgoingMessage)
            .where(
                col(OutgoingMessage.id).in_(row_ids),
                col(OutgoingMessage.state) == OutboxState.claimed,
            )
            .values(
                state=OutboxState.queued,
                attempts=sa.case(
                    (col(OutgoingMessage.attempts) > 0, col(OutgoingMessage.attempts) - 1),
                    else_=0,
                ),
                lease_until=None,
                not_before=sa.case((table < not_before, not_before), else_=table),
            )
            .execution_options(synchronize_session=False)
        )


def sent_before_the_request_left(exc: BaseException) -> bool:
    """Tells whether a network failure happened before Telegram could have seen the request.

    PTB wraps httpx: a refused connection, a DNS failure, a connect time-out or no free
    connection in the pool mean nothing left this machine, so sending again is safe.
    """
    cause = exc.__cause__
    names = {type(c).__name__ for c in (cause, getattr(cause, "__cause__", None)) if c}
    return bool(names & {"ConnectError", "ConnectTimeout", "PoolTimeout"})


def _count(result: SendResult) -> SendResult:
    """Counts one outcome in the metrics."""
    ops.record_send(result.kind, result.outcome)
    if result.outcome == Outcome.rate_limited:
        ops.record_429()
    return result


async def send_claimed(
    *, services: Services, bot: Bot, row_id: int, sleep: Sleeper | None = None
) -> SendResult:
    """Sends one claimed outbox row through Telegram, records the result and counts it."""
    results, _ = await send_batch(services=services, bot=bot, row_ids=[row_id], sleep=sleep)
    return results[0]


# A row sent and not yet recorded: its message id and when Telegram took it.
_Unrecorded = tuple[_Ready, int, datetime]


async def send_batch(
    *, services: Services, bot: Bot, row_ids: list[int], sleep: Sleeper | None = None
) -> tuple[list[SendResult], bool]:
    """Sends claimed rows in order and records each; True when a 429 paused sending.

    Work is done per round, not per row: one transaction renders the round and reserves its
    pacing (`_prepare_round`); then each row costs one short transaction, which records
    the row sent before it and marks this one 'sending' (so at most one row is ever in
    flight, and a crash leaves only that one uncertain), and its request. Every row gets
    one result, in the metrics too; rows handed back after a 429 count as released.
    """
    box = _Box()
    try:
        return await _send_rounds(services, bot, row_ids, sleep, box)
    except asyncio.CancelledError:
        # Stopped (Ctrl+C, shutdown) right after a send: record it rather than leave it
        # 'sending' (it would become uncertain though it arrived).
        sent = box.take()
        if sent is not None:
            await asyncio.shield(_record_and_mark(services, sent, None))
        raise


@dataclass
class _Box:
    """The row sent and not yet recorded, where a stop can still find it."""

    sent: _Unrecorded | None = None

    def take(self) -> _Unrecorded | None:
        """Hands over the row to record (cleared first: a stop never records it twice)."""
        sent, self.sent = self.sent, None
        return sent


async def _send_rounds(
    services: Services, bot: Bot, row_ids: list[int], sleep: Sleeper | None, box: _Box
) -> tuple[list[SendResult], bool]:
    """The body of `send_batch`."""
    sleep = sleep or services.sleep or clock.real_sleep
    results: list[SendResult] = []
    pending = list(row_ids)
    while pending:
        try:
            prepared = await _prepare_round(services, pending, clock.now())
        except _RenderFailed as failed:
            await _fail_render(services, failed.row_id, failed.name)
            results.append(_count(SendResult(Outcome.failed, kind=failed.kind)))
            pending = [i for i in pending if i != failed.row_id]
            continue
        results += [_count(r) for r in prepared.settled]
        if prepared.paused:
            return results, True
        late = _late_after(services.settings)
        queue, later = prepared.ready, prepared.later
        fresh = True  # the first row after a reservation is never late for it
        while queue:
            if not fresh and clock.now() - queue[0].slot > late:
                # Behind: new instants for the rest, in the transaction that records the
                # last send (and marks the next row when it may go at once).
                marked, again = await _record_and_mark(services, box.take(), None, queue)
                assert again is not None
                results += [_count(r) for r in again.settled]
                if again.paused:
                    until = next((r.paused_until for r in again.settled if r.paused_until), None)
                    await _release_later(services, later, until or clock.now(), results)
                    return results, True
                queue, later, fresh = again.ready, again.later + later, True
                if marked is None or not queue:
                    continue  # the next row waits for its instant as usual
                item = queue.pop(0)
            else:
                fresh = False
                item = queue.pop(0)
                if box.sent is not None and item.slot - clock.now() > SETTLE_BEFORE_WAIT:
                    await _record_and_mark(services, box.take(), None)
                await ratelimit.wait_until(item.slot, sleep)
                marked, _ = await _record_and_mark(services, box.take(), item.row.id)
            if not marked:
                results.append(_count(SendResult(Outcome.gone, kind=item.row.kind)))
                continue
            result, box.sent = await _deliver(services, bot, item)
            results.append(_count(result))
            if result.outcome == Outcome.rate_limited:
                until = result.paused_until or clock.now()
                rest = [r.row.id or 0 for r in queue] + later
                await release_many(services=services, row_ids=rest, not_before=until)
                kinds = [r.row.kind for r in queue] + ["unknown"] * len(later)
                results += [_count(SendResult(Outcome.released, until, k)) for k in kinds]
                return results, True
        if box.sent is not None:
            await _record_and_mark(services, box.take(), None)
        pending = later
    return results, False


async def _release_later(
    services: Services, later: list[int], until: datetime, results: list[SendResult]
) -> None:
    """Hands back rows not yet prepared when sending pauses, counting each as released."""
    await release_many(services=services, row_ids=later, not_before=until)
    results += [_count(SendResult(Outcome.released, until)) for _ in later]


def _per_send_statements() -> tuple[Any, Any]:
    """Builds, once, the two statements every send runs (building them costs more than
    running them): one UPDATE that records the row just sent and marks the next one
    'sending', and one that records a delivered check-in."""
    out = OutgoingMessage.__table__  # type: ignore[attr-defined]
    sent = out.c.id == sa.bindparam("sent_id")
    step = (
        sa.update(out)
        .where(
            sa.or_(sent, sa.and_(out.c.id == sa.bindparam("next_id"), out.c.state == "claimed"))
        )
        .values(
            state=sa.case((sent, "sent"), else_="sending"),
            sent_at=sa.case(
                (sent, sa.bindparam("sent_at", type_=out.c.sent_at.type)), else_=out.c.sent_at
            ),
            telegram_message_id=sa.case(
                (sent, sa.bindparam("message_id", type_=out.c.telegram_message_id.type)),
                else_=out.c.telegram_message_id,
            ),
            lease_until=sa.case((sent, sa.null()), else_=out.c.lease_until),
        )
        .returning(out.c.id)
    )
    ci = CheckIn.__table__  # type: ignore[attr-defined]
    first_send = ci.c.sent_at.is_(None)
    checkin = (
        sa.update(ci)
        # A long list of message ids is trimmed by `record_checkin_send` instead.
        .where(ci.c.id == sa.bindparam("checkin_id"), sa.func.length(ci.c.message_ids) < 480)
        .values(
            # Every right-hand side reads the row as it was before this statement.
            status=sa.case((ci.c.status == "scheduled", "sent"), else_=ci.c.status),
            next_reminder_at=sa.case(
                (first_send, sa.bindparam("remind_at", type_=ci.c.next_reminder_at.type)),
                else_=ci.c.next_reminder_at,
            ),
            sent_at=sa.case(
                (first_send, sa.bindparam("at", type_=ci.c.sent_at.type)), else_=ci.c.sent_at
            ),
            message_ids=sa.case(
                (ci.c.message_ids == "", sa.bindparam("mid", type_=sa.String())),
                else_=ci.c.message_ids + "," + sa.bindparam("mid", type_=sa.String()),
            ),
        )
    )
    return step, checkin


_STEP, _CHECKIN_SENT = _per_send_statements()


async def _record_and_mark(
    services: Services,
    unrecorded: _Unrecorded | None,
    next_id: int | None,
    behind: list[_Ready] | None = None,
) -> tuple[bool | None, _Round | None]:
    """In one transaction: records the row just sent, and marks the next one 'sending'.

    With `behind` (rows whose reserved instants have passed), first reserves new instants
    for them, and marks the first one only if it may go at once. Returns whether the next
    row was marked (False: it is no longer ours, its lease was taken back; None: none was
    marked) and the new reservation.
    """
    if not behind:
        return await _record_and_mark_plain(services, unrecorded, next_id), None
    again: _Round | None = None
    async with services.db.session() as session:
        params: dict[str, Any] = {"sent_id": None, "next_id": None}
        params |= {"sent_at": None, "message_id": None}
        if unrecorded is not None:
            item, message_id, at = unrecorded
            params |= {"sent_id": item.row.id, "sent_at": at, "message_id": message_id}
            connection = await session.connection()
            if not await _record_checkin_sent(connection, services.settings, item, message_id, at):
                await record_checkin_send(
                    session=session,
                    row=item.row,
                    message_id=message_id,
                    settings=services.settings,
                    at=at,
                    participant=item.participant,
                )
        if behind:
            again = _Round(ready=[], settled=[], later=[])
            candidates = [(i.row, i.rendered, i.participant, i.checkin) for i in behind]
            before = {i.row.id or 0: i.slot for i in behind}
            await _reserve_round(session, services, candidates, clock.now(), again, before)
            ready = again.ready
            if not again.paused and ready and ready[0].slot - clock.now() <= SETTLE_BEFORE_WAIT:
                next_id = ready[0].row.id
        if next_id is not None:
            # From here on a crash leaves this row's outcome unknown (and only this row's).
            params["next_id"] = next_id
        if params["sent_id"] is None and next_id is None:
            return None, again
        connection = await session.connection()
        changed = await connection.execute(_STEP, params)
        if next_id is None:
            return None, again
        return next_id in set(changed.scalars().all()), again


async def _record_and_mark_plain(
    services: Services, unrecorded: _Unrecorded | None, next_id: int | None
) -> bool | None:
    """`_record_and_mark` without a new reservation: the common step, on a bare connection
    (the ORM session costs more than the two statements it would run)."""
    params: dict[str, Any] = {"sent_id": None, "next_id": next_id}
    params |= {"sent_at": None, "message_id": None}
    async with services.db.engine.begin() as connection:
        if unrecorded is not None:
            item, message_id, at = unrecorded
            params |= {"sent_id": item.row.id, "sent_at": at, "message_id": message_id}
            settings = services.settings
            if not await _record_checkin_sent(connection, settings, item, message_id, at):
                # Other kinds, and long lists of ids to trim: through the ORM, in this
                # same transaction.
                session = AsyncSession(bind=connection, expire_on_commit=False)
                try:
                    await record_checkin_send(
                        session=session,
                        row=item.row,
                        message_id=message_id,
                        settings=settings,
                        at=at,
                        participant=item.participant,
                    )
                    await session.flush()
                finally:
                    await session.close()
        if params["sent_id"] is None and next_id is None:
            return None
        # From here on a crash leaves the next row's outcome unknown (and only its).
        changed = await connection.execute(_STEP, params)
        if next_id is None:
            return None
        return next_id in set(changed.scalars().all())


async def _record_checkin_sent(
    connection: AsyncConnection,
    settings: Settings,
    item: _Ready,
    message_id: int,
    at: datetime,
) -> bool:
    """Records a delivered check-in in one UPDATE, as `record_checkin_send` does; False when
    it cannot (another kind, or a long list of message ids to trim), and the caller should."""
    checkin, participant = item.checkin, item.participant
    if item.row.kind != "checkin" or checkin is None or participant is None:
        return False
    if participant.id != checkin.participant_id:
        return False
    remind_at = reminder_time(
        sent_at=at,
        tz=participant_zone(participant, default=settings.default_timezone),
        quiet=settings.quiet_window,
        delay=timedelta(minutes=settings.reminder_delay_minutes),
        closes_at=checkin.window_closes_at,
    )
    done = await connection.execute(
        _CHECKIN_SENT,
        {"checkin_id": checkin.id, "remind_at": remind_at, "at": at, "mid": str(message_id)},
    )
    return bool(done.rowcount == 1)


async def _deliver(
    services: Services, bot: Bot, item: _Ready
) -> tuple[SendResult, _Unrecorded | None]:
    """Makes the one Telegram call for a row marked 'sending' and records any failure.

    A plain success is returned unrecorded (the caller records it with the next row's mark);
    a kind with an after-send hook is recorded at once, through the ORM.
    """
    row, rendered, kind = item.row, item.rendered, item.row.kind
    row_id = row.id or 0
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
        return SendResult(Outcome.rate_limited, paused_until=until, kind=kind), None
    except Forbidden as exc:
        await _record_forbidden(services, row_id, error_text(exc))
        return SendResult(Outcome.blocked, kind=kind), None
    except BadRequest as exc:
        if any(text in exc.message.lower() for text in HARMLESS_400):
            await _record_sent(services, row_id, None)
            return SendResult(Outcome.sent, kind=kind), None
        await _record_failed(services, row_id, error_text(exc))
        log.warning("Telegram refused outbox row %s: %s", row_id, error_text(exc))
        return SendResult(Outcome.failed, kind=kind), None
    except ChatMigrated as exc:
        await _record_failed(services, row_id, error_text(exc))
        return SendResult(Outcome.failed, kind=kind), None
    except (NetworkError, TelegramError) as exc:
        if sent_before_the_request_left(exc) or row.kind in AT_LEAST_ONCE:
            outcome = await _record_retry(services, row_id, error_text(exc))
            return SendResult(outcome, kind=kind), None
        outcome = await record_uncertain(services, row_id, error_text(exc))
        return SendResult(outcome, kind=kind), None
    except Exception as exc:
        # Unknown failure inside the library: do not guess whether it left; never resend.
        log.error("send of outbox row %s failed: %s", row_id, type(exc).__name__)
        outcome = await record_uncertain(services, row_id, error_text(exc))
        return SendResult(outcome, kind=kind), None
    if kind in services.after_send:
        await _record_sent(services, row_id, message_id)
        return SendResult(Outcome.sent, kind=kind), None
    return SendResult(Outcome.sent, kind=kind), (item, message_id, clock.now())


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
