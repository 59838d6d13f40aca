"""When check-ins are due: local times in IANA zones turned into UTC instants, and quiet hours.

A schedule is a wall-clock time ("HH:MM") on some weekdays in her zone. Due instants are
computed with `zoneinfo`, so daylight-saving days neither skip nor double a check-in: a time
that does not exist (spring forward) moves forward by the gap, a time that happens twice
(autumn) is taken at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import clock
from bot.config import get_settings, parse_hhmm
from bot.content import questionnaire
from bot.models import CheckIn, CheckInOrigin, CheckInStatus, Participant, Schedule

ALL_WEEKDAYS = "0123456"  # Monday=0 ... Sunday=6
# The automatic reminder comes this long before her quiet hours begin when the usual delay
# would run into them (an evening check-in), but never sooner than REMINDER_MIN_GAP after
# the check-in itself: a reminder on the heels of the question only nags.
REMINDER_BEFORE_QUIET = timedelta(minutes=15)
REMINDER_MIN_GAP = timedelta(minutes=30)


def parse_weekdays(weekdays: str) -> frozenset[int]:
    """Returns the weekday numbers (Monday=0) in a string such as '0246'."""
    days = frozenset(int(ch) for ch in weekdays if ch.isdigit())
    if not days or any(d > 6 for d in days):
        raise ValueError(f"weekdays must be digits 0-6 (Monday=0), got {weekdays!r}")
    return days


def normalise_weekdays(weekdays: str) -> str:
    """Returns weekdays as sorted unique digits, e.g. '6010' -> '016'."""
    return "".join(str(d) for d in sorted(parse_weekdays(weekdays)))


def local_instant(*, day: date, at: time, zone: ZoneInfo) -> datetime:
    """Returns the UTC instant of a local wall time on one day (gap: forward; repeat: first)."""
    # fold=0 makes zoneinfo use the offset in force *before* a transition: a skipped time
    # (02:30 on spring-forward) lands one gap later (03:30), a repeated one on its first pass.
    return datetime.combine(day, at).replace(tzinfo=zone, fold=0).astimezone(UTC)


def next_due(*, local_time: str, weekdays: str, tz: str, after: datetime) -> datetime:
    """Returns the first due instant (UTC) strictly after `after` for a local schedule."""
    zone = ZoneInfo(tz)
    at = parse_hhmm(local_time)
    days = parse_weekdays(weekdays)
    start = after.astimezone(zone).date() - timedelta(days=1)
    for offset in range(9):
        day = start + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        due = local_instant(day=day, at=at, zone=zone)
        if due > after:
            return due
    raise AssertionError("a weekly schedule always has an occurrence within 9 days")


def in_quiet_hours(*, at: datetime, tz: str, quiet: tuple[time, time]) -> bool:
    """Tells whether `at` falls inside her quiet hours (the window may wrap midnight)."""
    start, end = quiet
    if start == end:
        return False
    local = at.astimezone(ZoneInfo(tz)).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(*, at: datetime, tz: str, quiet: tuple[time, time]) -> datetime:
    """Returns when the quiet hours around `at` end (UTC); `at` itself when outside them."""
    if not in_quiet_hours(at=at, tz=tz, quiet=quiet):
        return at
    zone = ZoneInfo(tz)
    local_day = at.astimezone(zone).date()
    for offset in range(3):
        end = local_instant(day=local_day + timedelta(days=offset), at=quiet[1], zone=zone)
        if end > at:
            return end
    raise AssertionError("quiet hours always end within two days")


def quiet_hours_start(*, at: datetime, tz: str, quiet: tuple[time, time]) -> datetime:
    """Returns when her quiet hours next begin after `at` (UTC)."""
    zone = ZoneInfo(tz)
    local_day = at.astimezone(zone).date()
    for offset in range(3):
        start = local_instant(day=local_day + timedelta(days=offset), at=quiet[0], zone=zone)
        if start > at:
            return start
    raise AssertionError("quiet hours always begin within two days")


def reminder_time(
    *,
    sent_at: datetime,
    tz: str,
    quiet: tuple[time, time],
    delay: timedelta,
    closes_at: datetime,
) -> datetime | None:
    """Returns when a check-in sent at `sent_at` gets its automatic reminder, or None.

    The reminder comes after `delay`, or REMINDER_BEFORE_QUIET before her quiet hours begin if
    that is earlier, but at least REMINDER_MIN_GAP (or `delay`, if shorter) after the check-in.
    A check-in too close to her quiet hours gets none. One sent inside them (she chose that
    time) is reminded when they end, if its window is still open then.
    """
    at = sent_at + delay
    if quiet[0] != quiet[1]:
        if in_quiet_hours(at=sent_at, tz=tz, quiet=quiet):
            at = quiet_hours_end(at=at, tz=tz, quiet=quiet)
        else:
            begins = quiet_hours_start(at=sent_at, tz=tz, quiet=quiet)
            latest = begins - REMINDER_BEFORE_QUIET
            earliest = sent_at + min(delay, REMINDER_MIN_GAP)
            at = max(min(at, latest), earliest)
            if at >= begins:
                return None
    return at if at < closes_at else None


def reminder_fits(
    *, local_time: str, tz: str, quiet: tuple[time, time], delay: timedelta, window: timedelta
) -> bool:
    """Tells whether a check-in at this local time of day gets an automatic reminder."""
    due = next_due(local_time=local_time, weekdays=ALL_WEEKDAYS, tz=tz, after=clock.now())
    found = reminder_time(sent_at=due, tz=tz, quiet=quiet, delay=delay, closes_at=due + window)
    return found is not None


def participant_zone(
    participant: Participant, *, default: str, schedule: Schedule | None = None
) -> str:
    """Returns the IANA zone to use for her: her own, else her schedule's, else the default."""
    if participant.timezone:
        return participant.timezone
    if schedule is not None and schedule.timezone:
        return schedule.timezone
    return default


