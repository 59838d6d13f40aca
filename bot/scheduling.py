"""When check-ins are due: local times in IANA zones turned into UTC instants, and quiet hours.

A schedule is a wall-clock time ("HH:MM") on some weekdays in her zone. Due instants are
computed with `zoneinfo`, so daylight-saving days neither skip nor double a check-in: a time
that does not exist (spring forward) moves forward by the gap, a time that happens twice
(autumn) is taken at its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import clock
from bot.config import get_settings, parse_hhmm
from bot.content import questionnaire
from bot.models import CheckIn, CheckInOrigin, CheckInStatus, Participant, Schedule

ALL_WEEKDAYS = "0123456"  # Monday=0 ... Sunday=6


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

    due = next_due(local_time=local_time, weekdays=weekdays, tz=timezone, after=clock.now())
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
    return schedule


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
