"""A participant's lifecycle (active, paused, withdrawn, deleted) and, separately, reachability.

Lifecycle is what she chose; reachability is whether Telegram lets us write to her. They are
kept apart so that unblocking the bot never undoes a pause or a withdrawal.
"""

from __future__ import annotations

import calendar
import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import participant_actor, record_audit
from bot.clock import now
from bot.enrolment_events import Step as EnrolmentStep
from bot.enrolment_events import record_step
from bot.models import (
    Alert,
    AlertStatus,
    Answer,
    AnswerHistory,
    BarrierReport,
    CheckIn,
    CheckInStatus,
    ClarifyingQuestion,
    Consent,
    Lifecycle,
    MissedReason,
    OfferEvent,
    OutboxState,
    OutgoingMessage,
    PageView,
    Participant,
    SavedQuestion,
    Schedule,
    TherapyChange,
    TherapyStatus,
)
from bot.offers import close_unreachable

# Pause lengths a participant can pick; None means "until I resume".
PAUSE_CHOICES: tuple[str, ...] = ("1w", "1m", "inf")

OPEN_CHECKIN_STATES = (CheckInStatus.scheduled, CheckInStatus.sent, CheckInStatus.partial)


class LifecycleError(Exception):
    """The requested change does not fit her current status (e.g. pausing a withdrawn person)."""


def add_month(at: datetime) -> datetime:
    """Returns the same instant a calendar month later (31 Jan becomes the last day of Feb)."""
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    day = min(at.day, calendar.monthrange(year, month)[1])
    return at.replace(year=year, month=month, day=day)


def pause_end(*, choice: str, at: datetime) -> datetime | None:
    """Returns when a pause picked as '1w', '1m' or 'inf' ends (None: until she resumes)."""
    if choice == "1w":
        return at + timedelta(days=7)
    if choice == "1m":
        return add_month(at)
    if choice == "inf":
        return None
    raise ValueError(f"unknown pause choice {choice!r}")


def is_paused(participant: Participant, at: datetime | None = None) -> bool:
    """Tells whether her messages are paused now (a pause whose end has passed is over)."""
    if participant.status != Lifecycle.paused:
        return False
    until = participant.paused_until
    return until is None or until > (at or now())


def can_pause(participant: Participant) -> bool:
    """Tells whether she has check-ins that a pause would hold (active or already paused)."""
    return participant.status in (Lifecycle.active, Lifecycle.paused)


def lifecycle_stamp(participant: Participant) -> str:
    """Returns a short fingerprint of her lifecycle state, carried in buttons to spot stale taps.

    A button made before her state changed (she already paused, left, or resumed) carries an old
    stamp, so a second or late tap changes nothing.
    """
    until = participant.paused_until.isoformat() if participant.paused_until else "-"
    left = participant.withdrawn_at.isoformat() if participant.withdrawn_at else "-"
    raw = f"{participant.id}|{participant.status}|{until}|{left}"
    return hashlib.sha256(raw.encode()).hexdigest()[:6]


async def has_open_checkin(*, session: AsyncSession, participant_id: int) -> bool:
    """Tells whether she has a check-in that was sent and whose window is still open."""
    open_states = (CheckInStatus.sent, CheckInStatus.partial)
    result = await session.exec(
        select(CheckIn.id)
        .where(CheckIn.participant_id == participant_id)
        .where(col(CheckIn.status).in_(open_states))
        .where(col(CheckIn.window_closes_at) > now())
        .limit(1)
    )
    return result.first() is not None


async def close_open_checkins(
    *, session: AsyncSession, participant_id: int, reason: MissedReason
) -> int:
    """Closes every scheduled or open check-in of hers as missed with one reason."""
    at = now()
    result = await session.exec(
        update(CheckIn)
        .where(col(CheckIn.participant_id) == participant_id)
        .where(col(CheckIn.status).in_(OPEN_CHECKIN_STATES))
        .values(
            status=CheckInStatus.missed,
            missed_reason=reason,
            closed_at=at,
            next_reminder_at=None,
        )
    )
    return int(result.rowcount or 0)


