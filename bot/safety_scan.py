"""Scans our own text for permission or instruction to stop, skip, halve or switch a medicine.

Used by a test over every text in `content/` and, later, on broadcast text at preview. The
patterns are data in `content/safety/scan_<locale>.yaml`; they reuse the term groups and the
text normalisation of the detection rules in `content/safety/<locale>.yaml`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from bot.content import DEFAULT_LOCALE, ContentError, parse_yaml
from bot.intent import (
    NegationProfile,
    Normaliser,
    Rule,
    action_start,
    compile_pattern,
    is_negated,
    parse_negations,
    parse_rules,
    rulebook,
    rules_path,
)
from bot.paths import content_dir

# Sentence breaks in our text: end punctuation, colons, semicolons, line breaks and bullets.
_SENTENCE_BREAK = re.compile(r"[.!?;:\n]+|\s[•·]\s")
# Markup that is not read as words: HTML tags, link targets, citation markers, placeholders.
_MARKUP = (
    (re.compile(r"<[^>]+>"), " "),
    (re.compile(r"\]\([^)]*\)"), " "),
    (re.compile(r"\[\d+(?:[,\s–-]+\d+)*\]"), " "),
    (re.compile(r"[*_#>`]+"), " "),
)


@dataclass(frozen=True)
class Finding:
    """One sentence that gives forbidden advice, with where it was found."""

    rule: str
    sentence: str
    source: str = ""
    key: str = ""

    def __str__(self) -> str:
        """Returns a one-line description for test failures and the broadcast preview."""
        where = f"{self.source} [{self.key}] " if self.source else ""
        return f"{where}{self.rule}: {self.sentence!r}"


@dataclass(frozen=True)
class ScanBook:
    """The compiled scan rules of one locale."""

    normaliser: Normaliser
    rules: tuple[Rule, ...]
    negations: dict[str, NegationProfile]
    doctor_frames: tuple[re.Pattern[str], ...]
    # Stricter rules for text sent to many patients at once, where "it" is always her medicine.
    broadcast_rules: tuple[Rule, ...] = ()


@lru_cache(maxsize=8)
def scanbook(locale: str = DEFAULT_LOCALE) -> ScanBook:
    """Loads `content/safety/scan_<locale>.yaml` over the groups of the detection rules."""
    path = rules_path(locale, stem="scan_")
    if not path.is_file():
        raise ContentError(f"missing safety scan rules {path}")
    raw = parse_yaml(path.read_text(encoding="utf-8")) or {}
    base = rulebook(locale)
    groups = {**base.groups, **raw.get("groups", {})}
    return ScanBook(
        normaliser=base.normaliser,
        rules=parse_rules(raw.get("rules", []), groups),
        negations=parse_negations(raw.get("negation", {})),
        doctor_frames=tuple(compile_pattern(str(p), groups) for p in raw.get("doctor_frames", [])),
        broadcast_rules=parse_rules(raw.get("broadcast_rules", []), groups),
    )


def _sentences(text: str) -> Iterator[str]:
    """Yields the sentences of a text with markup removed."""
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    for sentence in _SENTENCE_BREAK.split(text):
        if sentence.strip():
            yield sentence.strip()


def _normalise_sentence(book: ScanBook, sentence: str) -> str:
    """Normalises one sentence, keeping its commas as ' , ' tokens (they bound a clause)."""
    folded = book.normaliser.fold(sentence)
    parts = (book.normaliser.clean(part) for part in folded.split(","))
    return " , ".join(p for p in parts if p)


def _doctor_led(book: ScanBook, sentence: str, act: int) -> bool:
    """Tells whether a doctor frame ("ask your doctor whether ...") ends before the action."""
    return any(m.end() <= act for frame in book.doctor_frames for m in frame.finditer(sentence))


def scan(text: str, locale: str = DEFAULT_LOCALE, *, broadcast: bool = False) -> list[Finding]:
    """Returns every sentence of a text that permits or instructs a change to her medicine.

    A broadcast is also read by the stricter `broadcast_rules`: sent to everyone at once, a
    bare "it is OK to stop for a few days" can only be read as being about the medicine.
    """
    book = scanbook(locale)
    rules = book.rules + book.broadcast_rules if broadcast else book.rules
    findings: list[Finding] = []
    for sentence in _sentences(text):
        normalised = _normalise_sentence(book, sentence)
        for rule in rules:
            profile = book.negations.get(rule.negation) if rule.negation else None
            for match in rule.regex.finditer(normalised):
                act = action_start(match)
                if is_negated(normalised, match, profile, act=act):
                    continue
                if _doctor_led(book, normalised, act):
                    continue
                findings.append(Finding(rule=rule.id, sentence=sentence))
                break
    return findings


def _strings(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yields (dotted key, text) for every string leaf of a YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{prefix}[{index}]")
    elif isinstance(node, str):
        yield prefix, node


def _markdown_blocks(text: str) -> Iterator[tuple[str, str]]:
    """Yields (key, text) for a Markdown page: front-matter fields, then paragraphs by line."""
    body = text
    if text.startswith("---"):
        head, sep, rest = text[3:].partition("\n---")
        if sep:
            front = parse_yaml(head) or {}
            yield from ((f"front.{k}", v) for k, v in _strings(front))
            body = rest
    offset = text.count("\n", 0, len(text) - len(body)) + 1
    for start, block in _paragraphs(body):
        yield f"line {start + offset}", block


def _paragraphs(body: str) -> Iterator[tuple[int, str]]:
    """Yields (first line index, text) for each blank-line-separated paragraph."""
    lines = body.split("\n")
    start, chunk = 0, list[str]()
    for number, line in enumerate(lines):
        if line.strip():
            if not chunk:
                start = number
            chunk.append(line)
        elif chunk:
            yield start, "\n".join(chunk)
            chunk = []
    if chunk:
        yield start, "\n".join(chunk)


def _locale_of(path: Path, root: Path) -> str:
    """Guesses a file's locale from its path (messages/<locale>/..., consent/<locale>.yaml)."""
    parts = path.relative_to(root).parts
    for part in (*parts[:-1], path.stem):
        if (content_dir() / "safety" / f"scan_{part}.yaml").is_file():
            return part
    return DEFAULT_LOCALE


