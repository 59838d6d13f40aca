"""Issue 13, after blind round 11: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set).

Kinds: harmless stories the rules flagged (a sign healed, mended or checked and found harmless
by a clinician, told later in the sentence however long the clause; a sign said to be gone;
someone else taken to hospital with it; a sign word as a reaction to a bill, a look after an
outing, a colour from fake tan, a face that is only her age; "overdosed" on food; "worth it
though" after an outing; numb for a minute after a long sit; legs stiff or asleep); questions
and plans (is X "a thing" with these tablets, a switch the nurse raised, a clinician's plan to
finish at N years, pausing "for it" after naming a procedure; clicking fingers are not a
locking finger); a doubt in the past that she answered by carrying on; someone else wanting
the messages stopped while she wants them, and leaving another service; emergencies told by
what she sees (legs that will not move or cannot be felt, after a fall or not; hard breathing
in plain words with a swollen leg, told by a relative); stopping said as not collecting it,
as a course that was long enough, as a bare "flushed them", as a box still in its wrapper;
weak doubts about finishing the course, "on the fence", keep taking it or stop; stop the
messages as a bare "end" or with a dropped g ("textin"); and small rules in the books of
languages close to one with no book: Afrikaans (Dutch book), Hindi-Urdu sight loss, Malay
and Maltese words, German doubts, French hip pain at night, Scots night pain.
"""

from __future__ import annotations

import pytest

from bot.intent import read_text
from tests.conftest import Harness
from tests.intent_steps import (
    answered_on,
    gets_emergency,
    gets_red_flag,
    gets_weak_question,
    in_labelled_set,
    reads_as_none,
)

EMERGENCIES = [
    # Legs that will not move or cannot be felt, after a fall or not (not when stiff).
    "slipped on the ice, now I'm on the pavement and I can't feel my legs",
    "tumbled down the last few stairs and my legs won't move",
    "I fell in the garden, I can't feel my legs and I've been lying here an hour",
    "fell down the stairs and can't move my legs, I'm so stiff",
    # Hard breathing in plain words with a swollen leg, told by her or a relative.
    "my wife is puffing and panting just sitting in her chair and her calf is swollen and tight",
    "mum can't finish a sentence without stopping for air, her leg is twice the size of the other",
    "she's breathing really fast and her leg is swollen",
    # Other languages: Afrikaans fainting, Hindi-Urdu sight gone in one eye.
    "Ouma het net flou geval, help asseblief",
    "Nani ko achanak left aankh se dikhna band ho gaya",
    # Age or a bill never hide a sudden or lasting sign.
    "my face has dropped on one side, probably just getting old",
    "mum's face suddenly drooped, she's just old I think",
    "chest went tight when I saw the bill an hour ago and it's still tight",
]


@pytest.mark.parametrize("text", EMERGENCIES)
async def test_emergencies_told_by_what_she_sees_get_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text)


async def test_an_overdose_named_with_food_and_pills_is_still_self_harm(harness: Harness) -> None:
    await gets_emergency(
        harness, "overdosed on chocolate and then took all my pills", alert="self_harm"
    )


