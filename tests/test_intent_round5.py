"""Issue 13, after blind round 5: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set).

Kinds: emergencies shown by a combination of signs, plans with pills, collapse and bleeding
in plain words; new lumps, night back pain and rest pain; stopping by actions and plain
statements (also in Spanish and German); weak doubts about need, benefit, length and
alternatives; "fewer messages" and "go away" without the word stop; and the false alarms
switched off by method (information questions, a friend or a pet as the subject, a passing
sign with an everyday cause, questions about taking the medicine well).
"""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from bench.score_intent import markers, paths_of, top_path
from bot.intent import read_text
from bot.models import Alert, ClarifyingQuestion
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant
from tests.intent_steps import (
    alerts,
    answered_on,
    gets_red_flag,
    gets_weak_question,
    in_labelled_set,
    reply_paths,
)

EMERGENCIES = [
    # Combinations of signs, no key word alone.
    "feels like a band round my chest and I have gone all sweaty",
    "my chest is so heavy, like a brick on it, and my jaw aches",
    "me heart hurting very much and arm also, sweat everywhere",
    "this is her husband, she is pale and sweaty and says her chest hurts",
    "Mum has gone a funny grey colour and is clutching her chest",
    "my eyes and face have puffed up and I am wheezing",
    "lips swelling and an itchy rash all over since the new box",
    "cut my hand and it has been bleeding for 40 minutes, soaked two tea towels",
    "period bleeding is pouring out and I feel faint",
    # Tablets counted, collapse described.
    "I took about 30 of my letrozole tablets an hour ago",
    "my son says he found me on the kitchen floor and I had been out for ages",
    "came round on the bathroom floor with no idea how I got there",
    "my wife is on the floor and not answering me",
    "tongue feels thick and my throat is tight after the new tablet",
    "sick with blood in it and dizzy",
    "my speech went funny and my arm went weak for 10 minutes",
]
SELF_HARM = [
    "nothing matters anymore, I am going to take everything in the medicine cabinet",
    "I have got every pill in the house counted out, I cannot go on like this",
    "stop the messages. I have the tablets lined up and I am done with life",
    "I have had enough of everything. I have saved up a month of my tablets",
    "I want it all to stop. I have got the pills ready",
]


@pytest.mark.parametrize("text", EMERGENCIES + SELF_HARM)
async def test_emergency_signs_without_key_words_get_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    h = harness
    seen = await reply_paths(h, text)
    assert top_path(seen) == "emergency", seen
    # Her emergency number is the first thing she reads.
    assert "emergency" in paths_of([h.texts(PATIENT)[0]], markers())


@pytest.mark.parametrize("text", SELF_HARM)
async def test_a_plan_with_pills_is_read_as_self_harm(text: str) -> None:
    assert any(r.startswith("emergency.self_harm") for r in read_text(text).matched)


async def test_an_emergency_beside_stop_and_unsubscribe_comes_first_and_keeps_the_rest(
    harness: Harness,
) -> None:
    h = harness
    text = "quitting the letrozole and stop the reminders. chest pressure and my left arm is numb"
    seen = await reply_paths(h, text)
    assert {"emergency", "doctor_first", "unsubscribe"} <= seen
    assert "emergency" in paths_of([h.texts(PATIENT)[0]], markers())


