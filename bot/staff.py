"""The care team acting on one participant: staff conversation state and the rules around it.

- **Staff state** (`StaffState`): what a member of staff's next typed message answers, kept
  apart from `Participant.awaiting` so a coordinator's text is never read as a patient's (the
  fallback hands it to the care-team route before any safety detection). `msg:<id>` waits for
  the text of a message to participant <id>; `send:<id>` holds that text as a draft until the
  coordinator presses Send or Cancel.
- **On her behalf**: a one-week pause (only while she is active) and a withdrawal (unless she
  already left), each with a reason code, audited with the staff actor, and told to her through
  the outbox with how to undo it.
- **Messages from the team** are scanned for advice to stop, pause, switch or change a medicine
  (`bot.safety_scan`) before they can be sent, queued through the outbox, and audited by
  length only: the audit log never holds the text.

Also the read side of /alerts and /participant: a page of active alerts, and one
participant at a glance (recent check-ins, active alerts, how many saved questions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import alerts, lifecycle, roles
from bot.audit import record_audit
from bot.clock import now
from bot.config import Settings
from bot.models import (
    Alert,
    Answer,
    CheckIn,
    Lifecycle,
    OutgoingMessage,
    Participant,
    SavedQuestion,
    StaffState,
)
from bot.outbox import enqueue
from bot.safety_scan import Finding, scan

TEXT_ROUTE = "staff"  # the key of the care team's typed-text route in `services.text_routes`
MESSAGE = "msg"  # awaiting the text of a message to her
CONFIRM = "send"  # a draft waiting for Send or Cancel
REASONS = ("patient_request", "clinical", "other")  # why the team acted on her behalf
TEAM_PAUSE = "1w"  # the pause the team can set for her (`lifecycle.pause_end` choice)
MESSAGE_KIND = "care_team_message"  # outbox kind: a message the care team wrote to her
# Outbox kind: tells her the team paused or withdrew her (bot.sender lets it past a withdrawal).
CHANGE_KIND = "care_team_change"
PAUSED, WITHDRAWN = "paused", "withdrawn"  # what a CHANGE_KIND row tells her
MAX_MESSAGE_CHARS = 3000  # leaves room for the first line and the contact under it
RECENT_CHECKINS = 14
ALERTS_PER_PAGE = 5
TABLET_ITEM, PAIN_ITEM = "took_med", "worst_pain"


# ---------------------------------------------------------------- staff conversation state


@dataclass(frozen=True)
class StaffAwaiting:
    """A parsed `StaffState.awaiting`: what is awaited, for which participant."""

    kind: str
    participant_id: int

    @classmethod
    def parse(cls, raw: str | None) -> StaffAwaiting | None:
        """Reads a stored value; None when nothing (or nothing readable) is awaited."""
        kind, _, arg = (raw or "").partition(":")
        if kind not in (MESSAGE, CONFIRM) or not (arg.isascii() and arg.isdigit()):
            return None
        return cls(kind, int(arg))

    def format(self) -> str:
        """Returns the stored spelling."""
        return f"{self.kind}:{self.participant_id}"


async def get_state(*, session: AsyncSession, telegram_user_id: int) -> StaffState | None:
    """Returns this staff member's conversation state, if any."""
    return await session.get(StaffState, telegram_user_id)


async def awaiting_of(*, session: AsyncSession, telegram_user_id: int) -> StaffAwaiting | None:
    """Returns what this staff member's next typed message (or Send) answers, if anything."""
    state = await get_state(session=session, telegram_user_id=telegram_user_id)
    return StaffAwaiting.parse(state.awaiting) if state is not None else None


async def set_awaiting(
    *,
    session: AsyncSession,
    telegram_user_id: int,
    value: StaffAwaiting,
    draft: str | None = None,
) -> None:
    """Records what this staff member's next typed message answers (and any draft)."""
    await set_step(
        session=session, telegram_user_id=telegram_user_id, step=value.format(), draft=draft
    )


async def set_step(
    *, session: AsyncSession, telegram_user_id: int, step: str, draft: str | None = None
) -> None:
    """Records the open step of a staff flow ("msg:7", "inv:site", "bc:text") and its draft.

    One row per person: starting one flow (a message to her, /invite, a typed broadcast)
    ends any other.
    """
    state = await get_state(session=session, telegram_user_id=telegram_user_id)
    if state is None:
        state = StaffState(telegram_user_id=telegram_user_id)
    state.awaiting = step
    state.draft = draft
    state.updated_at = now()
    session.add(state)
    await session.flush()


