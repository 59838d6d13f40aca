"""Detects emergencies, red flags, stop intent and unsubscribe requests in a participant's text.

The rules are data in `content/safety/<locale>.yaml`; this module only normalises text and
combines the term groups and patterns it finds there. Results carry rule ids, never the text,
so they are safe to log.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from bot.content import DEFAULT_LOCALE, ContentError
from bot.paths import content_dir

Kind = Literal["emergency", "red_flag", "stop_intent", "stop_intent_weak", "unsubscribe", "none"]

# Highest first: when a message carries several signals the first one here wins.
PRECEDENCE: tuple[Kind, ...] = (
    "emergency",
    "red_flag",
    "stop_intent",
    "stop_intent_weak",
    "unsubscribe",
)

_GROUP_REF = re.compile(r"\{([a-z_]+)\}")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})
_REPEATS = re.compile(r"([a-z])\1{2,}")
# Clause breaks for detection: sentence punctuation, commas, spaced dashes and "but".
_CLAUSE_BREAK = re.compile(r"[.,;:!?\n]+|\s[-–—]+\s|\bbut\b")
_NON_WORD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Detection:
    """What a message signals: the winning kind, every kind seen, and the rule ids that fired."""

    kind: Kind
    signals: frozenset[str]
    matched: tuple[str, ...]

    @property
    def is_stop(self) -> bool:
        """Tells whether the message expresses stop intent, strong or weak."""
        return self.kind in ("stop_intent", "stop_intent_weak")


@dataclass(frozen=True)
class NegationProfile:
    """Cues that cancel a match: shortly before its action word, or after it in the clause."""

    window: int
    before: re.Pattern[str] | None
    after: re.Pattern[str] | None


@dataclass(frozen=True)
class Rule:
    """One compiled detection rule."""

    id: str
    kind: str
    regex: re.Pattern[str]
    negation: str | None = None
    third_party: bool = False


@dataclass(frozen=True)
class Normaliser:
    """Turns raw text into clean clauses: folding, contractions, rewrites, drug-name fixes."""

    contractions: tuple[tuple[str, str], ...]
    words: Mapping[str, str]
    phrases: tuple[tuple[re.Pattern[str], str], ...]
    fuzzy_terms: tuple[str, ...]
    fuzzy_min_length: int
    fuzzy_short_max: int
    fuzzy_long_from: int
    fuzzy_long_max: int

    def fold(self, text: str) -> str:
        """Lower-cases, strips accents, shortens letter runs and expands contractions."""
        decomposed = unicodedata.normalize("NFKD", text)
        plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        folded = _REPEATS.sub(r"\1\1", plain.lower().translate(_APOSTROPHES))
        for old, new in self.contractions:
            folded = folded.replace(old, new)
        return folded

    def clean(self, fragment: str) -> str:
        """Normalises one already-folded clause to space-separated canonical tokens."""
        tokens: list[str] = []
        for token in _NON_WORD.sub(" ", fragment).split():
            tokens.extend(self.words.get(token, self._fix_drug_name(token)).split())
        cleaned = " ".join(tokens)
        for pattern, replacement in self.phrases:
            cleaned = pattern.sub(replacement, cleaned)
        return cleaned

    def clauses(self, text: str) -> list[str]:
        """Splits text into normalised clauses (the unit every detection rule looks at)."""
        parts = (self.clean(p) for p in _CLAUSE_BREAK.split(self.fold(text)))
        return [p for p in parts if p]

    def _fix_drug_name(self, token: str) -> str:
        """Returns the drug name a token is a near-miss of, or the token unchanged."""
        if len(token) < self.fuzzy_min_length or token in self.fuzzy_terms:
            return token
        for term in self.fuzzy_terms:
            limit = (
                self.fuzzy_long_max if len(term) >= self.fuzzy_long_from else self.fuzzy_short_max
            )
            if token[0] == term[0] and _within_distance(token, term, limit):
                return term
        return token


def _within_distance(a: str, b: str, limit: int) -> bool:
    """Tells whether two words are within `limit` edits (adjacent swaps count as one)."""
    if abs(len(a) - len(b)) > limit:
        return False
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        if min(row) > limit:
            return False
        prev2, prev = prev, row
    return prev[-1] <= limit


def _phrase_regex(entry: object, groups: Mapping[str, Any], depth: int) -> str:
    """Turns one group entry into a regex: `re:` entries verbatim, else words with `*` endings."""
    if not isinstance(entry, str):
        # YAML reads bare on/off/no/yes as booleans; a silent True would never match.
        raise ContentError(f"safety rules: group entry {entry!r} must be quoted text")
    if entry.startswith("re:"):
        return expand(entry[3:], groups, depth + 1)
    words = []
    for word in entry.split():
        if word.endswith("*"):
            words.append(re.escape(word[:-1]) + r"\w*")
        else:
            words.append(re.escape(word))
    return " ".join(words)


def expand(pattern: str, groups: Mapping[str, Any], depth: int = 0) -> str:
    """Replaces every `{group}` in a pattern with an alternation of that group's entries."""
    if depth > 5:
        raise ContentError("safety rules: groups nest too deeply")

    def one(match: re.Match[str]) -> str:
        """Returns the alternation for one `{group}` reference."""
        name = match.group(1)
        if name not in groups:
            raise ContentError(f"safety rules: unknown group {{{name}}}")
        alternatives = sorted(
            (_phrase_regex(e, groups, depth) for e in groups[name]), key=len, reverse=True
        )
        return "(?:" + "|".join(alternatives) + ")"

    return _GROUP_REF.sub(one, pattern)


