"""Joining, consent and first-time set-up, driven through the real handlers."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot import clock
from bot.content import consent_text
from bot.countries import OTHER_CODE, all_countries, country, emergency_number, other_country
from bot.enrollment import CODE_ALPHABET, CODE_LENGTH, create_invite
from bot.logging_setup import CAPPED_LOGGERS
from bot.models import (
    CheckIn,
    Cohort,
    Consent,
    Lifecycle,
    OutgoingMessage,
    Participant,
    Schedule,
)
from bot.outbox import enqueue
from bot.participants import parse_local_time
from bot.safety_scan import lock_screen_words
from tests.conftest import PATIENT, START, Harness, make_harness
from tests.factories import make_active_participant
from tests.onboarding_steps import (
    active_schedules,
    all_rows,
    consents,
    invite_by_code,
    onboard,
    participant,
    pending_checkins,
    reach_time_question,
)

# The shared lock-screen words, and for check-ins also what would tell a passer-by she is on
# a medicine.
LOCK_SCREEN_WORDS = (*lock_screen_words("en"), "tablet", "medicine")


@pytest.fixture
async def closed(tmp_path: Path) -> AsyncIterator[Harness]:
    """A bot with OPEN_ENROLLMENT=false: only invite links let people join."""
    h = await make_harness(f"sqlite:///{tmp_path / 'closed.db'}", open_enrollment=False)
    yield h
    await h.app.shutdown()
    await h.db.dispose()


async def new_invite(h: Harness, **kwargs: Any) -> str:
    """Creates an invite to cohort A and returns its code."""
    async with h.db.session() as session:
        invite = await create_invite(session=session, cohort_code="A", **kwargs)
        return invite.code


def assert_within_telegram_limits(h: Harness) -> None:
    """Checks every message and button the chat got fits Telegram's limits."""
    for message in h.fake.messages:
        assert 0 < len(message.text) <= 4096
        for _, data in message.buttons():
            assert len(data.encode()) <= 64
    for answered in h.fake.answered_callbacks:
        assert len(answered.get("text") or "") <= 200


# ---------------------------------------------------------------- the happy path


async def test_new_user_with_invite_completes_onboarding_with_buttons_only(
    closed: Harness,
) -> None:
    h = closed
    code = await new_invite(h, site_study_id="S-001")
    await onboard(h, code=code, country="United Kingdom", time_label="20:00")

    texts = h.texts(PATIENT)
    assert "not a doctor" in texts[0] and "999" in texts[0]
    assert "(Version 1.0)" in texts[1]
    assert texts[-1].startswith("All set")
    assert "today at 20:00" in texts[-1]

    p = await participant(h.db)
    assert p is not None and p.id is not None
    assert p.status == Lifecycle.active
    assert p.onboarded_at == START
    assert p.awaiting is None
    assert (p.medicine, p.therapy_started) == ("letrozole", "1_6_months")
    assert (p.country, p.timezone) == ("GB", "Europe/London")
    assert p.consent_version == consent_text().version
    assert p.site_study_id == "S-001"
    cohorts = await all_rows(h.db, Cohort)
    assert p.cohort_id == cohorts[0].id
    [consent] = await consents(h.db)
    assert (consent.version, consent.accepted_at) == (consent_text().version, START)

    [schedule] = await active_schedules(h.db, p.id)
    assert (schedule.local_time, schedule.weekdays, schedule.timezone) == (
        "20:00",
        "0123456",
        "Europe/London",
    )
    # No draft is left behind.
    assert len(await all_rows(h.db, Schedule)) == 1
    [first] = await pending_checkins(h.db, p.id)
    assert first.due_at == datetime(2026, 1, 12, 20, 0, tzinfo=UTC)
    assert (await invite_by_code(h.db, code)).uses == 1
    assert_within_telegram_limits(h)


