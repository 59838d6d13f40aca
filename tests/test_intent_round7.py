"""Issue 13, after blind round 7: each kind of miss is fixed by method, checked through the
real handlers with wordings written for these tests (none of them is in the labelled set).

Kinds: weak doubts said sideways (years ahead as a burden, no point of the pills, more harm
than good, others stopped and nothing happened, another medicine without the pain, "why
should I keep", a moan about the pills while not stopping); strong stopping told indirectly
(not had one in a fortnight, an adjective before the pill, a cancelled repeat, the medicine
as a partner she has left or fired, "I will not take" for a season, "I just did not take
it"); an overdose by the handful; red flags in plain or clinical words (yellow far from
"skin", a thermometer reading, "hold the spoon", pain even lying still in bed, nocturnal
pain); stop-the-messages told softly (not sending me the reminders anymore, stop asking me,
leave the study); and false alarms the new rules must not raise.
"""

from __future__ import annotations

import pytest

from bench.score_intent import top_path
from bot.intent import read_text
from tests.conftest import Harness
from tests.intent_steps import (
    answered_on,
    gets_red_flag,
    gets_weak_question,
    in_labelled_set,
    reply_paths,
)

WEAK = [
    # Years ahead as a burden.
    "Ten more years of this aching? Really?",
    "Do I honestly have to take it for five years?",
    "Who decided on ten years anyway",
    "Five years feels like a life sentence",
    # No point of the pills; more harm than good (her own or a relative's view).
    "I can't see the point of taking these tablets now, honestly",
    "My daughter reckons the tablets do more harm than good and I'm starting to agree",
    # Others stopped and nothing happened.
    "A lady in my group came off them and nothing bad happened to her",
    # Another medicine without the pain, while still taking it.
    "Is there a different tablet without the joint pain? I'm still taking mine for now",
    "Is there something else I could take that doesn't wreck my knees?",
    # "Why should I keep", asked straight or reported.
    "Why should I carry on feeling like an old woman for a tiny benefit?",
    "Is anyone going to tell me why I must keep ruining my knees for a tiny gain?",
    # A moan about the pills while saying she is not stopping.
    "I'm not quitting, just venting. These tablets are torture.",
    "Me versus anastrozole, day 400, still standing",
]


@pytest.mark.parametrize("text", WEAK)
async def test_weak_doubts_said_sideways_get_the_recorded_clarifying_question(
    harness: Harness, text: str
) -> None:
    await gets_weak_question(harness, text)


STOPPING = [
    "I haven't taken one in over a week, the box is in the drawer",
    "I have not had the little round tablet since Tuesday, is that ok?",
    "Rang the surgery and cancelled my repeat order for the letrozole",
    "Me and letrozole have split up. For good this time.",
    "Anastrozole and I have parted ways",
    "I'm on strike from my tablets until someone listens",
    "The box of letrozole has been sitting unopened since Easter",
    "I've sacked my anastrozole, best decision this year",
    "During the fast I won't take my tablets, I'll start them again after",
    "Not missed it, I just chose not to take my pill. Fourth day now.",
]


@pytest.mark.parametrize("text", STOPPING)
async def test_stopping_told_indirectly_starts_the_doctor_first_path(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "doctor_first")


async def test_an_overdose_by_the_handful_gets_the_emergency_reply(harness: Harness) -> None:
    h = harness
    seen = await reply_paths(
        h, "took a whole handful of codeine for the pain and now I'm so drowsy"
    )
    assert top_path(seen) == "emergency", seen


RED_FLAGS = [
    "My eyes have turned a funny sort of mustard yellow colour, wee is dark too",
    "The thermometer reads 38.6 and I keep shivering",
    "I can't hold the kettle or the spoon, my hands won't grip",
    "The ache is there all day, even lying flat in bed",
    "Night time hip pain for two weeks, new, wakes me up",
]


@pytest.mark.parametrize("text", RED_FLAGS)
async def test_red_flags_in_plain_or_clinical_words_get_the_red_flag_reply(
    harness: Harness, text: str
) -> None:
    await gets_red_flag(harness, text)


UNSUBSCRIBE = [
    "Please would you stop sending me these reminders now, thank you",
    "Stop asking me about my joints every day",
    "I want to leave the research but I'll keep taking my tablets",
    "Could you text me a bit less often please",
]


@pytest.mark.parametrize("text", UNSUBSCRIBE)
async def test_stop_the_messages_told_softly_gets_the_pause_menu(
    harness: Harness, text: str
) -> None:
    await answered_on(harness, text, "unsubscribe")


NEUTRAL = [
    "Five years done and dusted, so proud of myself",
    "Why should I keep it in the fridge?",
    "Cancelled my dentist appointment, is that ok?",
    "I will not take it with food",
    "I won't take the tablet on an empty stomach",
    "The pills are hell to swallow",
    "My husband dumped the rubbish in the bin",
    "If I ever had a tight chest, would I ring the ambulance or the nurse?",
    "Is there anything else I can use that is easier on the stomach for my cough",
]


@pytest.mark.parametrize("text", NEUTRAL)
def test_the_new_rules_leave_everyday_wordings_alone(text: str) -> None:
    assert read_text(text).kind == "none"


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    mine = [*WEAK, *STOPPING, *RED_FLAGS, *UNSUBSCRIBE, *NEUTRAL]
    assert not in_labelled_set(mine)
