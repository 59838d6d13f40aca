"""Detects emergencies, red flags, stop intent and unsubscribe requests in a participant's text.

The rules are data in `content/safety/<locale>.yaml`; this module only normalises text and
combines the term groups and patterns it finds there. Results carry rule ids, never the text,
so they are safe to log.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from bot.clock import now
from bot.content import DEFAULT_LOCALE, ContentError, parse_yaml
from bot.langid import identify
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
# Sentence breaks: full stops (not a decimal point), ! ? ; and new lines.
_SENTENCE_BREAK = re.compile(r"(?:(?<!\d)\.|\.(?!\d)|[!?;\n])+")
# Clause breaks inside a sentence: commas, colons, spaced dashes and "but".
_CLAUSE_BREAK = re.compile(r"[,:]+|\s[-–—]+\s|\bbut\b")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_FIRST_PERSON = re.compile(r"\b(?:me|my|myself)\b")


@dataclass(frozen=True)
class Detection:
    """What a message signals: the winning kind, every kind seen, and the rule ids that fired."""

    kind: Kind
    signals: frozenset[str]
    matched: tuple[str, ...]
    # A neutral question the rules recognised ("usage.time", ...): it gets a helpful reply.
    topic: str | None = None
    # The language the message is written in ("en", "es", ...; "" when too short to tell).
    language: str = DEFAULT_LOCALE
    # Rules that matched but were switched off (negated, clearly past, or a usage question):
    # the rules read the message and decided it is not a signal.
    dismissed: tuple[str, ...] = ()

    @property
    def is_stop(self) -> bool:
        """Tells whether the message expresses stop intent, strong or weak."""
        return self.kind in ("stop_intent", "stop_intent_weak")

    @property
    def foreign(self) -> bool:
        """Tells whether the message is in a language the bot does not read (and has no signal)."""
        return self.kind == "none" and self.language not in ("", DEFAULT_LOCALE)

    @property
    def undecided(self) -> bool:
        """Tells whether the rules found nothing at all: no signal, no known question, English.

        This is the one place a second reader (the classifier) may be consulted: the rules
        always win when they found something, and a foreign-language message gets its own reply.
        """
        return (
            self.kind == "none" and self.topic is None and not self.dismissed and not self.foreign
        )


@dataclass(frozen=True)
class NegationProfile:
    """Cues that cancel a match: shortly before its action word, or after it in the clause.

    `past` names the kinds of past markers (see `Scope`) that switch the match off too.
    """

    window: int
    before: re.Pattern[str] | None
    after: re.Pattern[str] | None
    past: tuple[str, ...] = ()
    # Someone else as the subject right before the match ("my daughter fell").
    others: re.Pattern[str] | None = None


@dataclass(frozen=True)
class Scope:
    """How far a negation or a past marker reaches (the `scope` section of a rules file).

    - `pseudo`: look-alikes that negate nothing ("not only", "not sure"), removed first.
    - `terminators`: words that end a negation's reach inside a clause ("although").
    - `present`: words that make a match current whatever else is said ("now", "again").
    - `past`: named marker lists: `distant` (a year gone by, "years ago"), `settled` (a symptom
      that is over: "long gone", "all fine now"), `resumed` (back on the medicine).
    - `follow_on`: how a short next clause refers back to the match ("it", "that", "all"), so
      "a swollen ankle last summer, long gone" reads as one statement.
    - `retort`: a next sentence that takes a sign word back as a joke ("sudden headache? nah
      just the grandkids"): the matches of the sentence before it are switched off for the
      profiles that accept harmless causes (a `benign` past kind).
    - `verdict`: named marker lists (by past kind, `settled` or `resumed`) for a plain outcome
      told later in the same sentence, however long the clause that tells it: "had a fall in
      March, broke my wrist, all healed now and the cast is long off", "thought I had a lump
      but the GP checked and it is just a cyst", "was thinking of stopping but I talked to
      the nurse and I am carrying on". It switches the match off unless something current is
      left in the rest of the sentence once the markers are taken out.
    - `verdict_when`: for a verdict kind, words its match's own clause must hold: carrying on
      answers a doubt told in the past ("I was thinking of stopping"), not a present one ("I
      don't want to take them but I will keep going" is still a doubt).
    - `returns`: a later clause of the sentence saying the sign is back or worse ("the swelling
      went down overnight but it's back today"): a settled marker before it no longer counts.
    """

    pseudo: re.Pattern[str] | None = None
    terminators: re.Pattern[str] | None = None
    present: re.Pattern[str] | None = None
    past: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    follow_on: re.Pattern[str] | None = None
    follow_on_words: int = 6
    retort: re.Pattern[str] | None = None
    verdict: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    verdict_when: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    returns: re.Pattern[str] | None = None


@dataclass(frozen=True)
class Rule:
    """One compiled detection rule."""

    id: str
    kind: str
    regex: re.Pattern[str]
    negation: str | None = None
    third_party: bool = False
    # "sentence": the rule reads the whole sentence (its clauses joined), for signs that are
    # spread over a comma ("I fell, I can't get up").
    span: str = "clause"
    # Rule ids (or id prefixes) this rule switches off when it fires: a question about taking
    # the medicine correctly is not a question about stopping it, and a request for fewer
    # messages is not a schedule for her tablets.
    suppresses: tuple[str, ...] = ()
    # "sentence": switches off only rules that fired in its own sentence (an information
    # question must not hide signs she reports in the next sentence).
    suppress_within: str = "message"


# A run-on message (dictated, with no full stops) is read in windows of at most WINDOW_WORDS
# words that overlap by WINDOW_OVERLAP: the rules' cost grows faster than a sentence's length
# (4,000 characters in one sentence took about a second on the event loop, which every other
# chat waited behind), and a sign is told within a few words.
WINDOW_WORDS = 60
WINDOW_OVERLAP = 20


def _windows(sentence: list[str]) -> list[list[str]]:
    """Splits a sentence of clauses longer than WINDOW_WORDS into overlapping ones."""
    if sum(len(clause.split()) for clause in sentence) <= WINDOW_WORDS:
        return [sentence]
    pieces: list[list[str]] = []  # clauses as word lists, long clauses cut with overlap
    step = WINDOW_WORDS - WINDOW_OVERLAP
    for clause in sentence:
        words = clause.split()
        if len(words) <= WINDOW_WORDS:
            pieces.append(words)
            continue
        starts = [*range(0, len(words) - WINDOW_WORDS, step), len(words) - WINDOW_WORDS]
        pieces += [words[start : start + WINDOW_WORDS] for start in starts]
    windows: list[list[list[str]]] = [[]]
    for piece in pieces:
        if sum(map(len, windows[-1])) + len(piece) > WINDOW_WORDS and windows[-1]:
            # The next window starts again with the clauses at the end of this one.
            carried: list[list[str]] = []
            for earlier in reversed(windows[-1]):
                if sum(map(len, carried)) + len(earlier) + len(piece) > WINDOW_WORDS:
                    break
                if sum(map(len, carried)) + len(earlier) > WINDOW_OVERLAP:
                    break
                carried.insert(0, earlier)
            windows.append(carried)
        windows[-1].append(piece)
    return [[" ".join(words) for words in window] for window in windows]


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
    # Key symptom words: a near-miss one edit away (5+ letters) becomes the word.
    fuzzy_symptoms: tuple[str, ...] = ()
    # Drug names split by dictation ("let row zoll"): short tokens joined are compared.
    join_terms: tuple[str, ...] = ()

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
        cleaned = " ".join(self._join_split_names(tokens))
        for pattern, replacement in self.phrases:
            cleaned = pattern.sub(replacement, cleaned)
        return cleaned

    def sentences(self, text: str) -> list[list[str]]:
        """Splits text into sentences of normalised clauses (empty ones dropped); a run-on
        sentence longer than WINDOW_WORDS is read as overlapping windows (`_windows`)."""
        found = []
        for sentence in _SENTENCE_BREAK.split(_ELLIPSIS.sub(" ", self.fold(text))):
            parts = [self.clean(p) for p in _CLAUSE_BREAK.split(sentence)]
            if any(parts):
                found.extend(_windows([p for p in parts if p]))
        return found

    def clauses(self, text: str) -> list[str]:
        """Splits text into normalised clauses (the unit most detection rules look at)."""
        return [c for sentence in self.sentences(text) for c in sentence]

    def _limit(self, term: str) -> int:
        """Returns how many edits a near-miss of `term` may have."""
        return self.fuzzy_long_max if len(term) >= self.fuzzy_long_from else self.fuzzy_short_max

    def _fix_drug_name(self, token: str) -> str:
        """Returns the drug name (or key symptom word) a token is a near-miss of, or the
        token unchanged. Symptom words allow one edit only, whatever their length."""
        if len(token) < self.fuzzy_min_length or token in self.fuzzy_terms:
            return token
        for term in self.fuzzy_terms:
            if token[0] == term[0] and _within_distance(token, term, self._limit(term)):
                return term
        if token in self.fuzzy_symptoms:
            return token
        for term in self.fuzzy_symptoms:
            if token[0] == term[0] and _within_distance(token, term, 1):
                return term
        return token

    def _join_split_names(self, tokens: list[str]) -> list[str]:
        """Joins two or three short tokens that together spell a drug name ("let row zoll").

        Only letters-only tokens of at most 6 letters are joined, none of them a small word
        of grammar ("my arm is in a sling" is no drug name), starting with the name's first
        letter, and only when the joined word is within the name's edit limit or sounds like
        the name (`sounds_like`: "let rose all", blind round 13).
        """
        if not self.join_terms:
            return tokens
        out: list[str] = []
        i = 0
        while i < len(tokens):
            joined_to = None
            for size in (3, 2):
                parts = tokens[i : i + size]
                if len(parts) < size or not all(
                    p.isalpha() and len(p) <= 6 and p not in _NOT_SPLIT for p in parts
                ):
                    continue
                word = "".join(parts)
                term = next(
                    (
                        t
                        for t in self.join_terms
                        if word[0] == t[0]
                        and (_within_distance(word, t, self._limit(t)) or sounds_like(word, t))
                    ),
                    None,
                )
                if term is not None:
                    joined_to = (term, size)
                    break
            if joined_to is None:
                out.append(tokens[i])
                i += 1
            else:
                out.append(joined_to[0])
                i += joined_to[1]
        return out


# Small words of grammar a drug name split by dictation is never made of (blind round 13: "my
# arm is in a sling" had read as "my aromasin a sling"). "a" and "all" stay: dictation turns
# name endings into them ("exam a stain", "let rose all").
_NOT_SPLIT = frozenset(
    "am an and are as at be but by do for had has he her his i if in is"  # noqa: SIM905 (a word list)
    " it me my no not of on or our she so the they to up was we you".split()
)
_SOUND_FOLDS = (("ph", "f"), ("ck", "k"), ("x", "ks"), ("q", "k"), ("c", "k"), ("z", "s"))


def sound_key(word: str) -> str:
    """Returns a rough key of how a word sounds: its first letter, then its consonants (z read
    as s, c and q as k, x as ks, ph as f; vowels, w, h and y dropped; a repeat kept once)."""
    for old, new in _SOUND_FOLDS:
        word = word.replace(old, new)
    key = word[:1]
    for ch in word[1:]:
        if ch not in "aeiouwhy" and ch != key[-1]:
            key += ch
    return key


def sounds_like(word: str, term: str) -> bool:
    """Tells whether a joined dictation word sounds like a drug name: the same sound key (one
    consonant off for keys of 7 or more, "anna straw all"), and not more edits away than half
    the name's letters ("later sally" keys like letrozole but is 6 edits away)."""
    key, want = sound_key(word), sound_key(term)
    close = key == want or (len(want) >= 7 and _within_distance(key, want, 1))
    return close and _within_distance(word, term, (len(term) + 1) // 2)


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


def parse_negations(
    raw: Mapping[str, Any], groups: Mapping[str, Any] | None = None
) -> dict[str, NegationProfile]:
    """Reads the named negation profiles of a rules file.

    With `groups`, a subject cue may be followed by one of its body parts (the group
    `subject_part`): "my husband's calf swells" has the husband as its subject.
    """
    parts = (groups or {}).get("subject_part")
    tail = expand("{subject_part}", groups or {}) if parts else None
    return {
        name: NegationProfile(
            window=int(spec.get("window", 3)),
            before=_cue_regex(spec.get("before", [])),
            after=_cue_regex(spec.get("after", [])),
            past=tuple(str(k) for k in spec.get("past", [])),
            others=_others_regex(spec.get("others", []), tail),
        )
        for name, spec in raw.items()
    }


# Someone of the subject's own ("my friend's mum", "my husband's sister"): still not her.
_KIN = (
    r"(?: (?:mum|mom|mother|dad|father|husband|wife|partner|son|daughter|sister|brother|nan"
    r"|gran|granny|grandma|grandad|aunt|auntie|uncle|cousin|niece|nephew|friend|neighbour"
    r"|neighbor|boss|colleague|dog|cat))?"
)


def _others_regex(cues: Iterable[object], part: str | None = None) -> re.Pattern[str] | None:
    """Compiles subject cues that must end the text before a match (one of the subject's own
    people may follow, then an auxiliary, and, with `part`, one of the subject's body parts:
    "my son's knee", "my friend's mum")."""
    found = _cue_regex(cues)
    if found is None:
        return None
    owned = (
        ""
        if part is None
        else r"(?:(?: (?:left|right|lower|upper|bad|poor|old|own|whole|big|little))*"
        + r" (?:"
        + part
        + r")s?)?"
    )
    # Also the second verb of the same subject, up to six words on (blind round 13: "my
    # neighbour fell off a ladder last week and (broke her wrist)"), and where the subject
    # went with it: "my neighbour was taken to hospital with (chest pains)".
    return re.compile(
        found.pattern
        + _KIN
        + owned
        + r"(?: (?:has|had|have|just|also|was|is|did|then|a|an|got|caught|been|getting"
        + r"|having|running|went|gone|goes|go|going|feels|felt|looks|looked|keeps|turned"
        + r"|came|all))*"
        + r"(?:(?: (?!(?:i|me|my|and)\b)\S+){0,6} and)?"
        + r"(?:(?: (?!(?:i|me|my|mum|mom|she|her|we|us)\b)\S+){0,5}"
        + r" (?:with|complaining of|because of)(?: (?:a|an|the|some|bad|severe|terrible))?)?"
        + r"\s*$"
    )


def _marker_regex(entries: Iterable[object], groups: Mapping[str, Any]) -> re.Pattern[str] | None:
    """Compiles a marker list (phrases with `*` endings or `re:` entries) into one pattern."""
    listed = list(entries)
    if not listed:
        return None
    return compile_pattern("{_markers}", {**groups, "_markers": listed})


def parse_scope(raw: Mapping[str, Any], groups: Mapping[str, Any]) -> Scope:
    """Reads the `scope` section of a rules file."""
    past = {
        str(name): regex
        for name, entries in raw.get("past", {}).items()
        if (regex := _marker_regex(entries, groups)) is not None
    }
    return Scope(
        pseudo=_marker_regex(raw.get("pseudo", []), groups),
        terminators=_marker_regex(raw.get("terminators", []), groups),
        present=_marker_regex(raw.get("present", []), groups),
        past=past,
        follow_on=_marker_regex(raw.get("follow_on", []), groups),
        follow_on_words=int(raw.get("follow_on_words", 6)),
        retort=_marker_regex(raw.get("retort", []), groups),
        verdict={
            str(name): regex
            for name, entries in raw.get("verdict", {}).items()
            if (regex := _marker_regex(entries, groups)) is not None
        },
        verdict_when={
            str(name): regex
            for name, entries in raw.get("verdict_when", {}).items()
            if (regex := _marker_regex(entries, groups)) is not None
        },
        returns=_marker_regex(raw.get("returns", []), groups),
    )


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
                span=str(spec.get("span", "clause")),
                suppresses=tuple(str(x) for x in spec.get("suppresses", [])),
                suppress_within=str(spec.get("suppress_within", "message")),
            )
        )
    return tuple(rules)


def action_start(match: re.Match[str]) -> int:
    """Returns where the rule's action word starts (a group named act...), else the match start."""
    for name in match.re.groupindex:
        if name.startswith("act") and match.group(name) is not None:
            return match.start(name)
    return match.start()


def action_end(match: re.Match[str]) -> int:
    """Returns where the rule's action word ends (a group named act...), else the match end."""
    for name in match.re.groupindex:
        if name.startswith("act") and match.group(name) is not None:
            return match.end(name)
    return match.end()


def _blank(text: str, pattern: re.Pattern[str] | None) -> str:
    """Returns the text with every match of `pattern` replaced by a neutral token."""
    return text if pattern is None else pattern.sub(" _ ", text)


def is_negated(
    clause: str,
    match: re.Match[str],
    profile: NegationProfile | None,
    *,
    act: int | None = None,
    scope: Scope | None = None,
) -> bool:
    """Tells whether a negation cue sits just before the action word, or after the match.

    The cue must be within `window` words of the action word, with no terminator ("although")
    between them; look-alikes ("not only", "not sure") negate nothing.
    """
    if profile is None:
        return False
    start = action_start(match) if act is None else act
    before = clause[:start]
    if scope is not None:
        before = _blank(before, scope.pseudo)
        if scope.terminators is not None:
            before = scope.terminators.split(before)[-1]
    # "he found me on the floor": the sign is hers whoever the subject is.
    if (
        profile.others is not None
        and not _FIRST_PERSON.search(match.group())
        and profile.others.search(clause[: match.start()])
    ):
        return True
    before = " ".join(before.split()[-profile.window :])
    if profile.before is not None and profile.before.search(before):
        return True
    return profile.after is not None and bool(profile.after.search(clause[match.end() :]))


# The past-marker kind that names harmless causes of a sign (scope `past.benign`); kinds named
# `benign_<x>` are harmless causes too, for the profiles that list them ("benign_exertion").
_BENIGN = "benign"


def _is_benign(kind: str) -> bool:
    """Tells whether a past-marker kind names harmless causes (read wherever told)."""
    return kind == _BENIGN or kind.startswith(_BENIGN + "_")


# The past-marker kind of a time gone by (scope `past.distant`), read anywhere in the match's
# clause; kinds named `distant_<x>` are read the same way, for the profiles that list them
# ("distant_affect": "at first I dreaded them").
_DISTANT = "distant"


def _is_distant(kind: str) -> bool:
    """Tells whether a past-marker kind is read anywhere in its clause (a time gone by)."""
    return kind == _DISTANT or kind.startswith(_DISTANT + "_")


# The past-marker kind of being back on the medicine (scope `past.resumed`).
_RESUMED = "resumed"


def _taken_back(kind: str) -> bool:
    """Tells whether a later "it's back" (scope `returns`) voids markers of this kind: an
    outcome of a symptom, not a time gone by nor her being back on the medicine."""
    return not _is_distant(kind) and kind != _RESUMED


# An ellipsis joins a thought ("took the whole pack... of custard creams"): not a break.
_ELLIPSIS = re.compile(r"\.{2,}|…")


def _distant_year_gone(found: re.Match[str]) -> bool:
    """Tells whether a marker's `year` (if it has one) lies before this calendar year."""
    year = found.groupdict().get("year")
    return year is None or int(year) < now().year


def is_past(
    clauses: Sequence[str],
    index: int,
    match: re.Match[str],
    profile: NegationProfile | None,
    scope: Scope,
) -> bool:
    """Tells whether the match is clearly over: a past marker in its scope, and nothing current.

    Scope: the match's own clause (a `settled`/`resumed` marker only after the match), a short
    clause before it that is only a time ("back in 2019, ..."), and short clauses after it in
    the same sentence that refer back to it ("..., long gone now").
    """
    if profile is None or not profile.past:
        return False
    clause = clauses[index]
    markers = [(kind, scope.past[kind]) for kind in profile.past if kind in scope.past]
    # A harmless cause told with the sign ("numb from the baby sleeping on it", "could not
    # breathe for laughing"): anywhere in its clause or a short clause after it, whatever
    # else is said ("now" does not make laughing a sign).
    benign = [pattern for kind, pattern in markers if _is_benign(kind)]
    markers = [(kind, pattern) for kind, pattern in markers if not _is_benign(kind)]
    for pattern in benign:
        if pattern.search(clause):
            return True
        for number, later in enumerate(clauses[index + 1 :], start=index + 1):
            if len(later.split()) > scope.follow_on_words:
                break
            # Read in the short clause, and with the sign's clause before it too (a marker
            # may refuse some words anywhere in them: "one side", "suddenly").
            if pattern.search(later) and pattern.search(" , ".join(clauses[index : number + 1])):
                return True
    # "It went down overnight but it's back today": the sentence takes the outcome back (a
    # symptom's, never her being back on the medicine: "restarted, but the pain is back").
    returns = scope.returns is not None and any(
        scope.returns.search(later) for later in clauses[index + 1 :]
    )
    own = False
    for kind, pattern in markers:
        if returns and _taken_back(kind):
            continue
        for found in pattern.finditer(clause):
            if _is_distant(kind) and not _distant_year_gone(found):
                continue
            # A settled marker after the match, or one that holds it ("just a fatty lump").
            holds = found.start() <= match.start() and found.end() >= match.end()
            if not _is_distant(kind) and found.start() < match.end() and not holds:
                continue
            own = True
    if own:
        # "I had a fall in 2019 and fell again today": something current keeps it alive.
        rest = clause
        for _, pattern in markers:
            rest = _blank(rest, pattern)
        return scope.present is None or not scope.present.search(rest)
    if index > 0 and len(clauses[index - 1].split()) <= 4:
        for kind, pattern in markers:
            if _is_distant(kind) and any(
                _distant_year_gone(f) for f in pattern.finditer(clauses[index - 1])
            ):
                return scope.present is None or not scope.present.search(clause)
    for later in clauses[index + 1 :]:
        if len(later.split()) > scope.follow_on_words:
            break
        if scope.follow_on is not None and not scope.follow_on.match(later):
            continue
        for kind, pattern in markers:
            if (
                not _is_distant(kind)
                and not (returns and _taken_back(kind))
                and pattern.search(later)
            ):
                return scope.present is None or not scope.present.search(clause)
    return _told_outcome(clauses, index, match, profile, scope)


def _told_outcome(
    clauses: Sequence[str],
    index: int,
    match: re.Match[str],
    profile: NegationProfile,
    scope: Scope,
) -> bool:
    """Tells whether a plain outcome (`scope.verdict`) follows the match in its sentence and
    nothing current is left in the rest of the sentence once the markers are taken out."""
    verdicts = [
        scope.verdict[kind]
        for kind in profile.past
        if kind in scope.verdict
        and (kind not in scope.verdict_when or scope.verdict_when[kind].search(clauses[index]))
    ]
    if not verdicts:
        return False
    # From the end of the sign word: a match may run on into the words of the outcome ("lump
    # came back" read as a place, in "the lump came back benign").
    after = " , ".join([clauses[index][action_end(match) :], *clauses[index + 1 :]])
    if not any(v.search(after) for v in verdicts):
        return False
    rest = " , ".join([clauses[index][match.start() :], *clauses[index + 1 :]])
    for pattern in (*verdicts, *(scope.past[k] for k in profile.past if k in scope.past)):
        rest = _blank(rest, pattern)
    return scope.present is None or not scope.present.search(rest)


@dataclass(frozen=True)
class Combination:
    """A signal made of signs that are each harmless alone (the `combinations` of a rules file).

    It fires when every class in `all` and at least `least` of the classes in `any` are found
    anywhere in the message (each sign not negated and not clearly past): "pressure on my chest"
    with "clammy" or "left arm", hives with a swelling face, bleeding with "soaked".
    """

    id: str
    kind: str
    all: tuple[str, ...]
    any: tuple[str, ...] = ()
    least: int = 1


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
    scope: Scope = field(default_factory=Scope)
    # Sign classes (compiled as rules of kind "sign") and the combinations made of them.
    signs: tuple[Rule, ...] = ()
    combinations: tuple[Combination, ...] = ()


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
        fuzzy_symptoms=tuple(str(t) for t in fuzzy.get("symptoms", [])),
        join_terms=tuple(str(t) for t in fuzzy.get("join_terms", [])),
    )


@lru_cache(maxsize=32)
def rulebook(locale: str = DEFAULT_LOCALE) -> RuleBook:
    """Loads and compiles `content/safety/<locale>.yaml` (English when the locale has none)."""
    path = rules_path(locale)
    if not path.is_file():
        raise ContentError(f"missing safety rules {path}")
    raw = parse_yaml(path.read_text(encoding="utf-8")) or {}
    groups = raw.get("groups", {})
    third = groups.get("third_party")
    return RuleBook(
        locale=str(raw.get("locale", locale)),
        normaliser=_normaliser(raw.get("normalise", {})),
        groups=groups,
        negations=parse_negations(raw.get("negation", {}), groups),
        rules=parse_rules(raw.get("rules", []), groups),
        third_party=compile_pattern("{third_party}", groups) if third else None,
        raw=raw,
        scope=parse_scope(raw.get("scope", {}), groups),
        signs=_parse_signs(raw.get("signs", {}), groups),
        combinations=_parse_combinations(raw.get("combinations", []), raw.get("signs", {})),
    )


def _parse_signs(raw: Mapping[str, Any], groups: Mapping[str, Any]) -> tuple[Rule, ...]:
    """Compiles the sign classes of a rules file (each a pattern and a negation profile)."""
    specs = [
        {
            "id": name,
            "kind": "sign",
            "pattern": spec["pattern"],
            "negation": spec.get("negation", "sign"),
            "span": spec.get("span", "clause"),
        }
        for name, spec in raw.items()
    ]
    return parse_rules(specs, groups)


def _parse_combinations(
    raw: Sequence[Mapping[str, Any]], signs: Mapping[str, Any]
) -> tuple[Combination, ...]:
    """Reads the combinations of a rules file, checking that every class they name exists."""
    found = []
    for spec in raw:
        combo = Combination(
            id=str(spec["id"]),
            kind=str(spec["kind"]),
            all=tuple(str(c) for c in spec.get("all", [])),
            any=tuple(str(c) for c in spec.get("any", [])),
            least=int(spec.get("least", 1 if spec.get("any") else 0)),
        )
        unknown = [c for c in (*combo.all, *combo.any) if c not in signs]
        if unknown or not (combo.all or combo.any):
            raise ContentError(f"safety combination {combo.id!r}: unknown classes {unknown}")
        found.append(combo)
    return tuple(found)


def _combined(book: RuleBook, sentences: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """Returns the (kind, id) of every combination whose sign classes the message shows."""
    if not book.combinations:
        return []
    seen: set[str] = set()
    retracted = _retracted(book, sentences)
    for number, sentence in enumerate(sentences):
        joined = [" , ".join(sentence)]
        for sign in book.signs:
            if sign.id in seen or (number in retracted and _takes_back(book, sign)):
                continue
            units = joined if sign.span == "sentence" else sentence
            if any(_fires(book, sign, units, i) == "sign" for i in range(len(units))):
                seen.add(sign.id)
    return [
        (c.kind, c.id)
        for c in book.combinations
        if all(x in seen for x in c.all) and sum(x in seen for x in c.any) >= c.least
    ]


def _retracted(book: RuleBook, sentences: Sequence[Sequence[str]]) -> set[int]:
    """Returns the sentence numbers that the next sentence takes back as a joke (`retort`)."""
    if book.scope.retort is None:
        return set()
    return {
        n
        for n in range(len(sentences) - 1)
        if sentences[n + 1] and book.scope.retort.search(sentences[n + 1][0])
    }


def _takes_back(book: RuleBook, rule: Rule) -> bool:
    """Tells whether a retort may switch a rule off: its profile accepts harmless causes."""
    profile = book.negations.get(rule.negation) if rule.negation else None
    return profile is not None and _BENIGN in profile.past


def normalise(text: str, locale: str = DEFAULT_LOCALE) -> str:
    """Returns the normalised form of a text (its clauses joined by spaces)."""
    return " ".join(rulebook(locale).normaliser.clauses(text))


def _reported_by_someone_else(book: RuleBook, clause: str, start: int) -> bool:
    """Tells whether the clause reports someone else's view before the match ("my sister says")."""
    if book.third_party is None:
        return False
    return any(m.end() <= start for m in book.third_party.finditer(clause))


_DISMISSED = "dismissed"
# The kind of a rule that reads an everyday sense and sets it aside (see `detect`).
NEUTRAL = "neutral"


def _fires(book: RuleBook, rule: Rule, clauses: Sequence[str], index: int) -> str | None:
    """Returns the kind a rule fires with in one clause (or sentence), None when it does not,
    and `_DISMISSED` when it only matched negated or clearly past words.

    A match counts unless it is negated or clearly past; the first match that counts wins.
    """
    clause = clauses[index]
    profile = book.negations.get(rule.negation) if rule.negation else None
    dismissed = False
    for match in rule.regex.finditer(clause):
        if is_negated(clause, match, profile, scope=book.scope) or is_past(
            clauses, index, match, profile, book.scope
        ):
            dismissed = True
            continue
        if rule.third_party and _reported_by_someone_else(book, clause, match.start()):
            return "stop_intent_weak~reported"
        return rule.kind
    return _DISMISSED if dismissed else None


def _suppressed(rule_id: str, by: Iterable[str]) -> bool:
    """Tells whether a rule id is switched off by one of the ids or id prefixes in `by`."""
    return any(rule_id == s or rule_id.startswith(s + ".") for s in by)


def detect(text: str, locale: str = DEFAULT_LOCALE) -> Detection:
    """Classifies a participant's free text by the rules of ONE locale (highest signal wins).

    Rules read one clause at a time (or, with `span: sentence`, one sentence); a match that is
    negated or clearly in the past is ignored. Rules of kind `usage` recognise neutral
    questions about taking the medicine correctly: they set `topic` and switch off the rules
    they name (`suppresses`), never a signal of another kind that fired on its own. A rule of
    another kind may name rules to switch off too (a request for fewer messages switches off
    the schedule rules in its sentence); it never switches off a rule of its own kind. Rules
    of kind `neutral` read an everyday sense and set it aside: they are listed as dismissed.
    """
    book = rulebook(locale)
    fired: set[tuple[str, str]] = set()
    dismissed: set[str] = set()
    sentences = book.normaliser.sentences(text)
    # Where each rule fired (sentence numbers); a combination reads the whole message (-1),
    # which is one sentence when the message is.
    where: dict[str, set[int]] = {}
    retracted = _retracted(book, sentences)
    for found_kind, rid in _combined(book, sentences):
        fired.add((found_kind, rid))
        where.setdefault(rid, set()).add(0 if len(sentences) == 1 else -1)
    for number, sentence in enumerate(sentences):
        joined = [" , ".join(sentence)]
        for rule in book.rules:
            units = joined if rule.span == "sentence" else sentence
            for index in range(len(units)):
                found = _fires(book, rule, units, index)
                if found == "stop_intent_weak~reported":
                    fired.add(("stop_intent_weak", rule.id + "~reported"))
                elif found == _DISMISSED or (
                    found is not None and number in retracted and _takes_back(book, rule)
                ):
                    dismissed.add(rule.id)
                elif found is not None:
                    fired.add((found, rule.id))
                    where.setdefault(rule.id, set()).add(number)
    usage = sorted(rid for found, rid in fired if found == "usage")
    # Rules of kind `neutral` read an everyday sense the second reader might take for a signal
    # ("I've given up on the book club", blind round 13): never a signal, they count as read
    # and set aside, and may switch off the rules they name in their sentence.
    neutral = {rid for found, rid in fired if found == NEUTRAL}
    # Rules that switch others off when they fire: a usage question, and (blind round 12) a
    # request about the bot's own messages ("text me once a week rather than every day"),
    # which is not a schedule for her tablets. A rule never switches off its own kind.
    suppressors = {rid: k for k, rid in fired}
    off: set[str] = set()
    for rule in book.rules:
        if rule.id not in suppressors or not rule.suppresses:
            continue
        for k, rid in fired:
            if k in ("usage", suppressors[rule.id]) or not _suppressed(rid, rule.suppresses):
                continue
            if rule.suppress_within != "sentence" or where.get(rid, set()) <= where[rule.id]:
                off.add(rid)
    dismissed |= off | neutral
    fired = {(k, rid) for k, rid in fired if rid not in off and k != NEUTRAL}
    signals = frozenset(found for found, _ in fired if found != "usage")
    kind: Kind = next((k for k in PRECEDENCE if k in signals), "none")
    return Detection(
        kind=kind,
        signals=signals,
        matched=tuple(sorted(rid for k, rid in fired if k != "usage")),
        topic=usage[0] if usage else None,
        dismissed=tuple(sorted(dismissed - {rid for _, rid in fired})),
    )


# Rule books read on every message besides her own locale's: Spanish (the next locale) and
# German, French, Italian and Portuguese signs and phrases mixed into English, Dutch, Tagalog,
# Hindi-Urdu and (blind round 13) a small Polish book (a book that does not exist yet is
# skipped).
ALSO_READ: tuple[str, ...] = ("es", "de", "fr", "it", "pt", "nl", "tl", "hi", "pl")


def in_book(book: str, rule_id: str) -> str:
    """Names a rule of another language's book, as `read_text` reports it ("es:emergency.x")."""
    return f"{book}:{rule_id}"


def rule_name(rule_id: str) -> str:
    """Returns a rule id without its book's language code ("es:x.y" -> "x.y")."""
    book, sep, name = rule_id.partition(":")
    return name if sep and len(book) == 2 and book.isalpha() else rule_id


def read_text(text: str, locale: str = DEFAULT_LOCALE) -> Detection:
    """Reads a message the way the bot does: her locale's rules, the other rule books, and
    the language it is written in. This is the rules detector the handlers call.

    Signals of every rule book are merged (highest wins); `language` comes from the small
    offline identifier in `bot.langid`. A classifier may be consulted only when the result is
    `undecided`.
    """
    own = detect(text, locale)
    signals = set(own.signals)
    matched = set(own.matched)
    dismissed = set(own.dismissed)
    for other in ALSO_READ:
        if other == locale or not rules_path(other).name.startswith(other):
            continue
        found = detect(text, other)
        signals |= found.signals
        matched |= {in_book(other, rid) for rid in found.matched}
        dismissed |= {in_book(other, rid) for rid in found.dismissed}
    kind: Kind = next((k for k in PRECEDENCE if k in signals), "none")
    return Detection(
        kind=kind,
        signals=frozenset(signals),
        matched=tuple(sorted(matched)),
        topic=own.topic if kind == "none" else None,
        language=identify(text),
        dismissed=tuple(sorted(dismissed)),
    )