async def test_first_checkin_is_the_next_occurrence_even_minutes_away(harness: Harness) -> None:
    h = harness
    await reach_time_question(h, country="More countries ›")
    await h.press(PATIENT, "Spain")
    await h.press(PATIENT, "Mainland and Balearics")
    await h.press(PATIENT, "Another time")
    await h.send(PATIENT, "10:05")  # 09:05 UTC: five minutes from now in Madrid
    await h.press(PATIENT, "Every day")
    await h.press(PATIENT, "Yes, that's right")

    p = await participant(h.db)
    assert p is not None and p.id is not None
    assert p.timezone == "Europe/Madrid"
    [first] = await pending_checkins(h.db, p.id)
    assert first.due_at == START + timedelta(minutes=5)
    assert "today at 10:05" in h.texts(PATIENT)[-1]
    assert "112" in h.texts(PATIENT)[-1]  # Spain's emergency number


@pytest.mark.parametrize(
    ("today", "label", "zone", "due"),
    [
        # 08:00 EST in January.
        (START, "Eastern", "America/New_York", datetime(2026, 1, 12, 13, 0, tzinfo=UTC)),
        # Arizona keeps standard time all year: 08:00 is 15:00 UTC in July, when Mountain
        # time (Denver) is an hour ahead of it.
        (
            datetime(2026, 7, 6, 6, 0, tzinfo=UTC),
            "Arizona",
            "America/Phoenix",
            datetime(2026, 7, 6, 15, 0, tzinfo=UTC),
        ),
    ],
)
async def test_country_with_several_zones_asks_for_the_zone(
    harness: Harness, today: datetime, label: str, zone: str, due: datetime
) -> None:
    h = harness
    clock.freeze(today)
    await reach_time_question(h, country="United States")
    assert h.last(PATIENT).text == "Which time zone are you in?"
    labels = [label for label, _ in h.last(PATIENT).buttons()]
    assert labels == ["Eastern", "Central", "Mountain", "Pacific", "Alaska", "Hawaii", "Arizona"]
    await h.press(PATIENT, label)
    await h.press(PATIENT, "08:00")
    await h.press(PATIENT, "Every day")
    await h.press(PATIENT, "Yes, that's right")

    p = await participant(h.db)
    assert p is not None and p.id is not None
    assert (p.country, p.timezone) == ("US", zone)
    [first] = await pending_checkins(h.db, p.id)
    assert first.due_at == due
    assert "911" in h.texts(PATIENT)[-1]


async def test_country_with_one_zone_chooses_it_without_asking(harness: Harness) -> None:
    h = harness
    await reach_time_question(h, country="United Kingdom")
    assert h.last(PATIENT).text.startswith("What time of day")
    p = await participant(h.db)
    assert p is not None and p.timezone == "Europe/London"


async def test_another_country_offers_offset_zones_and_the_study_default(
    harness: Harness,
) -> None:
    h = harness
    await reach_time_question(h, country="Another country")
    labels = [label for label, _ in h.last(PATIENT).buttons()]
    assert "UTC+9 · Tokyo, Seoul" in labels
    assert labels[-1] == "UTC · The study's time zone"
    await h.press(PATIENT, "UTC · The study's time zone")
    await h.press(PATIENT, "18:00")
    await h.press(PATIENT, "Every day")
    await h.press(PATIENT, "Yes, that's right")
    p = await participant(h.db)
    assert p is not None
    assert (p.country, p.timezone) == (OTHER_CODE, "Europe/London")
    # Her emergency number falls back to the study default.
    assert "call 999" in h.texts(PATIENT)[-1]


async def test_country_pages_turn_in_place(harness: Harness) -> None:
    h = harness
    await reach_time_question(h, country="More countries ›")
    page_two = h.last(PATIENT)
    assert "Spain" in [label for label, _ in page_two.buttons()]
    assert "United Kingdom" not in [label for label, _ in page_two.buttons()]
    await h.press(PATIENT, "‹ Back")
    assert h.last(PATIENT).message_id == page_two.message_id
    assert "United Kingdom" in [label for label, _ in h.last(PATIENT).buttons()]


