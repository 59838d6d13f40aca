"""Issue 13, after blind round 10: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set).

Kinds: stopping told by where the medicine or its box is now (a place and a time read
together, a bin of any kind, handed back to the pharmacy with any words between, unopened
since a date), by a decision about the years, by news given to the doctor, by "stopped N weeks
ago", by a schedule set instead of daily; someone writing for her ("my wife / mum / she
stopped her tablets") against a friend's stopping asked about; emergencies told as red flags
(a limb deformed by its shape after a fall, a long lie on the floor, a week's dosette box
taken at once, a curtain over one eye); red flags in plain words (pain suddenly much worse,
looking yellow, a relative's "can't walk today"); stop-the-messages said softly or as leaving;
and false alarms that stay neutral (exercise, a joke about the family, an emotion, a puffy
ankle in the heat, another service, a change of make, a switch that is going well).
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
    "mum slipped in the garden, her leg looks shorter than the other and her foot is turned out",
    "tripped on the step, my wrist is bent like a banana and it's agony",
    "I've been lying on the bathroom floor for about three hours and I can't get up",
    "stuck on the hall floor since midnight, cannot get up",
    "gran's emptied her weekly pill organiser, she's had the lot, every compartment",
    "a grey curtain came down across my left eye about ten minutes ago",
]


@pytest.mark.parametrize("text", EMERGENCIES)
async def test_emergencies_told_as_red_flags_get_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text)


def test_wanting_to_end_it_with_letters_written_is_self_harm() -> None:
    found = read_text("I'm ready to end it. The goodbye notes are written.")
    assert found.kind == "emergency"
    assert "emergency.self_harm_plan" in found.matched


RED_FLAGS = [
    "my knees are suddenly about five times worse than yesterday, can barely manage the stairs",
    "out of nowhere the ache in my hip has gone from a 2 to an 8",
    "my husband says I look yellow and I'm itchy everywhere",
    "mum can't put any weight on her left leg this morning",
    "my wife can't walk today, her hip gave out",
    "the knuckle on my index finger is angry red and throbbing",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_red_flags_in_plain_words_or_by_a_relative_get_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


STOPPING = [
    # Where the medicine or its box is now, with a time or a condition.
    "the anastrozole packet has been in the kitchen drawer since february",
    "my tablets are in a biscuit tin in the loft, they can come out when my hands stop hurting",
    "the letrozole strips are at the back of the cupboard, untouched for weeks",
    "oh yes, 'religiously' taking them 😏 the box is in the kitchen bin since Easter",
    "handed the leftover letrozole back in at the chemist on Monday",
    "took the unused boxes of exemestane back to the chemist last week",
    "the new pack of anastrozole has sat unused on the sideboard since my birthday",
    # Decisions, news and schedules.
    "not doing year three, I've decided",
    "I'm not doing another 2 years of this",
    "let my GP know I'm coming off it this week",
    "came off them about three weeks ago and I feel human again",
    "I'm not ordering any more letrozole",
    "twice a week now rather than every day, my choice",
    # Someone writing for her.
    "my mother has given up her anastrozole and says she's done",
    "my wife binned her letrozole tablets on Sunday",
]


@pytest.mark.parametrize("text", STOPPING)
async def test_stopping_told_by_place_decision_or_for_her_starts_the_doctor_first_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


WEAK = [
    "my neighbour quit hers after three years, can I do that too?",
    "my partner says I should quit",
    "would giving up early be a bad idea at my age?",
    "if I came off it now would I lose the benefit?",
    "are treatment breaks a thing with anastrozole?",
    "stuck between the side effects and the fear of it coming back",
    "the chemist handed me the new box and I'm not sure I want to open it",
]


@pytest.mark.parametrize("text", WEAK)
async def test_weak_doubts_and_a_friend_stopping_asked_about_get_the_clarifying_question(
    harness: Harness, text: str
) -> None:
    await gets_weak_question(harness, text)


def test_asking_how_to_come_off_is_a_stop_signal() -> None:
    assert read_text("what's the safest way to come off letrozole?").is_stop


UNSUBSCRIBE = [
    "a bit less often would be nice please",
    "please sign me off now",
    "can you switch mum off from all this",
    "take me out of the research project please",
    "right, I'm out, thanks",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_stop_the_messages_said_softly_or_as_leaving_gets_the_pause_menu(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


NEUTRAL = [
    # Exercise, a joke about the family, an emotion, a puffy ankle that passes.
    "sweating like mad in spin class, heart racing, loved it",
    "heart attack? nah just the grandkids home for half term",
    "numb with disbelief when I won the raffle",
    "feet a bit puffy in this summer heat, gone by morning, no pain",
    "sudden rain, my knees are much worse in the damp",
    "pain much worse after gardening all day",
    # Another service; a change of make; a switch that is going well.
    "fed up with all the texts from my phone company",
    "the chemist gave me a different brand of letrozole, is that fine?",
    "my oncologist swapped me from anastrozole to letrozole in May, going well so far",
    # Someone else, another medicine, something else stopped.
    "my friend stopped her letrozole and her cancer came back",
    "my son stopped his antibiotics early",
    "she stopped her tablets for a week before the op, back on them now",
    "my mum stopped her tablets in 2015 after her course",
    "told my GP I'm stopping the vitamin D",
    "I feel amazing since I quit smoking",
    # Where the tablets are kept, and taken.
    "my tablets live in the kitchen drawer next to the tea bags",
    "I keep my pills in the bathroom cabinet",
    "the tablets are in the cupboard where they belong, I take them every morning",
    "I've been on letrozole for weeks, keep the box on the windowsill so I remember",
    "my tablets are in the drawer, I've taken one every day since April",
    "I've taken every one this week, the pill box is empty, need a refill",
    "I took my tablets to the pharmacy to check they were the right ones",
    "I put the empty packet in the recycling bin",
    # Everyday words near the new rules.
    "i am out of milk",
    "the doctor signed me off work for two weeks",
    "I was on the floor for an hour playing with the grandkids",
    "the bruise on my arm has gone yellow",
    "not doing year 2 of my course at college",
    "if I stop now I'll never finish the crossword",
    "my leg is shorter than the other one since birth",
]


@pytest.mark.parametrize("text", NEUTRAL)
def test_the_new_rules_leave_everyday_wordings_alone(text: str) -> None:
    reads_as_none(text)


def test_exertion_never_hides_chest_pain() -> None:
    found = read_text("hot yoga: sweating, heart pounding, chest pain that won't go")
    assert found.kind == "emergency"


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [*EMERGENCIES, *RED_FLAGS, *STOPPING, *WEAK, *UNSUBSCRIBE, *NEUTRAL]
    assert not in_labelled_set(mine)
