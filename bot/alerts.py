"""Alerts for the care team: one per participant and kind while open, delivered, acted on, closed.

Rules elsewhere decide *that* an alert is raised (`content/rules/offers.yaml` through
`bot.offers`, the doctor-first path, free-text emergencies); this module keeps the rows and the
loop around them:

- **One alert per participant and kind while it is active** (open or acknowledged). A new
  trigger updates it (count, last time, new codes) instead of adding a row, and marks it for
  the care team only when it adds something new (a new red-flag code, a contact request, or it
  became urgent). A closed alert never reopens: the next trigger opens a new one.
- **Delivery** is the dispatcher's (`deliver_pending`): urgent alerts marked new go through the
  outbox and the one sender (at least once, see `bot.sender.AT_LEAST_ONCE`) to the coordinators'
  group, or else privately to every coordinator, within coverage hours when a team sets them.
  Unacknowledged urgent alerts are sent again at most twice, within coverage.
- **Actions** (`act`): Acknowledge -> acknowledged; Contacted -> acknowledged, with the action
  recorded; Resolved and Not actionable -> closed. Every action is a row of its own. The first
  press wins; a later one learns who acted.
- **The daily digest** (`queue_digests`): alerts not marked urgent reach each care-team chat as
  one summary a day at DIGEST_TIME in the team's zone, decided from the outbox (a `digest` row
  per chat carries the local date), so a restart never sends it twice. A contact request still
  not answered after its due-by is escalated then: at the top of the digest, and sent once more
  to the team as urgent (`escalate_overdue`, recorded as an `escalated` action).

Alerts carry codes and numbers only, never a word she typed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select, SelectOfScalar

from bot.clock import now
from bot.config import Settings, parse_hhmm
from bot.models import (
    Alert,
    AlertAction,
    AlertMessage,
    AlertStatus,
    Lifecycle,
    OutboxState,
    OutgoingMessage,
    Participant,
)
from bot.outbox import enqueue

ACTIVE = (AlertStatus.open, AlertStatus.acknowledged)
ALERT_KIND = "alert"  # outbox kind: one alert message to one care-team chat
ALERT_EDIT_KIND = "alert_edit"  # outbox kind: an update of a copy someone else pressed
CONTACT_FAILED_KIND = "contact_failed"  # outbox kind: tells her to call the team herself
DIGEST_KIND = "digest"  # outbox kind: one care-team chat's daily summary (payload: local date)
OVERDUE_ACTOR = "system:overdue"
ESCALATED = "escalated"  # action: an overdue contact request was sent to the team again
# Actions that record what the system did, not a decision on the alert: a press that comes
# too late is told about the decision, never about these.
INFO_ACTIONS = (ESCALATED, CONTACT_FAILED_KIND)
MAX_RESENDS = 2
RESEND_AFTER = timedelta(hours=2)
# Codes whose new values are news for the care team (a new red flag, a new rule).
NEWS_KEYS = ("rule", "sym", "kind")


class Action(StrEnum):
    """What a member of the care team can do with an alert."""

    acknowledge = "acknowledge"
    contacted = "contacted"
    resolved = "resolved"
    not_actionable = "not_actionable"


# ---------------------------------------------------------------- detail codes


def parse_detail(detail: str | None) -> dict[str, str]:
    """Reads `key=value;...` detail codes."""
    out: dict[str, str] = {}
    for part in (detail or "").split(";"):
        key, sep, value = part.partition("=")
        if sep and key:
            out[key] = value
    return out


def format_detail(codes: dict[str, str]) -> str:
    """Writes detail codes back as `key=value;...` (at most 500 characters)."""
    return ";".join(f"{k}={v}" for k, v in codes.items() if v)[:500]


def add_code(codes: dict[str, str], key: str, value: str) -> bool:
    """Adds a value to a `+`-joined code list; returns False when it was already there."""
    values = [v for v in codes.get(key, "").split("+") if v]
    if value in values:
        return False
    codes[key] = "+".join([*values, value])
    return True


# ---------------------------------------------------------------- raising


async def active_alert(*, session: AsyncSession, participant_id: int, kind: str) -> Alert | None:
    """Returns her alert of this kind that is still open or acknowledged, if any."""
    result = await session.exec(
        select(Alert)
        .where(
            Alert.participant_id == participant_id,
            Alert.kind == kind,
            col(Alert.status).in_(ACTIVE),
        )
        .order_by(col(Alert.created_at).desc(), col(Alert.id).desc())
    )
    return result.first()


async def upsert_alert(
    *,
    session: AsyncSession,
    participant: Participant,
    kind: str,
    urgent: bool,
    source: str | None = None,
    codes: Iterable[tuple[str, str]] = (),
    checkin_id: int | None = None,
) -> Alert:
    """Updates her active alert of this kind (count, codes) or opens a new one.

    Marks it for delivery when it is urgent and something is new: a new alert, a new code
    value (a new red flag or rule), or a digest line that became urgent.
    """
    pid = participant.id or 0
    at = now()
    alert = await active_alert(session=session, participant_id=pid, kind=kind)
    news = False
    if alert is None:
        found: dict[str, str] = {"n": "1"}
        if source:
            found["src"] = source
        alert = Alert(
            participant_id=pid, kind=kind, urgent=urgent, checkin_id=checkin_id, created_at=at
        )
        news = True
    else:
        found = parse_detail(alert.detail)
        if source:
            add_code(found, "src", source)
        found["n"] = str(int(found.get("n", "1") or "1") + 1)
        alert.count += 1
        news = urgent and not alert.urgent
        alert.urgent = alert.urgent or urgent
        alert.checkin_id = alert.checkin_id or checkin_id
    for key, value in codes:
        if key in NEWS_KEYS:
            news = add_code(found, key, value) or news
        else:
            found[key] = value
    alert.detail = format_detail(found)
    alert.last_triggered_at = at
    if news and alert.urgent:
        alert.notify_pending = True
    session.add(alert)
    await session.flush()
    return alert


def mark_new(alert: Alert) -> None:
    """Marks an alert for delivery (it became urgent, or she asked to be contacted)."""
    if alert.urgent and alert.status != AlertStatus.closed:
        alert.notify_pending = True


async def close_alerts(
    *, session: AsyncSession, participant_id: int, kinds: Iterable[str], actor: str, reason: str
) -> int:
    """Closes her active alerts of these kinds on the system's behalf (e.g. she is reachable)."""
    result = await session.exec(
        select(Alert).where(
            Alert.participant_id == participant_id,
            col(Alert.kind).in_(list(kinds)),
            col(Alert.status).in_(ACTIVE),
        )
    )
    closed = 0
    for alert in result.all():
        _close(alert, actor=actor, reason=reason, at=now())
        session.add(AlertAction(alert_id=alert.id or 0, actor=actor, action=reason, at=now()))
        session.add(alert)
        closed += 1
    return closed