RED_FLAGS = [
    "my spine's been giein me gyp at nicht, it wakes me",
    "mon dos me réveille la nuit depuis une semaine",
    "buku lali saya bengkak",
    "is it a thing that my finger locks now?",
    # A verdict does not reach back when the sign is back or worse.
    "my knee swelled up, the doctor said it was fine last week but it's back",
    "broke my wrist in the spring, healed but now it's swollen again",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_red_flags_in_dialect_other_books_or_back_again_get_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


STOPPING = [
    # Not collecting it, a course long enough.
    "won't be renewing it. four years was enough for me",
    "Two years was plenty. I'm not reordering.",
    "not going to collect the next lot",
    "I am not going to pick up the next box",
    "I'm not going to be collecting it again",
    # A bare disposal; the box still in its wrapper.
    "Chucked them. No regrets.",
    "Flushed the lot last night.",
    "Flushed them all",
    "the new packet is still in its wrapper in the cupboard since my last appointment",
    # Afrikaans, Malay.
    "Ek het opgehou met my medisyne",
    "saya dah stop makan ubat tu",
]


@pytest.mark.parametrize("text", STOPPING)
async def test_stopping_told_by_collection_disposal_or_wrapper_starts_the_doctor_first_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


WEAK = [
    "honestly not sure I'll last to the end of the treatment, do most women get through it?",
    "don't know if I can see it through to the end of the five years",
    "does everyone manage the full five years on this?",
    "I am honestly on the fence",
    "I'm on the fence with it",
    "keep taking them and feel rubbish, or come off and worry, I cannot decide",
    "should I stay on it or come off and risk it?",
    "Ich denke daran, die Tabletten abzusetzen",
    "Soll ich die wirklich noch nehmen?",
]


@pytest.mark.parametrize("text", WEAK)
async def test_doubts_about_finishing_or_torn_get_the_clarifying_question(
    harness: Harness, text: str
) -> None:
    await gets_weak_question(harness, text)


UNSUBSCRIBE = [
    "please end",
    "end pls",
    "end now",
    "you can stop messagin me now thanks",
    "stop textin me please",
    "y'all can stop sendin these",
    "jangan hantar mesej lagi",
    "Stuur asseblief nie meer boodskappe nie",
    "moenie vir my meer boodskappe stuur nie",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_stop_the_messages_bare_dropped_g_or_in_other_words_gets_the_pause_menu(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


# The false alarms of the round, by kind, in new words: neither a safety path nor a question.
STORIES = [
    "Tripped over the dog at Christmas, bruised my hip, all mended now",
    "found a lump under my arm, the consultant scanned it and said it was benign",
    "swollen knee a fortnight ago, physio said it was just a strain, fine now",
    "the fever's gone now and the aches have settled",
    "My dad was taken into A&E with chest pain on Sunday, he's stable now",
    "my chest went tight when I opened the electricity bill haha",
    "I overdosed on mince pies over Christmas, never again",
    "Mum's face looks orange because she's overdone the fake tan",
    "whole face went red and puffy, that's me after the gym every time",
    "my feet are killing me after the charity walk, so worth it",
    "pins and needles in my hand for a few seconds after carrying the shopping",
    "Is swelling in the fingers a thing on these tablets?",
    "my oncologist thinks I can stop at 7 years rather than 10, we'll see",
    "seeing the dentist next month, should I stop the tablets around it?",
    "a while ago I thought about quitting but I'm sticking with it",
    "My daughter keeps saying she'll stop these reminders, ignore her, I find them useful",
]


@pytest.mark.parametrize("text", STORIES)
async def test_harmless_stories_get_neither_a_safety_path_nor_a_question(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "neutral")


NEUTRAL = [
    # Healed, mended, checked and found harmless, gone.
    "Came off my bike in the spring and cracked a rib, it's mended now",
    "I broke my ankle in the autumn, it's all healed and I'm walking fine",
    "had a nasty fall last month but I've recovered completely",
    "the nurse had a look at the lump on my arm and said it is just a fatty lump, so relieved",
    "the GP checked my wrist and said it's only a sprain",
    # Someone else taken to hospital or home with it.
    "my neighbour was rushed to hospital with a stroke on Tuesday, so sad",
    "my brother came home from work with a fever",
    # Figures of speech, a look after an outing, age, legs stiff or tired.
    "I think I overdosed on Christmas pudding",
    "my mouth droops a bit at the corners, just getting old",
    "all puffy and red-faced, that's me after hot yoga",
    "legs like jelly after the hike, couldn't feel my legs by the end lol",
    "can't move my legs first thing until I've had a hot shower",
    "can't feel my legs after kneeling all day in the garden lol",
    "puffy ankles in the heat, and I'm out of breath after my run",
    # Is it a thing; a switch raised by the nurse; clicking; a plan; a procedure.
    "Is moving from letrozole to anastrozole a thing people do?",
    "is a switch to tamoxifen a thing? my nurse brought it up",
    "my knuckles click when I make a fist",
    "my thumb clicks when I text",
    "Got a colonoscopy booked for Friday, should I pause the letrozole before it?",
    # A doubt she answered; someone else wants the messages stopped; another service.
    "was tempted to pack it in but I'm sticking with it",
    "my son wants to switch off these reminders, ignore him, I love them",
    "I unsubscribed from a couple of support forums, your messages are enough for me",
    # Everyday words near the new rules.
    "two years was plenty for my sister",
    "should I keep taking the stairs or use the lift",
    "at the end of the week I'll be away",
    "my grandson keeps textin me memes lol",
    "Ich denke nicht daran, die Tabletten abzusetzen",
    "Ich denke daran, mit dem Rauchen aufzuhören",
]


@pytest.mark.parametrize("text", NEUTRAL)
def test_the_new_rules_leave_everyday_wordings_alone(text: str) -> None:
    reads_as_none(text)


def test_carrying_on_answers_a_past_doubt_only() -> None:
    assert read_text("last month I was thinking of stopping, but I'm carrying on").kind == "none"
    assert read_text("I'm thinking of stopping but I will keep going").kind == "stop_intent_weak"


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [
        *EMERGENCIES,
        *RED_FLAGS,
        *STOPPING,
        *WEAK,
        *UNSUBSCRIBE,
        *STORIES,
        *NEUTRAL,
        "overdosed on chocolate and then took all my pills",
    ]
    assert not in_labelled_set(mine)
