"""Ask when unsure, through the real handlers: a message only the intent model flags gets one
clarifying question naming her emergency number; her answer leads to the right path; the
record holds codes, never her words; the model alone never raises an alert or sends an
emergency down the stopping path."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from bot import doctor_first, intent, intent_model
from bot.intent_model import IntentModel
from bot.models import Alert, ClarifyingQuestion
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant

ASK_DOCTOR = "Have you talked with your doctor about this?"
STOP_ASK = "Are you thinking about stopping your medicine?"
SYMPTOM_ASK = "Is this a new symptom?"
FEWER_ASK = "Would you like fewer messages?"
EMERGENCY = "In an emergency, call 999 now."  # her country (GB) in make_active_participant
CLASSES = ("emergency", "none", "red_flag", "stop_intent", "stop_intent_weak", "unsubscribe")


def _weights(**by_class: float) -> tuple[float, tuple[float, ...]]:
    return 1.0, tuple(by_class.get(c, 0.0) for c in CLASSES)


# A tiny real model: made-up words no rule reads, each pushing one class. Inference, the
# thresholds and the emergency floor run exactly as with the trained model.
TINY = IntentModel(
    version="en-test0001",
    locale="en",
    classes=CLASSES,
    intercepts=(0.0,) * len(CLASSES),
    features={
        "zqsym": _weights(red_flag=6.0),
        "zqstp": _weights(stop_intent=6.0),
        "zqfew": _weights(unsubscribe=6.0),
        "zqemg": _weights(stop_intent=5.0, emergency=3.0),  # mostly "stop", some emergency
        "zqlow": _weights(stop_intent=1.0),  # too unsure to ask anything
        "zqbad": _weights(emergency=2.0),  # emergency the likeliest (0.6), no group past its bar
    },
    ngram_range=(2, 5),
    thresholds={"symptom": 0.85, "stop": 0.85, "fewer": 0.85, "emergency_floor": 0.05},
    meta={},
)


@pytest.fixture
def tiny_model(monkeypatch: pytest.MonkeyPatch) -> IntentModel:
    monkeypatch.setattr(intent_model, "load", lambda locale: TINY)
    return TINY


async def alerts(h: Harness) -> list[Alert]:
    async with h.db.session() as session:
        return list((await session.exec(select(Alert).order_by(col(Alert.id)))).all())


async def questions(h: Harness) -> list[ClarifyingQuestion]:
    async with h.db.session() as session:
        query = select(ClarifyingQuestion).order_by(col(ClarifyingQuestion.id))
        return list((await session.exec(query)).all())


async def test_a_message_only_the_trained_model_flags_gets_the_clarifying_question(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    model = intent_model.load("en")
    assert model is not None
    candidates = [
        "enough of these pills",
        "the tablets went in the drawer weeks ago",
        "done with this rubbish medicine",
        "so over these tablets tbh",
    ]
    # The rules must find nothing in it and the trained model must suspect stopping.
    only_model = [
        text
        for text in candidates
        if intent.read_text(text).undecided
        and (found := model.suspect(text)) is not None
        and found.group == "stop"
    ]
    assert only_model, "no candidate left that only the model flags: pick new ones"
    await h.send(PATIENT, only_model[0])
    reply = h.last(PATIENT)
    assert STOP_ASK in reply.text and EMERGENCY in reply.text
    assert [label for label, _ in reply.buttons()] == ["Yes", "No"]
    assert await alerts(h) == []  # the model's call alone alerts nobody
    [row] = await questions(h)
    assert (row.source, row.question, row.model_version) == ("model", "stop", model.version)


async def test_rules_first_the_model_is_not_asked_when_they_found_something(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "I want to stop taking my letrozole zqfew")
    assert ASK_DOCTOR in h.last(PATIENT).text
    assert await questions(h) == []


@pytest.mark.parametrize(
    ("text", "ask"),
    [("my zqsym hurts", SYMPTOM_ASK), ("oh zqstp again", STOP_ASK), ("zqfew ok then", FEWER_ASK)],
)
async def test_each_suspicion_gets_its_question_with_her_emergency_number(
    harness: Harness, tiny_model: IntentModel, text: str, ask: str
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    reply = h.last(PATIENT)
    assert ask in reply.text and EMERGENCY in reply.text
    assert [label for label, _ in reply.buttons()] == ["Yes", "No"]
    assert await alerts(h) == []


async def test_one_or_two_words_are_left_to_the_rules_not_the_model(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    for text in ("zqstp", "zqbad now"):  # the model alone would ask about both
        await h.send(PATIENT, text)
        assert "I can only understand button taps" in h.last(PATIENT).text
    assert await questions(h) == []


async def test_an_unsure_model_asks_nothing(harness: Harness, tiny_model: IntentModel) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "well zqlow again")
    assert "I can only understand button taps" in h.last(PATIENT).text
    assert await questions(h) == []


async def test_yes_to_a_new_symptom_gets_red_flag_advice_and_alerts_the_team(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "my zqsym hurts")
    await h.press(PATIENT, "Yes")
    assert "Please contact your care team today" in h.last(PATIENT).text
    [alert] = await alerts(h)
    assert alert.kind == "red_flag" and alert.urgent
    assert doctor_first.parse_detail(alert.detail)["src"] == "clarify"
    assert ASK_DOCTOR not in " ".join(h.texts(PATIENT))


async def test_no_to_a_new_symptom_is_thanked_and_alerts_nobody(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "my zqsym hurts")
    await h.press(PATIENT, "No")
    last = h.last(PATIENT).text
    assert "Thank you for letting me know" in last and EMERGENCY in last
    assert await alerts(h) == []


async def test_yes_to_stopping_starts_the_doctor_first_path(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "oh zqstp again")
    await h.press(PATIENT, "Yes")
    assert ASK_DOCTOR in h.last(PATIENT).text
    [alert] = await alerts(h)
    assert alert.kind == "stop_intent"
    assert doctor_first.parse_detail(alert.detail)["src"] == "free_text"


async def test_no_to_stopping_is_thanked_and_alerts_nobody(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "oh zqstp again")
    await h.press(PATIENT, "No")
    assert "Thank you for letting me know" in h.last(PATIENT).text
    assert await alerts(h) == []


async def test_yes_to_fewer_messages_offers_pause_or_leave(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "zqfew ok then")
    await h.press(PATIENT, "Yes")
    assert [label for label, _ in h.last(PATIENT).buttons()] == [
        "Pause messages",
        "Leave the study",
        "Cancel",
    ]
    assert await alerts(h) == []


async def test_no_to_fewer_messages_keeps_them(harness: Harness, tiny_model: IntentModel) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "zqfew ok then")
    await h.press(PATIENT, "No")
    assert "Your messages stay as they are" in h.last(PATIENT).text


async def test_the_record_holds_codes_and_versions_never_her_words(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    text = "my zqsym hurts since tuesday"
    await h.send(PATIENT, text)
    [asked] = await questions(h)
    assert asked.choice is None and asked.answered_at is None
    await h.press(PATIENT, "No")
    [row] = await questions(h)
    assert row.question == "symptom"
    assert row.source == "model"
    assert row.suspected == "red_flag"
    assert row.model_version == "en-test0001"
    assert row.rules_version.startswith("en-")
    assert row.choice == "no" and row.answered_at is not None
    assert isinstance(row.score, int) and 85 <= row.score <= 100
    stored = " ".join(str(v) for v in row.model_dump().values())
    assert not any(word in stored for word in ("zqsym", "hurts", "tuesday"))


async def test_a_second_press_changes_nothing(harness: Harness, tiny_model: IntentModel) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "oh zqstp again")
    question = h.last(PATIENT)
    await h.press(PATIENT, "No", message=question)
    await h.press(PATIENT, "Yes", message=question)
    assert await alerts(h) == []
    [row] = await questions(h)
    assert row.choice == "no"


async def test_someone_elses_question_cannot_be_answered(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    other = PATIENT + 1
    await make_active_participant(h.db, telegram_user_id=other)
    await h.send(PATIENT, "oh zqstp again")
    _, data = h.find_button(PATIENT, "Yes")
    await h.press(other, data, message=h.last(PATIENT))
    assert h.fake.answered_callbacks[-1].get("text") == "This button is not for you."
    assert await alerts(h) == []
    [row] = await questions(h)
    assert row.choice is None


async def test_an_emergency_is_never_sent_down_the_stopping_path_by_the_model(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    # Mostly "stop" to the model, with a real chance of an emergency: the symptom question.
    await h.send(PATIENT, "oh zqemg again")
    reply = h.last(PATIENT)
    assert SYMPTOM_ASK in reply.text and EMERGENCY in reply.text
    assert STOP_ASK not in reply.text
    await h.press(PATIENT, "Yes")
    assert ASK_DOCTOR not in " ".join(h.texts(PATIENT))
    # Asked because of the emergency reading: her yes gets the emergency reply first.
    assert h.texts(PATIENT)[-2].startswith("If this is an emergency, call 999 now.")
    [alert] = await alerts(h)
    assert (alert.kind, alert.urgent) == ("emergency", True)
    assert doctor_first.parse_detail(alert.detail)["src"] == "clarify"


async def test_a_likely_emergency_below_every_question_bar_is_still_asked_about(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "oh zqbad again")
    reply = h.last(PATIENT)
    assert SYMPTOM_ASK in reply.text and EMERGENCY in reply.text
    [asked] = await questions(h)
    assert (asked.question, asked.suspected) == ("symptom", "emergency")


async def test_a_real_emergency_gets_the_emergency_reply_not_a_question(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "crushing chest pain and I can't breathe zqstp")
    assert "999" in h.last(PATIENT).text
    assert await questions(h) == []


async def test_during_a_checkin_no_brings_her_back_to_it(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.command(PATIENT, "checkin")
    await h.send(PATIENT, "oh zqstp again")
    assert STOP_ASK in h.last(PATIENT).text
    await h.press(PATIENT, "No")
    assert "back to your check-in" in h.last(PATIENT).text
    assert await alerts(h) == []


async def test_deleting_her_data_removes_her_clarifying_questions(
    harness: Harness, tiny_model: IntentModel
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "oh zqstp again")
    assert len(await questions(h)) == 1
    await h.command(PATIENT, "delete_my_data")
    await h.press(PATIENT, "Yes, delete my data")
    assert await questions(h) == []


async def test_a_weak_doubt_the_rules_read_is_the_same_recorded_question(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "maybe I should take a break from it")
    reply = h.last(PATIENT)
    assert STOP_ASK in reply.text and EMERGENCY in reply.text
    await h.press(PATIENT, "Yes")
    assert ASK_DOCTOR in h.last(PATIENT).text
    [row] = await questions(h)
    assert (row.source, row.question, row.suspected, row.choice) == (
        "rules",
        "stop",
        "stop_intent_weak",
        "yes",
    )
    assert row.model_version is None and row.score is None


@pytest.mark.parametrize("data", ["cq:999999:y", "cq:1:maybe", "cq:x:y", "cq:1"])
async def test_forged_or_unknown_question_data_changes_nothing(
    harness: Harness, data: str
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "hello")
    await h.process(h.updates.callback(PATIENT, data, h.last(PATIENT)))
    assert h.fake.answered_callbacks[-1].get("text")  # a toast, never a spinning button
    assert await alerts(h) == []
    assert await questions(h) == []
