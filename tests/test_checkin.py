"""The daily check-in: one-tap answers, branching, corrections, replays, closing, renderers."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from bot import clock
from bot.checkins import SNOOZE_MINUTES
from bot.content import questionnaire
from bot.db import Database
from bot.devtools.fake_telegram import FakeMessage
from bot.logging_setup import CAPPED_LOGGERS
from bot.models import (
    Alert,
    Answer,
    AnswerHistory,
    CheckIn,
    CheckInOrigin,
    CheckInStatus,
    Lifecycle,
    OutgoingMessage,
    Participant,
)
from bot.safety_scan import lock_screen_words
from handlers.common import msgs
from handlers.views import checkin as checkin_handlers
from tests.conftest import PATIENT, START, Harness
from tests.factories import make_active_participant

OTHER = 5_000_000_002
# The shared lock-screen words, and for check-ins also what would tell a passer-by she is on
# a medicine.
LOCK_SCREEN_WORDS = (*lock_screen_words("en"), "tablet", "medicine")


# ---------------------------------------------------------------- helpers


async def start_checkin(h: Harness, uid: int = PATIENT) -> Participant:
    """Makes an active participant and asks for a check-in with /checkin."""
    participant = await make_active_participant(h.db, telegram_user_id=uid)
    await h.command(uid, "checkin")
    return participant


async def receive_scheduled_checkin(h: Harness) -> Participant:
    """Makes her a 09:05 check-in (London = UTC in January) and lets the dispatcher send it."""
    participant = await make_active_participant(h.db, checkin_time="09:05")
    await h.tick()  # plans it
    clock.advance(timedelta(minutes=5))
    await h.tick()  # sends it
    return participant


async def the_checkin(h: Harness) -> CheckIn:
    """Returns the only check-in in the database."""
    async with h.db.session() as session:
        rows = (await session.exec(select(CheckIn))).all()
    assert len(rows) == 1
    return rows[0]


async def stored(h: Harness) -> dict[str, Answer]:
    """Returns every stored answer keyed by item code."""
    async with h.db.session() as session:
        rows = (await session.exec(select(Answer))).all()
    return {a.item_code: a for a in rows}


async def history(h: Harness) -> list[AnswerHistory]:
    """Returns every answer-history row, oldest first."""
    async with h.db.session() as session:
        rows = await session.exec(select(AnswerHistory).order_by(col(AnswerHistory.id)))
        return list(rows.all())


def question_message(h: Harness, wording_start: str, uid: int = PATIENT) -> FakeMessage:
    """Returns the newest message that shows a question (found by its wording)."""
    for message in reversed(h.fake.chat(uid)):
        if wording_start in message.text and message.buttons():
            return message
    raise AssertionError(f"no question {wording_start!r} in the chat")


async def type_text(h: Harness, uid: int, text: str) -> None:
    """She types text (the fallback routes it to the check-in)."""
    await h.process(h.updates.message(uid, text))


def assert_chat_within_limits(h: Harness, uid: int = PATIENT) -> None:
    """Every message fits Telegram's 4,096 characters and every button's data 64 bytes."""
    for message in h.fake.chat(uid):
        assert len(message.text) <= 4096
        for _, data in message.buttons():
            assert len(data.encode()) <= 64


async def answer_all(h: Harness, *, pain: str = "5") -> None:
    """Answers a whole check-in with one tap each and skips the note."""
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, pain)
    await h.press(PATIENT, "Under 30 minutes")
    if pain != "0":
        await h.press(PATIENT, "3", message=question_message(h, "get in the way"))
    await h.press(PATIENT, "None")
    await h.press(PATIENT, "Skip")


# ---------------------------------------------------------------- the whole flow


async def test_full_checkin_with_one_tap_answers_is_stored_and_closed_with_a_summary(
    harness: Harness,
) -> None:
    h = harness
    await start_checkin(h)
    first = h.last(PATIENT)
    assert "Did you take your tablet yesterday?" in first.text
    assert [label for label, _ in first.buttons()] == [
        "Yes",
        "No, I missed it",
        "I have stopped taking it",
    ]

    await h.press(PATIENT, "Yes")
    # The answered message is edited in place: her choice ticked, buttons kept for corrections.
    assert "Your answer: Yes" in first.text
    assert ("✓ Yes", f"ci:{(await the_checkin(h)).id}:took_med:yes") in first.buttons()
    pain = h.last(PATIENT)
    assert "worst joint pain" in pain.text
    assert "0 = no pain, 10 = worst you can imagine" in pain.text
    assert [[label for label, _ in row] for row in pain.button_rows()] == [
        ["0", "1", "2", "3", "4", "5"],
        ["6", "7", "8", "9", "10"],
    ]

    await h.press(PATIENT, "7")
    assert "Your answer: 7 out of 10" in pain.text
    await h.press(PATIENT, "Longer")
    await h.press(PATIENT, "4", message=question_message(h, "get in the way"))
    symptoms = h.last(PATIENT)
    assert "Anything new since last time?" in symptoms.text
    assert symptoms.buttons()[0][0] == "None"
    await h.press(PATIENT, "A swollen or red joint")
    await h.press(PATIENT, "I had a fall")
    assert "✓ A swollen or red joint" in [label for label, _ in symptoms.buttons()]
    await h.press(PATIENT, "Done")
    await h.press(PATIENT, "Skip")

    # Tailored offers (tests/test_offers.py) may follow the summary.
    summary = next(t for t in h.texts(PATIENT) if "Here is what you told me" in t)
    assert "Tablet yesterday: Yes" in summary
    assert "Worst joint pain: 7 out of 10" in summary
    assert "Morning stiffness: Longer" in summary
    assert "Pain got in the way: 4 out of 10" in summary
    assert "New since last time: A swollen or red joint, I had a fall" in summary
    assert "Note: No note" in summary
    # The red-flag offer before the note gave the care-team advice; the summary does not repeat it.
    assert sum(msgs().get("offers.red_flag") in text for text in h.texts(PATIENT)) == 1
    assert msgs().get("checkin.summary_new") not in summary

    checkin = await the_checkin(h)
    assert checkin.status == CheckInStatus.completed
    assert checkin.origin == CheckInOrigin.on_demand
    assert checkin.closed_at == START
    assert checkin.first_answer_at == START
    assert checkin.questionnaire_version == questionnaire().version
    values = {code: a.value for code, a in (await stored(h)).items()}
    assert values == {
        "took_med": "yes",
        "worst_pain": "7",
        "stiffness": "over_30",
        "interference": "4",
        "new_symptoms": "swelling,fall",
        "note": "",
    }
    assert all(a.update_id for a in (await stored(h)).values())
    assert_chat_within_limits(h)


async def test_first_answer_moves_the_checkin_from_sent_to_partial(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    assert (await the_checkin(h)).status == CheckInStatus.sent
    clock.advance(timedelta(minutes=3))
    await h.press(PATIENT, "Yes")
    checkin = await the_checkin(h)
    assert checkin.status == CheckInStatus.partial
    assert checkin.first_answer_at == START + timedelta(minutes=3)
    assert checkin.closed_at is None


async def test_no_pain_skips_the_interference_question(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await answer_all(h, pain="0")
    assert not any("get in the way" in text for text in h.texts(PATIENT))
    answers = await stored(h)
    assert "interference" not in answers
    assert answers["worst_pain"].value == "0"
    assert (await the_checkin(h)).status == CheckInStatus.completed


async def test_pain_corrected_from_zero_brings_the_interference_question_back(
    harness: Harness,
) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "0")
    pain = question_message(h, "worst joint pain")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "6", message=pain)
    # The question that now applies is asked; the check-in cannot close without it.
    assert "get in the way" in h.last(PATIENT).text
    # She answers the symptoms question that was already on screen; the note waits its turn.
    await h.press(PATIENT, "None")
    assert "get in the way" in h.last(PATIENT).text
    await h.press(PATIENT, "2", message=question_message(h, "get in the way"))
    assert "Anything else you want to note?" in h.last(PATIENT).text
    # Pain 6 brings one tailored offer, as soon as every question is answered.
    assert "Some things have helped other women" in h.texts(PATIENT)[-2]
    assert (await the_checkin(h)).status == CheckInStatus.partial
    await h.press(PATIENT, "Skip")
    assert (await the_checkin(h)).status == CheckInStatus.completed
    assert "Here is what you told me" in h.texts(PATIENT)[-1]


# ---------------------------------------------------------------- late taps and corrections


async def test_late_tap_on_an_earlier_question_is_stored_against_that_question(
    harness: Harness,
) -> None:
    h = harness
    await start_checkin(h)
    took_med = h.last(PATIENT)
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "4")
    sent_before = len(h.texts(PATIENT))
    # She scrolls up while the stiffness question waits, and taps a different first answer.
    await h.press(PATIENT, "No, I missed it", message=took_med)
    answers = await stored(h)
    assert answers["took_med"].value == "missed"
    assert "stiffness" not in answers
    assert len(h.texts(PATIENT)) == sent_before  # the next question is not sent again
    assert "Your answer: No, I missed it" in took_med.text
    assert "How long were your joints stiff" in h.last(PATIENT).text


async def test_correction_keeps_the_latest_value_and_a_history_row(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    pain = h.last(PATIENT)
    await h.press(PATIENT, "3")
    clock.advance(timedelta(minutes=2))
    await h.press(PATIENT, "8", message=pain)

    answer = (await stored(h))["worst_pain"]
    assert answer.value == "8"
    assert answer.first_value == "3"
    assert answer.first_answered_at == START
    assert answer.answered_at == START + timedelta(minutes=2)
    assert answer.corrections == 1
    rows = await history(h)
    assert [(r.old_value, r.old_answered_at) for r in rows] == [("3", START)]
    assert rows[0].update_id is not None
    assert "Your answer: 8 out of 10" in pain.text
    assert ("✓ 8", pain.buttons()[8][1]) == pain.buttons()[8]


async def test_same_press_twice_changes_nothing(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    took_med = h.last(PATIENT)
    await h.press(PATIENT, "Yes")
    texts_after_first = list(h.texts(PATIENT))
    await h.press(PATIENT, "✓ Yes", message=took_med)
    assert h.texts(PATIENT) == texts_after_first
    answer = (await stored(h))["took_med"]
    assert answer.corrections == 0
    assert await history(h) == []
    # Both presses were answered, so her button never spins.
    assert len(h.fake.answered_callbacks) == 2


async def test_replayed_update_changes_nothing(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    message, data = h.find_button(PATIENT, "Yes")
    await h.process(h.updates.callback(PATIENT, data, message, update_id=777))
    sent = len(h.texts(PATIENT))
    await h.process(h.updates.callback(PATIENT, data, message, update_id=777))
    assert len(h.texts(PATIENT)) == sent
    assert len(await stored(h)) == 1
    assert (await stored(h))["took_med"].update_id == 777


async def test_press_from_another_user_is_refused_and_nothing_is_stored(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await make_active_participant(h.db, telegram_user_id=OTHER)
    message, data = h.find_button(PATIENT, "Yes")
    await h.process(h.updates.callback(OTHER, data, message))
    assert await stored(h) == {}
    assert h.fake.answered_callbacks[-1].get("text") == "This button is not for you."
    assert "Your answer" not in message.text


async def test_press_on_a_closed_checkin_gets_a_kind_reply(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    took_med = h.last(PATIENT)
    await answer_all(h)
    await h.press(PATIENT, "No, I missed it", message=took_med)
    assert "This check-in has closed" in h.last(PATIENT).text
    assert "/checkin" in h.last(PATIENT).text
    assert (await stored(h))["took_med"].value == "yes"
    assert len(h.fake.answered_callbacks) == 7


async def test_press_after_the_window_closed_is_refused(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    clock.advance(timedelta(hours=h.settings.checkin_window_hours, minutes=1))
    await h.press(PATIENT, "Yes")
    assert "This check-in has closed" in h.last(PATIENT).text
    assert await stored(h) == {}


async def test_unknown_value_in_button_data_is_not_stored(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    checkin = await the_checkin(h)
    message = h.last(PATIENT)
    for data in (f"ci:{checkin.id}:took_med:maybe", f"ci:{checkin.id}:nope:1", "ci:x:y"):
        await h.process(h.updates.callback(PATIENT, data, message))
    assert await stored(h) == {}
    assert len(h.fake.answered_callbacks) == 3


# ---------------------------------------------------------------- stopping, multi-select, notes


async def test_i_have_stopped_is_stored_and_answered_doctor_first(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "I have stopped taking it")
    doctor_first = h.last(PATIENT).text
    # The doctor-first path (tests/test_doctor_first.py) comes before the next question.
    assert "Have you talked with your doctor about this?" in doctor_first
    lowered = doctor_first.lower()
    assert "that's fine" not in lowered and "that is fine" not in lowered
    assert "will contact you" not in lowered
    assert (await stored(h))["took_med"].value == "stopped"
    # Once that path is done, the check-in carries on with the next question.
    await h.press(PATIENT, "Not yet")
    await h.press(PATIENT, "Joint pain")
    assert "worst joint pain" in h.last(PATIENT).text


async def test_none_clears_ticked_boxes_and_a_box_clears_none(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "2")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "1", message=question_message(h, "get in the way"))
    symptoms = h.last(PATIENT)
    await h.press(PATIENT, "New bone pain")
    assert "new_symptoms" not in await stored(h)  # ticking is not yet an answer
    await h.press(PATIENT, "None")
    assert (await stored(h))["new_symptoms"].value == "none"
    labels = [label for label, _ in symptoms.buttons()]
    assert "✓ None" in labels and "New bone pain" in labels
    assert "Anything else you want to note?" in h.last(PATIENT).text

    # Correcting: a ticked box replaces None once she taps Done.
    await h.press(PATIENT, "A finger that catches or locks", message=symptoms)
    labels = [label for label, _ in symptoms.buttons()]
    assert "None" in labels and "✓ A finger that catches or locks" in labels
    await h.press(PATIENT, "Done", message=symptoms)
    answer = (await stored(h))["new_symptoms"]
    assert answer.value == "locking"
    assert answer.first_value == "none"
    assert [r.old_value for r in await history(h)] == ["none"]
    assert not any(code.endswith("#draft") for code in await stored(h))


async def test_double_tap_on_a_box_ticks_it_once(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "0")
    await h.press(PATIENT, "Not stiff")
    symptoms = h.last(PATIENT)
    _, data = h.find_button(PATIENT, "I had a fall")
    stale = FakeMessage(**{**symptoms.__dict__})  # the message as it was before the redraw
    await h.process(h.updates.callback(PATIENT, data, stale))
    await h.process(h.updates.callback(PATIENT, data, stale))
    assert "✓ I had a fall" in [label for label, _ in symptoms.buttons()]
    await h.press(PATIENT, "Done")
    assert (await stored(h))["new_symptoms"].value == "fall"


async def test_done_with_nothing_ticked_asks_her_to_choose(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "0")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "Done")
    assert h.fake.answered_callbacks[-1].get("text") == "Tap the ones that apply, or tap None."
    assert "new_symptoms" not in await stored(h)


async def test_typed_note_is_stored_and_the_summary_closes_the_checkin(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "0")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "None")
    async with h.db.session() as session:
        participant = (await session.exec(select(Participant))).one()
    assert participant.awaiting == f"note:{(await the_checkin(h)).id}"

    note = "My left knee felt warm after gardening"
    await type_text(h, PATIENT, note)
    assert (await stored(h))["note"].value == note
    assert "Note: Added" in h.last(PATIENT).text
    assert (await the_checkin(h)).status == CheckInStatus.completed
    async with h.db.session() as session:
        participant = (await session.exec(select(Participant))).one()
    assert participant.awaiting is None
    # Libraries that dump SQL parameters are capped by bot.logging_setup; our own code and
    # everything else must never carry what she typed, even at DEBUG.
    ours = [
        r.getMessage()
        for r in caplog.records
        if r.name.split(".")[0] not in CAPPED_LOGGERS
        or r.levelno >= CAPPED_LOGGERS[r.name.split(".")[0]]
    ]
    assert caplog.records and not any("gardening" in line for line in ours)


async def test_skipped_note_is_stored_as_empty(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await answer_all(h)
    note_question = question_message(h, "Anything else you want to note?")
    assert "Your answer: No note" in note_question.text
    assert (await stored(h))["note"].value == ""


async def test_overlong_note_is_refused_with_a_way_on(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "0")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "None")
    await type_text(h, PATIENT, "x" * 2500)
    assert "note" not in await stored(h)
    assert "keep it under 2,000" in h.last(PATIENT).text
    assert [label for label, _ in h.last(PATIENT).buttons()] == ["Skip"]


async def test_note_after_the_checkin_closed_is_not_stored(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "0")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "None")
    clock.advance(timedelta(hours=7))
    await type_text(h, PATIENT, "Late words")
    assert "note" not in await stored(h)
    assert "could not add your note" in h.last(PATIENT).text
    async with h.db.session() as session:
        assert (await session.exec(select(Participant))).one().awaiting is None


# ---------------------------------------------------------------- typed answers


async def test_a_score_typed_as_text_is_taken_as_the_answer(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    await type_text(h, PATIENT, " 5/10 ")
    assert (await stored(h))["worst_pain"].value == "5"
    last = h.last(PATIENT).text
    assert last.startswith("Thank you, I have noted 5 out of 10.")
    assert "How long were your joints stiff" in last


async def test_words_where_a_button_was_expected_reshow_the_buttons(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    for text in ("abc", "11", "pretty bad"):
        await type_text(h, PATIENT, text)
        last = h.last(PATIENT)
        assert "please tap one of the buttons" in last.text
        assert "worst joint pain" in last.text
        assert len(last.button_rows()) == 2
    assert "worst_pain" not in await stored(h)


async def test_text_without_an_open_checkin_is_left_to_the_fallback(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await type_text(h, PATIENT, "5")
    reply = h.last(PATIENT)
    assert "/checkin" in reply.text
    assert not any(data.startswith("ci:") for _, data in reply.buttons())
    assert await stored(h) == {}


# ---------------------------------------------------------------- /checkin


async def test_checkin_command_twice_shows_the_open_checkin_again(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "Yes")
    await h.command(PATIENT, "checkin")
    last = h.last(PATIENT).text
    assert last.startswith("You already have a check-in open.")
    assert "worst joint pain" in last
    await the_checkin(h)  # still exactly one


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Lifecycle.paused, "/resume"),
        (Lifecycle.withdrawn, "You have left the study"),
        (Lifecycle.invited, "/start"),
    ],
)
async def test_checkin_command_offers_a_way_on_when_she_cannot_check_in(
    harness: Harness, status: Lifecycle, expected: str
) -> None:
    h = harness
    participant = await make_active_participant(h.db)
    async with h.db.session() as session:
        participant.status = status
        session.add(participant)
    await h.command(PATIENT, "checkin")
    assert expected in h.last(PATIENT).text
    async with h.db.session() as session:
        assert (await session.exec(select(CheckIn))).all() == []


async def test_checkin_command_from_a_stranger_explains_how_to_join(harness: Harness) -> None:
    h = harness
    await h.command(OTHER, "checkin")
    assert "/start" in h.last(OTHER).text


# ---------------------------------------------------------------- outbox renderers


async def _scheduled_checkin(h: Harness, participant: Participant) -> CheckIn:
    """Stores a sent scheduled check-in, as the dispatcher would leave it."""
    q = questionnaire()
    async with h.db.session() as session:
        checkin = CheckIn(
            participant_id=participant.id or 0,
            questionnaire_id=q.id,
            questionnaire_version=q.version,
            due_at=START,
            window_closes_at=START + timedelta(hours=6),
            status=CheckInStatus.sent,
            sent_at=START,
        )
        session.add(checkin)
    return checkin


async def _render_and_send(h: Harness, kind: str, checkin: CheckIn) -> tuple[bool, str]:
    """Renders an outbox row the way the sender does and puts it on the fake wire."""
    from bot.outbox import keyboard

    renderer = h.app.bot_data.renderers[kind]
    async with h.db.session() as session:
        row = OutgoingMessage(kind=kind, chat_id=PATIENT, checkin_id=checkin.id)
        participant = await session.get(Participant, checkin.participant_id)
        rendered = await renderer(session, row, participant)
    if not rendered.skip:
        await h.app.bot.send_message(
            PATIENT, rendered.text, reply_markup=keyboard(rendered.buttons)
        )
    return rendered.skip, rendered.text


async def test_checkin_renderer_starts_with_a_neutral_line_then_the_first_question(
    harness: Harness,
) -> None:
    h = harness
    checkin = await _scheduled_checkin(h, await make_active_participant(h.db))
    skip, text = await _render_and_send(h, "checkin", checkin)
    assert not skip
    first_line = text.splitlines()[0]
    assert first_line == "Time for your check-in 🌿"
    assert not any(word in first_line.lower() for word in LOCK_SCREEN_WORDS)
    assert "Did you take your tablet yesterday?" in text
    await h.press(PATIENT, "Yes")
    assert (await stored(h))["took_med"].value == "yes"


async def test_renderers_skip_a_checkin_that_is_answered_or_closed(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    await answer_all(h)
    checkin = await the_checkin(h)
    assert (await _render_and_send(h, "checkin", checkin))[0] is True
    assert (await _render_and_send(h, "reminder", checkin))[0] is True


async def test_reminder_reshows_the_open_question_and_snooze_sets_the_next_reminder(
    harness: Harness,
) -> None:
    h = harness
    checkin = await _scheduled_checkin(h, await make_active_participant(h.db))
    skip, text = await _render_and_send(h, "reminder", checkin)
    assert not skip
    first_line = text.splitlines()[0]
    assert not any(word in first_line.lower() for word in LOCK_SCREEN_WORDS)
    reminder = h.last(PATIENT)
    assert reminder.button_rows()[-1] == [
        ("Remind me in 1 hour", f"ci:{checkin.id}:snooze:{SNOOZE_MINUTES}")
    ]
    clock.advance(timedelta(minutes=10))
    await h.press(PATIENT, "Remind me in 1 hour")
    assert "remind you in about an hour" in h.last(PATIENT).text
    assert (await the_checkin(h)).next_reminder_at == START + timedelta(minutes=70)
    assert await stored(h) == {}


async def test_reminder_shows_the_first_unanswered_question(harness: Harness) -> None:
    h = harness
    checkin = await _scheduled_checkin(h, await make_active_participant(h.db))
    await _render_and_send(h, "checkin", checkin)
    await h.press(PATIENT, "No, I missed it")
    _, text = await _render_and_send(h, "reminder", checkin)
    assert "worst joint pain" in text
    assert "Did you take" not in text


# ---------------------------------------------------------------- limits


def test_every_button_fits_in_64_bytes_even_with_a_huge_checkin_id() -> None:
    from bot.callbacks import MAX_ID
    from bot.content import messages

    m = messages("en")
    huge = MAX_ID  # the largest row id a button may carry
    for item in questionnaire().items:
        chosen = tuple(item.values())
        for rows in (
            checkin_handlers.item_buttons(huge, item, m, ()),
            checkin_handlers.item_buttons(huge, item, m, chosen),
        ):
            for row in rows:
                for _, data in row:
                    assert len(data.encode()) <= 64, data


async def test_messages_stay_within_telegram_limits_through_a_long_checkin(
    harness: Harness,
) -> None:
    h = harness
    await start_checkin(h)
    await h.press(PATIENT, "I have stopped taking it")
    await h.press(PATIENT, "Not yet")  # the doctor-first path, then the check-in goes on
    await h.press(PATIENT, "Joint pain")
    await h.press(PATIENT, "10")
    await h.press(PATIENT, "Longer")
    await h.press(PATIENT, "10", message=question_message(h, "get in the way"))
    symptoms = questionnaire().item("new_symptoms")
    assert symptoms is not None
    for option in symptoms.options[1:]:
        await h.press(PATIENT, option.text("en"))
    await h.press(PATIENT, "Done")
    await type_text(h, PATIENT, "y" * 2000)
    assert (await the_checkin(h)).status == CheckInStatus.completed
    assert_chat_within_limits(h)


# ---------------------------------------------------------------- two workers, one item


async def _race_on_one_item(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers both read 'no answer yet', then both store took_med; one row survives."""
    from bot import checkins

    participant = await make_active_participant(db)
    async with db.session() as session:
        checkin = await checkins.create_on_demand_checkin(session=session, participant=participant)
    real_load = checkins.load_answers
    calls = {"n": 0}

    async def stale_first_read(*, session: Any, checkin: CheckIn) -> dict[str, Answer]:
        """Returns no answers on the first read, then the real ones."""
        calls["n"] += 1
        # The second worker read before the first one committed: it saw no answers.
        return {} if calls["n"] == 1 else await real_load(session=session, checkin=checkin)

    async with db.session() as session:
        first = await checkins.record_answer(
            session=session,
            checkin=await session.get(CheckIn, checkin.id) or checkin,
            item_code="took_med",
            value="yes",
            update_id=1,
        )
    assert first.outcome == "stored"
    monkeypatch.setattr(checkins, "load_answers", stale_first_read)
    async with db.session() as session:
        second = await checkins.record_answer(
            session=session,
            checkin=await session.get(CheckIn, checkin.id) or checkin,
            item_code="took_med",
            value="missed",
            update_id=2,
        )
    assert second.outcome == "corrected"
    async with db.session() as session:
        rows = (await session.exec(select(Answer))).all()
        old = (await session.exec(select(AnswerHistory))).all()
    assert [(a.value, a.first_value, a.corrections) for a in rows] == [("missed", "yes", 1)]
    assert [h.old_value for h in old] == ["yes"]