async def cancel_queued_messages(
    *, session: AsyncSession, participant_id: int, kinds: tuple[str, ...] | None = None
) -> int:
    """Cancels her outbox rows that are still waiting to be sent (optionally only some kinds)."""
    statement = (
        update(OutgoingMessage)
        .where(col(OutgoingMessage.participant_id) == participant_id)
        .where(col(OutgoingMessage.state) == OutboxState.queued)
        .values(state=OutboxState.cancelled)
    )
    if kinds is not None:
        statement = statement.where(col(OutgoingMessage.kind).in_(kinds))
    result = await session.exec(statement)
    return int(result.rowcount or 0)


def _require_id(participant: Participant) -> int:
    if participant.id is None:
        raise LifecycleError("participant has not been saved")
    return participant.id


async def pause(
    *, session: AsyncSession, participant: Participant, until: datetime | None
) -> None:
    """Pauses her messages until `until` (None: until she resumes); check-ins keep their slots.

    The dispatcher still creates her scheduled check-ins and closes them as missed/paused, so
    the record shows the gap. Already queued check-ins and reminders are left to the sender,
    which cancels them at send time and closes their check-in as missed/paused; cancelling
    them here would leave a queued check-in without a message and the wrong reason on resume.
    """
    if not can_pause(participant):
        raise LifecycleError(f"cannot pause a participant who is {participant.status}")
    if until is not None and until.tzinfo is None:
        raise ValueError("pause end must be timezone-aware")
    participant.status = Lifecycle.paused
    participant.paused_until = until
    session.add(participant)
    await session.flush()


async def resume(*, session: AsyncSession, participant: Participant) -> bool:
    """Ends a pause; returns False (and changes nothing) when she was not paused."""
    if participant.status != Lifecycle.paused:
        return False
    participant.status = Lifecycle.active
    participant.paused_until = None
    session.add(participant)
    await session.flush()
    return True


async def withdraw(
    *,
    session: AsyncSession,
    participant: Participant,
    actor: str | None = None,
    action: str = "withdraw",
    detail: str | None = None,
) -> None:
    """Takes her out of the study: no more messages, consent withdrawn, her data kept.

    Audited as her own choice unless an `actor` (the care team, on her behalf) is given.
    """
    if participant.has_left:
        return
    pid = _require_id(participant)
    at = now()
    participant.status = Lifecycle.withdrawn
    participant.withdrawn_at = at
    participant.paused_until = None
    participant.awaiting = None
    session.add(participant)
    await session.exec(
        update(Consent)
        .where(col(Consent.participant_id) == pid)
        .where(col(Consent.withdrawn_at).is_(None))
        .values(withdrawn_at=at)
    )
    await session.exec(
        update(Schedule).where(col(Schedule.participant_id) == pid).values(active=False)
    )
    await close_open_checkins(session=session, participant_id=pid, reason=MissedReason.withdrawn)
    await cancel_queued_messages(session=session, participant_id=pid)
    await record_step(
        session=session,
        step=EnrolmentStep.withdrawn,
        pseudonym=participant.pseudonym,
        cohort_id=participant.cohort_id,
    )
    await record_audit(
        session=session,
        actor=actor or participant_actor(participant),
        action=action,
        subject=participant.pseudonym,
        detail=detail,
    )
    await session.flush()