def content_texts(root: Path | None = None) -> Iterator[tuple[str, str, str]]:
    """Yields (relative path, key, text) for every text in content/ except the safety rules."""
    base = root or content_dir()
    for path in sorted(base.rglob("*")):
        relative = path.relative_to(base)
        if not path.is_file() or relative.parts[0] == "safety":
            continue
        if path.suffix in (".yaml", ".yml"):
            document = parse_yaml(path.read_text(encoding="utf-8"))
            for key, text in _strings(document):
                yield str(relative), key, text
        elif path.suffix == ".md":
            for key, text in _markdown_blocks(path.read_text(encoding="utf-8")):
                yield str(relative), key, text


def scan_all_content(root: Path | None = None) -> list[Finding]:
    """Scans every message, consent text, page and questionnaire in content/."""
    base = root or content_dir()
    findings: list[Finding] = []
    for relative, key, text in content_texts(base):
        locale = _locale_of(base / relative, base)
        for finding in scan(text, locale):
            findings.append(
                Finding(rule=finding.rule, sentence=finding.sentence, source=relative, key=key)
            )
    return findings


# ---------------------------------------------------------------- the lock screen
# The first line of any message the bot starts shows before she unlocks her phone: it names
# no medicine, cancer or illness. The words are data (content/safety/lockscreen_<locale>.yaml),
# read by the broadcast check and by the content tests.


@lru_cache(maxsize=8)
def lock_screen_words(locale: str = DEFAULT_LOCALE) -> tuple[str, ...]:
    """Returns the words no lock screen may show (`content/safety/lockscreen_<locale>.yaml`)."""
    path = content_dir() / "safety" / f"lockscreen_{locale}.yaml"
    if not path.is_file():
        if locale != DEFAULT_LOCALE:
            return lock_screen_words(DEFAULT_LOCALE)
        raise ContentError(f"missing lock-screen words {path}")
    raw = parse_yaml(path.read_text(encoding="utf-8")) or {}
    words = tuple(str(w).strip().lower() for w in raw.get("words", []) if str(w).strip())
    if not words:
        raise ContentError(f"{path} lists no words")
    return words


@lru_cache(maxsize=8)
def lock_screen_pattern(locale: str = DEFAULT_LOCALE) -> re.Pattern[str]:
    """Returns a pattern that finds a lock-screen word at the start of any word."""
    alternatives = "|".join(re.escape(w) for w in lock_screen_words(locale))
    return re.compile(r"\b(" + alternatives + r")", re.IGNORECASE)


def first_line(text: str) -> str:
    """Returns the first line with words in it: what a lock screen shows."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def lock_screen_word(text: str, locale: str = DEFAULT_LOCALE) -> str | None:
    """Returns the forbidden word the text's first line holds, if any."""
    found = lock_screen_pattern(locale).search(first_line(text))
    return found.group(0) if found else None