def compile_pattern(pattern: str, groups: Mapping[str, Any]) -> re.Pattern[str]:
    """Compiles a rule pattern so that it only matches whole tokens."""
    return re.compile(r"(?<![a-z0-9])(?:" + expand(pattern, groups) + r")(?![a-z0-9])")


def _cue_regex(cues: Iterable[object]) -> re.Pattern[str] | None:
    """Compiles a list of negation cues into one whole-word pattern (None when empty)."""
    listed = list(cues)
    if any(not isinstance(c, str) for c in listed):
        raise ContentError(
            "safety rules: negation cues must be quoted text (YAML reads no as false)"
        )
    items = sorted((str(c) for c in listed), key=len, reverse=True)
    if not items:
        return None
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, items)) + r")(?![a-z0-9])")


def parse_negations(raw: Mapping[str, Any]) -> dict[str, NegationProfile]:
    """Reads the named negation profiles of a rules file."""
    return {
        name: NegationProfile(
            window=int(spec.get("window", 3)),
            before=_cue_regex(spec.get("before", [])),
            after=_cue_regex(spec.get("after", [])),
        )
        for name, spec in raw.items()
    }


def parse_rules(raw: Sequence[Mapping[str, Any]], groups: Mapping[str, Any]) -> tuple[Rule, ...]:
    """Compiles the rule list of a rules file."""
    rules = []
    for spec in raw:
        try:
            regex = compile_pattern(str(spec["pattern"]), groups)
        except re.error as exc:
            raise ContentError(f"safety rule {spec.get('id')!r}: {exc}") from exc
        rules.append(
            Rule(
                id=str(spec["id"]),
                kind=str(spec["kind"]),
                regex=regex,
                negation=spec.get("negation"),
                third_party=bool(spec.get("third_party", False)),
            )
        )
    return tuple(rules)


def action_start(match: re.Match[str]) -> int:
    """Returns where the rule's action word starts (a group named act...), else the match start."""
    for name in match.re.groupindex:
        if name.startswith("act") and match.group(name) is not None:
            return match.start(name)
    return match.start()


def is_negated(
    clause: str, match: re.Match[str], profile: NegationProfile | None, *, act: int | None = None
) -> bool:
    """Tells whether a negation cue sits just before the action word, or after the match."""
    if profile is None:
        return False
    start = action_start(match) if act is None else act
    before = " ".join(clause[:start].split()[-profile.window :])
    if profile.before is not None and profile.before.search(before):
        return True
    return profile.after is not None and bool(profile.after.search(clause[match.end() :]))