def new_checkin(
    *,
    participant_id: int,
    schedule_id: int | None,
    due_at: datetime,
    window_hours: int,
    origin: CheckInOrigin = CheckInOrigin.scheduled,
) -> CheckIn:
    """Builds (does not add) a CheckIn for the current questionnaire version."""
    q = questionnaire("daily_checkin")
    return CheckIn(
        participant_id=participant_id,
        schedule_id=schedule_id,
        origin=origin,
        questionnaire_id=q.id,
        questionnaire_version=q.version,
        due_at=due_at,
        window_closes_at=due_at + timedelta(hours=window_hours),
        status=CheckInStatus.scheduled,
    )


async def active_schedule(*, session: AsyncSession, participant_id: int) -> Schedule | None:
    """Returns her one active schedule, if any."""
    result = await session.exec(
        select(Schedule)
        .where(Schedule.participant_id == participant_id, col(Schedule.active).is_(True))
        .order_by(col(Schedule.id).desc())
    )
    return result.first()


async def pending_checkins(*, session: AsyncSession, participant_id: int) -> list[CheckIn]:
    """Returns her scheduled check-ins that are still in the future and not yet queued."""
    result = await session.exec(
        select(CheckIn).where(
            CheckIn.participant_id == participant_id,
            CheckIn.origin == CheckInOrigin.scheduled,
            CheckIn.status == CheckInStatus.scheduled,
            col(CheckIn.queued_at).is_(None),
            col(CheckIn.due_at) > clock.now(),
        )
    )
    return list(result.all())


async def days_already_asked(
    *, session: AsyncSession, participant_id: int, tz: str, since: datetime
) -> set[date]:
    """Returns her local days (in `tz`) since `since` with a scheduled check-in that went out
    (queued or sent) or that she answered."""
    result = await session.exec(
        select(CheckIn.due_at).where(
            CheckIn.participant_id == participant_id,
            CheckIn.origin == CheckInOrigin.scheduled,
            col(CheckIn.due_at) >= since,
            sa.or_(
                col(CheckIn.queued_at).is_not(None),
                col(CheckIn.sent_at).is_not(None),
                col(CheckIn.first_answer_at).is_not(None),
            ),
        )
    )
    zone = ZoneInfo(tz)
    return {due.astimezone(zone).date() for due in result.all()}


