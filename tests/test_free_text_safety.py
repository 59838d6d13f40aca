"""Free text through the real handlers: messages, edited messages, captions and check-in notes
are read for emergencies, red flags, stop intent and unsubscribe requests, in that order."""

from __future__ import annotations

import logging

import pytest
from sqlmodel import col, select

from bot import doctor_first
from bot.models import Alert, Answer, Participant
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant

ASK_DOCTOR = "Have you talked with your doctor about this?"
WEAK_ASK = "Are you thinking about stopping your medicine?"


async def alerts(h: Harness, kind: str | None = None) -> list[Alert]:
    """Returns every alert row (of one kind), oldest first."""
    async with h.db.session() as session:
        query = select(Alert).order_by(col(Alert.id))
        if kind is not None:
            query = query.where(Alert.kind == kind)
        return list((await session.exec(query)).all())


async def set_awaiting(h: Harness, participant_id: int | None, value: str | None) -> None:
    """Sets what her next typed text means, as a flow would."""
    async with h.db.session() as session:
        row = await session.get(Participant, participant_id)
        assert row is not None
        row.awaiting = value
        session.add(row)


def assert_path_started(h: Harness, detail_src: str, rows: list[Alert]) -> None:
    """Checks she got the first doctor-first question and one stop_intent alert row."""
    assert ASK_DOCTOR in h.last(PATIENT).text
    [alert] = rows
    assert doctor_first.parse_detail(alert.detail)["src"] == detail_src


STRONG = [
    "I stopped taking my Arimidex last week",  # brand name, past disclosure
    "thinking of quitting femara",  # no capitals
    "i stoped my letrazole",  # misspellings
    "can i stop my pills?",  # a question
    "ive been skipping my tablets every other day",  # partial skipping
    "I have been taking half my dose",  # halving
    "I don't want to take my hormone therapy anymore",  # generic words
    "going off the AI",
    "I STOPPED MY AROMASIN 2 WEEKS AGO",
]


