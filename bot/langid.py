"""Tells which language a message is written in: a small offline identifier in plain Python.

Profiles (common function words and letters only one language uses) live in
`content/safety/langid.yaml`. It only needs to tell English from a handful of languages
well enough to say "I only read English"; the safety rules have already run by then.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from bot.content import DEFAULT_LOCALE, load_yaml

_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Profile:
    """One language: its function words (folded) and its own letters (raw, lower case)."""

    code: str
    words: frozenset[str]
    marks: tuple[str, ...]


def _fold(text: str) -> str:
    """Lower-cases and strips accents, as the safety rules do."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=1)
def profiles() -> tuple[tuple[Profile, ...], int]:
    """Loads the language profiles and the minimum number of hits for a verdict."""
    raw = load_yaml("safety/langid.yaml")
    found = tuple(
        Profile(
            code=str(code),
            words=frozenset(str(w) for w in spec.get("words", [])),
            marks=tuple(str(m) for m in spec.get("marks", [])),
        )
        for code, spec in raw["languages"].items()
    )
    return found, int(raw.get("min_hits", 2))


def scores(text: str) -> dict[str, int]:
    """Returns, per language, how many of the message's words and marks are that language's."""
    tokens = _WORD.findall(_fold(text))
    lowered = text.lower()
    found, _ = profiles()
    return {
        p.code: sum(1 for t in tokens if t in p.words) + sum(1 for m in p.marks if m in lowered)
        for p in found
    }


def identify(text: str) -> str:
    """Returns the language code of a message, English when in doubt, "" when it has no words.

    Another language wins only with at least `min_hits` hits and more than English has: a
    Spanish word in an English sentence leaves it English (the safety rules read both).
    """
    if not _WORD.search(_fold(text)):
        return ""
    _, min_hits = profiles()
    counted = scores(text)
    english = counted.get(DEFAULT_LOCALE, 0)
    best, hits = max(counted.items(), key=lambda item: (item[1], item[0] == DEFAULT_LOCALE))
    if best != DEFAULT_LOCALE and hits >= min_hits and hits > english:
        return best
    return DEFAULT_LOCALE