@dataclass(frozen=True)
class RuleBook:
    """The compiled detection rules of one locale."""

    locale: str
    normaliser: Normaliser
    groups: Mapping[str, Any]
    negations: Mapping[str, NegationProfile]
    rules: tuple[Rule, ...]
    third_party: re.Pattern[str] | None
    raw: Mapping[str, Any]


def rules_path(locale: str, stem: str = "") -> Path:
    """Returns `content/safety/<stem><locale>.yaml`, falling back to English."""
    folder = content_dir() / "safety"
    path = folder / f"{stem}{locale}.yaml"
    return path if path.is_file() else folder / f"{stem}{DEFAULT_LOCALE}.yaml"


def _normaliser(raw: Mapping[str, Any]) -> Normaliser:
    """Builds the text normaliser from the `normalise` section of a rules file."""
    fuzzy = raw.get("fuzzy", {})
    return Normaliser(
        contractions=tuple((str(a), str(b)) for a, b in raw.get("contractions", [])),
        words={str(k): str(v) for k, v in raw.get("words", {}).items()},
        phrases=tuple(
            (re.compile(r"(?<![a-z0-9])" + re.escape(str(a)) + r"(?![a-z0-9])"), str(b))
            for a, b in raw.get("phrases", [])
        ),
        fuzzy_terms=tuple(str(t) for t in fuzzy.get("terms", [])),
        fuzzy_min_length=int(fuzzy.get("min_length", 5)),
        fuzzy_short_max=int(fuzzy.get("short_max", 1)),
        fuzzy_long_from=int(fuzzy.get("long_from", 8)),
        fuzzy_long_max=int(fuzzy.get("long_max", 2)),
    )


@lru_cache(maxsize=8)
def rulebook(locale: str = DEFAULT_LOCALE) -> RuleBook:
    """Loads and compiles `content/safety/<locale>.yaml` (English when the locale has none)."""
    path = rules_path(locale)
    if not path.is_file():
        raise ContentError(f"missing safety rules {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    groups = raw.get("groups", {})
    third = groups.get("third_party")
    return RuleBook(
        locale=str(raw.get("locale", locale)),
        normaliser=_normaliser(raw.get("normalise", {})),
        groups=groups,
        negations=parse_negations(raw.get("negation", {})),
        rules=parse_rules(raw.get("rules", []), groups),
        third_party=compile_pattern("{third_party}", groups) if third else None,
        raw=raw,
    )


def normalise(text: str, locale: str = DEFAULT_LOCALE) -> str:
    """Returns the normalised form of a text (its clauses joined by spaces)."""
    return " ".join(rulebook(locale).normaliser.clauses(text))


def _reported_by_someone_else(book: RuleBook, clause: str, start: int) -> bool:
    """Tells whether the clause reports someone else's view before the match ("my sister says")."""
    if book.third_party is None:
        return False
    return any(m.end() <= start for m in book.third_party.finditer(clause))


def detect(text: str, locale: str = DEFAULT_LOCALE) -> Detection:
    """Classifies a participant's free text by the rules of her locale (highest signal wins)."""
    book = rulebook(locale)
    fired: set[tuple[str, str]] = set()
    for clause in book.normaliser.clauses(text):
        for rule in book.rules:
            profile = book.negations.get(rule.negation) if rule.negation else None
            for match in rule.regex.finditer(clause):
                if is_negated(clause, match, profile):
                    continue
                if rule.third_party and _reported_by_someone_else(book, clause, match.start()):
                    fired.add(("stop_intent_weak", rule.id + "~reported"))
                else:
                    fired.add((rule.kind, rule.id))
                break
    signals = frozenset(kind for kind, _ in fired)
    kind: Kind = next((k for k in PRECEDENCE if k in signals), "none")
    return Detection(kind=kind, signals=signals, matched=tuple(sorted(rid for _, rid in fired)))