async def test_chosen_weekdays_are_toggled_and_stored(harness: Harness) -> None:
    h = harness
    await reach_time_question(h)
    await h.press(PATIENT, "09:00")
    await h.press(PATIENT, "Choose days")
    await h.press(PATIENT, "Done")  # nothing chosen yet
    assert h.fake.answered_callbacks[-1]["text"] == "Please choose at least one day."
    await h.press(PATIENT, "Mon")
    await h.press(PATIENT, "Fri")
    await h.press(PATIENT, "✓ Mon")  # off again
    await h.press(PATIENT, "Wed")
    await h.press(PATIENT, "Done")
    assert "Days: Wed, Fri" in h.last(PATIENT).text
    await h.press(PATIENT, "Yes, that's right")

    p = await participant(h.db)
    assert p is not None and p.id is not None
    [schedule] = await active_schedules(h.db, p.id)
    assert schedule.weekdays == "24"
    [first] = await pending_checkins(h.db, p.id)
    assert first.due_at == datetime(2026, 1, 14, 9, 0, tzinfo=UTC)  # Wednesday


async def test_summary_lets_her_change_an_answer_before_confirming(harness: Harness) -> None:
    h = harness
    await reach_time_question(h)
    await h.press(PATIENT, "20:00")
    await h.press(PATIENT, "Every day")
    await h.press(PATIENT, "Change something")
    await h.press(PATIENT, "Medicine")
    await h.press(PATIENT, "Exemestane (Aromasin)")
    assert "Medicine: Exemestane (Aromasin)" in h.last(PATIENT).text
    await h.press(PATIENT, "Change something")
    await h.press(PATIENT, "Country and time zone")
    await h.press(PATIENT, "Canada")
    await h.press(PATIENT, "Pacific")
    summary = h.last(PATIENT).text
    assert "Country: Canada" in summary and "Time zone: Pacific" in summary
    await h.press(PATIENT, "Yes, that's right")
    p = await participant(h.db)
    assert p is not None
    assert (p.medicine, p.timezone, p.status) == (
        "exemestane",
        "America/Vancouver",
        Lifecycle.active,
    )


# ---------------------------------------------------------------- typed times


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("7pm", "19:00"),
        ("19.30", "19:30"),
        ("7:30 pm", "19:30"),
        ("19:30", "19:30"),
        ("7.15 a.m.", "07:15"),
        ("12 am", "00:00"),
        ("12pm", "12:00"),
        ("1930", "19:30"),
        ("21", "21:00"),
    ],
)
async def test_typed_time_variants_are_understood(
    harness: Harness, typed: str, stored: str
) -> None:
    h = harness
    await reach_time_question(h)
    await h.press(PATIENT, "Another time")
    await h.send(PATIENT, typed)
    assert h.last(PATIENT).text == "How often would you like a check-in?"
    await h.press(PATIENT, "Every day")
    assert f"Check-in time: {stored}" in h.last(PATIENT).text


async def test_time_typed_over_the_preset_buttons_is_taken(harness: Harness) -> None:
    h = harness
    await reach_time_question(h)
    await h.send(PATIENT, "6:45 pm")
    await h.press(PATIENT, "Every day")
    assert "Check-in time: 18:45" in h.last(PATIENT).text


NO_REMINDER_NOTE = (
    "Good to know: I send no reminders from 21:00 to 08:00, "
    "so a check-in at this time will not get one."
)