def _close(alert: Alert, *, actor: str, reason: str, at: datetime) -> None:
    """Closes an alert with who and why."""
    alert.status = AlertStatus.closed
    alert.closed_at = at
    alert.closed_by = actor
    alert.closed_reason = reason
    alert.notify_pending = False


# ---------------------------------------------------------------- acting


@dataclass(frozen=True)
class ActResult:
    """What a press did: applied, or who got there first (their staff code and action)."""

    applied: bool
    alert: Alert | None
    by: str | None = None
    earlier: str | None = None


async def act(*, session: AsyncSession, alert_id: int, actor: str, action: Action) -> ActResult:
    """Applies one care-team action; the first press wins, a later one learns who acted."""
    alert = await session.get(Alert, alert_id, with_for_update=True)
    if alert is None:
        return ActResult(False, None)
    at = now()
    applies = alert.status != AlertStatus.closed and not (
        action in (Action.acknowledge, Action.contacted) and alert.status != AlertStatus.open
    )
    if action == Action.contacted and alert.status == AlertStatus.acknowledged:
        # Contacted after an acknowledgement is news, not a clash.
        applies = not await _done(session, alert_id, Action.contacted)
    if not applies:
        last = await session.exec(
            select(AlertAction)
            .where(AlertAction.alert_id == alert_id, col(AlertAction.action).not_in(INFO_ACTIONS))
            .order_by(col(AlertAction.at).desc(), col(AlertAction.id).desc())
        )
        previous = last.first()
        return ActResult(
            False,
            alert,
            by=previous.actor if previous else alert.closed_by or alert.acknowledged_by,
            earlier=previous.action if previous else None,
        )
    session.add(AlertAction(alert_id=alert_id, actor=actor, action=action, at=at))
    if action in (Action.acknowledge, Action.contacted):
        alert.status = AlertStatus.acknowledged
        alert.acknowledged_at = alert.acknowledged_at or at
        alert.acknowledged_by = alert.acknowledged_by or actor
        alert.notify_pending = False
    else:
        _close(alert, actor=actor, reason=action, at=at)
    session.add(alert)
    await session.flush()
    return ActResult(True, alert, by=actor, earlier=action)