async def delete_participant_data(*, session: AsyncSession, participant: Participant) -> str:
    """Erases her personal data and audits it; returns the pseudonym the audit event keeps.

    Erased: Telegram user and chat ids, study id, medicine, start date, country, zone, therapy
    status, her schedules, every answer (notes included) and its history, her saved questions,
    barrier codes, therapy changes, page views and offer events, the codes on her alerts, and
    the chat id on her outbox rows. Kept: consent rows (version and times only, to show what
    the study held and when), check-in rows without answers (closed as missed/withdrawn if
    open), alert rows without detail (closed if open, so the care team's record of what it was
    told stays whole), enrolment events (codes, times and a hash, for the CONSORT counts of
    research exports, which never list her), and an audit event with her pseudonym, the time
    and the actor. The row itself gets a tombstone pseudonym, so nothing left in it links back
    to her Telegram account and she may join again later.
    """
    pid = _require_id(participant)
    pseudonym = participant.pseudonym
    at = now()
    # Counted for the CONSORT flow (a code and a time); she is absent from every export.
    await record_step(
        session=session,
        step=EnrolmentStep.deleted,
        pseudonym=pseudonym,
        cohort_id=participant.cohort_id,
    )

    checkin_ids = select(CheckIn.id).where(CheckIn.participant_id == pid)
    answer_ids = select(Answer.id).where(col(Answer.checkin_id).in_(checkin_ids))
    await session.exec(delete(AnswerHistory).where(col(AnswerHistory.answer_id).in_(answer_ids)))
    await session.exec(delete(Answer).where(col(Answer.checkin_id).in_(checkin_ids)))

    await close_open_checkins(session=session, participant_id=pid, reason=MissedReason.withdrawn)
    await session.exec(
        update(CheckIn)
        .where(col(CheckIn.participant_id) == pid)
        .values(schedule_id=None, message_ids="")
    )
    await session.exec(delete(Schedule).where(col(Schedule.participant_id) == pid))
    for table in (
        SavedQuestion,
        BarrierReport,
        TherapyChange,
        PageView,
        OfferEvent,
        ClarifyingQuestion,  # codes only, but hers (issue 13)
    ):
        await session.exec(delete(table).where(col(table.participant_id) == pid))
    await session.exec(
        update(Alert)
        .where(col(Alert.participant_id) == pid)
        .where(col(Alert.status) != AlertStatus.closed)
        .values(
            status=AlertStatus.closed,
            closed_at=at,
            closed_by="system:deleted",
            closed_reason="deleted",
            notify_pending=False,
        )
    )
    await session.exec(update(Alert).where(col(Alert.participant_id) == pid).values(detail=None))

    await cancel_queued_messages(session=session, participant_id=pid)
    await session.exec(
        update(OutgoingMessage)
        .where(col(OutgoingMessage.participant_id) == pid)
        .values(chat_id=0, payload="{}", last_error=None)
    )
    await session.exec(
        update(Consent)
        .where(col(Consent.participant_id) == pid)
        .where(col(Consent.withdrawn_at).is_(None))
        .values(withdrawn_at=at)
    )

    participant.telegram_user_id = None
    participant.chat_id = None
    participant.site_study_id = None
    participant.invite_id = None
    participant.medicine = None
    participant.therapy_started = None
    participant.country = None
    participant.timezone = None
    participant.awaiting = None
    participant.paused_until = None
    participant.therapy_status = TherapyStatus.taking
    participant.discreet = False
    participant.status = Lifecycle.deleted
    participant.withdrawn_at = participant.withdrawn_at or at
    participant.deleted_at = at
    participant.pseudonym = f"deleted-{pid}"
    session.add(participant)

    await record_audit(
        session=session,
        actor=f"participant:{pseudonym}",
        action="delete_my_data",
        subject=pseudonym,
    )
    await session.flush()
    return pseudonym


async def mark_reachable(
    *, session: AsyncSession, participant: Participant, reachable: bool
) -> bool:
    """Records whether Telegram lets us write to her; never touches her lifecycle status.

    Returns True when the fact changed. Reachable again, her unreachable alert closes itself
    (closed_by system:reachable).
    """
    if participant.reachable == reachable:
        return False
    participant.reachable = reachable
    participant.unreachable_since = None if reachable else now()
    session.add(participant)
    if reachable and participant.id is not None:
        await close_unreachable(session=session, participant_id=participant.id)
    await session.flush()
    return True
