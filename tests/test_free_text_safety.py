"""Free text through the real handlers: messages, edited messages, captions and check-in notes
are read for emergencies, red flags, stop intent and unsubscribe requests, in that order."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import yaml
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


async def test_an_emergency_gets_her_own_number_first_then_the_path_when_she_stopped(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db, country="US")
    await h.send(PATIENT, "chest pain and I stopped my meds")
    first, second = h.texts(PATIENT)[-2:]
    assert first.startswith("If this is an emergency, call 911 now.")
    assert "around the clock" in first
    assert ASK_DOCTOR in second
    assert len(await alerts(h, "emergency")) == 1
    assert len(await alerts(h, "stop_intent")) == 1


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


async def test_a_red_flag_and_stopping_get_both_answers_in_one_reply(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "my fingers are numb and tingling so I stopped my pills")
    reply = h.last(PATIENT)
    assert reply.text.index("contact your care team today") < reply.text.index(ASK_DOCTOR)
    labels = [label for label, _ in reply.buttons()]
    assert "Not yet" in labels and "When to contact your care team" in labels
    assert len(await alerts(h, "red_flag")) == 1
    assert len(await alerts(h, "stop_intent")) == 1
    await h.press(PATIENT, "Not yet")
    [alert] = await alerts(h, "stop_intent")
    assert alert.urgent


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


# ---------------------------------------------------------------- issue 13: kinds of misses
# Each case below is a KIND of message the rules missed in a blind round (not its words): the
# phrasings are ours, so they test the method (signs, scope, morphology), not a copied line.

EMERGENCY_BY_SIGNS = [
    "there's a heavy pressing feeling in the centre of my chest and I'm clammy",  # chest signs
    "I can't get any air in",  # breathing
    "the left side of my face has dropped and my arm feels heavy",  # one-sided weakness
    "I swallowed the whole box of my letrozole by accident",  # overdose by mistake
    "I've fallen in the bathroom and I can't get back up",  # a fall she can't get up from
    "slipped on the ice, my wrist is pointing the wrong way",  # limb bent the wrong way
]


@pytest.mark.parametrize("text", EMERGENCY_BY_SIGNS)
async def test_an_emergency_described_by_its_signs_gets_the_number_first(
    harness: Harness, text: str
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    assert h.texts(PATIENT)[0].startswith("If this is an emergency, call 999 now.")
    assert len(await alerts(h, "emergency")) == 1


RED_FLAGS_IN_PLAIN_WORDS = [
    "running a temperature and all my joints ache",  # fever with aching joints
    "fever",  # typed alone
    "my right hand has gone so weak I can't grip the kettle",  # weak hand
    "I banged my head when I went down on the stairs",  # head knock after a fall
    "I can hardly walk today",  # can't walk
    "a new ache low in my spine that wakes me at night",  # new night-time back pain
    "the ache in my hip is worse when I'm resting",  # pain worse at rest
]


@pytest.mark.parametrize("text", RED_FLAGS_IN_PLAIN_WORDS)
async def test_a_red_flag_in_plain_words_gets_same_day_advice_and_an_alert(
    harness: Harness, text: str
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    assert "contact your care team today" in h.last(PATIENT).text
    assert len(await alerts(h, "red_flag")) == 1


STOPPING_IN_ACTIONS_AND_SLANG = [
    ("honestly about ready to bin the lot, these tablets", ASK_DOCTOR),  # slang + medicine
    ("I'm binning it", WEAK_ASK),  # slang, no medicine named: ask first
    ("shoved the pills in the back of a drawer last week", WEAK_ASK),  # an action
    ("only take my letrozole on the better days now", ASK_DOCTOR),  # partial taking
    ("would skipping a couple of days be ok?", ASK_DOCTOR),  # skipping on purpose
    ("quiero dejar las pastillas", ASK_DOCTOR),  # Spanish
    ("I think I'll just absetzen the tablets", ASK_DOCTOR),  # German mixed in
    ("honestly je veux arrêter le traitement", ASK_DOCTOR),  # French mixed in
]


@pytest.mark.parametrize(("text", "question"), STOPPING_IN_ACTIONS_AND_SLANG)
async def test_stopping_in_actions_slang_or_another_language_is_asked_about(
    harness: Harness, text: str, question: str
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    assert question in h.last(PATIENT).text
    if question == WEAK_ASK:
        await h.press(PATIENT, "Yes")  # the clarifying question leads to the path
        assert_path_started(h, "free_text", await alerts(h, "stop_intent"))


@pytest.mark.parametrize(
    "text",
    [
        "stop sending these",
        "pls stop msging me",
        "I no longer wish to receive these",
        "arrêtez les messages s'il vous plaît",
        "keine Nachrichten mehr bitte",
    ],
)
async def test_stop_the_messages_without_the_word_messages_offers_pause_or_leave(
    harness: Harness, text: str
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    assert "pause your check-ins" in h.last(PATIENT).text
    assert await alerts(h) == []


@pytest.mark.parametrize(
    "text",
    [
        "I don't have any chest pain, just the usual aches",  # negated emergency sign
        "I'm not going to stop, don't worry",  # negated stop
        "I had a bad fall back in 2019",  # a past event
        "my ankle was swollen last summer, long gone now",  # past and settled
        "I stopped for a week years ago but I've been back on them since",  # past stop
        "my husband fell off a ladder on Sunday",  # someone else's fall
    ],
)
async def test_negated_or_past_signals_raise_no_alarm(harness: Harness, text: str) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    texts = " ".join(h.texts(PATIENT))
    assert "call 999 now" in texts  # the usual reply still names the emergency number
    assert "If this is an emergency" not in texts
    assert "contact your care team today" not in texts
    assert ASK_DOCTOR not in texts and WEAK_ASK not in texts
    assert await alerts(h) == []


@pytest.mark.parametrize(
    ("text", "page"),
    [
        ("what time of day should I take my anastrozole?", "Talking with your doctor"),
        ("what should I do if I forget a tablet?", "Talking with your doctor"),
        ("how long do people usually take letrozole for?", "Why staying on your medicine"),
    ],
)
async def test_a_question_about_taking_it_correctly_gets_a_helpful_reply_not_the_path(
    harness: Harness, text: str, page: str
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    reply = h.last(PATIENT)
    assert "pharmacist or care team" in reply.text
    assert any(label.startswith(page) for label, _ in reply.buttons())
    assert ASK_DOCTOR not in reply.text and WEAK_ASK not in reply.text
    assert await alerts(h) == []


async def test_a_question_about_stopping_on_purpose_still_leads_to_the_path(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "do I really have to take it for five whole years?")
    assert ASK_DOCTOR in h.last(PATIENT).text or WEAK_ASK in h.last(PATIENT).text


async def test_stopping_and_stop_the_messages_both_get_their_answer(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "I've stopped the letrozole. And stop sending these")
    first, second = h.texts(PATIENT)[-2:]
    assert ASK_DOCTOR in first
    assert "pause your check-ins" in second


@pytest.mark.parametrize(("country", "line"), [("IE", "116 123"), ("AU", "13 11 14")])
async def test_thoughts_of_self_harm_get_a_warm_reply_a_crisis_line_and_an_urgent_alert(
    harness: Harness, country: str, line: str
) -> None:
    h = harness
    await make_active_participant(h.db, country=country)
    await h.send(PATIENT, "I keep having thoughts about hurting myself")
    reply = h.last(PATIENT).text
    emergency = {"IE": "112 or 999", "AU": "000"}[country]
    assert "sorry" in reply and f"call {emergency} now" in reply and line in reply
    assert reply.index(emergency) < reply.index(line)  # the emergency number comes first
    [alert] = await alerts(h, "self_harm")
    assert alert.urgent


async def test_self_harm_without_a_listed_crisis_line_still_gets_the_emergency_number(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db, country="DE")
    await h.send(PATIENT, "everyone would be better off without me")
    reply = h.last(PATIENT).text
    assert "sorry" in reply and "call 112 now" in reply
    assert len(await alerts(h, "self_harm")) == 1


def test_unchecked_crisis_lines_are_marked_for_confirmation_before_release() -> None:
    from bot.crisis import crisis_lines, unconfirmed

    lines = crisis_lines()
    assert {c for c, line in lines.items() if line.tag == "U"} == set(unconfirmed())
    assert unconfirmed() == ["CA", "GB", "NZ", "US"]  # evidence fact 120, tagged [U]
    assert all(line.source for line in lines.values())


@pytest.mark.parametrize(
    "text",
    ["Hola, tengo mucho dolor en las rodillas hoy", "Ho molto dolore alle ginocchia oggi"],
)
async def test_a_message_in_another_language_gets_an_english_reply_with_the_ways_on(
    harness: Harness, text: str
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    reply = h.last(PATIENT).text
    assert "only read English" in reply
    assert "/thinking_of_stopping" in reply and "care team" in reply and "999" in reply
    assert await alerts(h) == []


async def test_a_spanish_emergency_is_answered_before_the_language_is_looked_at(
    harness: Harness,
) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "no puedo respirar")
    assert h.texts(PATIENT)[0].startswith("If this is an emergency, call 999 now.")


@pytest.mark.parametrize("text", ["I stopped my letrozole last week", "fever and a swollen knee"])
async def test_someone_not_in_the_study_who_writes_about_stopping_is_told_to_see_her_doctor(
    harness: Harness, text: str
) -> None:
    stranger = 5_000_000_998
    await harness.send(stranger, text)
    reply = harness.last(stranger).text
    assert "talk with your doctor first" in reply and "call 999 now" in reply
    assert "/start" in reply
    assert await alerts(harness) == []


async def test_someone_who_left_and_writes_about_stopping_is_told_to_see_her_doctor(
    harness: Harness,
) -> None:
    from bot.models import Lifecycle

    h = harness
    p = await make_active_participant(h.db)
    async with h.db.session() as session:
        row = await session.get(Participant, p.id)
        assert row is not None
        row.status = Lifecycle.withdrawn
        session.add(row)
    await h.send(PATIENT, "I've stopped taking my tablets")
    reply = h.last(PATIENT).text
    assert "You have left the study" in reply and "talk with your doctor first" in reply
    assert await alerts(h) == []


def test_the_scoring_script_scores_a_round_through_the_detector_and_the_handlers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.score_intent import main

    rows = [
        ("my lips have gone blue and I can't get any air", "emergency"),
        ("my elbow is red and hot", "red_flag"),
        ("I've quit the anastrozole", "stop_intent"),
        ("so tired of these tablets", "stop_intent_weak"),
        ("please stop texting me", "unsubscribe"),
        ("can I take it with breakfast?", "none"),
    ]
    data = {"messages": [{"text": t, "label": label} for t, label in rows]}
    path = tmp_path / "round.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "Through the handlers" in out
    for label in ("emergency", "red_flag", "stop_intent", "unsubscribe"):
        assert re.search(rf"^{label} +1 +1\.00 +0 ", out, re.M), (label, out)
    assert re.search(r"^stop_intent_weak +1 +1\.00 +0 +clarify 1$", out, re.M), out
    assert "neutral with a clarifying question or safety path: 0/1" in out
