"""Due times from local time and zone across daylight-saving changes; quiet hours; schedules."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot import clock
from bot.content import questionnaire
from bot.models import CheckInStatus
from bot.scheduling import (
    in_quiet_hours,
    next_due,
    quiet_hours_end,
    reminder_time,
    set_schedule,
)
from tests.conftest import PATIENT, Harness
from tests.dispatch_helpers import add_participant, checkins_of, reload

MADRID = "Europe/Madrid"
NEW_YORK = "America/New_York"
# 2026 daylight-saving days: spring forward, then fall back.
SPRING = {MADRID: datetime(2026, 3, 29), NEW_YORK: datetime(2026, 3, 8)}
AUTUMN = {MADRID: datetime(2026, 10, 25), NEW_YORK: datetime(2026, 11, 1)}
# The wall-clock hour that happens twice on the autumn day.
REPEATED = {MADRID: "02:30", NEW_YORK: "01:30"}
QUIET = (time(21, 0), time(8, 0))


def local(at: datetime, tz: str) -> datetime:
    """Returns the instant as naive local wall time."""
    return at.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def occurrences(local_time: str, tz: str, start: datetime, n: int) -> list[datetime]:
    """Returns the next n due instants after `start` (UTC)."""
    found, after = [], start
    for _ in range(n):
        after = next_due(local_time=local_time, weekdays="0123456", tz=tz, after=after)
        found.append(after)
    return found


@pytest.mark.parametrize("tz", [MADRID, NEW_YORK])
@pytest.mark.parametrize("change", [SPRING, AUTUMN])
def test_nine_oclock_arrives_at_nine_local_on_both_sides_of_the_change(
    tz: str, change: dict[str, datetime]
) -> None:
    day = change[tz]
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=3)
    dues = occurrences("09:00", tz, start, 6)
    assert [local(d, tz).time() for d in dues] == [time(9, 0)] * 6
    assert [local(d, tz).date() for d in dues] == [
        (day + timedelta(days=i - 3)).date() for i in range(6)
    ]
    # The UTC instant shifts by an hour across the change: proof the zone rules were applied.
    assert len({d.astimezone(UTC).time() for d in dues}) == 2


@pytest.mark.parametrize("tz", [MADRID, NEW_YORK])
def test_nonexistent_time_on_spring_forward_day_is_due_once_an_hour_later(tz: str) -> None:
    day = SPRING[tz]
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=2)
    dues = occurrences("02:30", tz, start, 4)
    local_times = [local(d, tz) for d in dues]
    on_the_day = [t for t in local_times if t.date() == day.date()]
    assert on_the_day == [day.replace(hour=3, minute=30)]
    assert [t.time() for t in local_times if t.date() != day.date()] == [time(2, 30)] * 3


@pytest.mark.parametrize("tz", [MADRID, NEW_YORK])
def test_repeated_time_on_autumn_day_is_due_once_at_the_first_occurrence(tz: str) -> None:
    day = AUTUMN[tz]
    hhmm = REPEATED[tz]
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=2)
    dues = occurrences(hhmm, tz, start, 4)
    on_the_day = [d for d in dues if local(d, tz).date() == day.date()]
    assert len(on_the_day) == 1
    zone = ZoneInfo(tz)
    first = datetime.combine(day.date(), time.fromisoformat(hhmm), zone).replace(fold=0)
    second = first.replace(fold=1)
    assert on_the_day[0] == first.astimezone(UTC)
    assert second.astimezone(UTC) - on_the_day[0] == timedelta(hours=1)
    # Still summer time at the first pass: the offset is the larger one.
    assert on_the_day[0].astimezone(zone).utcoffset() == first.utcoffset()


def test_next_due_is_strictly_after_and_honours_weekdays() -> None:
    monday_nine = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)
    assert next_due(
        local_time="09:00", weekdays="0123456", tz="Europe/London", after=monday_nine
    ) == monday_nine + timedelta(days=1)
    # Wednesday (2) and Friday (4) only.
    assert next_due(
        local_time="09:00", weekdays="24", tz="Europe/London", after=monday_nine
    ) == monday_nine + timedelta(days=2)
    with pytest.raises(ValueError):
        next_due(local_time="09:00", weekdays="", tz="Europe/London", after=monday_nine)


def test_quiet_hours_wrap_midnight_in_her_zone() -> None:
    tz = "Europe/London"
    assert in_quiet_hours(at=datetime(2026, 1, 12, 22, 0, tzinfo=UTC), tz=tz, quiet=QUIET)
    assert in_quiet_hours(at=datetime(2026, 1, 12, 7, 59, tzinfo=UTC), tz=tz, quiet=QUIET)
    assert not in_quiet_hours(at=datetime(2026, 1, 12, 8, 0, tzinfo=UTC), tz=tz, quiet=QUIET)
    assert not in_quiet_hours(at=datetime(2026, 1, 12, 20, 59, tzinfo=UTC), tz=tz, quiet=QUIET)
    # 14:00 UTC is 23:00 in Tokyo: quiet there, not in London.
    tokyo_late = datetime(2026, 1, 12, 14, 0, tzinfo=UTC)
    assert in_quiet_hours(at=tokyo_late, tz="Asia/Tokyo", quiet=QUIET)


def test_quiet_hours_end_is_the_next_local_morning() -> None:
    tz = NEW_YORK
    late = datetime(2026, 1, 13, 3, 0, tzinfo=UTC)  # 22:00 on Jan 12 in New York
    end = quiet_hours_end(at=late, tz=tz, quiet=QUIET)
    assert local(end, tz) == datetime(2026, 1, 13, 8, 0)
    early = datetime(2026, 1, 13, 11, 0, tzinfo=UTC)  # 06:00 on Jan 13
    assert local(quiet_hours_end(at=early, tz=tz, quiet=QUIET), tz) == datetime(2026, 1, 13, 8)
    noon = datetime(2026, 1, 13, 17, 0, tzinfo=UTC)
    assert quiet_hours_end(at=noon, tz=tz, quiet=QUIET) == noon


def test_quiet_hours_that_do_not_wrap() -> None:
    quiet = (time(13, 0), time(14, 0))
    assert in_quiet_hours(at=datetime(2026, 1, 12, 13, 30, tzinfo=UTC), tz="UTC", quiet=quiet)
    assert not in_quiet_hours(at=datetime(2026, 1, 12, 14, 0, tzinfo=UTC), tz="UTC", quiet=quiet)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("09:00", "11:00"),  # the usual delay fits
        ("19:00", "20:45"),  # just before quiet hours instead of 21:00
        ("20:15", "20:45"),  # exactly 30 minutes after
        ("20:20", "20:50"),  # at least 30 minutes after, still before 21:00
        ("20:30", None),  # no time fits before 21:00
        ("05:00", "08:00"),  # she chose a quiet-hours time: reminded when they end
        ("23:00", None),  # they end after her window closes
    ],
)
def test_reminder_comes_before_quiet_hours_but_not_on_the_heels_of_the_checkin(
    sent: str, expected: str | None
) -> None:
    # In New York, to show the rule works in her own zone (21:00 there is 02:00 UTC).
    day = datetime(2026, 1, 12)
    hour, minute = (int(part) for part in sent.split(":"))
    sent_at = datetime.combine(day, time(hour, minute), ZoneInfo(NEW_YORK)).astimezone(UTC)
    found = reminder_time(
        sent_at=sent_at,
        tz=NEW_YORK,
        quiet=QUIET,
        delay=timedelta(minutes=120),
        closes_at=sent_at + timedelta(hours=6),
    )
    assert (None if found is None else local(found, NEW_YORK).strftime("%H:%M")) == expected


async def test_first_checkin_is_the_next_occurrence_even_minutes_away(harness: Harness) -> None:
    # The clock says 09:00 UTC = 09:00 in London; she picks 09:05.
    p = await add_participant(harness.db, uid=PATIENT, local_time="09:05")
    [checkin] = await checkins_of(harness.db, p.id or 0)
    assert checkin.due_at == clock.now() + timedelta(minutes=5)
    assert checkin.status == CheckInStatus.scheduled
    q = questionnaire("daily_checkin")
    assert (checkin.questionnaire_id, checkin.questionnaire_version) == (q.id, q.version)
    assert checkin.window_closes_at == checkin.due_at + timedelta(hours=6)


async def test_changing_her_zone_moves_her_next_checkin(harness: Harness) -> None:
    p = await add_participant(harness.db, uid=PATIENT, local_time="09:00")
    [before] = await checkins_of(harness.db, p.id or 0)
    assert before.due_at == datetime(2026, 1, 13, 9, 0, tzinfo=UTC)  # 09:00 already passed
    async with harness.db.session() as session:
        participant = await session.get(type(p), p.id)
        assert participant is not None
        await set_schedule(
            session=session,
            participant=participant,
            local_time="09:00",
            weekdays="0123456",
            timezone=NEW_YORK,
        )
    [after] = await checkins_of(harness.db, p.id or 0)
    assert after.due_at == datetime(2026, 1, 12, 14, 0, tzinfo=UTC)  # 09:00 in New York today
    stored = await reload(harness.db, type(p), p.id)
    assert stored.timezone == NEW_YORK


async def test_setting_the_same_schedule_twice_keeps_one_pending_checkin(
    harness: Harness,
) -> None:
    p = await add_participant(harness.db, uid=PATIENT, local_time="18:00")
    [first] = await checkins_of(harness.db, p.id or 0)
    async with harness.db.session() as session:
        participant = await session.get(type(p), p.id)
        assert participant is not None
        await set_schedule(
            session=session,
            participant=participant,
            local_time="18:00",
            weekdays="0123456",
            timezone="Europe/London",
        )
    [again] = await checkins_of(harness.db, p.id or 0)
    assert again.id == first.id and again.due_at == first.due_at


async def test_a_new_time_replaces_the_pending_checkin(harness: Harness) -> None:
    p = await add_participant(harness.db, uid=PATIENT, local_time="18:00")
    async with harness.db.session() as session:
        participant = await session.get(type(p), p.id)
        assert participant is not None
        await set_schedule(
            session=session,
            participant=participant,
            local_time="10:15",
            weekdays="0123456",
            timezone="Europe/London",
        )
    pending = await checkins_of(harness.db, p.id or 0)
    assert [c.due_at for c in pending] == [datetime(2026, 1, 12, 10, 15, tzinfo=UTC)]