RED_FLAGS = [
    "found a new lump under my arm this morning",
    "there is a pea sized lump above my collarbone",
    "oh great, another lump, this time on my scar. brilliant.",
    "lower back is worse when I lie down, better when I walk",
    "my back pain wakes me up at 3am every night",
    "hip aches even when I am sitting still, that is new",
    "Mon genou est gonflé et chaud",
    "mein Handgelenk ist geschwollen since Monday",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_red_flags_in_plain_words_get_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


STOPPING = [
    "binned the lot this morning",
    "tipped them all down the toilet",
    "only take it on weekdays now",
    "not gonna take another one of those things",
    "decided not to bother with it anymore",
    "not takin em since friday",
    "quit them.",
    "No quiero seguir tomando las pastillas",
    "Ich will die Tabletten absetzen",
    "stopped it 3 weeks ago, felt better",
    "have not bothered with them this week",
    "my joints are killing me so I am having a week off them",
    "not touching them again",
    "ain't taking that rubbish no more",
]


@pytest.mark.parametrize("text", STOPPING)
async def test_stopping_by_actions_and_plain_statements_starts_the_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


async def test_stopping_and_no_messages_together_keep_the_doctor_first_path(
    harness: Harness,
) -> None:
    h = harness
    seen = await reply_paths(h, "had it with them, stopping. and no more texts either")
    assert {"doctor_first", "unsubscribe"} <= seen


WEAK = [
    "is 5 years of this really needed?",
    "do I honestly need to keep going with these tablets",
    "does the letrozole actually make much difference?",
    "is there any alternative to anastrozole",
    "how many people actually stick with it for 5 years",
    "been thinking about quitting them",
    "I do not want to take them anymore but I will keep going",
    "sick to death of swallowing this pill every morning",
    "I wonder if the tablets are actually helping me",
    "what would happen if I gave up early",
    "should I keep going with this or not, honestly",
    "would it matter if I had a break for a month",
    "do I really need it now the cancer is gone?",
    "does anyone actually make it to 5 years on this stuff?",
    "how much does it really cut the risk?",
    "what are the odds it comes back if I stop early",
    "5 years feels like forever",
    "not sure it is worth the side effects",
    "I am questioning whether to carry on",
    "would tamoxifen be easier?",
    "can I do 3 years instead of 5?",
    "is it bad if I stop early?",
    "the tablets are taking over my life",
]


@pytest.mark.parametrize("text", WEAK)
async def test_weak_doubts_get_the_recorded_clarifying_question(
    harness: Harness, text: str
) -> None:
    await gets_weak_question(harness, text)


async def test_a_red_flag_with_a_weak_doubt_asks_the_recorded_question(harness: Harness) -> None:
    h = harness
    seen = await reply_paths(h, "is the letrozole even worth it? my knee is swollen and hot")
    assert {"red_flag", "clarify"} <= seen
    async with h.db.session() as session:
        rows = (await session.exec(select(ClarifyingQuestion))).all()
    assert [r.suspected for r in rows] == ["stop_intent_weak"]
    # The question's buttons are the recorded `cq:` ones (not the old unrecorded df:wk).
    datas = [data for m in h.fake.chat(PATIENT) for _, data in m.buttons()]
    assert any(d.startswith("cq:") for d in datas) and not any(
        d.startswith("df:wk") for d in datas
    )
    await h.press(PATIENT, "Yes")
    assert "doctor_first" in paths_of(h.texts(PATIENT)[-1:], markers())


UNSUBSCRIBE = [
    "please go away",
    "how do I switch this off",
    "can you delete my account please",
    "pause this for a month",
    "fewer messages please",
    "could you message me twice a week instead",
    "I no longer need the reminders",
    "stop pinging my phone",
    "I do not want this anymore, the bot I mean",
    "too many texts",
    "these messages are too much for me right now",
    "can I have a break from the messages",
    "one message a week is plenty",
    "mute it",  # (a bare "mute" is now in the labelled set: blind round 13 wrote it)
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_fewer_messages_or_leaving_without_stop_gets_the_pause_menu(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


NEUTRAL = [
    "what are the symptoms of a stroke",
    "who should I call if I get chest pain at night, just in case",
    "the cat has a lump on his back",
    "my friend fell over and could not get up, she was fine after a sit down",
    "I get pins and needles if I sit cross legged, goes away when I move",
    "thought I had a lump but it was just a bruise",
    "sweating a lot and my shoulder aches from the hot flushes and gardening",
    "my gums bleed a bit when I brush, heavy handed I guess",
    "is it ok to drink a glass of wine on anastrozole",
    "can I crush the tablet in yogurt",
    "can I drive after taking it",
    "do I take it on the days I have radiotherapy",
    "do I really have to take it with food?",
    "the pills are lined up in my weekly organiser",
    "lumpy porridge this morning yuck",
    "weekends off work are great",
    "my friend stopped hers and her cancer came back, so I am sticking with it",
    "is there an alternative to the gym for exercise?",
    "what happens if I miss a dose by accident",
    "felt dizzy so I sat on the floor for a minute, fine now",
    "thank you for everything, this has really helped",
    "my neighbour collapsed last week, she is ok now",
    "if I ever got chest pain what should I do",
    "took 4 of the paracetamol over the day for my headache",
    "is it worth taking vitamin D too?",
    "it is not really necessary to reply is it?",
    "sweating buckets in this heat, my arms ache from carrying shopping",
    "5 years is a long time but I will get there",
    "my onc says it cuts the risk by a third, good enough for me",
    "how do I change my check-in time?",
]


@pytest.mark.parametrize("text", NEUTRAL)
async def test_false_alarms_are_switched_off_by_method(harness: Harness, text: str) -> None:
    h = harness
    seen = await reply_paths(h, text)
    assert top_path(seen) == "neutral", seen
    assert not await alerts(h, "emergency")


async def test_an_information_question_gets_the_when_to_call_reply(harness: Harness) -> None:
    h = harness
    await make_active_participant(h.db)
    await h.send(PATIENT, "what are the warning signs of a blood clot, just so I know")
    assert read_text("what are the warning signs of a blood clot").topic == "usage.info"
    assert h.last(PATIENT).buttons()  # the when-to-call page


def test_an_information_question_hides_no_sign_she_reports_now() -> None:
    # The question switches off signs in its own sentence only, and nothing that is current.
    asked_then_told = "what are the signs of a stroke? my face has dropped on one side"
    assert read_text(asked_then_told).kind == "emergency"
    assert read_text("who do I ring if I get a fever, I have got 38.5 now").kind == "red_flag"
    assert read_text("a sugar lump in my tea").kind == "none"


def test_a_denied_self_harm_thought_still_gets_the_kind_crisis_reply() -> None:
    # Chosen on purpose: self-harm words are never switched off by a negation. A warm reply
    # with a crisis line to someone who said "I won't hurt myself" costs little; missing one
    # who meant it costs much more (docs/intent.md).
    found = read_text("I am not going to hurt myself, promise, just feeling flat")
    assert found.kind == "emergency"
    assert any(r.startswith("emergency.self_harm") for r in found.matched)


def test_the_rules_leave_other_activities_alone() -> None:
    # The rules read these as nothing (the intent model may still ask one question).
    for text in ("I have decided not to bother with the gym anymore", "weekends off are great"):
        assert read_text(text).kind == "none", text


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [*EMERGENCIES, *SELF_HARM, *RED_FLAGS, *STOPPING, *WEAK, *UNSUBSCRIBE, *NEUTRAL]
    assert not in_labelled_set(mine)


async def test_alerts_name_rule_ids_only(harness: Harness) -> None:
    h = harness
    await reply_paths(h, "feels like a band round my chest and I have gone all sweaty")
    async with h.db.session() as session:
        rows = (await session.exec(select(Alert).order_by(col(Alert.id)))).all()
    assert rows and all("sweaty" not in (r.detail or "") for r in rows)
