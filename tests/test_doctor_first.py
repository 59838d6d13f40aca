"""The doctor-first path through the real handlers: every trigger, both branches, the alert rows,
therapy status and what the check-in asks afterwards, contact only with a receiver, and buttons
that are checked, replay-safe and stale-safe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot import clock, doctor_first
from bot.content import messages
from bot.doctor_card import load_card, sections
from bot.models import (
    Alert,
    AlertStatus,
    Answer,
    BarrierReport,
    CheckIn,
    Lifecycle,
    Participant,
    TherapyChange,
    TherapyStatus,
)
from bot.safety_scan import scan
from tests.conftest import PATIENT, Harness, make_harness
from tests.factories import make_active_participant

ASK_DOCTOR = "Have you talked with your doctor about this?"
OTHER = 5_000_000_777


async def doctor_advised(h: Harness, change: str, *then: str) -> None:
    """She says her doctor advised a change, picks what changed and answers what follows."""
    await h.press(PATIENT, "Yes, my doctor advised a change")
    await h.press(PATIENT, change)
    for label in then:
        await h.press(PATIENT, label)


async def alerts(h: Harness, kind: str | None = None) -> list[Alert]:
    """Returns every alert row (of one kind), oldest first."""
    async with h.db.session() as session:
        query = select(Alert).order_by(col(Alert.id))
        if kind is not None:
            query = query.where(Alert.kind == kind)
        return list((await session.exec(query)).all())


async def barriers(h: Harness) -> list[BarrierReport]:
    """Returns every barrier report."""
    async with h.db.session() as session:
        return list((await session.exec(select(BarrierReport))).all())


async def changes(h: Harness) -> list[TherapyChange]:
    """Returns every therapy change."""
    async with h.db.session() as session:
        return list((await session.exec(select(TherapyChange))).all())


async def reload(h: Harness, participant_id: int | None) -> Participant:
    """Returns the participant row as stored now."""
    async with h.db.session() as session:
        found = await session.get(Participant, participant_id)
    assert found is not None
    return found


async def answers_of_checkin(h: Harness, checkin_id: int = 1) -> dict[str, str]:
    """Returns item code -> value of one check-in."""
    async with h.db.session() as session:
        rows = (await session.exec(select(Answer).where(Answer.checkin_id == checkin_id))).all()
    return {a.item_code: a.value for a in rows}


def labels(h: Harness, user: int = PATIENT) -> list[str]:
    """Returns the button labels of the newest message."""
    return [label for label, _ in h.last(user).buttons()]


def all_button_data(h: Harness, user: int = PATIENT) -> list[str]:
    """Returns every callback data the chat has seen."""
    return [data for message in h.fake.chat(user) for _, data in message.buttons()]


async def set_alert_status(h: Harness, alert_id: int | None, status: AlertStatus) -> None:
    """Acts as a coordinator acknowledging or closing an alert."""
    async with h.db.session() as session:
        alert = await session.get(Alert, alert_id)
        assert alert is not None
        alert.status = status
        session.add(alert)


@pytest.fixture
async def with_receiver(tmp_path: Path) -> AsyncIterator[Harness]:
    """A bot with a coordinator group configured, so contact requests have a receiver."""
    h = await make_harness(f"sqlite:///{tmp_path / 'rx.db'}", coordinator_chat_id=-100_123)
    yield h
    await h.app.shutdown()
    await h.db.dispose()


# ---------------------------------------------------------------- triggers


async def test_stopped_answer_in_a_checkin_leads_to_the_path_then_the_checkin_goes_on(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "checkin")
    await h.press(PATIENT, "I have stopped taking it")
    assert (await answers_of_checkin(h))["took_med"] == "stopped"
    first = h.last(PATIENT).text
    assert "you have stopped taking it" in first and ASK_DOCTOR in first
    assert labels(h) == ["Yes, my doctor advised a change", "Not yet", "I'd rather not say"]
    assert "worst joint pain" not in first  # one question at a time
    [alert] = await alerts(h, "stop_intent")
    assert not alert.urgent and alert.status == AlertStatus.open
    assert alert.checkin_id is not None
    assert doctor_first.parse_detail(alert.detail)["src"] == "checkin"

    await h.press(PATIENT, "Not yet")
    texts = h.texts(PATIENT)
    explanation = texts[-2]
    # She has already stopped: "before you decide" no longer fits; she is asked to tell them.
    assert "let your doctor know soon that you have stopped" in explanation
    assert "before you decide" not in explanation
    assert "more often had their cancer come back" in explanation
    assert "can't prove" in explanation
    for option in ("another medicine of the same kind", "exercise", "acupuncture", "duloxetine"):
        assert option in explanation
    page_buttons = [label for label, _ in h.fake.chat(PATIENT)[-2].buttons()]
    assert page_buttons == ["Talking with your doctor", "What is known about stopping"]
    assert "What makes it hardest" in texts[-1]
    [alert] = await alerts(h, "stop_intent")
    assert alert.urgent
    assert doctor_first.parse_detail(alert.detail)["doctor"] == "not_yet"

    await h.press(PATIENT, "Joint pain")
    [report] = await barriers(h)
    assert (report.code, report.source) == ("joint_pain", "checkin")
    [alert] = await alerts(h, "stop_intent")
    detail = doctor_first.parse_detail(alert.detail)
    assert detail["barrier"] == "joint_pain" and detail["src"] == "checkin"
    closing = h.fake.chat(PATIENT)[-2]
    # No receiver is configured: she is asked to call, and nobody promises to contact her.
    assert "Please call your care team soon to let them know that you have stopped" in closing.text
    assert "contact you" not in closing.text
    assert closing.buttons() == []
    # The check-in goes on where it was.
    assert "back to your check-in" in h.last(PATIENT).text
    assert "worst joint pain" in h.last(PATIENT).text


async def test_stop_menu_choice_leads_to_the_path_and_an_alert(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "stop")
    await h.press(PATIENT, "I'm thinking about stopping my medicine")
    assert ASK_DOCTOR in h.last(PATIENT).text
    await h.press(PATIENT, "I'd rather not say")
    assert "You don't have to tell me" in h.texts(PATIENT)[-2]
    assert "talk with your doctor before you decide" in h.texts(PATIENT)[-2]
    [alert] = await alerts(h, "stop_intent")
    assert alert.urgent
    detail = doctor_first.parse_detail(alert.detail)
    assert (detail["src"], detail["doctor"]) == ("stop_menu", "private")


async def test_thinking_of_stopping_command_leads_to_the_path_and_an_alert(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    assert ASK_DOCTOR in h.last(PATIENT).text
    await h.press(PATIENT, "Not yet")
    await h.press(PATIENT, "The cost")
    [alert] = await alerts(h, "stop_intent")
    assert alert.urgent
    assert doctor_first.parse_detail(alert.detail)["src"] == "command"
    assert "help with the cost" in h.fake.chat(PATIENT)[-1].text


async def test_talk_it_through_on_the_page_about_stopping_leads_to_the_path(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "learn")
    await h.press(PATIENT, "What is known about stopping")
    for _ in range(10):
        if "Talk it through" in labels(h):
            break
        await h.press(PATIENT, "Next ›")
    await h.press(PATIENT, "Talk it through")
    assert ASK_DOCTOR in h.last(PATIENT).text
    [alert] = await alerts(h, "stop_intent")
    assert doctor_first.parse_detail(alert.detail)["src"] == "page"


async def test_thinking_of_stopping_is_in_the_command_menu(harness: Harness) -> None:
    menus = list(harness.fake.commands.values())
    assert any(c["command"] == "thinking_of_stopping" for menu in menus for c in menu)


async def test_someone_who_has_not_joined_gets_no_alert(harness: Harness) -> None:
    h = harness
    await h.command(OTHER, "thinking_of_stopping")
    assert "once you have joined" in h.last(OTHER).text
    assert await alerts(h) == []


async def test_someone_who_left_gets_no_alert(harness: Harness) -> None:
    h = harness
    p = await make_active_participant(h.db)
    async with h.db.session() as session:
        row = await session.get(Participant, p.id)
        assert row is not None
        row.status = Lifecycle.withdrawn
        session.add(row)
    await h.command(PATIENT, "thinking_of_stopping")
    assert "You have left the study" in h.last(PATIENT).text
    assert await alerts(h) == []


# ---------------------------------------------------------------- her doctor advised a change


async def test_advised_switch_updates_therapy_status_and_the_next_checkin_wording(
    harness: Harness,
) -> None:
    h = harness
    p = await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    await h.press(PATIENT, "Yes, my doctor advised a change")
    assert "What changed?" in h.last(PATIENT).text
    await h.press(PATIENT, "I switched to another medicine")
    assert "Which medicine do you take now?" in h.last(PATIENT).text
    await h.press(PATIENT, "Letrozole (Femara)")
    assert "Roughly when" in h.last(PATIENT).text
    await h.press(PATIENT, "This week")
    assert "ask about the medicine you take now" in h.last(PATIENT).text

    [change] = await changes(h)
    assert (change.kind, change.new_medicine, change.changed_on) == ("switched", "letrozole", None)
    stored = await reload(h, p.id)
    assert (stored.therapy_status, stored.medicine) == (TherapyStatus.taking, "letrozole")
    [stop_line] = await alerts(h, "stop_intent")
    assert stop_line.status == AlertStatus.closed and not stop_line.urgent
    [digest] = await alerts(h, "therapy_change")
    assert not digest.urgent and digest.status == AlertStatus.open
    assert doctor_first.parse_detail(digest.detail) == {
        "change": "switched",
        "medicine": "letrozole",
        "when": "this_week",
        "src": "command",
    }
    assert not [a for a in await alerts(h) if a.urgent]

    await h.command(PATIENT, "checkin")
    question = h.last(PATIENT).text
    assert "Did you take your current medicine yesterday?" in question
    assert "letrozole" not in question.lower() and "femara" not in question.lower()


async def test_advised_stop_drops_the_adherence_question_from_later_checkins(
    harness: Harness,
) -> None:
    h = harness
    p = await make_active_participant(h.db)
    await h.command(PATIENT, "checkin")
    await h.press(PATIENT, "I have stopped taking it")
    await doctor_advised(h, "I stopped taking it", "Today")
    texts = h.texts(PATIENT)
    assert "will not ask about taking a tablet" in texts[-2]
    assert "worst joint pain" in texts[-1]  # this check-in goes on
    [change] = await changes(h)
    assert change.kind == "stopped" and change.changed_on == clock.now()
    assert (await reload(h, p.id)).therapy_status == TherapyStatus.stopped

    # The scheduled check-in at 19:00 starts with the pain question, with no tablet question.
    clock.advance(timedelta(hours=8))
    await h.tick()  # plans the 19:00 check-in
    clock.advance(timedelta(hours=2, minutes=1))
    await h.tick()  # sends it
    scheduled = h.last(PATIENT)
    assert scheduled.text.startswith("Time for your check-in")
    assert "worst joint pain" in scheduled.text
    assert "tablet" not in scheduled.text.lower()
    await h.press(PATIENT, "3", message=scheduled)
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "2")
    await h.press(PATIENT, "None")
    await h.press(PATIENT, "Done")
    await h.press(PATIENT, "Skip")
    checkin_id = int(scheduled.buttons()[0][1].split(":")[1])
    answers = await answers_of_checkin(h, checkin_id)
    # Skipped, not stored: no answer row stands in for the question she was not asked.
    assert "took_med" not in answers and answers["worst_pain"] == "3"
    summary = h.last(PATIENT).text
    assert "Here is what you told me" in summary and "Tablet yesterday" not in summary
    async with h.db.session() as session:
        done = await session.get(CheckIn, checkin_id)
    assert done is not None and done.status == "completed"


async def test_picking_a_medicine_in_settings_after_a_stop_brings_the_question_back(
    harness: Harness,
) -> None:
    h = harness
    p = await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    await doctor_advised(h, "I stopped taking it", "Today")
    assert "tell me in /settings" in h.texts(PATIENT)[-1] + h.texts(PATIENT)[-2]

    await h.command(PATIENT, "settings")
    assert "Medicine: none now (stopped on your doctor's advice)" in h.last(PATIENT).text
    await h.press(PATIENT, "Medicine")
    await h.press(PATIENT, "Letrozole (Femara)")
    assert h.last(PATIENT).text.startswith("Saved. From now on, your check-ins will ask")
    stored = await reload(h, p.id)
    assert (stored.therapy_status, stored.medicine) == (TherapyStatus.taking, "letrozole")
    assert [(c.kind, c.new_medicine) for c in await changes(h)] == [
        ("stopped", None),
        ("restarted", "letrozole"),
    ]
    digest = [a for a in await alerts(h, doctor_first.THERAPY_CHANGE) if not a.urgent]
    assert "change=restarted" in (digest[-1].detail or "")
    async with h.db.session() as session:
        card = await load_card(session=session, participant=stored, default_zone="UTC")
    card_words = [line for _, lines, _ in sections(messages(), card) for line in lines]
    assert any(line.endswith("Taking Letrozole (Femara) again") for line in card_words)

    await h.command(PATIENT, "checkin")
    assert "Did you take your tablet yesterday?" in h.last(PATIENT).text
    # Picking a medicine again while she takes one is a plain correction: no new change row.
    await h.command(PATIENT, "settings")
    await h.press(PATIENT, "Medicine")
    await h.press(PATIENT, "Exemestane (Aromasin)")
    assert h.last(PATIENT).text.startswith("Saved.")
    assert len(await changes(h)) == 2


async def test_finished_treatment_drops_the_adherence_question(harness: Harness) -> None:
    h = harness
    p = await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    await doctor_advised(h, "I finished my treatment", "Before this week")
    assert (await reload(h, p.id)).therapy_status == TherapyStatus.finished
    await h.command(PATIENT, "checkin")
    assert "worst joint pain" in h.last(PATIENT).text


async def test_advised_change_after_an_urgent_alert_keeps_that_alert_open(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    await h.press(PATIENT, "Not yet")
    await h.command(PATIENT, "thinking_of_stopping")
    await doctor_advised(h, "I stopped taking it", "Today")
    [alert] = await alerts(h, "stop_intent")
    assert alert.urgent and alert.status == AlertStatus.open
    assert doctor_first.parse_detail(alert.detail)["n"] == "2"
    assert len(await alerts(h, "therapy_change")) == 1


# ---------------------------------------------------------------- contact


async def test_contact_button_only_with_a_receiver_and_it_says_when(
    with_receiver: Harness,
) -> None:
    h = with_receiver
    await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    await h.press(PATIENT, "Not yet")
    await h.press(PATIENT, "I forget to take it")
    offer = h.fake.chat(PATIENT)[-1]
    assert "Ask the care team to contact me" in [label for label, _ in offer.buttons()]
    assert "/settings" in offer.text
    [alert] = await alerts(h, "stop_intent")
    assert not alert.contact_requested
    await h.press(PATIENT, "Ask the care team to contact me", message=offer)
    reply = h.last(PATIENT).text
    assert "within 2 working days" in reply
    assert "around the clock" in reply and "999" in reply
    [alert] = await alerts(h, "stop_intent")
    assert alert.contact_requested and alert.urgent


async def test_no_contact_button_without_a_receiver(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    await h.press(PATIENT, "Not yet")
    await h.press(PATIENT, "Something else")
    assert "Ask the care team to contact me" not in all_button_data(h) + [
        label for m in h.fake.chat(PATIENT) for label, _ in m.buttons()
    ]
    assert "call your care team" in h.last(PATIENT).text


# ---------------------------------------------------------------- repeats and buttons


async def test_repeated_triggers_update_one_alert_until_a_coordinator_closes_it(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    await h.press(PATIENT, "Not yet")
    await h.send(PATIENT, "i want to stop my pills")
    await h.command(PATIENT, "stop")
    await h.press(PATIENT, "I'm thinking about stopping my medicine")
    [alert] = await alerts(h, "stop_intent")
    detail = doctor_first.parse_detail(alert.detail)
    assert detail["n"] == "3"
    assert detail["src"] == "command+free_text+stop_menu"
    assert alert.urgent  # never lowered by a later trigger

    # Acknowledged is still active: a new trigger updates the same row.
    await set_alert_status(h, alert.id, AlertStatus.acknowledged)
    await h.command(PATIENT, "thinking_of_stopping")
    [still] = await alerts(h, "stop_intent")
    assert doctor_first.parse_detail(still.detail)["n"] == "4"
    # A closed alert never reopens: the next trigger opens a new one.
    await set_alert_status(h, alert.id, AlertStatus.closed)
    await h.command(PATIENT, "thinking_of_stopping")
    rows = await alerts(h, "stop_intent")
    assert len(rows) == 2 and rows[1].status == AlertStatus.open


async def test_a_doubled_or_replayed_press_stores_and_sends_nothing_twice(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    # A replayed update (same update id) is dropped before the flow sees it.
    step_one, not_yet = h.find_button(PATIENT, "Not yet")
    replay = h.updates.callback(PATIENT, not_yet, step_one, update_id=424242)
    await h.process(replay)
    await h.process(replay)
    # A second tap (a new update) on the answered question changes nothing either.
    await h.process(h.updates.callback(PATIENT, not_yet, step_one))
    assert sum("What makes it hardest" in t for t in h.texts(PATIENT)) == 1
    message, data = h.find_button(PATIENT, "Joint pain")
    await h.process(h.updates.callback(PATIENT, data, message))
    sent = len(h.fake.chat(PATIENT))
    await h.process(h.updates.callback(PATIENT, data, message))
    assert len(await barriers(h)) == 1
    assert len(h.fake.chat(PATIENT)) == sent


async def test_buttons_are_checked_against_the_presser(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await make_active_participant(h.db, telegram_user_id=OTHER)
    await h.command(PATIENT, "thinking_of_stopping")
    message, data = h.find_button(PATIENT, "Not yet")
    await h.process(h.updates.callback(OTHER, data, message))
    assert h.fake.answered_callbacks[-1].get("text") == "This button is not for you."
    [alert] = await alerts(h, "stop_intent")
    assert not alert.urgent
    await h.send(PATIENT, "maybe i should take a break from it")
    message, data = h.find_button(PATIENT, "Yes")
    await h.process(h.updates.callback(OTHER, data, message))
    assert h.fake.answered_callbacks[-1].get("text") == "This button is not for you."
    assert len(await alerts(h)) == 1


async def test_a_button_on_a_closed_alert_is_out_of_date(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    [alert] = await alerts(h, "stop_intent")
    await set_alert_status(h, alert.id, AlertStatus.closed)
    await h.press(PATIENT, "Not yet")
    assert "out of date" in str(h.fake.answered_callbacks[-1].get("text"))
    [alert] = await alerts(h, "stop_intent")
    assert not alert.urgent
    for bad in ("df:d:x", "df:zz:1:1:1", "df:d:99999:1:not_yet", "df:b:1:1:nonsense"):
        await h.process(h.updates.callback(PATIENT, bad, h.last(PATIENT)))
    assert await barriers(h) == []


async def test_every_button_fits_telegram_callback_limit(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "thinking_of_stopping")
    await h.press(PATIENT, "Yes, my doctor advised a change")
    await h.press(PATIENT, "I switched to another medicine")
    await h.press(PATIENT, "Exemestane (Aromasin)")
    data = all_button_data(h)
    assert data and all(len(d.encode()) <= 64 for d in data)


# ---------------------------------------------------------------- wording


def test_every_doctor_first_text_passes_the_safety_scan() -> None:
    m = messages("en")
    texts = {k: v for k, v in m.texts.items() if k.startswith("doctor_first.")}
    assert len(texts) > 30
    findings = {k: [str(f) for f in scan(v)] for k, v in texts.items() if scan(v)}
    assert not findings
    lowered = " ".join(texts.values()).lower()
    for forbidden in ("that's fine", "that is fine", "that's ok", "it's ok to", "you can stop"):
        assert forbidden not in lowered


async def test_every_message_she_sees_on_the_path_passes_the_safety_scan(
    with_receiver: Harness,
) -> None:
    h = with_receiver
    await make_active_participant(h.db)
    await h.command(PATIENT, "checkin")
    await h.press(PATIENT, "I have stopped taking it")
    await h.press(PATIENT, "I'd rather not say")
    await h.press(PATIENT, "Worries about the medicine")
    await h.press(PATIENT, "Ask the care team to contact me")
    await h.command(PATIENT, "thinking_of_stopping")
    await h.press(PATIENT, "Yes, my doctor advised a change")
    await h.press(PATIENT, "I switched to another medicine")
    await h.press(PATIENT, "Tamoxifen")
    await h.press(PATIENT, "Today")
    for text in h.texts(PATIENT):
        assert not scan(text), text
