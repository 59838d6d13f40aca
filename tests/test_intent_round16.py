"""Issue 13, after blind round 16: its one emergency miss was a wish not to live told beside
stopping her tablets ("stopped ... and stopped wanting to ..."), read as stopping only. The
kind: a wish to live that stopped, went or was lost, in any words, is self-harm whatever else
the message says; the will to live lost over a queue or a meeting, or a wish not to live
somewhere, is not. Wordings written for these tests, none from the labelled set.
"""

from __future__ import annotations

import pytest

from bot.intent import read_text
from tests.conftest import Harness
from tests.intent_steps import gets_emergency, in_labelled_set

SELF_HARM = [
    "I quit the anastrozole on Friday and to be honest I've quit wanting to live as well",
    "these days I no longer wish to wake up",
    "I've lost all will to carry on",
    "not bothered about being alive any more",
    "zero desire to go on, sorry to say it",
]


@pytest.mark.parametrize("text", SELF_HARM)
async def test_a_wish_to_live_that_stopped_gets_the_emergency_reply_and_the_self_harm_alert(
    harness: Harness, text: str
) -> None:
    await gets_emergency(harness, text, alert="self_harm")


NEUTRAL = [
    "I lost the will to live in that meeting about the car park",
    "we no longer want to live in the city, too noisy",
    "I'd never want to live anywhere but Cornwall",
    "I'd never want to go on one of those big ships",
]


@pytest.mark.parametrize("text", NEUTRAL)
def test_the_will_to_live_lost_over_a_meeting_or_a_place_is_not_self_harm(text: str) -> None:
    assert read_text(text).kind != "emergency", read_text(text)


def test_these_wordings_are_not_in_the_labelled_set() -> None:
    assert not in_labelled_set([*SELF_HARM, *NEUTRAL])
