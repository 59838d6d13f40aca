"""Plain language: Flesch-Kincaid grade 8 or lower for every page and every flow message.

textstat 0.7.8 counts syllables offline (pyphen); newer versions download a dictionary.
Each page and each message is scored as a whole, and no paragraph may be above grade 10,
so one hard paragraph cannot hide inside an easy page. FK means little for a few words (one
three-syllable word scores grade 20), so messages under SHORT_WORDS words (button labels,
menu lines) are pooled per file and scored together, one sentence each. Terminal text for
the people who run the bot (cli.yaml) is not participant text and is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import textstat
import yaml

from bot import education
from bot.paths import content_dir

MAX_GRADE = 8.0
MAX_PARAGRAPH_GRADE = 10.0
SHORT_WORDS = 10


@dataclass(frozen=True)
class Text:
    """One text a participant reads, named by where it comes from."""

    name: str
    body: str


def grade(text: str) -> float:
    """Returns the Flesch-Kincaid grade of a plain text."""
    return float(textstat.flesch_kincaid_grade(text))


def words(text: str) -> int:
    """Returns the number of words textstat counts."""
    return int(textstat.lexicon_count(text))


def message_plain(template: str) -> str:
    """Returns a message template as plain sentences: no {fields}, no HTML tags."""
    text = re.sub(r"\{[^{}]*\}", "", template)
    text = re.sub(r"<[^>]+>", "", text)
    return education.plain_text(text)


def _flatten(prefix: str, node: Any, out: list[Text]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}", value, out)
    elif isinstance(node, list):
        for n, value in enumerate(node):
            _flatten(f"{prefix}[{n}]", value, out)
    elif isinstance(node, str):
        out.append(Text(prefix, node))


# Text for the people who run the bot (terminal output), not for participants.
# Read by the people who run the bot and the study.
OPERATOR_FILES = {"cli", "care_team", "invites", "stats"}


def message_files() -> list[Path]:
    """Returns every English flow-message file and the consent text."""
    files = sorted((content_dir() / "messages" / "en").glob("*.yaml"))
    files = [f for f in files if f.stem not in OPERATOR_FILES]
    return [*files, content_dir() / "consent" / "en.yaml"]


def texts_of(path: Path) -> list[Text]:
    """Returns every message in one file (the consent version number is not text)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if path.parent.name == "consent":
        data = {k: v for k, v in data.items() if k != "version"}
    out: list[Text] = []
    _flatten(path.stem, data, out)
    return [t for t in out if message_plain(t.body)]


def test_grade_check_flags_hard_text_and_passes_plain_text() -> None:
    hard = (
        "Aromatase inhibitor-associated musculoskeletal symptoms constitute a heterogeneous "
        "constellation of arthralgias and myalgias, frequently precipitating discontinuation."
    )
    plain = "Many women on an AI get sore joints. It often starts in the first few months."
    assert grade(hard) > MAX_PARAGRAPH_GRADE
    assert grade(plain) <= MAX_GRADE


def test_plain_text_drops_markup_and_citation_markers() -> None:
    body = "## Heading\n\nA **bold** claim [1, 2].\n\n- a bullet\n- another"
    assert education.plain_text(body) == "Heading. A bold claim.\n\na bullet. another."


@pytest.mark.parametrize("page_id", list(education.load_pages("en")))
def test_every_page_reads_at_grade_8_or_lower(page_id: str) -> None:
    page = education.load_pages("en")[page_id]
    text = education.plain_text(page.body)
    assert words(text) > 100, "the body text was lost on the way to the check"
    assert grade(text) <= MAX_GRADE, f"{page_id}: grade {grade(text):.1f}"
    hard = {
        p[:60]: round(grade(p), 1)
        for p in education.plain_paragraphs(page.body)
        if grade(p) > MAX_PARAGRAPH_GRADE
    }
    assert not hard, f"{page_id}: paragraphs above grade {MAX_PARAGRAPH_GRADE}: {hard}"


def test_every_page_title_is_plain() -> None:
    titles = ". ".join(p.title.rstrip("?") for p in education.load_pages("en").values()) + "."
    assert grade(titles) <= MAX_GRADE


@pytest.mark.parametrize("path", message_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_flow_message_reads_at_grade_8_or_lower(path: Path) -> None:
    texts = texts_of(path)
    assert texts, f"{path.name} has no text"
    failing: dict[str, float] = {}
    short: list[str] = []
    for t in texts:
        plain = message_plain(t.body)
        if words(plain) < SHORT_WORDS:
            short.append(plain)
            continue
        if grade(plain) > MAX_GRADE:
            failing[t.name] = round(grade(plain), 1)
        for paragraph in plain.split("\n\n"):
            if words(paragraph) >= SHORT_WORDS and grade(paragraph) > MAX_PARAGRAPH_GRADE:
                failing[f"{t.name} (paragraph)"] = round(grade(paragraph), 1)
    pool = " ".join(short)
    if words(pool) >= SHORT_WORDS:  # a lone fragment (a parameter value) is not scored
        pooled = grade(pool)
        if pooled > MAX_GRADE:
            failing[f"{path.stem}: short messages together"] = round(pooled, 1)
    assert not failing, f"{path.name}: above grade {MAX_GRADE}: {failing}"
