"""Issue 13, after blind round 15: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set), in
words other than the round's own.

Kinds: self-harm told as a plan (into the water, off a height, under a train) or as a mind made
up with farewells; several doses taken in a muddle; pain in one and the same spot for weeks
that hurts at rest too, wherever it is; straight lines or print gone wavy; hush said to the
bot; "stop writing to me" in Italian; and false alarms that stay quiet (a man of her family
with chest pain and his own appointment, someone else who stopped while she carries on in
Italian, whether a side effect is her medicine or her age, a paddle in the sea, one tablet a
day).
"""

from __future__ import annotations

import pytest

from bot.intent import read_text
from tests.conftest import Harness
from tests.intent_steps import (
    answered_on,
    gets_emergency,
    gets_no_safety_path,
    gets_red_flag,
    in_labelled_set,
)

SELF_HARM = [
    # A plan with a method and no usual words.
    "I'm going to wade out into the river on Sunday and that'll be that",
    "decided I'll step off Beachy Head cliff tomorrow morning",
    "tonight I'm going to throw myself in front of the 6.15 train",
    "drive off the bridge, that's the plan for Friday",
    "I'll lie down on the railway line tonight",
    "I'll just keep walking into the waves until they take me",
    # Her mind made up, a farewell, her things given away, her affairs in order.
    "I mean it this time, nobody is going to talk me out of it. goodbye everyone",
    "made my mind up. I've given my rings away to the girls and written my letters",
    "no joke, I've said my goodbyes to my sisters and sorted my will",
    "not messing about this time, the viaduct on Sunday",
    "hubby doesn't know but I've sorted my funeral plans and given my jewellery away",
]


@pytest.mark.parametrize("text", SELF_HARM)
async def test_self_harm_told_as_a_plan_or_a_farewell_gets_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text, alert="self_harm")


OVERDOSE = [
    "had one letrozole, forgot, had another, then a couple more, I feel weird now",
    "I think that makes five of my tablets today, lost count, head is swimming",
    "double and triple dosed my anastrozole this morning, all mixed up",
    "I've taken three today by mistake and feel odd",
    "popped two by mistake then another at lunch then one more, feel so dizzy",
    "that's three letrozole since breakfast, I kept forgetting I'd had them",
]


@pytest.mark.parametrize("text", OVERDOSE)
async def test_several_doses_in_a_muddle_get_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text)


RED_FLAGS = [
    "my elbow has ached in the one same spot for a month, even when I'm lying still",
    "pain in exactly the same place on my wrist for three weeks, wakes me at night",
    "my heel hurts in the exact same spot for weeks and keeps me awake",
    "straight lines on the crossword look bent and wiggly since Monday",
    "the door frames look warped out of my right eye",
    "the grid on my Amsler chart looks wavy",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_one_spot_at_rest_anywhere_and_distorted_sight_get_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


UNSUBSCRIBE = [
    "ok bot hush now till next Monday",
    "pipe down for a few days please",
    "shush now",
    "hush up for the weekend thanks",
    "smetti di mandarmi messaggi",
    "non scrivetemi più per favore",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_hush_to_the_bot_or_stop_writing_in_italian_gets_the_unsubscribe_reply(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


# Look-alikes: no question and no safety path (through the handlers, so the second reader is
# behind the rules).
QUIET = [
    "my dad has chest pains walking uphill, he's got a cardiology appointment next week",
    "my son's heart has been fluttering, he's seeing the doctor on Monday",
    "la mia amica ha smesso il letrozolo, io invece vado avanti",
    "curious if it's the letrozole or just the menopause making my skin so dry",
    "is it the tablets making my joints ache or just getting older?",
]


@pytest.mark.parametrize("text", QUIET)
async def test_his_chest_pain_her_friend_stopping_or_a_side_effect_question_get_no_question(
    harness: Harness, text: str
) -> None:
    seen = await answered_on(harness, text, "neutral")
    assert "clarify" not in seen, seen


NEUTRAL = [
    "we walked by the sea on holiday, lovely sunset",
    "going to have a paddle in the sea with the grandkids tomorrow",
    "not a joke, the queue at the pharmacy was an hour long",
    "made my mind up, I'm having the blue curtains",
    "took my tablet with my breakfast as usual",
    "I took it twice this week, missed the other days",
    "my hair has gone wavy since chemo",
    "told the kids to hush while I was on the phone",
    "giving my old clothes away to the charity shop, decluttering",
    "drove over the bridge to see my sister",
    "walking the dog along the cliff path this morning",
    "my husband told me to pipe down about the football",
    "tomorrow we're going to drive over the bridge to Skye",
    "I'm going to jump in the lake for a cold water swim on Saturday, brrr",
    "planning to walk into town tomorrow",
    "decided to take the train into London on Friday",
    "tonight we're going to walk along the river for the fireworks",
    "made my mind up, no more chocolate before bed",
    "not joking, my grandson ate six yorkshire puddings",
    "said my goodbyes to the nurses at the hospice, Mum passed peacefully",
    "took one tablet then another vitamin then my calcium",
    "I take three a day - letrozole, calcium and vitamin D",
    "it's my 3rd week on it today",
    "the sea looked wavy and grey today",
    "wondering whether to take it in the morning or at night",
    "shush you lot, said to the grandkids",
]


@pytest.mark.parametrize("text", NEUTRAL)
def test_the_new_rules_leave_everyday_wordings_alone(text: str) -> None:
    assert read_text(text).kind == "none", read_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "going to have a paddle in the sea with the grandkids tomorrow",
        "took my tablet with my breakfast as usual",
        "my hair has gone wavy since chemo",
        "made my mind up, I'm having the blue curtains",
    ],
)
async def test_look_alikes_get_no_safety_path_through_the_handlers(
    harness: Harness, text: str
) -> None:
    await gets_no_safety_path(harness, text)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        # His chest pain happening now, or with sweat or a grey face, stays an emergency.
        ("my husband gets a bit of chest pain and he's sweating, GP next week", "emergency"),
        ("my husband gets a lot of chest pain right now, GP appointment is Friday", "emergency"),
        # Her own chest beside his.
        ("my brother has chest pain, seeing the GP, and I have chest pain too", "emergency"),
        # A side-effect question does not hide a wish to stop.
        ("is it the tablets or my age? either way I'm done with them", "stop_intent"),
        # Her friend stopped and she did too.
        ("mia sorella ha smesso l'anastrozolo, anch'io ho smesso", "stop_intent"),
    ],
)
def test_real_signals_beside_the_new_wordings_still_count(text: str, kind: str) -> None:
    assert read_text(text).kind == kind, read_text(text)


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [*SELF_HARM, *OVERDOSE, *RED_FLAGS, *UNSUBSCRIBE, *QUIET, *NEUTRAL]
    assert not in_labelled_set(mine)