@pytest.mark.parametrize(
    ("default", "offered"),
    [
        ("07:15", ["07:15", "08:00", "09:00", "12:00", "18:00", "20:00"]),
        ("20:00", ["20:00", "08:00", "09:00", "12:00", "18:00"]),  # no second 20:00
        ("20:45", ["20:45", "08:00", "09:00", "12:00", "18:00", "20:00"]),
    ],
)
async def test_the_default_checkin_time_is_offered_first(
    tmp_path: Path, default: str, offered: list[str]
) -> None:
    h = await make_harness(f"sqlite:///{tmp_path / 'default.db'}", default_checkin_time=default)
    try:
        await reach_time_question(h)
        question = h.last(PATIENT)
        assert question.text == "What time of day would you like your check-in?"
        assert [label for label, _ in question.buttons()] == [*offered, "Another time"]
        await h.press(PATIENT, default)
        # 20:45 leaves no room for a reminder before quiet hours (21:00): she is told.
        assert (NO_REMINDER_NOTE in h.texts(PATIENT)) == (default == "20:45")
        await h.press(PATIENT, "Every day")
        assert f"Check-in time: {default}" in h.last(PATIENT).text
    finally:
        await h.app.shutdown()
        await h.db.dispose()


async def test_a_time_with_no_room_for_a_reminder_is_noted_when_she_picks_it(
    harness: Harness,
) -> None:
    h = harness
    await reach_time_question(h)
    await h.press(PATIENT, "20:00")  # reminded at 20:45, before quiet hours
    await h.press(PATIENT, "Every day")
    assert NO_REMINDER_NOTE not in h.texts(PATIENT)
    await h.press(PATIENT, "Change something")
    await h.press(PATIENT, "Check-in time")
    await h.press(PATIENT, "Another time")
    await h.send(PATIENT, "8:40 pm")
    texts = h.texts(PATIENT)
    assert texts[-2] == NO_REMINDER_NOTE
    assert "Check-in time: 20:40" in texts[-1] and texts[-1].endswith("Is this right?")


@pytest.mark.parametrize("typed", ["after dinner", "7", "25:00", "7:75", "13pm", ""])
def test_unclear_times_are_not_guessed(typed: str) -> None:
    assert parse_local_time(typed) is None


async def test_unclear_typed_time_gets_an_example_and_keeps_the_question_open(
    harness: Harness,
) -> None:
    h = harness
    await reach_time_question(h)
    await h.press(PATIENT, "Another time")
    await h.send(PATIENT, "after dinner")
    assert "7:30 pm or 19:30" in h.last(PATIENT).text
    p = await participant(h.db)
    assert p is not None and p.awaiting == "onb:time"
    assert await all_rows(h.db, Schedule) == []
    await h.send(PATIENT, "8:15 pm")
    await h.press(PATIENT, "Every day")
    assert "Check-in time: 20:15" in h.last(PATIENT).text


async def test_text_typed_at_a_button_question_re_asks_it(harness: Harness) -> None:
    h = harness
    await h.command(PATIENT, "start")
    await h.press(PATIENT, "I agree")
    await h.send(PATIENT, "letrozole I think")
    texts = h.texts(PATIENT)
    assert texts[-2] == "Please tap one of the buttons below."
    assert texts[-1] == "Thank you! First, which medicine are you taking?"
    p = await participant(h.db)
    assert p is not None and p.medicine is None