async def _done(session: AsyncSession, alert_id: int, action: str) -> bool:
    """Tells whether this action was already recorded on the alert."""
    rows = await session.exec(
        select(AlertAction.id).where(
            AlertAction.alert_id == alert_id, AlertAction.action == action
        )
    )
    return rows.first() is not None


async def actions_of(*, session: AsyncSession, alert_id: int) -> list[AlertAction]:
    """Returns an alert's actions, oldest first."""
    rows = await session.exec(
        select(AlertAction)
        .where(AlertAction.alert_id == alert_id)
        .order_by(col(AlertAction.at), col(AlertAction.id))
    )
    return list(rows.all())


async def copies_of(*, session: AsyncSession, alert_id: int) -> list[AlertMessage]:
    """Returns every message that shows this alert to the care team."""
    rows = await session.exec(select(AlertMessage).where(AlertMessage.alert_id == alert_id))
    return list(rows.all())


# ---------------------------------------------------------------- coverage and due-by


def _zone(settings: Settings) -> ZoneInfo:
    """Returns the care team's time zone."""
    return ZoneInfo(settings.coverage_timezone or settings.default_timezone)


def in_coverage(settings: Settings, at: datetime) -> bool:
    """Tells whether the care team covers this instant (no coverage set: always)."""
    window = settings.coverage_window
    if window is None:
        return True
    local = at.astimezone(_zone(settings))
    start, end = window
    return local.weekday() in settings.coverage_weekdays and start <= local.time() < end


def next_coverage(settings: Settings, at: datetime) -> datetime:
    """Returns `at` if covered, else the start of the next covered hours."""
    if in_coverage(settings, at):
        return at
    window = settings.coverage_window
    assert window is not None
    zone = _zone(settings)
    local = at.astimezone(zone)
    for days in range(0, 8):
        day = (local + timedelta(days=days)).date()
        start = datetime.combine(day, window[0], tzinfo=zone)
        if day.weekday() in settings.coverage_weekdays and start > local:
            return start.astimezone(at.tzinfo)
    return at  # no covered day at all: never hold an alert back


def due_by(settings: Settings, at: datetime) -> datetime:
    """Returns the end of the working day `CONTACT_WITHIN_WORKING_DAYS` working days after `at`."""
    zone = _zone(settings)
    day = at.astimezone(zone).date()
    left = settings.contact_within_working_days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() in settings.coverage_weekdays:
            left -= 1
    end = settings.coverage_window[1] if settings.coverage_window else time(23, 59)
    return datetime.combine(day, end, tzinfo=zone).astimezone(at.tzinfo)


# ---------------------------------------------------------------- delivery (the dispatcher)


async def receivers(*, session: AsyncSession, settings: Settings) -> list[int]:
    """Returns the chats alerts go to: the coordinators' group, else each coordinator."""
    from bot.roles import coordinators

    if settings.coordinator_chat_id is not None:
        return [settings.coordinator_chat_id]
    return await coordinators(session=session, settings=settings)


async def _participant_deleted(session: AsyncSession, alert: Alert) -> bool:
    """Tells whether her data was deleted (her alerts are kept closed, never delivered)."""
    participant = await session.get(Participant, alert.participant_id)
    return participant is None or participant.status == Lifecycle.deleted


async def enqueue_alert(
    *, session: AsyncSession, settings: Settings, alert: Alert, reason: str
) -> int:
    """Queues one alert message per receiver; returns how many (0: nobody to tell)."""
    at = now()
    chats = await receivers(session=session, settings=settings)
    for chat_id in chats:
        await enqueue(
            session,
            kind=ALERT_KIND,
            chat_id=chat_id,
            payload={"alert_id": alert.id, "reason": reason},
            not_before=next_coverage(settings, at),
        )
    alert.last_notified_at = at
    alert.notify_pending = False
    session.add(alert)
    return len(chats)