@dataclass(frozen=True)
class Planned:
    """Her saved schedule and her next check-in under it."""

    schedule: Schedule
    next_due: datetime
    # Her new time fell later on a day she had already been asked: it starts the next day.
    from_next_day: bool


async def set_schedule(
    *,
    session: AsyncSession,
    participant: Participant,
    local_time: str,
    weekdays: str,
    timezone: str,
    window_hours: int | None = None,
) -> Schedule:
    """Saves her one active schedule and replaces her next not-yet-sent check-in to match it."""
    planned = await save_schedule(
        session=session,
        participant=participant,
        local_time=local_time,
        weekdays=weekdays,
        timezone=timezone,
        window_hours=window_hours,
    )
    return planned.schedule


async def save_schedule(
    *,
    session: AsyncSession,
    participant: Participant,
    local_time: str,
    weekdays: str,
    timezone: str,
    window_hours: int | None = None,
) -> Planned:
    """Saves her one active schedule and plans its first check-in, at most one per local day.

    A time moved later on a day whose check-in already went out (or was answered) starts the
    next day, so she is never asked twice in one day about "yesterday's" tablet.
    """
    parse_hhmm(local_time)
    ZoneInfo(timezone)  # raises on an unknown zone before anything is stored
    weekdays = normalise_weekdays(weekdays)
    if participant.id is None:
        await session.flush()
    assert participant.id is not None
    schedule = await active_schedule(session=session, participant_id=participant.id)
    if schedule is None:
        schedule = Schedule(
            participant_id=participant.id, local_time=local_time, timezone=timezone
        )
    schedule.local_time = local_time
    schedule.weekdays = weekdays
    schedule.timezone = timezone
    schedule.active = True
    participant.timezone = timezone
    session.add(schedule)
    session.add(participant)
    await session.flush()
    assert schedule.id is not None

    at = clock.now()
    due = next_due(local_time=local_time, weekdays=weekdays, tz=timezone, after=at)
    asked = await days_already_asked(
        session=session, participant_id=participant.id, tz=timezone, since=at - timedelta(days=2)
    )
    first = due
    while due.astimezone(ZoneInfo(timezone)).date() in asked:
        due = next_due(local_time=local_time, weekdays=weekdays, tz=timezone, after=due)
    window = window_hours if window_hours is not None else get_settings().checkin_window_hours
    pending = await pending_checkins(session=session, participant_id=participant.id)
    keep = next((c for c in pending if c.schedule_id == schedule.id and c.due_at == due), None)
    for stale in pending:
        if stale is not keep:
            await session.delete(stale)
    # Deletes must reach the database before the insert, or the slot constraint could trip.
    await session.flush()
    if keep is None:
        session.add(
            new_checkin(
                participant_id=participant.id,
                schedule_id=schedule.id,
                due_at=due,
                window_hours=window,
            )
        )
        await session.flush()
    return Planned(schedule=schedule, next_due=due, from_next_day=due != first)


async def slot_taken(*, session: AsyncSession, schedule_id: int, due_at: datetime) -> bool:
    """Tells whether a check-in already exists for this schedule at this instant."""
    result = await session.exec(
        select(CheckIn.id).where(CheckIn.schedule_id == schedule_id, CheckIn.due_at == due_at)
    )
    return result.first() is not None


async def has_pending(*, session: AsyncSession, schedule_id: int) -> bool:
    """Tells whether the schedule already has a check-in waiting to be sent."""
    result = await session.exec(
        select(CheckIn.id).where(
            CheckIn.schedule_id == schedule_id,
            CheckIn.status == CheckInStatus.scheduled,
            col(CheckIn.queued_at).is_(None),
        )
    )
    return result.first() is not None
