"""Steps the free-text tests share: type a message as an enrolled participant and read which
reply paths she was shown, list the alerts raised, and read the labelled set's texts (the
wordings written for the method tests must not be in it)."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlmodel import select

from bench.score_intent import markers, paths_of
from bot.models import Alert
from tests.conftest import PATIENT, Harness
from tests.factories import make_active_participant

LABELLED = Path(__file__).parent / "data" / "intent_labelled_en.yaml"


async def reply_paths(h: Harness, text: str) -> set[str]:
    """Types `text` as an enrolled participant; returns the reply paths she was shown."""
    await make_active_participant(h.db)
    await h.send(PATIENT, text)
    return paths_of(h.texts(PATIENT), markers())


async def alerts(h: Harness, kind: str) -> list[Alert]:
    """Returns the alerts of one kind raised so far."""
    async with h.db.session() as session:
        return list((await session.exec(select(Alert).where(Alert.kind == kind))).all())


def in_labelled_set(texts: list[str]) -> list[str]:
    """Returns the texts that also stand in the labelled set (case and spaces aside)."""
    data = yaml.safe_load(LABELLED.read_text(encoding="utf-8"))
    labelled = {m["text"].strip().lower() for section in data.values() for m in section}
    return [t for t in texts if t.strip().lower() in labelled]