async def pending_alert_ids(*, session: AsyncSession) -> list[int]:
    """Returns the alerts marked new for the care team."""
    rows = await session.exec(
        select(Alert.id).where(col(Alert.notify_pending).is_(True), col(Alert.status).in_(ACTIVE))
    )
    return [i for i in rows.all() if i is not None]


async def deliver_one(*, session: AsyncSession, settings: Settings, alert: Alert) -> bool:
    """Queues a pending alert for the care team; False when it stays pending or is dropped."""
    if not alert.notify_pending or alert.status not in ACTIVE:
        return False
    if await _participant_deleted(session, alert):
        alert.notify_pending = False
        session.add(alert)
        return False
    reason = "new" if alert.last_notified_at is None else "update"
    return await enqueue_alert(session=session, settings=settings, alert=alert, reason=reason) > 0


async def due_for_resend(*, session: AsyncSession, settings: Settings, at: datetime) -> list[int]:
    """Returns urgent open alerts nobody acknowledged, due a reminder to the team (in coverage)."""
    if not in_coverage(settings, at):
        return []
    rows = await session.exec(
        select(Alert.id).where(
            col(Alert.urgent).is_(True),
            Alert.status == AlertStatus.open,
            col(Alert.resent) < MAX_RESENDS,
            col(Alert.last_notified_at).is_not(None),
            col(Alert.last_notified_at) <= at - RESEND_AFTER,
        )
    )
    return [i for i in rows.all() if i is not None]


async def record_copy(*, session: AsyncSession, row: OutgoingMessage, message_id: int) -> None:
    """After an alert message went out: remember the copy and when it was first delivered."""
    from bot.outbox import payload_of

    alert_id = payload_of(row).get("alert_id")
    if not isinstance(alert_id, int):
        return
    alert = await session.get(Alert, alert_id)
    if alert is None:
        return
    session.add(
        AlertMessage(alert_id=alert_id, chat_id=row.chat_id, message_id=message_id, sent_at=now())
    )
    if alert.delivered_at is None:
        alert.delivered_at = now()
        session.add(alert)


async def contact_failed_everywhere(*, session: AsyncSession, alert: Alert) -> bool:
    """Tells whether every message of a contact request failed and she was not yet told."""
    rows = await session.exec(
        select(OutgoingMessage.state).where(
            OutgoingMessage.kind == ALERT_KIND,
            col(OutgoingMessage.payload).contains(f'"alert_id": {alert.id},'),
        )
    )
    states = list(rows.all())
    if not states or any(state != OutboxState.failed for state in states):
        return False
    told = await session.exec(
        select(AlertAction.id).where(
            AlertAction.alert_id == alert.id, AlertAction.action == "contact_failed"
        )
    )
    if told.first() is not None:
        return False
    session.add(
        AlertAction(alert_id=alert.id or 0, actor="system:sender", action="contact_failed")
    )
    return True


# ---------------------------------------------------------------- the daily digest


def digest_cutoff(settings: Settings, at: datetime) -> datetime | None:
    """Returns today's digest instant (DIGEST_TIME in the team's zone) once it has passed."""
    zone = _zone(settings)
    local = at.astimezone(zone)
    instant = datetime.combine(local.date(), parse_hhmm(settings.digest_time), tzinfo=zone)
    return instant.astimezone(at.tzinfo) if at >= instant else None


def digest_day(settings: Settings, cutoff: datetime) -> date:
    """Returns the team's local date of a digest instant."""
    return cutoff.astimezone(_zone(settings)).date()


def _action_exists(action: str) -> sa.Exists:
    """Returns an EXISTS clause: the alert of the outer query has this action recorded."""
    return (
        select(AlertAction.id)
        .where(col(AlertAction.alert_id) == col(Alert.id), AlertAction.action == action)
        .exists()
    )


def overdue_contacts(at: datetime) -> SelectOfScalar[Alert]:
    """Returns the query for contact requests past their due-by at `at` that nobody answered
    (no Contacted press, not closed), earliest due first."""
    return (
        select(Alert)
        .where(
            col(Alert.contact_requested).is_(True),
            col(Alert.status).in_(ACTIVE),
            col(Alert.due_by) < at,
            ~_action_exists(Action.contacted),
        )
        .order_by(col(Alert.due_by), col(Alert.id))
    )


