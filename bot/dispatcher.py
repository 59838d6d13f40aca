"""The dispatcher tick: turns due rows into sends. The database is the source of truth.

One periodic job (PTB JobQueue, `max_instances=1`, `coalesce=True`) calls `run_tick`, which
in order: recovers sends whose lease ran out (outcome unknown -> uncertain), ends pauses that
have expired, applies the standing rules (she became unreachable), queues alerts for the care
team and, once a day, their digest, claims due check-ins (closing them with a reason when they
cannot go, queuing them otherwise, and planning each schedule's next occurrence), queues
reminders outside quiet hours, closes check-ins whose window has passed (a run of them missed
raises an alert), and finally sends due outbox rows through `bot.sender`. On PostgreSQL every
claim uses `FOR UPDATE SKIP LOCKED`, and every state change is a compare-and-set, so any number
of dispatcher processes never send a row twice.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar
from telegram import Bot
from telegram.ext import CallbackContext

from bot import alerts, broadcasts, checkins, clock, offers, ops, ratelimit
from bot.content import consent_text
from bot.models import (
    Alert,
    AlertStatus,
    Answer,
    CheckIn,
    CheckInStatus,
    Lifecycle,
    MissedReason,
    OutboxState,
    OutgoingMessage,
    Participant,
    Schedule,
)
from bot.outbox import enqueue
from bot.scheduling import (
    has_pending,
    in_quiet_hours,
    new_checkin,
    next_due,
    participant_zone,
    quiet_hours_end,
    slot_taken,
)
from bot.sender import (
    AT_LEAST_ONCE,
    OPEN_STATUSES,
    Outcome,
    close_checkin,
    mark_uncertain,
    participant_block,
    send_batch,
)
from bot.services import Services
from bot.updates_seen import forget_old_updates

log = logging.getLogger(__name__)

CLAIM_LIMIT = 500  # due check-ins handled per tick, at most
# Due check-ins are claimed a few at a time, each chunk sent before the next is claimed, so
# the first message of a tick leaves at once however large the backlog is.
CLAIM_CHUNK = 20
MAX_CATCH_UP = 400  # skipped occurrences recorded after a long outage, at most
SEND_BATCH = 50  # outbox rows claimed at a time: about two seconds at the global rate
QUIET_KINDS = ("reminder", "broadcast")  # check-ins are not held: she chose that time
REMINDER_KIND = "reminder"
CHECKIN_KIND = "checkin"
RECONSENT_KIND = "reconsent"
AWAITING_RECONSENT = "reconsent"

_T = TypeVar("_T")


@dataclass
class TickReport:
    """What one tick did, for logs, tests and the benchmark."""

    recovered: int = 0  # sends whose lease ran out
    uncertain: int = 0  # rows newly marked uncertain (lease ran out or timed out)
    resumed: int = 0  # pauses that ended
    checkins_queued: int = 0
    held_for_consent: int = 0
    reconsent_requested: int = 0
    missed: dict[str, int] = field(default_factory=dict)
    planned: int = 0
    reminders_queued: int = 0
    reminders_held: int = 0  # moved past her quiet hours
    windows_closed: int = 0
    completed_at_close: int = 0  # every question answered, only the optional note left
    held_quiet: int = 0  # outbox rows moved past quiet hours
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    rate_limited: int = 0
    blocked: int = 0
    released: int = 0
    resent_uncertain: int = 0  # uncertain check-ins given their one more try
    alerts_queued: int = 0  # alerts (new, updated or sent again) queued for the care team
    contact_failed: int = 0  # contact requests no receiver got: she was told to call
    standing_alerts: int = 0  # alerts raised or closed by the standing rules
    digests_queued: int = 0  # daily digests queued (one per care-team chat and day)

    def count_missed(self, reason: str) -> None:
        """Counts one check-in closed as missed."""
        self.missed[reason] = self.missed.get(reason, 0) + 1

    @property
    def missed_total(self) -> int:
        """Returns how many check-ins this tick closed as missed."""
        return sum(self.missed.values())

    def count(self, outcome: Outcome) -> None:
        """Counts one send outcome."""
        if outcome == Outcome.sent:
            self.sent += 1
        elif outcome == Outcome.failed:
            self.failed += 1
        elif outcome == Outcome.cancelled:
            self.cancelled += 1
        elif outcome == Outcome.retry:
            self.retried += 1
        elif outcome == Outcome.uncertain:
            self.uncertain += 1
        elif outcome == Outcome.rate_limited:
            self.rate_limited += 1
        elif outcome == Outcome.blocked:
            self.blocked += 1
        elif outcome == Outcome.released:
            self.released += 1


def _locked(services: Services, query: SelectOfScalar[_T]) -> SelectOfScalar[_T]:
    """Adds FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite runs one dispatcher and needs none."""
    if services.db.dialect == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


async def run_tick(services: Services, bot: Bot) -> TickReport:
    """Runs one dispatcher pass: recover, resume, claim and send check-ins, reminders, close."""
    report = TickReport()
    deadline = clock.now() + SEND_TICK_BUDGET
    await recover_expired_leases(services=services, report=report)
    await resend_uncertain_checkins(services=services, report=report)
    await resume_expired_pauses(services=services, report=report)
    await apply_standing_rules(services=services, report=report)
    await deliver_alerts(services=services, report=report)
    await send_digests(services=services, report=report)
    after: tuple[datetime, int] | None = None
    for _ in range(CLAIM_LIMIT // CLAIM_CHUNK):
        handled, after = await claim_due_checkins(
            services=services, report=report, limit=CLAIM_CHUNK, after=after
        )
        if await send_due(services=services, bot=bot, report=report, deadline=deadline, batches=1):
            break  # sending is paused (a 429): claim the rest next tick
        if after is None and handled == 0:
            break
        # A full chunk goes on after its last row; a short one that handled something goes
        # round once more from the start, since a catch-up can make a new row due at once.
    await heal_schedules(services=services, report=report)
    await queue_reminders(services=services, report=report)
    await close_windows(services=services, report=report)
    await send_due(services=services, bot=bot, report=report, deadline=deadline)
    if await follow_up_broadcasts(services):
        # A broadcast just finished: its report goes out now, not a tick later.
        await send_due(services=services, bot=bot, report=report, deadline=deadline)
    return report


# ---------------------------------------------------------------- one row at a time


async def _for_each(
    services: Services,
    query: SelectOfScalar[Any],
    handle: Callable[[AsyncSession, Any], Awaitable[bool]],
    *,
    what: str,
    model: type[Any],
    lock_of: Any = None,
    seen: list[Any] | None = None,
) -> int:
    """Runs `handle` on every row the query finds; one failing row never stops the others.

    PostgreSQL: one transaction, rows claimed with FOR UPDATE SKIP LOCKED (so another
    dispatcher skips them), a savepoint per row. SQLite (one process): each row is re-read
    in its own short transaction, so a failure rolls back that row alone.
    """
    done = 0
    if services.db.dialect == "postgresql":
        locked = (
            query.with_for_update(skip_locked=True, of=lock_of)
            if lock_of is not None
            else query.with_for_update(skip_locked=True)
        )
        async with services.db.session() as session:
            for row in (await session.exec(locked)).all():
                if seen is not None:
                    seen.append(row)
                row_id = row.id
                try:
                    async with session.begin_nested():
                        done += bool(await handle(session, row))
                except Exception as exc:
                    _log_row_error(what, row_id, exc)
        return done
    async with services.db.session() as session:
        found = (await session.exec(query)).all()
        if seen is not None:
            seen.extend(found)
        ids = [row.id for row in found]
    for row_id in ids:
        try:
            async with services.db.session() as session:
                row = await session.get(model, row_id)
                handled = row is not None and await handle(session, row)
            done += bool(handled)
        except Exception as exc:
            _log_row_error(what, row_id, exc)
    return done


def _log_row_error(what: str, row_id: int | None, exc: BaseException) -> None:
    """Logs a failure on one row by class and location only (values may hold patient text)."""
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f"{frame[0].filename}:{frame[0].lineno}" if frame else "?"
    log.error("%s %s failed: %s at %s", what, row_id, type(exc).__name__, where)


# ---------------------------------------------------------------- (a) leases


async def recover_expired_leases(*, services: Services, report: TickReport) -> None:
    """Takes back rows whose worker died: unsent ones are queued, the one in flight is uncertain.

    A live worker renews its lease every few seconds (`_keep_leases`), so an expired lease
    means the worker crashed or hung. Only a row marked 'sending' may have reached Telegram.
    """
    at = clock.now()

    async def recover(session: AsyncSession, row: OutgoingMessage) -> bool:
        expired = row.lease_until is not None and row.lease_until < at
        if not expired or row.state not in (OutboxState.claimed, OutboxState.sending):
            return False
        row.lease_until = None
        if row.state == OutboxState.claimed:
            # Never handed to Telegram: it simply goes out again, at once.
            row.state = OutboxState.queued
            row.attempts = max(0, row.attempts - 1)
            row.not_before = at
        elif row.kind in AT_LEAST_ONCE:
            row.uncertain = True
            row.state = OutboxState.queued
            row.not_before = at
            row.last_error = "LeaseExpired: outcome unknown"
        else:
            mark_uncertain(row, "LeaseExpired: outcome unknown", at)
            report.uncertain += 1
        session.add(row)
        return True

    query = select(OutgoingMessage).where(
        col(OutgoingMessage.state).in_([OutboxState.claimed, OutboxState.sending]),
        col(OutgoingMessage.lease_until) < at,
    )
    recovered = await _for_each(
        services, query, recover, what="expired lease of outbox row", model=OutgoingMessage
    )
    report.recovered += recovered
    if recovered:
        log.warning("took back %d outbox rows whose worker stopped", recovered)


async def resend_uncertain_checkins(*, services: Services, report: TickReport) -> None:
    """Sends an uncertain check-in once more: only if she has not answered it and nothing else
    reached her since, so a check-in reaches her at most twice and a lost one is not lost."""
    at = clock.now()

    async def resend(session: AsyncSession, row: OutgoingMessage) -> bool:
        if row.state != OutboxState.uncertain or row.attempts >= 2 or row.checkin_id is None:
            return False
        checkin = await session.get(CheckIn, row.checkin_id)
        if checkin is None or checkin.status != CheckInStatus.scheduled:
            return _settle(session, row)  # she answered (it arrived) or it closed
        if checkin.window_closes_at <= at or checkin.first_answer_at is not None:
            return _settle(session, row)
        later = await session.exec(
            select(func.count())
            .select_from(OutgoingMessage)
            .where(
                OutgoingMessage.participant_id == row.participant_id,
                OutgoingMessage.state == OutboxState.sent,
                col(OutgoingMessage.sent_at) >= row.created_at,
            )
        )
        if later.one():
            return _settle(session, row)  # something else reached her: do not add to it
        row.state = OutboxState.queued
        row.not_before = at
        session.add(row)
        report.resent_uncertain += 1
        return True

    query = select(OutgoingMessage).where(
        OutgoingMessage.state == OutboxState.uncertain,
        OutgoingMessage.kind == CHECKIN_KIND,
        col(OutgoingMessage.attempts) < 2,
        col(OutgoingMessage.not_before) <= at,
    )
    await _for_each(services, query, resend, what="uncertain check-in row", model=OutgoingMessage)


def _settle(session: AsyncSession, row: OutgoingMessage) -> bool:
    """Leaves an uncertain row uncertain for good (it will not be tried again)."""
    row.attempts = max(row.attempts, 2)
    session.add(row)
    return False


# ---------------------------------------------------------------- alerts for the care team


async def deliver_alerts(*, services: Services, report: TickReport) -> None:
    """Queues what the care team must hear: new urgent alerts, reminders of unacknowledged
    ones (in coverage), and tells her to call herself when no receiver got her request."""
    at = clock.now()
    settings = services.settings

    async def deliver(session: AsyncSession, alert: Alert) -> bool:
        return await alerts.deliver_one(session=session, settings=settings, alert=alert)

    pending = select(Alert).where(
        col(Alert.notify_pending).is_(True), col(Alert.status).in_(alerts.ACTIVE)
    )
    report.alerts_queued += await _for_each(services, pending, deliver, what="alert", model=Alert)

    async def resend(session: AsyncSession, alert: Alert) -> bool:
        stale = alert.last_notified_at is not None and (
            alert.last_notified_at <= at - alerts.RESEND_AFTER
        )
        if not (alert.urgent and alert.status == AlertStatus.open and stale):
            return False
        if alert.resent >= alerts.MAX_RESENDS:
            return False
        alert.resent += 1
        return (
            await alerts.enqueue_alert(
                session=session, settings=settings, alert=alert, reason="resend"
            )
            > 0
        )

    if alerts.in_coverage(settings, at):
        again = select(Alert).where(
            col(Alert.urgent).is_(True),
            Alert.status == AlertStatus.open,
            col(Alert.resent) < alerts.MAX_RESENDS,
            col(Alert.last_notified_at) <= at - alerts.RESEND_AFTER,
        )
        report.alerts_queued += await _for_each(
            services, again, resend, what="alert resend", model=Alert
        )

    async def tell_her(session: AsyncSession, alert: Alert) -> bool:
        if not await alerts.contact_failed_everywhere(session=session, alert=alert):
            return False
        participant = await session.get(Participant, alert.participant_id)
        if participant is None or participant.chat_id is None or participant.has_left:
            return False
        await enqueue(
            session,
            kind=alerts.CONTACT_FAILED_KIND,
            chat_id=participant.chat_id,
            participant_id=participant.id,
            payload={"alert_id": alert.id},
        )
        report.contact_failed += 1
        return True

    unreached = select(Alert).where(
        col(Alert.contact_requested).is_(True),
        col(Alert.delivered_at).is_(None),
        col(Alert.last_notified_at).is_not(None),
    )
    await _for_each(services, unreached, tell_her, what="contact request", model=Alert)


# ---------------------------------------------------------------- standing rules and digest


async def apply_standing_rules(*, services: Services, report: TickReport) -> None:
    """Raises the unreachable rules' alerts for participants who became unreachable, and closes
    the alerts of anyone reachable again whose unblock did not close them itself.

    The missed-in-a-row rules run where a check-in closes unanswered (`close_windows`).
    """
    book = offers.rules()
    kinds = offers.unreachable_kinds(book)
    if not kinds:
        return

    async def raise_for(session: AsyncSession, participant: Participant) -> bool:
        raised = await offers.raise_unreachable(
            session=session, participant=participant, book=book
        )
        return bool(raised)

    report.standing_alerts += await _for_each(
        services,
        offers.newly_unreachable(kinds),
        raise_for,
        what="unreachable participant",
        model=Participant,
    )

    async def settle(session: AsyncSession, alert: Alert) -> bool:
        participant = await session.get(Participant, alert.participant_id)
        if participant is None or not participant.reachable or alert.status not in alerts.ACTIVE:
            return False
        return bool(
            await offers.close_unreachable(
                session=session, participant_id=alert.participant_id, book=book
            )
        )

    reachable_again = (
        select(Alert)
        .join(Participant, col(Participant.id) == col(Alert.participant_id))
        .where(
            col(Alert.kind).in_(kinds),
            col(Alert.status).in_(alerts.ACTIVE),
            col(Participant.reachable).is_(True),
        )
    )
    report.standing_alerts += await _for_each(
        services, reachable_again, settle, what="unreachable alert", model=Alert, lock_of=Alert
    )


# One advisory lock id for queuing digests, so two dispatchers never queue the same one.
DIGEST_LOCK_KEY = 0x6164686469676573  # "adhdiges"


async def send_digests(*, services: Services, report: TickReport) -> None:
    """Once DIGEST_TIME has passed in the team's zone: sends each overdue contact request to
    the team once more, then queues today's digest for each care-team chat that has not had it
    (nothing when there is nothing to report)."""
    settings = services.settings
    cutoff = alerts.digest_cutoff(settings, clock.now())
    if cutoff is None:
        return

    async def escalate(session: AsyncSession, alert: Alert) -> bool:
        return await alerts.escalate_overdue(
            session=session, settings=settings, alert=alert, at=cutoff
        )

    report.alerts_queued += await _for_each(
        services,
        alerts.not_yet_escalated(cutoff),
        escalate,
        what="overdue contact request",
        model=Alert,
    )
    async with services.db.session() as session:
        if services.db.dialect == "postgresql":
            taken = await session.exec(select(func.pg_try_advisory_xact_lock(DIGEST_LOCK_KEY)))
            if not taken.one():
                return  # another dispatcher is queuing them right now
        report.digests_queued += await alerts.queue_digests(
            session=session, settings=settings, cutoff=cutoff
        )


# ---------------------------------------------------------------- (b) pauses


async def resume_expired_pauses(*, services: Services, report: TickReport) -> None:
    """Resumes participants whose pause had an end date that has passed."""
    at = clock.now()

    async def resume(session: AsyncSession, participant: Participant) -> bool:
        until = participant.paused_until
        if participant.status != Lifecycle.paused or until is None or until > at:
            return False
        participant.status = Lifecycle.active
        participant.paused_until = None
        session.add(participant)
        return True

    query = select(Participant).where(
        Participant.status == Lifecycle.paused,
        col(Participant.paused_until).is_not(None),
        col(Participant.paused_until) <= at,
    )
    report.resumed += await _for_each(
        services, query, resume, what="pause end of participant", model=Participant
    )


# ---------------------------------------------------------------- (c) due check-ins


def consent_is_stale(participant: Participant) -> bool:
    """Tells whether she consented to an older version of the consent text than the current one."""
    return participant.consent_version != consent_text(participant.locale).version


async def claim_due_checkins(
    *,
    services: Services,
    report: TickReport,
    limit: int = CLAIM_LIMIT,
    after: tuple[datetime, int] | None = None,
) -> tuple[int, tuple[datetime, int] | None]:
    """Handles due, not-yet-queued check-ins (at most `limit`, after the key `after`).

    Returns how many left the waiting state, and the key of the last one looked at (None
    when fewer than `limit` were due): rows held for re-consent stay due, so the next chunk
    starts after them instead of finding them again.
    """
    at = clock.now()

    async def handle(session: AsyncSession, checkin: CheckIn) -> bool:
        return await _handle_due(session, services, checkin, at, report)

    query = (
        select(CheckIn)
        .where(
            CheckIn.status == CheckInStatus.scheduled,
            col(CheckIn.queued_at).is_(None),
            col(CheckIn.due_at) <= at,
        )
        .order_by(col(CheckIn.due_at), col(CheckIn.id))
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            sa.or_(
                col(CheckIn.due_at) > after[0],
                sa.and_(col(CheckIn.due_at) == after[0], col(CheckIn.id) > after[1]),
            )
        )
    seen: list[tuple[datetime, int]] = []  # (due_at, id) of every row the query found
    others: list[int] = []
    handled = 0
    try:
        handled = await _queue_plain_due(services, query, at, report, seen, others)
    except Exception as exc:
        # The batch failed as a whole (nothing of it was kept): every row goes one at a time.
        _log_row_error("due check-in batch", None, exc)
        others = [row_id for _, row_id in seen]
    if others:
        one_by_one = (
            select(CheckIn)
            .where(col(CheckIn.id).in_(others))
            .order_by(col(CheckIn.due_at), col(CheckIn.id))
        )
        handled += await _for_each(
            services, one_by_one, handle, what="due check-in", model=CheckIn
        )
    last = seen[-1] if len(seen) == limit else None
    return handled, last


async def _queue_plain_due(
    services: Services,
    query: SelectOfScalar[CheckIn],
    at: datetime,
    report: TickReport,
    seen: list[tuple[datetime, int]],
    others: list[int],
) -> int:
    """Queues the plain due check-ins of a chunk with a few statements for the whole chunk.

    Plain: she can be sent to, her consent is current, the window is open, and her
    schedule's next occurrence needs no catch-up. Everything else (closing with a reason,
    re-consent, catch-up after an outage) is left in `others` for `_handle_due`, one row at
    a time. Same result as `_handle_due`: a compare-and-set takes the rows, each gets its
    outbox row, and each schedule its next check-in unless one is already waiting.
    """
    window = timedelta(hours=services.settings.checkin_window_hours)
    async with services.db.session() as session:
        found = (await session.exec(_locked(services, query))).all()
        seen += [(c.due_at, c.id or 0) for c in found]
        people_ids = {c.participant_id for c in found}
        schedule_ids = {c.schedule_id for c in found if c.schedule_id is not None}
        people = {
            p.id: p
            for p in (
                await session.exec(select(Participant).where(col(Participant.id).in_(people_ids)))
            ).all()
        }
        schedules = {
            s.id: s
            for s in (
                await session.exec(select(Schedule).where(col(Schedule.id).in_(schedule_ids)))
            ).all()
        }
        # Schedules that already have another check-in waiting (set_schedule planned it).
        waiting = set()
        if schedule_ids:
            waiting = set(
                (
                    await session.exec(
                        select(CheckIn.schedule_id).where(
                            col(CheckIn.schedule_id).in_(schedule_ids),
                            CheckIn.status == CheckInStatus.scheduled,
                            col(CheckIn.queued_at).is_(None),
                            col(CheckIn.id).not_in([row_id for _, row_id in seen]),
                        )
                    )
                ).all()
            )
        plain: list[tuple[CheckIn, Participant, datetime | None]] = []
        chunk_schedules: set[int] = set()
        for checkin in found:
            assert checkin.id is not None
            participant = people.get(checkin.participant_id)
            schedule = schedules.get(checkin.schedule_id) if checkin.schedule_id else None
            if (
                participant is None
                or participant_block(participant) is not None
                or consent_is_stale(participant)
                or checkin.window_closes_at <= at
                or checkin.schedule_id in chunk_schedules
            ):
                others.append(checkin.id)
                continue
            following: datetime | None = None
            if schedule is not None and schedule.active and schedule.id not in waiting:
                following = _next(schedule, checkin.due_at)
                if following + window <= at:
                    others.append(checkin.id)  # an outage to record first: catch-up
                    continue
            if checkin.schedule_id is not None:
                chunk_schedules.add(checkin.schedule_id)
            plain.append((checkin, participant, following))
        if not plain:
            return 0
        taken_rows = await session.exec(
            sa.update(CheckIn)
            .where(
                col(CheckIn.id).in_([c.id for c, _, _ in plain]),
                col(CheckIn.status) == CheckInStatus.scheduled,
                col(CheckIn.queued_at).is_(None),
            )
            .values(queued_at=at)
            .returning(col(CheckIn.id))
            .execution_options(synchronize_session=False)
        )
        taken = set(taken_rows.scalars().all())
        plain = [item for item in plain if item[0].id in taken]
        planned = [(c, f) for c, _, f in plain if f is not None]
        occupied: set[tuple[int | None, datetime]] = set()
        if planned:
            slots = [(c.schedule_id, f) for c, f in planned]
            hits = await session.exec(
                select(CheckIn.schedule_id, CheckIn.due_at).where(
                    sa.tuple_(col(CheckIn.schedule_id), col(CheckIn.due_at)).in_(slots)
                )
            )
            occupied = {(sid, _aware(due)) for sid, due in hits.all()}
        for checkin, participant, following in plain:
            assert participant.chat_id is not None
            session.add(
                OutgoingMessage(
                    kind=CHECKIN_KIND,
                    chat_id=participant.chat_id,
                    participant_id=participant.id,
                    checkin_id=checkin.id,
                    payload="{}",
                    state=OutboxState.queued,
                    not_before=at,
                )
            )
            schedule = schedules.get(checkin.schedule_id) if checkin.schedule_id else None
            if schedule and following and (schedule.id, following) not in occupied:
                session.add(_checkin_for(schedule, following, services))
                report.planned += 1
        report.checkins_queued += len(plain)
        return len(plain)


def _aware(value: datetime) -> datetime:
    """Returns a UTC-aware instant (a tuple query's values skip the column type on SQLite)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _handle_due(
    session: AsyncSession, services: Services, checkin: CheckIn, at: datetime, report: TickReport
) -> bool:
    """Queues one due check-in or closes it with its reason; False while it is held."""
    if checkin.status != CheckInStatus.scheduled or checkin.queued_at is not None:
        return False
    participant = await session.get(Participant, checkin.participant_id)
    reason = participant_block(participant)
    if reason is None and participant is not None and consent_is_stale(participant):
        if checkin.window_closes_at <= at:
            # Held for re-consent all window long: she was asked and did not answer.
            asked = participant.awaiting == AWAITING_RECONSENT
            reason = MissedReason.no_answer if asked else MissedReason.not_sent_outage
        else:
            await _ask_reconsent(session, participant, report)
            report.held_for_consent += 1
            return False
    if reason is None and checkin.window_closes_at <= at:
        reason = MissedReason.not_sent_outage  # due while the bot was down; window passed
    taken = {"status": CheckInStatus.missed} if reason is not None else {"queued_at": at}
    if not await _take(session, checkin, taken):
        return False  # another tick handled it a moment ago
    if reason is not None:
        close_checkin(checkin, reason=reason, at=at)
        report.count_missed(reason)
    else:
        assert participant is not None and participant.chat_id is not None
        await enqueue(
            session,
            kind=CHECKIN_KIND,
            chat_id=participant.chat_id,
            participant_id=participant.id,
            checkin_id=checkin.id,
        )
        checkin.queued_at = at
        report.checkins_queued += 1
    session.add(checkin)
    if checkin.schedule_id is not None:
        await plan_after(
            session=session,
            services=services,
            schedule_id=checkin.schedule_id,
            participant=participant,
            after=checkin.due_at,
            report=report,
        )
    return True


