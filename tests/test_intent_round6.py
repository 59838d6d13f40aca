"""Issue 13, after blind round 6: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set).

Kinds: emergencies told as a story or by a relative (someone unresponsive, a stroke in plain
words even when "better now", a limb at an angle, too many tablets of any kind with their
effects, plans to not be here); red flags in plain words (yellow skin, dark urine, a joint
twice its size or hot, bone-site pain that is constant or at night, emoji and decimals, and
Spanish and French pain words); stopping on activity days, by counting days, by sarcasm and
by a decision; weak doubts (years ahead, doubts, natural remedies, fear, "what if I
stopped", evidence and age, a confessed miss, "better without"); stop-the-messages without
the key words, for a relative, by emoji and in other languages; and false alarms switched off
by method (a man's chest pain, a passing fever, a healing bruise, "anything daft like stop",
questions about a procedure or a forgotten dose).
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from bench.score_intent import markers, paths_of, top_path
from bot.intent import read_text
from bot.models import ClarifyingQuestion
from tests.conftest import PATIENT, Harness
from tests.intent_steps import (
    alerts,
    answered_on,
    gets_red_flag,
    gets_weak_question,
    in_labelled_set,
    reply_paths,
)

EMERGENCIES = [
    # Someone unresponsive, told by a relative.
    "my sister found our mum sitting in her chair not answering, just staring into space",
    "her eyes are open but she is not really there and she is slumped in the chair",
    # A stroke in plain words: a limb gone dead with speech gone odd, even when it passed.
    "Dad says my left leg and arm have gone all heavy and my words are coming out muddled",
    "Had a strange spell at lunch, could not find my words and my arm went floppy. "
    "Seems fine now.",
    # A limb at an angle after a fall.
    "slipped on the ice, my wrist is at a really odd angle and I cannot move it",
    # Too many tablets of any kind, with what they do.
    "I accidentally took my codeine twice this afternoon and now I feel very drowsy and groggy",
    "took 8 of my anastrozole by mistake, heart is pounding",
    # Not planning to be here; rather be dead.
    "I have stopped all my tablets because I am not planning to be around much longer",
    "honestly I would rather be dead than do another year of this",
    # Second batch: written after the round-6 fixes and read before any fix for them.
    "Grandma is sitting on the sofa and won't respond, her eyes are open but she "
    "isn't responding to us",
    "my mouth feels droopy and I can't get my words right, started 20 mins ago",
    "I think I've had a mini stroke, my arm went numb and I couldn't speak for a few "
    "minutes, it's passed now",
    "fell off the ladder, my arm is bent at a weird angle",
    "took a double dose of my sleeping tablets by accident and I'm so drowsy I can hardly type",
    "I swallowed 6 paracetamol and then another 6 a couple of hours later, feel sick and shaky",
    "I won't be around to finish the course, I've made my peace with it",
    "I'd rather die than keep going like this",
    # Third batch: read before any fix for them.
    "my wife keeled over in the kitchen and she's breathing funny",
    "I'm going to swallow the lot tonight and be done",
    "I can't stay awake after taking my tablets twice, everything is blurry",
]


@pytest.mark.parametrize("text", EMERGENCIES)
async def test_emergencies_told_as_a_story_get_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    h = harness
    seen = await reply_paths(h, text)
    assert top_path(seen) == "emergency", seen
    assert "emergency" in paths_of([h.texts(PATIENT)[0]], markers())


def test_a_stroke_that_passed_is_still_an_emergency_but_a_denied_one_is_not() -> None:
    assert read_text("my face dropped and my speech went funny, all fine now").kind == "emergency"
    assert read_text("my words came out fine and my arm is not weak").kind != "emergency"


def test_an_overdose_needs_the_tablets_the_extra_and_the_effect() -> None:
    # "Twice" and a racing heart alone are everyday words; with tablets taken they are not.
    assert read_text("we went walking twice and my heart was racing").kind == "none"
    assert (
        read_text("I took it twice this week with breakfast and my heart is fine").kind == "none"
    )
    assert read_text("took my tramadol twice by mistake, now very sleepy").kind == "emergency"


RED_FLAGS = [
    "the whites of my eyes have gone a yellowish colour",
    "my pee is really dark brown this week and I feel itchy",
    "my knee is double its normal size and warm to the touch, probably nothing",
    "wrist is boiling hot and temp 38.6",
    "🌡️ 38.9 and my elbow 🔥",
    "ache in my ribs that never goes away, no fall or knock",
    "pain in my lower back keeps me awake, paracetamol does nothing",
    "No puedo caminar bien desde ayer, me duele la rodilla",
    "Une nouvelle douleur dans la hanche depuis lundi",
    # Second batch: written after the round-6 fixes and read before any fix for them.
    "my skin has a yellow tinge and my wee is the colour of tea",
    "my left knee has ballooned up and it's warm",
    "constant ache in my hip bone for 3 weeks now, doesn't ease with rest",
    "my spine hurts at night and nothing touches it",
    "dolor nuevo en la espalda, no me deja dormir",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_red_flags_in_plain_words_get_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


STOPPING = [
    "I'll just not take them on days when I have a long walk planned",
    "2 weeks without them now and I feel human again",
    "💊 day 12 without them, bliss",
    "I take it every Saturday, that is my idea of daily",
    "decided. I'm stopping it after Christmas, my mind is made up",
    "chucked the rest of the tablets in the rubbish bin yesterday",
    # Second batch: written after the round-6 fixes and read before any fix for them.
    "skipping it on match days, it makes me too stiff to play",
    "three weeks pill free and loving it",
    "I've knocked the letrozole on the head",
    "I've decided I'm coming off it next month, my mind is made up",
    # Third batch: read before any fix for them.
    "last tablet was a week ago, not planning to restart",
]


@pytest.mark.parametrize("text", STOPPING)
async def test_stopping_on_days_by_count_sarcasm_or_decision_starts_the_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


def test_a_decision_not_to_stop_is_not_stopping() -> None:
    assert not read_text("I have decided not to stop, my mind is made up").is_stop


WEAK = [
    "is this going to be my life for the next five years",
    "I keep second guessing the whole thing",
    "my friend swears herbal remedies work better. Should I try them instead?",
    "I'm frightened of these tablets after what I read. Should I really be taking them?",
    "is there any evidence that ten years is better than five",
    "I'm 81, would someone my age get much benefit from this?",
    "confession: missed mine yesterday",
    "maybe I'd be better off without them, I'm not sure",
    "having second thoughts about the letrozole",
    "I plan to finish at the end of the month, the stiffness is too high a price",
    # Second batch: written after the round-6 fixes and read before any fix for them.
    "Do I really want to do this for another 4 years?",
    "would turmeric do the same job as the tablets?",
    "honestly is the anastrozole even doing anything for me",
    "is it safe to stop if I've had a mastectomy?",
    "I'm on the fence about carrying on",
    "can I come off it early if I feel fine?",
    "my neighbour says her oncologist let her stop after 3 years, could I?",
    # Third batch: read before any fix for them.
    "what would my oncologist say if I stopped?",
    "some days I just want to throw the lot away",
    "what's the real benefit for someone with a small tumour like mine?",
    "I've read you can stop at 3 years, is that right?",
    "feel like I'm poisoning myself every morning",
    "is there something with fewer side effects?",
    "I'm seriously considering my options with the letrozole",
]


@pytest.mark.parametrize("text", WEAK)
async def test_weak_doubts_get_the_recorded_clarifying_question(
    harness: Harness, text: str
) -> None:
    await gets_weak_question(harness, text)


def test_asking_what_happens_if_i_stopped_is_stopping_talk() -> None:
    assert read_text("if I came off it now would the cancer come back?").is_stop


UNSUBSCRIBE = [
    "how can I get out of this?",
    "no longer interested, thanks",
    "please end my participation in this",
    "snooze for Christmas please",
    "could you switch off the morning reminders",
    "🔕",
    "my mum asked me to tell you: please stop messaging her",
    "genug Nachrichten bitte",
    "basta mensajes",
    "honestly no need to message every day, maybe once a week",
    # Second batch: written after the round-6 fixes and read before any fix for them.
    "how do I stop getting these?",
    "just once a week would be fine",
    "pas de messages svp",
    "keine Erinnerungen mehr bitte",
    "could you stop messaging my mother please, she's finding it too much",
    # Third batch: read before any fix for them.
    "can we pause everything till January",
    "this isn't for me, can you take me off",
    "too many pings, can you cut it back",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_stop_the_messages_without_the_key_words_gets_the_pause_menu(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


NEUTRAL = [
    "my dad had chest pains last night, he is in hospital for tests",
    "My husband's having chest pains after the gym, he is seeing the doctor",
    "I had a fever on Friday but it went within a day",
    "I would never do anything silly like stop my pills",
    "tripped on the step on Sunday, just a graze, healing nicely",
    "my husband has back pain all the time from his job",
    "my friend's daughter is not planning on being here for Christmas, she is away",
    # Second batch: written after the round-6 fixes and read before any fix for them.
    "my son was rushed to hospital with chest pains but he's fine now",
    "had a cold last week, a bit of a temperature but it's gone",
    "my knee was swollen after gardening but it's gone down now",
    "I fell over two years ago and broke my wrist, all healed",
    "Took the dog to the vet twice this week, my heart was racing with worry",
]


@pytest.mark.parametrize("text", NEUTRAL)
async def test_false_alarms_are_switched_off_by_method(harness: Harness, text: str) -> None:
    h = harness
    seen = await reply_paths(h, text)
    assert top_path(seen) == "neutral", seen
    assert not await alerts(h, "emergency")
    assert not await alerts(h, "red_flag")


USAGE = [
    ("can I still take it if I am having a biopsy next month?", "usage.procedure"),
    ("is it fine to take it before a tooth extraction", "usage.procedure"),
    ("missed my tablet this morning, what should I do?", "usage.missed_what_now"),
]


@pytest.mark.parametrize(("text", "topic"), USAGE)
async def test_questions_about_a_procedure_or_a_missed_dose_get_the_usage_reply(
    harness: Harness, text: str, topic: str
) -> None:
    assert read_text(text).topic == topic
    h = harness
    seen = await reply_paths(h, text)
    assert top_path(seen) == "neutral", seen
    async with h.db.session() as session:
        assert not (await session.exec(select(ClarifyingQuestion))).all()


def test_a_short_mute_order_is_about_the_messages_only() -> None:
    assert read_text("snooze for Christmas please").kind == "unsubscribe"
    # Pausing the medicine is stopping, not the pause menu as well.
    found = read_text("pause the letrozole for a week")
    assert found.is_stop and "unsubscribe" not in found.signals
    assert read_text("silence from the clinic again, nobody has called me back").kind == "none"


def test_a_fall_of_snow_is_not_a_fall() -> None:
    # The rules read it as nothing (the intent model may still ask one question: "fall").
    assert read_text("We had a fall of snow overnight").kind == "none"


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [*EMERGENCIES, *RED_FLAGS, *STOPPING, *WEAK, *UNSUBSCRIBE, *NEUTRAL]
    mine += [t for t, _ in USAGE]
    assert not in_labelled_set(mine)