async def test_two_workers_storing_one_item_at_once_keep_one_answer_on_sqlite(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _race_on_one_item(harness.db, monkeypatch)


@pytest.mark.postgres
async def test_two_workers_storing_one_item_at_once_keep_one_answer_on_postgresql(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(pg_url)
    try:
        await db.create_all()
        await _race_on_one_item(db, monkeypatch)
    finally:
        await db.dispose()


# ---------------------------------------------------------------- through the dispatcher


async def test_scheduled_checkin_reminder_and_snooze_through_the_dispatcher(
    harness: Harness,
) -> None:
    h = harness
    await receive_scheduled_checkin(h)
    first = h.last(PATIENT)
    assert first.text.splitlines()[0] == "Time for your check-in 🌿"
    assert "Did you take your tablet yesterday?" in first.text
    await h.press(PATIENT, "Yes")
    assert "worst joint pain" in h.last(PATIENT).text

    clock.advance(timedelta(minutes=h.settings.reminder_delay_minutes))
    await h.tick()
    reminder = h.last(PATIENT)
    assert reminder.text.splitlines()[0] == "A gentle reminder 🌿 Your check-in is still open."
    assert "worst joint pain" in reminder.text
    assert reminder.button_rows()[-1][0][0] == "Remind me in 1 hour"

    await h.press(PATIENT, "Remind me in 1 hour")
    async with h.db.session() as session:
        checkin = (
            await session.exec(select(CheckIn).where(CheckIn.origin == CheckInOrigin.scheduled))
        ).first()
    assert checkin is not None
    assert checkin.next_reminder_at == clock.now() + timedelta(minutes=60)
    clock.advance(timedelta(minutes=60))
    await h.tick()
    assert h.last(PATIENT).text.startswith("A gentle reminder")
    # Answering on the reminder counts for the same check-in.
    await h.press(PATIENT, "6")
    answers = await stored(h)
    assert answers["worst_pain"].value == "6"
    assert_chat_within_limits(h)


async def test_a_press_too_old_to_answer_still_counts(harness: Harness) -> None:
    h = harness
    await start_checkin(h)
    h.fake.fail_next(
        "answerCallbackQuery",
        status=400,
        description="Bad Request: query is too old and response timeout expired or query ID is"
        " invalid",
    )
    await h.press(PATIENT, "Yes")
    assert (await stored(h))["took_med"].value == "yes"
    assert "worst joint pain" in h.last(PATIENT).text
    assert not any("something went wrong" in text for text in h.texts(PATIENT))


async def test_a_note_left_untouched_neither_chases_her_nor_counts_the_checkin_as_missed(
    harness: Harness,
) -> None:
    h = harness
    await receive_scheduled_checkin(h)
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "3")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "2", message=question_message(h, "get in the way"))
    await h.press(PATIENT, "I had a fall")
    await h.press(PATIENT, "Done")
    # Every question is answered: the red-flag advice and its alert come before the note.
    texts = h.texts(PATIENT)
    assert "contact your care team today" in texts[-2]
    assert "Anything else you want to note?" in texts[-1]
    async with h.db.session() as session:
        alerts = (await session.exec(select(Alert))).all()
    assert [(a.kind, a.urgent) for a in alerts] == [("red_flag", True)]
    sent = len(h.fake.chat(PATIENT))

    # She puts the phone down. No reminder chases the note; the window closes as completed.
    for _ in range(8 * 6):
        clock.advance(timedelta(minutes=10))
        await h.tick()
    assert len(h.fake.chat(PATIENT)) == sent
    async with h.db.session() as session:
        checkin = (await session.exec(select(CheckIn).order_by(col(CheckIn.due_at)))).first()
    assert checkin is not None
    assert (checkin.status, checkin.missed_reason) == (CheckInStatus.completed, None)
    assert checkin.closed_at is not None and checkin.closed_at >= checkin.window_closes_at
    assert "note" not in await stored(h)