async def _take(session: AsyncSession, checkin: CheckIn, values: dict[str, Any]) -> bool:
    """Compare-and-set on the row, so two ticks (even on SQLite) never both handle it."""
    result = await session.exec(
        sa.update(CheckIn)
        .where(
            col(CheckIn.id) == checkin.id,
            col(CheckIn.status) == CheckInStatus.scheduled,
            col(CheckIn.queued_at).is_(None),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def _ask_reconsent(
    session: AsyncSession, participant: Participant, report: TickReport
) -> None:
    """Queues one re-consent message, unless she has already been asked."""
    if participant.awaiting == AWAITING_RECONSENT or participant.chat_id is None:
        return
    participant.awaiting = AWAITING_RECONSENT
    session.add(participant)
    await enqueue(
        session, kind=RECONSENT_KIND, chat_id=participant.chat_id, participant_id=participant.id
    )
    report.reconsent_requested += 1


async def plan_after(
    *,
    session: AsyncSession,
    services: Services,
    schedule_id: int,
    participant: Participant | None,
    after: datetime,
    report: TickReport,
) -> None:
    """Creates the schedule's next check-in, recording every occurrence skipped by an outage."""
    schedule = await session.get(Schedule, schedule_id)
    if schedule is None or not schedule.active or participant is None:
        return
    if participant.has_left:
        return
    if await has_pending(session=session, schedule_id=schedule_id):
        return  # set_schedule already planned the next one
    at = clock.now()
    window = timedelta(hours=services.settings.checkin_window_hours)
    due = _next(schedule, after)
    for _ in range(MAX_CATCH_UP):
        if due + window > at:
            break
        # Its whole window passed while nobody ran the dispatcher: keep the gap on record.
        if not await slot_taken(session=session, schedule_id=schedule_id, due_at=due):
            skipped = _checkin_for(schedule, due, services)
            reason = participant_block(participant) or MissedReason.not_sent_outage
            close_checkin(skipped, reason=reason, at=at)
            session.add(skipped)
            report.count_missed(reason)
        due = _next(schedule, due)
    if not await slot_taken(session=session, schedule_id=schedule_id, due_at=due):
        session.add(_checkin_for(schedule, due, services))
        report.planned += 1
    await session.flush()


def _next(schedule: Schedule, after: datetime) -> datetime:
    """Returns the schedule's next due instant after `after`."""
    return next_due(
        local_time=schedule.local_time,
        weekdays=schedule.weekdays,
        tz=schedule.timezone,
        after=after,
    )


def _checkin_for(schedule: Schedule, due: datetime, services: Services) -> CheckIn:
    """Builds a scheduled check-in for one occurrence of a schedule."""
    assert schedule.id is not None
    return new_checkin(
        participant_id=schedule.participant_id,
        schedule_id=schedule.id,
        due_at=due,
        window_hours=services.settings.checkin_window_hours,
    )


HEAL_EVERY = timedelta(minutes=1)


async def heal_schedules(*, services: Services, report: TickReport) -> None:
    """Plans the next check-in for any active schedule that has none waiting.

    A safety net: setting a schedule and claiming a check-in plan the next one themselves, so
    a schedule without one is a rare repair. Its query reads every schedule (83 ms at 100,000
    participants, docs/benchmarks.md), so it runs once a minute per process, not every tick.
    """
    at = clock.now()
    if services.heal_after is not None and at < services.heal_after:
        return
    services.heal_after = at + HEAL_EVERY

    async def plan(session: AsyncSession, schedule: Schedule) -> bool:
        assert schedule.id is not None
        if not schedule.active or await has_pending(session=session, schedule_id=schedule.id):
            return False
        session.add(_checkin_for(schedule, _next(schedule, at), services))
        await session.flush()
        return True

    pending = (
        select(CheckIn.id)
        .where(
            CheckIn.schedule_id == Schedule.id,
            CheckIn.status == CheckInStatus.scheduled,
            col(CheckIn.queued_at).is_(None),
        )
        .exists()
    )
    query = (
        select(Schedule)
        .join(Participant, col(Participant.id) == col(Schedule.participant_id))
        .where(
            col(Schedule.active).is_(True),
            # Paused participants keep their slots (closed as missed/paused at due time).
            col(Participant.status).in_([Lifecycle.active, Lifecycle.paused]),
            ~pending,
        )
    )
    report.planned += await _for_each(
        services, query, plan, what="schedule", model=Schedule, lock_of=Schedule
    )


# ---------------------------------------------------------------- (d) reminders


async def queue_reminders(*, services: Services, report: TickReport) -> None:
    """Queues the automatic (or a snoozed) reminder when it is due, never in quiet hours."""
    at = clock.now()

    async def remind(session: AsyncSession, checkin: CheckIn) -> bool:
        return await _remind(session, services, checkin, at, report)

    query = select(CheckIn).where(
        col(CheckIn.status).in_(OPEN_STATUSES),
        col(CheckIn.next_reminder_at).is_not(None),
        col(CheckIn.next_reminder_at) <= at,
        col(CheckIn.window_closes_at) > at,
    )
    await _for_each(services, query, remind, what="reminder for check-in", model=CheckIn)


async def _remind(
    session: AsyncSession, services: Services, checkin: CheckIn, at: datetime, report: TickReport
) -> bool:
    """Queues one check-in's reminder, or moves it past her quiet hours."""
    due = checkin.next_reminder_at
    if due is None or due > at or checkin.status not in OPEN_STATUSES:
        return False
    # Compare-and-set: only one tick may act on this reminder time.
    taken = await session.exec(
        sa.update(CheckIn)
        .where(col(CheckIn.id) == checkin.id, col(CheckIn.next_reminder_at) == due)
        .values(next_reminder_at=None)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        return False
    settings = services.settings
    participant = await session.get(Participant, checkin.participant_id)
    session.add(checkin)
    checkin.next_reminder_at = None
    if participant is None or participant_block(participant) is not None:
        return True
    if await checkins.only_optional_left(session=session, checkin=checkin):
        return True  # every question is answered; the note is hers to add, not to be chased
    tz = participant_zone(participant, default=settings.default_timezone)
    if in_quiet_hours(at=at, tz=tz, quiet=settings.quiet_window):
        end = quiet_hours_end(at=at, tz=tz, quiet=settings.quiet_window)
        checkin.next_reminder_at = end if end < checkin.window_closes_at else None
        report.reminders_held += 1
        return True
    assert participant.chat_id is not None
    await enqueue(
        session,
        kind=REMINDER_KIND,
        chat_id=participant.chat_id,
        participant_id=participant.id,
        checkin_id=checkin.id,
    )
    report.reminders_queued += 1
    return True


# ---------------------------------------------------------------- (e) windows


async def close_windows(*, services: Services, report: TickReport) -> None:
    """Closes check-ins whose answer window has passed, each with exactly one missed reason."""
    at = clock.now()

    async def close(session: AsyncSession, checkin: CheckIn) -> bool:
        waiting = checkin.status == CheckInStatus.scheduled and checkin.queued_at is not None
        if checkin.window_closes_at > at or not (waiting or checkin.status in OPEN_STATUSES):
            return False
        report.windows_closed += 1
        if checkin.status == CheckInStatus.partial and await checkins.complete_at_close(
            session=session, checkin=checkin, at=at
        ):
            report.completed_at_close += 1
        else:
            participant = await session.get(Participant, checkin.participant_id)
            reason = await _close_reason(session, checkin, participant)
            close_checkin(checkin, reason=reason, at=at)
            session.add(checkin)
            report.count_missed(reason)
            if reason == MissedReason.no_answer and participant is not None:
                # Once per silent check-in, in the transaction that closes it.
                await session.flush()
                raised = await offers.after_missed(session=session, participant=participant)
                report.standing_alerts += len(raised)
        stale = await session.exec(
            select(OutgoingMessage).where(
                OutgoingMessage.checkin_id == checkin.id,
                OutgoingMessage.state == OutboxState.queued,
            )
        )
        for row in stale.all():
            row.state = OutboxState.cancelled
            row.last_error = "WindowClosed"
            session.add(row)
        return True

    query = select(CheckIn).where(
        col(CheckIn.window_closes_at) <= at,
        sa.or_(
            col(CheckIn.status).in_(OPEN_STATUSES),
            sa.and_(
                col(CheckIn.status) == CheckInStatus.scheduled,
                col(CheckIn.queued_at).is_not(None),
            ),
        ),
    )
    await _for_each(services, query, close, what="window of check-in", model=CheckIn)


async def _close_reason(
    session: AsyncSession, checkin: CheckIn, participant: Participant | None
) -> MissedReason:
    """Returns why an unfinished check-in is closing: never sent, silence, or part answered."""
    if checkin.status == CheckInStatus.scheduled:
        # Queued but never delivered: held back by her pause or block, else our outage,
        # unless its send ended with the outcome unknown (it may have reached her).
        uncertain = await session.exec(
            select(func.count())
            .select_from(OutgoingMessage)
            .where(
                OutgoingMessage.checkin_id == checkin.id,
                OutgoingMessage.kind == CHECKIN_KIND,
                col(OutgoingMessage.uncertain).is_(True),
            )
        )
        blocked = participant_block(participant)
        if blocked is None and uncertain.one():
            return MissedReason.delivery_uncertain
        return blocked or MissedReason.not_sent_outage
    if checkin.status == CheckInStatus.partial:
        return MissedReason.closed_partial
    answers = await session.exec(
        select(func.count()).select_from(Answer).where(Answer.checkin_id == checkin.id)
    )
    return MissedReason.closed_partial if answers.one() else MissedReason.no_answer


# ---------------------------------------------------------------- (f) sending


async def claim_outbox(*, services: Services, report: TickReport, limit: int) -> list[int]:
    """Claims due outbox rows (state 'claimed', attempts+1, a lease); returns their ids."""
    at = clock.now()
    settings = services.settings
    lease_until = at + timedelta(seconds=settings.send_lease_seconds)
    claimed: list[int] = []
    async with services.db.session() as session:
        query = (
            select(OutgoingMessage)
            .where(
                OutgoingMessage.state == OutboxState.queued,
                col(OutgoingMessage.not_before) <= at,
            )
            .order_by(col(OutgoingMessage.not_before), col(OutgoingMessage.id))
            .limit(limit)
        )
        rows = (await session.exec(_locked(services, query))).all()
        quiet = {r.participant_id for r in rows if r.kind in QUIET_KINDS and r.participant_id}
        # One query for everyone whose quiet hours matter; `session.get` then finds them
        # (held in `people`: the session keeps its objects only weakly).
        people = (
            (await session.exec(select(Participant).where(col(Participant.id).in_(quiet)))).all()
            if quiet
            else []
        )
        for row in rows:
            assert row.id is not None
            if row.kind in QUIET_KINDS and row.participant_id is not None:
                participant = await session.get(Participant, row.participant_id)
                if participant is not None:
                    tz = participant_zone(participant, default=settings.default_timezone)
                    if in_quiet_hours(at=at, tz=tz, quiet=settings.quiet_window):
                        row.not_before = quiet_hours_end(at=at, tz=tz, quiet=settings.quiet_window)
                        session.add(row)
                        report.held_quiet += 1
                        continue
            claimed.append(row.id)
        del people
        if claimed:
            # One compare-and-set for the batch: only one claimer can move a row out of
            # 'queued' (the rows are locked on PostgreSQL, and SQLite holds its write lock).
            taken = await session.exec(
                sa.update(OutgoingMessage)
                .where(
                    col(OutgoingMessage.id).in_(claimed),
                    col(OutgoingMessage.state) == OutboxState.queued,
                )
                .values(
                    state=OutboxState.claimed,
                    attempts=col(OutgoingMessage.attempts) + 1,
                    lease_until=lease_until,
                )
                .returning(col(OutgoingMessage.id))
                .execution_options(synchronize_session=False)
            )
            mine = set(taken.scalars().all())
            claimed = [row_id for row_id in claimed if row_id in mine]
    return claimed


# How long one tick may keep sending before the other steps get their turn.
SEND_TICK_BUDGET = timedelta(seconds=60)


async def _keep_leases(services: Services, ids: list[int], stop: asyncio.Event) -> None:
    """Renews this worker's lease on its claimed rows every few seconds until told to stop.

    Leases are short so that a crashed worker's rows go out again within seconds; a worker
    that is alive (even one waiting out a 429) keeps them.
    """
    lease = timedelta(seconds=services.settings.send_lease_seconds)
    every = max(lease.total_seconds() / 3, 0.5)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
            return
        except TimeoutError:
            pass
        try:
            async with services.db.session() as session:
                await session.exec(
                    sa.update(OutgoingMessage)
                    .where(
                        col(OutgoingMessage.id).in_(ids),
                        col(OutgoingMessage.state).in_([OutboxState.claimed, OutboxState.sending]),
                    )
                    .values(lease_until=clock.now() + lease)
                    .execution_options(synchronize_session=False)
                )
        except Exception as exc:  # the next renewal tries again; the lease has slack
            _log_row_error("lease renewal", None, exc)


async def send_due(
    *,
    services: Services,
    bot: Bot,
    report: TickReport,
    deadline: datetime | None = None,
    batches: int | None = None,
) -> bool:
    """Sends due outbox rows in small batches until none is due, the budget is spent, or
    `batches` batches went; True when a 429 paused sending."""
    deadline = deadline or clock.now() + SEND_TICK_BUDGET
    done = 0
    while clock.now() < deadline and (batches is None or done < batches):
        ids = await claim_outbox(services=services, report=report, limit=SEND_BATCH)
        if not ids:
            return False
        done += 1
        stop = asyncio.Event()
        keeper = asyncio.create_task(_keep_leases(services, ids, stop))
        try:
            if await _send_batch(services, bot, ids, report):
                return True
        finally:
            stop.set()
            await keeper
        # Between batches (about two seconds each): the coordinator's progress message.
        await follow_up_broadcasts(services)
    return False


async def follow_up_broadcasts(services: Services) -> int:
    """Queues broadcast progress edits and final reports (returns how many); a failure never
    stops the tick."""
    try:
        return await broadcasts.follow_up(session_factory=services.db.session)
    except Exception as exc:
        _log_row_error("broadcast follow-up", None, exc)
        return 0


async def _send_batch(services: Services, bot: Bot, ids: list[int], report: TickReport) -> bool:
    """Sends one claimed batch in order; True when a 429 paused sending (the rest go back)."""
    results, paused = await send_batch(services=services, bot=bot, row_ids=ids)
    for result in results:
        report.count(result.outcome)
    return paused


# ---------------------------------------------------------------- housekeeping

# Pacing rows of chats quiet this long are dropped (any age past a few seconds would do).
IDLE_SLOT_AGE = timedelta(hours=1)
HOUSEKEEPING_INTERVAL_SECONDS = 3600.0


async def housekeeping(services: Services) -> tuple[int, int]:
    """Forgets update ids older than a week and idle pacing rows; returns both counts.

    Forgetting old update ids matters: Telegram may start ids afresh after a quiet week, and a
    remembered old id would make a new update look like a replay.
    """
    async with services.db.session() as session:
        updates = await forget_old_updates(session)
        slots = await ratelimit.forget_idle_slots(session, idle_for=IDLE_SLOT_AGE)
    return updates, slots


async def housekeeping_job(context: CallbackContext[Any, Any, Any, Any]) -> None:
    """Runs housekeeping from the JobQueue; a failure is logged and the next run tries again."""
    services: Services = context.bot_data
    try:
        updates, slots = await housekeeping(services)
    except Exception as exc:
        _log_row_error("housekeeping", None, exc)
        return
    if updates or slots:
        log.info("housekeeping: forgot %d update ids and %d pacing rows", updates, slots)


# ---------------------------------------------------------------- the job


async def dispatch_job(context: CallbackContext[Any, Any, Any, Any]) -> None:
    """Runs one tick from the JobQueue; a failure is logged and the next tick tries again."""
    services: Services = context.bot_data
    try:
        report = await run_tick(services, context.bot)
    except Exception as exc:
        # Class and location only: database errors can carry row values (patient text).
        _log_row_error("dispatcher tick", None, exc)
        return
    # Only a tick that ran counts: /healthz turns 503 when ticks keep failing.
    ops.mark_tick(clock.now())
    if report.sent or report.failed or report.missed or report.uncertain:
        log.info(
            "tick: sent=%d failed=%d uncertain=%d missed=%s",
            report.sent,
            report.failed,
            report.uncertain,
            report.missed,
        )