@pytest.mark.parametrize("text", STRONG)
async def test_every_phrasing_of_stopping_leads_to_the_path_and_an_alert(
    harness: Harness, text: str
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    assert_path_started(h, "free_text", await alerts(h, "stop_intent"))
    await h.press(PATIENT, "Not yet")
    [alert] = await alerts(h, "stop_intent")
    assert alert.urgent


async def test_an_edited_message_about_stopping_leads_to_the_path(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.process(h.updates.message(PATIENT, "i quit my meds last month", edited=True))
    assert_path_started(h, "free_text", await alerts(h, "stop_intent"))


async def test_a_photo_caption_about_stopping_leads_to_the_path(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.process(h.updates.photo(PATIENT, caption="these pills, I stopped them"))
    texts = h.texts(PATIENT)
    assert "can't open photos" in texts[-2]
    assert_path_started(h, "free_text", await alerts(h, "stop_intent"))


async def test_a_checkin_note_about_stopping_is_saved_then_leads_to_the_path(
    harness: Harness,
) -> None:
    h = harness
    p = await make_active_participant(h.db)
    await h.command(PATIENT, "checkin")
    await h.press(PATIENT, "Yes")
    await h.press(PATIENT, "2")
    await h.press(PATIENT, "Not stiff")
    await h.press(PATIENT, "1")
    await h.press(PATIENT, "None")
    assert "Anything else you want to note?" in h.last(PATIENT).text
    async with h.db.session() as session:
        row = await session.get(Participant, p.id)
        assert row is not None and (row.awaiting or "").startswith("note:")
    await h.send(PATIENT, "honestly im thinking about stopping letrozole")
    async with h.db.session() as session:
        notes = (await session.exec(select(Answer).where(Answer.item_code == "note"))).all()
    assert [n.value for n in notes] == ["honestly im thinking about stopping letrozole"]
    assert any("Here is what you told me" in t for t in h.texts(PATIENT))
    assert_path_started(h, "free_text", await alerts(h, "stop_intent"))


async def test_stop_text_in_the_middle_of_a_checkin_leads_to_the_path_then_back(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "checkin")
    await h.press(PATIENT, "Yes")
    await h.send(PATIENT, "should I stop taking my tablets")
    assert_path_started(h, "free_text", await alerts(h, "stop_intent"))
    await h.press(PATIENT, "Not yet")
    await h.press(PATIENT, "Another side effect")
    assert "worst joint pain" in h.last(PATIENT).text


async def test_a_weak_match_asks_first_and_alerts_only_on_yes(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "maybe I should take a break from it")
    assert WEAK_ASK in h.last(PATIENT).text
    assert [label for label, _ in h.last(PATIENT).buttons()] == ["Yes", "No"]
    assert await alerts(h) == []
    await h.press(PATIENT, "Yes")
    assert_path_started(h, "free_text", await alerts(h, "stop_intent"))


async def test_a_weak_match_answered_no_creates_no_alert(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "not sure i can keep going with these pills")
    assert WEAK_ASK in h.last(PATIENT).text
    await h.press(PATIENT, "No")
    assert "Thank you for letting me know" in h.last(PATIENT).text
    assert await alerts(h) == []


@pytest.mark.parametrize("text", ["stop sending me messages", "Stop the messages please"])
async def test_stop_the_messages_offers_pause_or_leave_and_no_alert(
    harness: Harness, text: str
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    reply = h.last(PATIENT)
    assert "pause your check-ins" in reply.text
    assert [label for label, _ in reply.buttons()] == [
        "Pause messages",
        "Leave the study",
        "Cancel",
    ]
    assert ASK_DOCTOR not in " ".join(h.texts(PATIENT))
    assert await alerts(h) == []
    await h.press(PATIENT, "Pause messages")
    assert "For how long" in h.last(PATIENT).text


async def test_never_stopping_is_not_stop_intent(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "I'd never stop my pills")
    assert ASK_DOCTOR not in h.last(PATIENT).text
    assert "Thank you for your message" in h.last(PATIENT).text
    assert await alerts(h) == []


async def test_an_emergency_gets_her_own_number_first_even_when_it_mentions_stopping(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db, country="US")
    await h.send(PATIENT, "chest pain and I stopped my meds")
    reply = h.last(PATIENT).text
    assert reply.startswith("If this is an emergency, call 911 now.")
    assert "around the clock" in reply
    assert ASK_DOCTOR not in " ".join(h.texts(PATIENT))


async def test_an_emergency_caption_gets_the_number_first(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.process(h.updates.photo(PATIENT, caption="i cant breathe"))
    assert h.texts(PATIENT)[0].startswith("If this is an emergency, call 999 now.")


async def test_an_emergency_from_someone_who_never_started_gets_the_study_number(
    harness: Harness,
) -> None:
    stranger = 5_000_000_999
    await harness.send(stranger, "I can't breathe")
    assert "call 999 now" in harness.last(stranger).text
    assert await alerts(harness) == []


async def test_a_red_flag_gets_prompt_advice_a_page_button_and_an_urgent_alert(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "my knee is swollen and red")
    reply = h.last(PATIENT)
    assert "contact your care team today" in reply.text and "999" in reply.text
    assert reply.buttons() == [("When to contact your care team", "edu:when-to-call:1")]
    [alert] = await alerts(h, "red_flag")
    assert alert.urgent
    detail = doctor_first.parse_detail(alert.detail)
    assert detail["src"] == "free_text" and "red_flag.swelling" in detail["rule"]
    await h.send(PATIENT, "had a fall and my hip hurts")
    [alert] = await alerts(h, "red_flag")  # updated, not duplicated
    assert doctor_first.parse_detail(alert.detail)["n"] == "2"
    await h.press(PATIENT, "When to contact your care team")
    assert "When to contact your care team" in h.last(PATIENT).text


async def test_a_red_flag_outranks_stop_intent(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "my fingers are numb and tingling so I stopped my pills")
    assert "contact your care team today" in h.last(PATIENT).text
    assert len(await alerts(h, "red_flag")) == 1
    assert await alerts(h, "stop_intent") == []


async def test_onboarding_text_is_not_read_as_stop_intent_before_consent(
    harness: Harness,
) -> None:
    h = harness
    await h.command(PATIENT, "start")
    await h.send(PATIENT, "I stopped my pills")
    assert await alerts(h) == []
    assert ASK_DOCTOR not in " ".join(h.texts(PATIENT))


async def test_signals_are_logged_as_rule_ids_never_as_her_text(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    await make_active_participant(h.db)
    with caplog.at_level(logging.DEBUG):
        await h.send(PATIENT, "I stopped my Arimidex ZEBRAWORD")
        await h.send(PATIENT, "my knee is swollen ZEBRAWORD")
        await h.process(h.updates.photo(PATIENT, caption="quit my meds ZEBRAWORD"))
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "stop_intent" in logged and "stop.verb_medicine" in logged
    assert "ZEBRAWORD" not in logged and "Arimidex" not in logged
    for alert in await alerts(h):
        assert "ZEBRAWORD" not in (alert.detail or "")
        assert "arimidex" not in (alert.detail or "").lower()
