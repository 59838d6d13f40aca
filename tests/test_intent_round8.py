"""Issue 13, after blind round 8: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set).

Kinds: phone spellings of symptom and everyday words (a words map, fuzzy key symptom words
one edit away, drug names split by dictation); an overdose told formally or by quantity; a
limb bent sideways; legs that give way or a weight she cannot take; new back pain worst at
night (also across sentences); one leg big and hot; a hand that will not grip; stopping told
by actions or time (a hidden packet, a cancelled pharmacy order, "I haven't since", the last
pill days ago, "every three days"); weak doubts said sideways (is it really keeping me
alive, the odds if I don't take it, raising stopping with the doctor, a bit over the pills,
weighing whether to go on, five years is long); stop-the-messages without "stop" (hold the
reminders, snooze, withdraw consent, leave the programme, fine without the check-ins); and
false alarms the new rules must not raise.
"""

from __future__ import annotations

import pytest

from bot.intent import normalise, read_text
from tests.conftest import Harness
from tests.intent_steps import (
    answered_on,
    gets_emergency,
    gets_red_flag,
    gets_weak_question,
    in_labelled_set,
)


def test_phone_spellings_and_split_drug_names_are_normalised() -> None:
    assert normalise("my bak hurts every nite") == "my back hurts every night"
    assert normalise("feel dizy, my nee is swolen") == "feel dizzy my knee is swollen"
    assert normalise("i think i faintd") == "i think i fainted"  # one edit from a symptom word
    assert normalise("i quit the let row zole") == "i quit the letrozole"  # dictation split
    # Near-misses of everyday words stay as they are; two edits are not a symptom word.
    assert normalise("let me know, i feel fainter today") == "let me know i feel fainter today"
    assert normalise("the hole in my sock") == "the hole in my sock"


EMERGENCIES = [
    "I accidently swallowd the hole packet of letrozole, feel dizy",
    "I have consumed what must be nine letrozole tablets by error",
    "swallowed most of the bottle of paracetamol",
    "tripped on the kerb and my ankle is pointing sideways",
    "my left arm won't do what I want and my words are coming out wrong",
    "seeing double and my right side has gone floppy",
    "blood pouring from my nose for an hour, feel faint",
    "she's gone blue round the mouth and can't talk",
]


@pytest.mark.parametrize("text", EMERGENCIES)
async def test_emergencies_told_in_plain_or_formal_words_get_the_emergency_reply(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text)


SELF_HARM = [
    "been thinking about walking into the river tonight",
    "written my goodbye letters. I know how I will do it",
    "I burnt myself again on purpose, it helps",
]


@pytest.mark.parametrize("text", SELF_HARM)
async def test_self_harm_told_by_its_method_or_plan_gets_the_urgent_reply(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text, alert="self_harm")


RED_FLAGS = [
    "my legs keep giving way under me since yesterday",
    "I can't hold my own weight on my legs today",
    "I can't get up out of the armchair without help now",
    "new backache, it's at its worst around 4am",
    "pain in my lower back. It is worse in the middle of the night and I cannot lie on it",
    "my left calf is fat and warm, the other one is fine",
    "right ankle has come up like a balloon",
    "my fingers won't grip the pen, dropped three mugs today",
    "my bak aches every nite now",
    "hot and shivery all day, my hip aches",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_red_flags_in_plain_words_get_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


STOPPING = [
    "I've hidden the tablets behind the tins in the cupboard, not touching them",
    "cancelled my online pharmacy delivery for the letrozole",
    "Told the nurse I take it. Truth is I haven't since my birthday",
    "my very last dose was three days ago and that's it",
    "I'm going to stop after 2 years, that's my plan",
    "only take the pill every three days now",
    "I don't want take these pills anymore",
    "Not been taking them much at all",
    "I've been refusing my letrozole since the weekend",
    "I am not taking any more, done",
]


@pytest.mark.parametrize("text", STOPPING)
async def test_stopping_told_by_actions_or_time_starts_the_doctor_first_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


WEAK = [
    "are these pills really keeping the cancer away?",
    "what's the chance of it returning if I never take another one",
    "would my oncologist mind if I raised stopping at the next visit",
    "getting a bit over the letrozole to be honest",
    "been mulling over whether I should carry on",
    "five years seems a really long time",
    "dunno if I can manage 5 more years",
    "why do I even have to take these tablets",
    "is there a different kind of pill that is gentler",
    "is the treatment worse than the illness?",
    "do I reely need these tabs",
]


@pytest.mark.parametrize("text", WEAK)
async def test_weak_doubts_said_sideways_get_the_recorded_clarifying_question(
    harness: Harness, text: str
) -> None:
    await gets_weak_question(harness, text)


UNSUBSCRIBE = [
    "please hold the reminders until after my holiday",
    "could you snooze all the questions for a fortnight",
    "I am withdrawing my consent, please delete my data",
    "I'm pulling out of the study",
    "please take my mum off the list, she's in hospital",
    "we are doing fine without your check ins",
    "just text me once a week from now on",
    "stop the surveys please",
    "no mor txts plese",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_stop_the_messages_without_stop_gets_the_pause_menu(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


NEUTRAL = [
    "I can't breathe a syllable of this to my husband, it's a surprise",
    "stop it, you're too kind",
    "I passed out once when I was 9 at the dentist",
    "tired of the wind, not the tablets",
    "can I pause it before my endoscopy?",
    "I struggle to swallow the tablets, can I crush them?",
    "having a break from the garden this week",
    "what's the real difference between femara and arimidex",
    "my friend had chest pain, turned out to be reflux",
    "my back aches after gardening",
    "my legs feel hot in the evening",
    "I dropped my phone",
    "hold on, I'll read the messages later",
    "I hide the pills from the grandkids in the top cupboard",
    "my last tablet was this morning with breakfast",
    "wondering whether to keep going to yoga",
    "our dog is fine without the lead now",
    "I only take the tablet in the morning",
    "the messages are lovely, keep them coming",
]


@pytest.mark.parametrize("text", NEUTRAL)
def test_the_new_rules_leave_everyday_wordings_alone(text: str) -> None:
    assert read_text(text).kind == "none", read_text(text)


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [*EMERGENCIES, *SELF_HARM, *RED_FLAGS, *STOPPING, *WEAK, *UNSUBSCRIBE, *NEUTRAL]
    assert not in_labelled_set(mine)
