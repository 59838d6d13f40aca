"""/settings: each set-up answer can be changed; zone, time and days move the next check-in."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bot.models import CheckIn, Lifecycle, OutboxState, Participant
from tests.conftest import PATIENT, Harness, make_harness
from tests.dispatch_helpers import move_to, outbox
from tests.factories import make_active_participant
from tests.onboarding_steps import (
    active_schedules,
    all_rows,
    onboard,
    participant,
    pending_checkins,
    reach_time_question,
)


async def onboarded(h: Harness) -> int:
    """Onboards her in the UK at 20:00 every day; returns her participant id."""
    await onboard(h, country="United Kingdom", time_label="20:00")
    p = await participant(h.db)
    assert p is not None and p.id is not None
    return p.id


async def next_due(h: Harness, pid: int) -> datetime:
    """Returns the due time of her only pending check-in."""
    [upcoming] = await pending_checkins(h.db, pid)
    return upcoming.due_at


async def test_settings_menu_shows_her_answers_and_an_item_per_button(harness: Harness) -> None:
    h = harness
    await onboarded(h)
    await h.command(PATIENT, "settings")
    menu = h.last(PATIENT)
    assert "Medicine: Letrozole (Femara)" in menu.text
    assert "Check-in time: 20:00" in menu.text and "Days: Every day" in menu.text
    assert [label for label, _ in menu.buttons()] == [
        "Medicine",
        "When I started",
        "Country and time zone",
        "Check-in time",
        "Days",
        "Nothing, thanks",
    ]
    assert len(menu.text) <= 4096


async def test_zone_change_moves_the_next_checkin(harness: Harness) -> None:
    h = harness
    pid = await onboarded(h)
    assert await next_due(h, pid) == datetime(2026, 1, 12, 20, 0, tzinfo=UTC)

    await h.command(PATIENT, "settings")
    await h.press(PATIENT, "Country and time zone")
    await h.press(PATIENT, "United States")
    p = await participant(h.db)
    assert p is not None and p.country == "GB"  # nothing changes until she picks the zone
    await h.press(PATIENT, "Eastern")

    p = await participant(h.db)
    assert p is not None
    assert (p.country, p.timezone) == ("US", "America/New_York")
    [schedule] = await active_schedules(h.db, pid)
    assert (schedule.timezone, schedule.local_time) == ("America/New_York", "20:00")
    # 20:00 in New York is 01:00 UTC the next morning; only one check-in is pending.
    assert await next_due(h, pid) == datetime(2026, 1, 13, 1, 0, tzinfo=UTC)
    assert "today at 20:00" in h.last(PATIENT).text
    assert len(await all_rows(h.db, CheckIn)) == 1


async def test_one_zone_country_change_moves_the_next_checkin_at_once(harness: Harness) -> None:
    h = harness
    pid = await onboarded(h)
    await h.command(PATIENT, "settings")
    await h.press(PATIENT, "Country and time zone")
    await h.press(PATIENT, "More countries ›")
    await h.press(PATIENT, "Germany")
    p = await participant(h.db)
    assert p is not None and (p.country, p.timezone) == ("DE", "Europe/Berlin")
    assert await next_due(h, pid) == datetime(2026, 1, 12, 19, 0, tzinfo=UTC)
    assert h.last(PATIENT).text.startswith("Saved. Your next check-in comes today at 20:00")


async def test_time_change_with_a_preset_moves_the_next_checkin(harness: Harness) -> None:
    h = harness
    pid = await onboarded(h)
    await h.command(PATIENT, "settings")
    await h.press(PATIENT, "Check-in time")
    await h.press(PATIENT, "08:00")
    assert await next_due(h, pid) == datetime(2026, 1, 13, 8, 0, tzinfo=UTC)
    assert "tomorrow at 08:00" in h.last(PATIENT).text


async def test_typed_time_change_moves_the_next_checkin(harness: Harness) -> None:
    h = harness
    pid = await onboarded(h)
    await h.command(PATIENT, "settings")
    await h.press(PATIENT, "Check-in time")
    await h.press(PATIENT, "Another time")
    await h.send(PATIENT, "quarter past nine")
    assert "7:30 pm or 19:30" in h.last(PATIENT).text
    p = await participant(h.db)
    assert p is not None and p.awaiting == "set:time"
    await h.send(PATIENT, "9:15 am")
    assert await next_due(h, pid) == datetime(2026, 1, 12, 9, 15, tzinfo=UTC)
    p = await participant(h.db)
    assert p is not None and p.awaiting is None


async def test_days_change_moves_the_next_checkin(harness: Harness) -> None:
    h = harness
    pid = await onboarded(h)
    await h.command(PATIENT, "settings")
    await h.press(PATIENT, "Days")
    await h.press(PATIENT, "Choose days")
    await h.press(PATIENT, "Thu")
    await h.press(PATIENT, "Sat")
    await h.press(PATIENT, "Done")
    [schedule] = await active_schedules(h.db, pid)
    assert schedule.weekdays == "35"
    assert await next_due(h, pid) == datetime(2026, 1, 15, 20, 0, tzinfo=UTC)
    assert "on Thursday at 20:00" in h.last(PATIENT).text


@pytest.mark.parametrize("answered", [False, True])
async def test_time_moved_later_after_todays_checkin_starts_tomorrow(
    harness: Harness, answered: bool
) -> None:
    h = harness
    await onboard(h, time_label="12:00")
    p = await participant(h.db)
    assert p is not None and p.id is not None
    move_to(datetime(2026, 1, 12, 12, 0, 5, tzinfo=UTC))
    await h.tick()
    assert h.last(PATIENT).text.startswith("Time for your check-in")
    if answered:
        await h.press(PATIENT, "Yes")
    move_to(datetime(2026, 1, 12, 13, 0, tzinfo=UTC))
    await h.command(PATIENT, "settings")
    await h.press(PATIENT, "Check-in time")
    await h.press(PATIENT, "18:00")
    assert h.last(PATIENT).text == (
        "Saved. You already had today's check-in, so your next one comes tomorrow at 18:00."
    )
    assert await next_due(h, p.id) == datetime(2026, 1, 13, 18, 0, tzinfo=UTC)
    # Nothing more today; the new time starts tomorrow.
    for at in (
        datetime(2026, 1, 12, 18, 0, 5, tzinfo=UTC),
        datetime(2026, 1, 13, 18, 0, 5, tzinfo=UTC),
    ):
        move_to(at)
        await h.tick()
    sent = await outbox(h.db, kind="checkin", state=OutboxState.sent)
    assert [row.sent_at.date() for row in sent if row.sent_at] == [
        date(2026, 1, 12),
        date(2026, 1, 13),
    ]


async def test_settings_questions_ask_about_a_change_in_their_own_words(
    harness: Harness,
) -> None:
    h = harness
    await onboarded(h)
    asked: list[str] = []
    for item in ("Medicine", "When I started", "Check-in time", "Days", "Country and time zone"):
        await h.command(PATIENT, "settings")
        await h.press(PATIENT, item)
        asked.append(h.last(PATIENT).text)
    assert asked == [
        "Which medicine do you take now?",
        "About when did you start taking it?",
        "What time would you like your check-in from now on?",
        "How often would you like a check-in from now on?",
        "Which country do you live in now? This sets your time zone and your emergency number.",
    ]
    await h.press(PATIENT, "United States")
    assert h.last(PATIENT).text == "Which time zone are you in now?"
    await h.command(PATIENT, "settings")
    await h.press(PATIENT, "Check-in time")
    await h.press(PATIENT, "Another time")
    assert h.last(PATIENT).text == "Please type the new time, for example 7:30 pm or 19:30."


async def test_settings_offer_the_default_time_first(tmp_path: Path) -> None:
    h = await make_harness(f"sqlite:///{tmp_path / 'default.db'}", default_checkin_time="07:15")
    try:
        await onboarded(h)
        await h.command(PATIENT, "settings")
        await h.press(PATIENT, "Check-in time")
        offered = [label for label, _ in h.last(PATIENT).buttons()]
        assert offered == ["07:15", "08:00", "09:00", "12:00", "18:00", "20:00", "Another time"]
        await h.press(PATIENT, "07:15")
        assert "tomorrow at 07:15" in h.last(PATIENT).text
    finally:
        await h.app.shutdown()
        await h.db.dispose()


async def test_settings_time_with_no_room_for_a_reminder_says_so(harness: Harness) -> None:
    h = harness
    await onboarded(h)
    await h.command(PATIENT, "settings")
    await h.press(PATIENT, "Check-in time")
    await h.press(PATIENT, "Another time")
    await h.send(PATIENT, "20:45")
    assert h.last(PATIENT).text == (
        "Saved. Your next check-in comes today at 20:45.\n\n"
        "Please note: I send no reminders from 21:00 to 08:00, "
        "so a check-in at this time will not get one."
    )
    await h.press(PATIENT, "Change something else")
    await h.press(PATIENT, "Check-in time")
    await h.press(PATIENT, "18:00")
    assert h.last(PATIENT).text.startswith("Saved. Your next check-in comes today at 18:00")
    assert "no reminders" not in h.last(PATIENT).text


async def test_medicine_change_is_stored_and_leaves_the_schedule_alone(harness: Harness) -> None:
    h = harness
    pid = await onboarded(h)
    [before] = await pending_checkins(h.db, pid)
    await h.command(PATIENT, "settings")
    await h.press(PATIENT, "Medicine")
    await h.press(PATIENT, "Anastrozole (Arimidex)")
    await h.press(PATIENT, "Change something else")
    assert "Medicine: Anastrozole (Arimidex)" in h.last(PATIENT).text
    await h.press(PATIENT, "When I started")
    await h.press(PATIENT, "Over a year ago")
    await h.press(PATIENT, "That's all")
    assert h.last(PATIENT).text == "All done. Your settings are saved."
    p = await participant(h.db)
    assert p is not None and (p.medicine, p.therapy_started) == ("anastrozole", "over_year")
    [after] = await pending_checkins(h.db, pid)
    assert after.id == before.id


async def test_settings_before_onboarding_guide_her_to_start(harness: Harness) -> None:
    h = harness
    await h.command(PATIENT, "settings")
    assert "send /start" in h.last(PATIENT).text
    await reach_time_question(h)
    await h.command(PATIENT, "settings")
    assert "send /start" in h.last(PATIENT).text
    await h.press(PATIENT, "set:med:other", message=h.last(PATIENT))
    p = await participant(h.db)
    assert p is not None and p.medicine == "letrozole"


async def test_unknown_settings_button_stores_nothing(harness: Harness) -> None:
    h = harness
    pid = await onboarded(h)
    await h.command(PATIENT, "settings")
    menu = h.last(PATIENT)
    for data in ("set:tz:US:9", "set:med:aspirin", "set:tm:9999", "set:agree:1.0"):
        await h.press(PATIENT, data, message=menu)
        assert h.texts(PATIENT)[-2].startswith("Sorry, I did not understand that button")
    p = await participant(h.db)
    assert p is not None and (p.timezone, p.medicine) == ("Europe/London", "letrozole")
    assert await next_due(h, pid) == datetime(2026, 1, 12, 20, 0, tzinfo=UTC)


async def test_settings_for_a_participant_made_elsewhere(harness: Harness) -> None:
    h = harness
    made = await make_active_participant(h.db, country="IE", timezone="Europe/Dublin")
    await h.command(PATIENT, "settings")
    assert "Country: Ireland" in h.last(PATIENT).text
    await h.press(PATIENT, "Check-in time")
    await h.press(PATIENT, "12:00")
    assert made.id is not None
    assert await next_due(h, made.id) == datetime(2026, 1, 12, 12, 0, tzinfo=UTC)
    async with h.db.session() as session:
        row = await session.get(Participant, made.id)
    assert row is not None and row.timezone == "Europe/Dublin"


async def test_settings_after_leaving_says_she_has_left(harness: Harness) -> None:
    h = harness
    made = await make_active_participant(h.db)
    async with h.db.session() as session:
        row = await session.get(Participant, made.id)
        assert row is not None
        row.status = Lifecycle.withdrawn
        session.add(row)
    await h.command(PATIENT, "settings")
    assert "left the study" in h.last(PATIENT).text