def not_yet_escalated(at: datetime) -> SelectOfScalar[Alert]:
    """Returns the query for overdue contact requests not yet sent to the team again."""
    return overdue_contacts(at).where(~_action_exists(ESCALATED))


async def escalate_overdue(
    *, session: AsyncSession, settings: Settings, alert: Alert, at: datetime
) -> bool:
    """Sends an overdue contact request to the team once more, as urgent (once per alert)."""
    overdue = alert.contact_requested and alert.due_by is not None and alert.due_by < at
    if not overdue or alert.status not in ACTIVE or alert.id is None:
        return False
    if await _done(session, alert.id, ESCALATED) or await _done(
        session, alert.id, Action.contacted
    ):
        return False
    if await _participant_deleted(session, alert):
        return False
    if await enqueue_alert(session=session, settings=settings, alert=alert, reason="overdue") == 0:
        return False  # nobody to tell yet: the next tick tries again
    session.add(AlertAction(alert_id=alert.id, actor=OVERDUE_ACTOR, action=ESCALATED, at=now()))
    return True


def _digest_lines(cutoff: datetime) -> Select[Alert, Participant]:
    """Returns the query for the digest's lines: open alerts not marked urgent, raised by the
    cut-off (a later one waits for tomorrow's digest), of participants not deleted."""
    return (
        select(Alert, Participant)
        .join(Participant, col(Participant.id) == col(Alert.participant_id))
        .where(
            col(Alert.urgent).is_(False),
            Alert.status == AlertStatus.open,
            col(Alert.created_at) <= cutoff,
            Participant.status != Lifecycle.deleted,
        )
        .order_by(col(Alert.created_at), col(Alert.id))
    )


async def digest_alerts(
    *, session: AsyncSession, cutoff: datetime
) -> list[tuple[Alert, Participant]]:
    """Returns the digest's lines with their participants, oldest first."""
    return list((await session.exec(_digest_lines(cutoff))).all())


async def overdue_alerts(
    *, session: AsyncSession, cutoff: datetime
) -> list[tuple[Alert, Participant]]:
    """Returns the overdue contact requests with their participants (deleted ones left out)."""
    found: list[tuple[Alert, Participant]] = []
    for alert in (await session.exec(overdue_contacts(cutoff))).all():
        participant = await session.get(Participant, alert.participant_id)
        if participant is not None and participant.status != Lifecycle.deleted:
            found.append((alert, participant))
    return found


async def digest_sent(*, session: AsyncSession, chat_id: int, day: date) -> bool:
    """Tells whether this chat's digest for this local day was queued already (in any state)."""
    rows = await session.exec(
        select(OutgoingMessage.id)
        .where(
            OutgoingMessage.kind == DIGEST_KIND,
            OutgoingMessage.chat_id == chat_id,
            col(OutgoingMessage.payload).contains(f'"date": "{day.isoformat()}"'),
        )
        .limit(1)
    )
    return rows.first() is not None


async def _has_news(session: AsyncSession, cutoff: datetime) -> bool:
    """Tells whether a digest would say anything: a line, or an overdue contact request."""
    line = await session.exec(_digest_lines(cutoff).limit(1))
    if line.first() is not None:
        return True
    return bool(await overdue_alerts(session=session, cutoff=cutoff))


async def queue_digests(*, session: AsyncSession, settings: Settings, cutoff: datetime) -> int:
    """Queues today's digest for each care-team chat that has not had it; returns how many.

    Nothing is queued when there is nothing to report; the rows themselves say which chats had
    today's digest, so a restart (or a second dispatcher) never sends one twice.
    """
    day = digest_day(settings, cutoff)
    chats = [
        chat_id
        for chat_id in await receivers(session=session, settings=settings)
        if not await digest_sent(session=session, chat_id=chat_id, day=day)
    ]
    if not chats or not await _has_news(session, cutoff):
        return 0
    for chat_id in chats:
        await enqueue(
            session,
            kind=DIGEST_KIND,
            chat_id=chat_id,
            payload={"date": day.isoformat(), "cutoff": cutoff.isoformat()},
        )
    return len(chats)