async def end_step(*, session: AsyncSession, telegram_user_id: int | None, prefix: str) -> bool:
    """Ends the flow whose step starts with `prefix`, leaving any other alone; True when it
    was open."""
    state = (
        await get_state(session=session, telegram_user_id=telegram_user_id)
        if telegram_user_id is not None
        else None
    )
    if state is None or not (state.awaiting or "").startswith(prefix):
        return False
    state.awaiting = None
    state.draft = None
    state.updated_at = now()
    session.add(state)
    await session.flush()
    return True


async def clear(*, session: AsyncSession, telegram_user_id: int) -> None:
    """Forgets what this staff member was asked, and any unsent draft."""
    state = await get_state(session=session, telegram_user_id=telegram_user_id)
    if state is not None and (state.awaiting is not None or state.draft is not None):
        state.awaiting = None
        state.draft = None
        state.updated_at = now()
        session.add(state)
        await session.flush()


async def pending_text(
    *, session: AsyncSession, settings: Settings, telegram_user_id: int | None
) -> StaffAwaiting | None:
    """Returns what a typed message from this person answers as staff, if anything.

    Only for someone who may do coordinator work now (checked in `bot.roles`): a state left by
    someone whose role was revoked is forgotten, and their text goes the usual way.
    """
    if telegram_user_id is None:
        return None
    wanted = await awaiting_of(session=session, telegram_user_id=telegram_user_id)
    if wanted is None:
        return None
    if not await roles.may(
        session=session,
        settings=settings,
        telegram_user_id=telegram_user_id,
        work=roles.COORDINATOR_WORK,
    ):
        await clear(session=session, telegram_user_id=telegram_user_id)
        return None
    return wanted


# ---------------------------------------------------------------- on her behalf


def may_pause(participant: Participant) -> bool:
    """Tells whether the team may pause her for a week (only while she is active)."""
    return participant.status == Lifecycle.active


def may_withdraw(participant: Participant) -> bool:
    """Tells whether the team may take her out of the study (not once she has left)."""
    return participant.status in (Lifecycle.invited, Lifecycle.active, Lifecycle.paused)


def may_message(participant: Participant) -> bool:
    """Tells whether the team may write to her (she is in the study and has a chat)."""
    return not participant.has_left and participant.chat_id is not None


async def pause_for(
    *, session: AsyncSession, participant: Participant, actor: str, reason: str
) -> datetime:
    """Pauses her check-ins for a week on her behalf (audited) and tells her how to resume."""
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}")
    if not may_pause(participant):
        raise lifecycle.LifecycleError(
            f"the team cannot pause someone who is {participant.status}"
        )
    until = lifecycle.pause_end(choice=TEAM_PAUSE, at=now())
    assert until is not None
    await lifecycle.pause(session=session, participant=participant, until=until)
    await record_audit(
        session=session,
        actor=actor,
        action="paused_by_team",
        subject=participant.pseudonym,
        detail=f"reason={reason}",
    )
    if participant.chat_id is not None:
        await enqueue(
            session,
            kind=CHANGE_KIND,
            chat_id=participant.chat_id,
            participant_id=participant.id,
            payload={"change": PAUSED},
        )
    return until


async def withdraw_for(
    *, session: AsyncSession, participant: Participant, actor: str, reason: str
) -> None:
    """Takes her out of the study on her behalf (audited) and tells her so, once."""
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}")
    if not may_withdraw(participant):
        raise lifecycle.LifecycleError(
            f"the team cannot withdraw someone who is {participant.status}"
        )
    chat_id = participant.chat_id
    await lifecycle.withdraw(
        session=session,
        participant=participant,
        actor=actor,
        action="withdrawn_by_team",
        detail=f"reason={reason}",
    )
    if chat_id is not None:
        # Queued after the withdrawal (which cancels what was queued): the sender sends nothing
        # to someone who has left except this kind (`bot.sender.AFTER_WITHDRAWAL_KINDS`).
        await enqueue(
            session,
            kind=CHANGE_KIND,
            chat_id=chat_id,
            participant_id=participant.id,
            payload={"change": WITHDRAWN},
        )


# ---------------------------------------------------------------- messages from the team


def refused_sentences(text: str, locale: str) -> list[Finding]:
    """Returns the sentences of a team message that advise a change to her medicine."""
    return scan(text, locale)