async def test_onboarding_logs_carry_no_typed_text_or_names(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h = harness
    await reach_time_question(h)
    await h.press(PATIENT, "Another time")
    await h.send(PATIENT, "around teatime please")
    await h.send(PATIENT, "7:45 pm")
    await h.press(PATIENT, "Every day")
    await h.press(PATIENT, "Yes, that's right")
    # Libraries that dump SQL parameters are capped by bot.logging_setup; the rest must never
    # carry what she typed, her name or her username, even at DEBUG.
    ours = [
        r.getMessage()
        for r in caplog.records
        if r.name.split(".")[0] not in CAPPED_LOGGERS
        or r.levelno >= CAPPED_LOGGERS[r.name.split(".")[0]]
    ]
    assert caplog.records
    for secret in ("teatime", "7:45 pm", "Ana", "ana_test", "123456:TEST"):
        assert not any(secret in line for line in ours), secret


# ---------------------------------------------------------------- consent


async def test_consent_refused_stores_nothing_but_the_invited_row(closed: Harness) -> None:
    h = closed
    code = await new_invite(h)
    await h.command(PATIENT, "start", code)
    await h.press(PATIENT, "Not now")

    assert "send /start" in h.last(PATIENT).text
    [p] = await all_rows(h.db, Participant)
    assert p.status == Lifecycle.invited
    assert p.consent_version is None
    assert (p.medicine, p.therapy_started, p.country, p.timezone, p.onboarded_at) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert p.telegram_user_id == PATIENT and p.chat_id == PATIENT
    assert p.pseudonym.startswith("p_") and p.invite_id is not None
    # No names or usernames anywhere in her row.
    assert not {"Ana", "ana_test"} & {str(v) for v in p.model_dump().values()}
    assert await consents(h.db) == []
    assert await all_rows(h.db, Schedule) == []
    assert await all_rows(h.db, CheckIn) == []


async def test_she_can_come_back_after_not_now_and_agree(closed: Harness) -> None:
    h = closed
    code = await new_invite(h)
    await h.command(PATIENT, "start", code)
    await h.press(PATIENT, "Not now")
    await h.command(PATIENT, "start")  # no code needed: she already has her place
    assert "(Version 1.0)" in h.last(PATIENT).text
    await h.press(PATIENT, "I agree")
    assert h.last(PATIENT).text == "Thank you! First, which medicine are you taking?"
    assert len(await consents(h.db)) == 1
    assert (await invite_by_code(h.db, code)).uses == 1


async def test_agree_on_an_outdated_consent_text_shows_the_current_one(
    harness: Harness,
) -> None:
    h = harness
    await h.command(PATIENT, "start")
    await h.press(PATIENT, "onb:agree:0.1", message=h.last(PATIENT))
    assert "(Version 1.0)" in h.last(PATIENT).text
    assert await consents(h.db) == []


async def test_stale_not_now_after_agreeing_changes_nothing(harness: Harness) -> None:
    h = harness
    await h.command(PATIENT, "start")
    consent_message = h.last(PATIENT)
    await h.press(PATIENT, "I agree")
    await h.press(PATIENT, "onb:later", message=consent_message)
    assert h.last(PATIENT).text == "Thank you! First, which medicine are you taking?"
    p = await participant(h.db)
    assert p is not None and p.consent_version == consent_text().version
    assert len(await consents(h.db)) == 1


# ---------------------------------------------------------------- enrollment and invites


async def test_closed_enrollment_without_code_explains_how_to_join(closed: Harness) -> None:
    h = closed
    await h.command(PATIENT, "start")
    assert "ask your study team for your personal link" in h.last(PATIENT).text
    assert await all_rows(h.db, Participant) == []


async def test_expired_invite_gets_a_clear_reply(closed: Harness) -> None:
    h = closed
    code = await new_invite(h, expires_at=START + timedelta(days=1))
    clock.advance(timedelta(days=2))
    await h.command(PATIENT, "start", code)
    assert "expired" in h.last(PATIENT).text and "new personal link" in h.last(PATIENT).text
    assert await all_rows(h.db, Participant) == []
    assert (await invite_by_code(h.db, code)).uses == 0


async def test_used_up_invite_gets_a_clear_reply(closed: Harness) -> None:
    h = closed
    code = await new_invite(h, max_uses=1)
    await h.command(PATIENT, "start", code)
    other = PATIENT + 1
    await h.command(other, "start", code)
    assert "already been used" in h.last(other).text
    assert "new personal link" in h.last(other).text
    assert len(await all_rows(h.db, Participant)) == 1
    assert (await invite_by_code(h.db, code)).uses == 1


@pytest.mark.parametrize("code", ["NoSuchCode123456", "x" * 65, "bad*code"])
async def test_unknown_or_malformed_invite_gets_a_clear_reply(closed: Harness, code: str) -> None:
    h = closed
    await h.command(PATIENT, "start", code)
    assert "does not work" in h.last(PATIENT).text
    assert await all_rows(h.db, Participant) == []


async def test_invite_with_several_uses_admits_several_people(closed: Harness) -> None:
    h = closed
    code = await new_invite(h, max_uses=2)
    await h.command(PATIENT, "start", code)
    await h.command(PATIENT + 1, "start", code)
    assert len(await all_rows(h.db, Participant)) == 2
    assert (await invite_by_code(h.db, code)).uses == 2


async def test_invite_codes_are_long_random_and_url_safe(harness: Harness) -> None:
    codes = {await new_invite(harness) for _ in range(20)}
    assert len(codes) == 20
    for code in codes:
        assert len(code) == CODE_LENGTH
        assert set(code) <= set(CODE_ALPHABET)
        assert re.fullmatch(r"[A-Za-z0-9_-]{12,64}", code)


async def test_start_in_a_group_says_it_works_in_private(harness: Harness) -> None:
    h = harness
    group = -100123
    await h.process(h.updates.command(PATIENT, "start", chat_id=group, chat_type="group"))
    assert "private chat" in h.last(group).text
    assert await all_rows(h.db, Participant) == []


# ---------------------------------------------------------------- replays and stale buttons


async def test_replayed_start_and_button_press_change_nothing(closed: Harness) -> None:
    h = closed
    code = await new_invite(h, max_uses=5)
    start = h.updates.command(PATIENT, "start", code)
    await h.process(start)
    await h.process(start)  # Telegram delivered it twice
    assert len(h.texts(PATIENT)) == 2  # one welcome, one consent text

    await h.press(PATIENT, "I agree")
    message, data = h.find_button(PATIENT, "Letrozole (Femara)")
    press = h.updates.callback(PATIENT, data, message)
    await h.process(press)
    sent = len(h.texts(PATIENT))
    await h.process(press)
    assert len(h.texts(PATIENT)) == sent

    # A second, separate /start neither counts the invite again nor starts over.
    await h.command(PATIENT, "start", code)
    assert h.texts(PATIENT)[-2] == "Welcome back! Let's carry on where we left off."
    assert h.texts(PATIENT)[-1] == "Roughly when did you start taking it?"
    assert len(await all_rows(h.db, Participant)) == 1
    assert len(await consents(h.db)) == 1
    assert (await invite_by_code(h.db, code)).uses == 1


async def test_stale_button_from_an_earlier_step_still_works(harness: Harness) -> None:
    h = harness
    await reach_time_question(h)  # medicine, start and country answered
    medicine_question = h.fake.chat(PATIENT)[2]
    await h.press(PATIENT, "onb:med:exemestane", message=medicine_question)
    p = await participant(h.db)
    assert p is not None and p.medicine == "exemestane"
    # She is taken back to where she was: the time question.
    assert h.last(PATIENT).text == "What time of day would you like your check-in?"


async def test_unknown_button_value_gets_a_clear_reply_and_stores_nothing(
    harness: Harness,
) -> None:
    h = harness
    await h.command(PATIENT, "start")
    await h.press(PATIENT, "I agree")
    question = h.last(PATIENT)
    for data in ("onb:med:aspirin", "onb:tz:XX:0", "onb:tm:2575", "onb:dd:789", "onb:zzz"):
        await h.press(PATIENT, data, message=question)
        assert h.texts(PATIENT)[-2].startswith("Sorry, I did not understand that button")
    p = await participant(h.db)
    assert p is not None
    assert (p.medicine, p.country, p.timezone) == (None, None, None)
    assert await all_rows(h.db, Schedule) == []


async def test_buttons_after_onboarding_do_not_change_anything(harness: Harness) -> None:
    h = harness
    await onboard(h)
    p = await participant(h.db)
    assert p is not None and p.id is not None
    before = await pending_checkins(h.db, p.id)
    medicine_question = h.fake.chat(PATIENT)[2]
    await h.press(PATIENT, "onb:med:exemestane", message=medicine_question)
    await h.press(PATIENT, "onb:ok", message=medicine_question)
    assert "send /settings" in h.last(PATIENT).text
    after = await participant(h.db)
    assert after is not None and after.medicine == "letrozole"
    assert [c.id for c in await pending_checkins(h.db, p.id)] == [c.id for c in before]


async def test_button_pressed_by_someone_else_acts_on_her_own_record(harness: Harness) -> None:
    h = harness
    await h.command(PATIENT, "start")
    await h.press(PATIENT, "I agree")
    stranger = PATIENT + 7
    message, data = h.find_button(PATIENT, "Letrozole (Femara)")
    await h.process(h.updates.callback(stranger, data, message))
    p = await participant(h.db)
    assert p is not None and p.medicine is None
    assert await participant(h.db, stranger) is None


# ---------------------------------------------------------------- coming back


async def test_active_participant_start_gets_welcome_back(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db, country="US", timezone="America/Chicago")
    await h.command(PATIENT, "start")
    text = h.last(PATIENT).text
    assert text.startswith("Welcome back!") and "/settings" in text and "911" in text
    assert len(h.texts(PATIENT)) == 1


async def test_withdrawn_participant_start_does_not_onboard_again(harness: Harness) -> None:
    h = harness
    made = await make_active_participant(h.db)
    async with h.db.session() as session:
        row = await session.get(Participant, made.id)
        assert row is not None
        row.status = Lifecycle.withdrawn
        session.add(row)
    await h.command(PATIENT, "start")
    assert "left the study" in h.last(PATIENT).text


# ---------------------------------------------------------------- re-consent


async def make_needing_reconsent(h: Harness) -> int:
    """Makes an active participant who agreed to an older consent version."""
    made = await make_active_participant(h.db)
    async with h.db.session() as session:
        row = await session.get(Participant, made.id)
        assert row is not None and row.id is not None
        row.consent_version = "0.9"
        session.add(row)
        for consent in (await session.exec(select(Consent))).all():
            consent.version = "0.9"
            session.add(consent)
        return row.id


async def test_reconsent_message_has_a_neutral_first_line_and_the_new_text(
    harness: Harness,
) -> None:
    h = harness
    pid = await make_needing_reconsent(h)
    render = h.app.bot_data.renderers["reconsent"]
    async with h.db.session() as session:
        row = await enqueue(session, kind="reconsent", chat_id=PATIENT, participant_id=pid)
        p = await session.get(Participant, pid)
        rendered = await render(session, row, p)
    assert not rendered.skip
    first_line = rendered.text.splitlines()[0].lower()
    assert not any(word in first_line for word in LOCK_SCREEN_WORDS)
    assert consent_text().text in rendered.text
    assert len(rendered.text) <= 4096
    assert rendered.buttons is not None
    assert [label for label, _ in rendered.buttons[0] + rendered.buttons[1]] == [
        "I agree",
        "Not now",
    ]


async def test_reconsent_is_not_rendered_once_she_has_agreed(harness: Harness) -> None:
    h = harness
    made = await make_active_participant(h.db)
    async with h.db.session() as session:
        row = await enqueue(session, kind="reconsent", chat_id=PATIENT, participant_id=made.id)
        rendered = await h.app.bot_data.renderers["reconsent"](session, row, made)
    assert rendered.skip


async def test_agreeing_to_a_new_consent_version_releases_held_checkins(
    harness: Harness,
) -> None:
    h = harness
    pid = await make_needing_reconsent(h)
    async with h.db.session() as session:
        p = await session.get(Participant, pid)
        assert p is not None
        from bot.scheduling import set_schedule

        await set_schedule(
            session=session,
            participant=p,
            local_time="09:05",
            weekdays="0123456",
            timezone="Europe/London",
        )
    clock.advance(timedelta(minutes=6))
    await h.tick()  # the check-in is due, but held: she is asked to consent again
    reconsent = h.last(PATIENT)
    assert reconsent.text.startswith("A short note from your study chat.")
    assert len(h.fake.chat(PATIENT)) == 1
    p = await participant(h.db)
    assert p is not None and p.awaiting == "reconsent"

    await h.send(PATIENT, "what is this?")
    assert "tap I agree or Not now" in h.last(PATIENT).text

    await h.press(PATIENT, "I agree", message=reconsent)
    assert h.last(PATIENT).text == "Thank you! Your check-ins will carry on as before."
    p = await participant(h.db)
    assert p is not None
    assert (p.consent_version, p.awaiting) == (consent_text().version, None)
    assert sorted(c.version for c in await consents(h.db)) == ["0.9", consent_text().version]

    await h.tick()  # held check-in goes out now
    outbox = await all_rows(h.db, OutgoingMessage)
    assert any(row.kind == "checkin" for row in outbox)
    assert len(h.fake.chat(PATIENT)) > 3
    assert_within_telegram_limits(h)


async def test_active_participant_with_old_consent_sees_it_again_on_start(
    harness: Harness,
) -> None:
    h = harness
    await make_needing_reconsent(h)
    await h.command(PATIENT, "start")
    assert "(Version 1.0)" in h.last(PATIENT).text
    await h.press(PATIENT, "Not now")
    assert "on hold" in h.last(PATIENT).text
    p = await participant(h.db)
    assert p is not None and p.consent_version == "0.9"


# ---------------------------------------------------------------- content


def test_countries_cover_the_study_sites_with_one_to_eight_zones() -> None:
    codes = {c.code for c in all_countries()}
    required = {"GB", "IE", "ES", "FR", "DE", "IT", "PT", "NL", "US", "CA", "MX", "AR"}
    assert required | {"AU", "NZ", "IN", "ZA"} <= codes
    for found in all_countries():
        assert 1 <= len(found.zones) <= 8
        assert found.emergency
    us = country("US")
    assert us is not None
    assert [z.label for z in us.zones] == [
        "Eastern",
        "Central",
        "Mountain",
        "Pacific",
        "Alaska",
        "Hawaii",
        "Arizona",
    ]
    assert other_country().zones


def test_emergency_number_falls_back_to_the_study_default() -> None:
    assert emergency_number(country_code="AU", default="999") == "000"
    assert emergency_number(country_code=OTHER_CODE, default="999") == "999"
    assert emergency_number(country_code=None, default="112") == "112"


async def test_consent_stores_only_after_agree(harness: Harness) -> None:
    h = harness
    await h.command(PATIENT, "start")
    async with h.db.session() as session:
        assert (await session.exec(select(Consent))).all() == []
    await h.press(PATIENT, "I agree")
    assert len(await consents(h.db)) == 1


@pytest.mark.postgres
async def test_invite_onboarding_and_settings_work_on_postgresql(pg_url: str) -> None:
    h = await make_harness(pg_url, open_enrollment=False)
    try:
        code = await new_invite(h, max_uses=1)
        await onboard(h, code=code, country="United Kingdom", time_label="20:00")
        await h.command(PATIENT + 1, "start", code)
        assert "already been used" in h.last(PATIENT + 1).text

        await h.command(PATIENT, "settings")
        await h.press(PATIENT, "Country and time zone")
        await h.press(PATIENT, "United States")
        await h.press(PATIENT, "Pacific")
        p = await participant(h.db)
        assert p is not None and p.id is not None
        assert (p.status, p.timezone) == (Lifecycle.active, "America/Los_Angeles")
        [upcoming] = await pending_checkins(h.db, p.id)
        assert upcoming.due_at == datetime(2026, 1, 13, 4, 0, tzinfo=UTC)  # 20:00 PST
        assert (await invite_by_code(h.db, code)).uses == 1
        assert_within_telegram_limits(h)
    finally:
        await h.app.shutdown()
        await h.db.dispose()
