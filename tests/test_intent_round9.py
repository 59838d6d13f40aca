"""Issue 13, after blind round 9: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set).

Kinds: a man of her family (or "he/his") as the subject of any emergency or red-flag sign,
also through a body part he owns ("my brother's ankle"); harmless causes and figures of
speech around sign words (laughing, a limb slept on, a pet lying on it, the weather, a chest
of drawers, food lumps and packs of biscuits); unsubscribe aimed at another service; pausing
for a procedure and one missed dose asked about; red flags said together with stopping (bone
pain at night or at rest, bleeding after the menopause); a sudden headache with vomiting or a
stiff neck; stopping by disposal, by not renewing, by a refill cancelled, by a box not gone
back to, by sarcasm; weak doubts said sideways; an overdose told with wanting it to stop.
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
    "out of nowhere the worst pain in my head, I've thrown up twice since",
    "sudden pounding pain at the back of my head and my neck has gone stiff",
    "my right arm and right leg feel heavy and dead since lunch",
    "coughing up dark red blood this evening, quite a lot",
    "I threw up something like coffee grounds twice today",
]


@pytest.mark.parametrize("text", EMERGENCIES)
async def test_emergencies_told_by_their_signs_get_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text)


SELF_HARM = [
    "took what was left of my letrozole and loads of the co-codamol. I want it all to end",
    "I am not safe with myself tonight",
]


@pytest.mark.parametrize("text", SELF_HARM)
async def test_an_overdose_with_wanting_it_over_gets_the_self_harm_reply(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text, alert="self_harm")


RED_FLAGS = [
    "quit the letrozole last month and now my lower spine aches so much it wakes me at 3am",
    "thinking of stopping the anastrozole, my pelvis has a new ache that keeps me awake",
    "my thigh bone is killing me and it wakes me every night",
    "a little bleeding down below yesterday, first time in years",
    "noticed some spotting today, my periods stopped 12 years ago",
    "light bleeding again, which is odd as I'm well past the menopause",
    "my ankle is hot and swollen since this morning",
    "my hand went numb after I fell off the step",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_red_flags_said_with_stopping_or_in_plain_words_get_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


def test_a_red_flag_told_with_stopping_also_starts_the_doctor_first_path() -> None:
    found = read_text("I gave up the letrozole and now my hip pain wakes me every night")
    assert found.kind == "red_flag"
    assert {"red_flag", "stop_intent"} <= found.signals


STOPPING = [
    "returned my unused letrozole to the pharmacy to be disposed of",
    "the exemestane box has sat unopened on the shelf for three weeks",
    "not renewing it",
    "the chemist phoned about my repeat prescription and I asked them to cancel",
    "oh I'm definitely taking them 🙄 they went in the bin on Friday",
    "put the packet in the cupboard after the hospital visit and have not gone back to it",
    "my mum has thrown away her tablets, she won't talk about it",
    "I don't bother with the tablets anymore",
    "having a break from them till my holiday is over, my own decision",
]


@pytest.mark.parametrize("text", STOPPING)
async def test_stopping_by_disposal_or_not_renewing_starts_the_doctor_first_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


WEAK = [
    "not sure I'll last the full course of these tablets",
    "am I allowed to say no to it?",
    "I keep weighing the side effects against what it actually does for me",
    "any alternative, or must I just put up with it",
    "if I came off them would my knees stop aching?",
    "could I stop early if my scans stay clear?",
    "does it make sense to carry on taking it at 84",
    "my consultant wants me to continue to ten years. I'm reluctant",
    "do most women actually finish the treatment?",
]


@pytest.mark.parametrize("text", WEAK)
async def test_weak_doubts_said_sideways_get_the_recorded_clarifying_question(
    harness: Harness, text: str
) -> None:
    await gets_weak_question(harness, text)


UNSUBSCRIBE = [
    "please unsubscribe me",
    "unsubscribe me from this please",
    "please discontinue these reminders",
    "remove me from your list",
    "not interested in these questions now",
    "could we change it to weekly",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_stop_the_messages_about_this_bot_gets_the_pause_menu(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


NEUTRAL = [
    # A man of her family is the subject of the sign.
    "my husband's ankle has swollen up after the flight",
    "my dad's chest has been hurting, he is seeing his GP",
    "my grandson's wrist is broken from rugby",
    "my brother passed out at the wedding, too much sun",
    "his leg went numb on the drive home",
    # Harmless causes and figures of speech.
    "I could not breathe for laughing at the panto",
    "my leg went numb from sitting on it during the film",
    "the cat was lying on my arm all night and now it is numb",
    "my face dropped when I saw the bill",
    "the new chest of drawers is heavy, my son carried it up",
    "there was a lump in my gravy, typical",
    "ate the whole packet of biscuits at book club, tablets as usual",
    "the whole town is hot and swollen with tourists, the weather is mad",
    "cabin fever after a week indoors with the rain",
    # Another service.
    "I must unsubscribe from all these shop newsletters",
    "too many messages from the school group chat",
    # Procedures and one missed dose.
    "do I need to pause the letrozole before my colonoscopy?",
    "the surgeon said to stop the tablets a week before the operation",
    "dentist asked me to stop the aspirin before the extraction, do I keep the anastrozole?",
    "I dropped my tablets in the bath by accident, is missing one ok?",
    "forgot my tablet last night. should I take two today?",
    "the GP says I can stop the vitamin D but carry on with the letrozole",
]


@pytest.mark.parametrize("text", NEUTRAL)
def test_the_new_rules_leave_everyday_wordings_alone(text: str) -> None:
    reads_as_none(text)


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [
        *EMERGENCIES,
        *SELF_HARM,
        *RED_FLAGS,
        *STOPPING,
        *WEAK,
        *UNSUBSCRIBE,
        *NEUTRAL,
    ]
    assert not in_labelled_set(mine)