async def queue_message(
    *, session: AsyncSession, participant: Participant, actor: str, text: str
) -> OutgoingMessage:
    """Queues the team's message to her through the outbox; audits its length, never its text."""
    if not may_message(participant) or participant.chat_id is None:
        raise lifecycle.LifecycleError("she cannot receive messages")
    if refused_sentences(text, participant.locale):
        raise ValueError("the message advises a change to her medicine")
    row = await enqueue(
        session,
        kind=MESSAGE_KIND,
        chat_id=participant.chat_id,
        participant_id=participant.id,
        payload={"text": text},
    )
    await record_audit(
        session=session,
        actor=actor,
        action="message_sent",
        subject=participant.pseudonym,
        detail=f"chars={len(text)}",
    )
    return row


# ---------------------------------------------------------------- /alerts and /participant


@dataclass(frozen=True)
class AlertPage:
    """One page of active alerts, urgent first, oldest first."""

    rows: list[tuple[Alert, Participant]]
    page: int  # 0-based, within range
    pages: int
    total: int


async def alerts_page(
    *, session: AsyncSession, page: int, per_page: int = ALERTS_PER_PAGE
) -> AlertPage:
    """Returns a page of open and acknowledged alerts with their participants."""
    total = (
        await session.exec(
            select(func.count()).select_from(Alert).where(col(Alert.status).in_(alerts.ACTIVE))
        )
    ).one()
    pages = max(1, -(-int(total) // per_page))
    page = min(max(page, 0), pages - 1)
    result = await session.exec(
        select(Alert, Participant)
        .join(Participant, col(Participant.id) == col(Alert.participant_id))
        .where(col(Alert.status).in_(alerts.ACTIVE))
        .order_by(col(Alert.urgent).desc(), col(Alert.created_at), col(Alert.id))
        .offset(page * per_page)
        .limit(per_page)
    )
    return AlertPage(rows=list(result.all()), page=page, pages=pages, total=int(total))


async def find_participant(*, session: AsyncSession, key: str) -> Participant | None:
    """Returns the participant with this pseudonym, or else with this site study id."""
    key = key.strip()
    if not key:
        return None
    found = (await session.exec(select(Participant).where(Participant.pseudonym == key))).first()
    if found is not None:
        return found
    result = await session.exec(
        select(Participant)
        .where(func.lower(col(Participant.site_study_id)) == key.lower())
        .order_by(col(Participant.id).desc())
    )
    return result.first()


@dataclass(frozen=True)
class CheckInLine:
    """One recent check-in as the care team sees it: codes and numbers, never her note."""

    due_at: datetime
    status: str
    tablet: str | None
    worst_pain: str | None
    missed_reason: str | None


@dataclass(frozen=True)
class Overview:
    """One participant at a glance for the care team."""

    participant: Participant
    checkins: list[CheckInLine]
    alerts: list[Alert]
    questions: int


async def overview(*, session: AsyncSession, participant: Participant) -> Overview:
    """Gathers her recent check-ins, active alerts and how many questions she saved."""
    result = await session.exec(
        select(CheckIn)
        .where(CheckIn.participant_id == participant.id, col(CheckIn.due_at) <= now())
        .order_by(col(CheckIn.due_at).desc(), col(CheckIn.id).desc())
        .limit(RECENT_CHECKINS)
    )
    checkins = list(result.all())
    values: dict[tuple[int, str], str] = {}
    ids = [c.id for c in checkins if c.id is not None]
    if ids:
        answers = await session.exec(
            select(Answer).where(
                col(Answer.checkin_id).in_(ids),
                col(Answer.item_code).in_([TABLET_ITEM, PAIN_ITEM]),
            )
        )
        values = {(a.checkin_id, a.item_code): a.value for a in answers.all()}
    lines = [
        CheckInLine(
            due_at=c.due_at,
            status=str(c.status),
            tablet=values.get((c.id or 0, TABLET_ITEM)),
            worst_pain=values.get((c.id or 0, PAIN_ITEM)),
            missed_reason=str(c.missed_reason) if c.missed_reason else None,
        )
        for c in checkins
    ]
    active = await session.exec(
        select(Alert)
        .where(Alert.participant_id == participant.id, col(Alert.status).in_(alerts.ACTIVE))
        .order_by(col(Alert.urgent).desc(), col(Alert.created_at))
    )
    questions = (
        await session.exec(
            select(func.count())
            .select_from(SavedQuestion)
            .where(
                SavedQuestion.participant_id == participant.id,
                col(SavedQuestion.deleted_at).is_(None),
            )
        )
    ).one()
    return Overview(
        participant=participant,
        checkins=lines,
        alerts=list(active.all()),
        questions=int(questions),
    )


def age_of(at: datetime | None) -> timedelta:
    """Returns how long ago an instant was (zero for none or the future)."""
    if at is None:
        return timedelta(0)
    return max(now() - at, timedelta(0))
