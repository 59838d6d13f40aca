"""How the rules read a message as a whole: a run-on message is read in overlapping windows
(so its cost grows with its length, not faster), and chest pain never yields to the weather."""

from __future__ import annotations

import itertools

import pytest

from bot import intent
from bot.intent import WINDOW_OVERLAP, WINDOW_WORDS, read_text
from tests.conftest import Harness
from tests.intent_steps import gets_emergency, gets_red_flag

CHATTER = (
    "the grandkids came round and we made scones and the dog ran off with one and my "
    "daughter was on good form and then we watched the football and had a cup of tea "
)


def test_a_short_sentence_is_read_whole() -> None:
    assert intent._windows(["one two three", "four"]) == [["one two three", "four"]]


def test_a_long_clause_is_cut_into_windows_that_overlap() -> None:
    words = [f"w{i}" for i in range(130)]
    windows = intent._windows([" ".join(words)])
    assert all(len(" ".join(w).split()) <= WINDOW_WORDS for w in windows)
    starts = [w[0].split()[0] for w in windows]
    assert starts == ["w0", f"w{WINDOW_WORDS - WINDOW_OVERLAP}", f"w{130 - WINDOW_WORDS}"]
    assert windows[-1][-1].split()[-1] == "w129"  # nothing is dropped at the end


def test_clauses_of_a_long_sentence_are_grouped_and_the_last_ones_carried_over() -> None:
    clauses = [" ".join(f"c{n}w{i}" for i in range(15)) for n in range(10)]
    windows = intent._windows(clauses)
    assert all(sum(len(c.split()) for c in w) <= WINDOW_WORDS for w in windows)
    assert [c for w in windows for c in w if c == clauses[-1]]  # the last clause is read
    # Each window after the first starts with a clause the one before it ended with.
    for before, after in itertools.pairwise(windows):
        assert after[0] in before


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
async def test_an_emergency_anywhere_in_a_long_run_on_message_is_found(
    harness: Harness, where: float
) -> None:
    filler = (CHATTER * 20).split()
    at = int(len(filler) * where)
    words = [*filler[:at], "and", "now", "crushing", "chest", "pain", "and", "sweating"]
    text = " ".join([*words, *filler[at:]])
    assert len(text) > 2500 and "." not in text
    await gets_emergency(harness, text)


async def test_a_red_flag_across_a_window_edge_in_a_run_on_message_is_found(
    harness: Harness,
) -> None:
    filler = (CHATTER * 6).split()
    # The sign's words sit where the first window ends: the next window reads them whole.
    at = WINDOW_WORDS - 3
    text = " ".join([*filler[:at], "i", "found", "a", "new", "lump", "in", "my", "armpit"])
    text += " " + " ".join(filler[at:])
    await gets_red_flag(harness, text)


@pytest.mark.parametrize(
    "text",
    [
        "crushing chest pain and sweating, the weather was freezing when I went out",
        "chest has been tight and heavy since the weather turned",
        "it's the humidity I think but there's a pressure in the middle of my chest",
    ],
)
def test_chest_pain_never_yields_to_the_weather(text: str) -> None:
    assert read_text(text).kind == "emergency"


@pytest.mark.parametrize(
    "text", ["sweating buckets in this heatwave", "puffed out walking up the hill in the heat"]
)
def test_the_weather_still_excuses_sweat_and_puff(text: str) -> None:
    assert read_text(text).kind == "none"
