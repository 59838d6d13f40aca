"""Steps the free-text tests share: type a message as an enrolled participant and read which
reply paths she was shown, list the alerts raised, and read the labelled set's texts (the
wordings written for the method tests must not be in it)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from sqlmodel import select

from bench.score_intent import markers, paths_of, top_path
from bot.content import parse_yaml
from bot.intent import read_text
from bot.models import Alert, ClarifyingQuestion
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant

LABELLED = Path(__file__).parent / "data" / "intent_labelled_en.yaml"


def reads_as_none(text: str) -> None:
    """Checks that the rules alone find nothing in `text` (no kind, no safety path)."""
    found = read_text(text)
    assert found.kind == "none", found


async def reply_paths(h: Harness, text: str) -> set[str]:
    """Types `text` as an enrolled participant; returns the reply paths she was shown."""
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    return paths_of(h.texts(PATIENT), markers())


async def answered_on(h: Harness, text: str, path: str) -> set[str]:
    """Types `text`; checks that the most serious reply path she was shown is `path`."""
    seen = await reply_paths(h, text)
    assert top_path(seen) == path, seen
    return seen


async def gets_emergency(h: Harness, text: str, *, alert: str = "emergency") -> None:
    """Types `text`; checks the emergency reply and the urgent alert of that kind."""
    await answered_on(h, text, "emergency")
    assert await alerts(h, alert)


async def gets_red_flag(h: Harness, text: str) -> None:
    """Types `text`; checks the red-flag reply and alert, and that it raised no emergency."""
    await answered_on(h, text, "red_flag")
    assert await alerts(h, "red_flag")
    assert not await alerts(h, "emergency")


async def gets_weak_question(h: Harness, text: str) -> None:
    """Types `text`; checks the stopping question, recorded as a weak doubt."""
    await answered_on(h, text, "clarify")
    async with h.db.session() as session:
        [row] = (await session.exec(select(ClarifyingQuestion))).all()
    assert row.suspected == "stop_intent_weak"


async def gets_no_safety_path(h: Harness, text: str) -> None:
    """Types `text`; checks it got neither the emergency nor the red-flag reply, nor an alert."""
    seen = await reply_paths(h, text)
    assert top_path(seen) not in ("emergency", "red_flag"), seen
    assert not await alerts(h, "emergency")
    assert not await alerts(h, "red_flag")


async def alerts(h: Harness, kind: str) -> list[Alert]:
    """Returns the alerts of one kind raised so far."""
    async with h.db.session() as session:
        return list((await session.exec(select(Alert).where(Alert.kind == kind))).all())


@cache
def labelled_sections() -> dict[str, list[dict[str, Any]]]:
    """The labelled set by section, parsed once per test process (libyaml: the file has
    thousands of entries; do not change what it returns)."""
    data: dict[str, list[dict[str, Any]]] = parse_yaml(LABELLED.read_text(encoding="utf-8"))
    return data


@cache
def _labelled_texts() -> frozenset[str]:
    sections = labelled_sections().values()
    return frozenset(m["text"].strip().lower() for section in sections for m in section)


def in_labelled_set(texts: list[str]) -> list[str]:
    """Returns the texts that also stand in the labelled set (case and spaces aside)."""
    labelled = _labelled_texts()
    return [t for t in texts if t.strip().lower() in labelled]
