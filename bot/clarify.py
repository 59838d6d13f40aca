"""Clarifying questions about free text: record what was asked, who doubted, what she chose.

Two readers may be unsure about her words: the rules, when they read only a weak doubt about
her medicine (`stop_intent_weak`), and the intent model (`bot.intent_model`), when the rules
found nothing and the model suspects a symptom, stopping or "fewer messages". Either way the
bot asks one short question with Yes / No buttons instead of starting a path, and her choice
leads to the path. Each question is one `ClarifyingQuestion` row holding codes and the rule
and model versions, never her text, so the team can measure how often each reader was right.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import now
from bot.intent import rules_path
from bot.intent_model import Group, Suspicion
from bot.models import ClarifyingQuestion, Participant

QUESTIONS: tuple[Group, ...] = ("symptom", "stop", "fewer")
YES, NO = "yes", "no"
RULES, MODEL = "rules", "model"


@lru_cache(maxsize=8)
def rules_version(locale: str) -> str:
    """Returns the rules file's version and a short hash of its text (unbumped edits show)."""
    path = rules_path(locale)
    raw = path.read_bytes()
    version = "?"
    for line in raw.decode("utf-8").splitlines():
        if line.startswith("version:"):
            version = line.split(":", 1)[1].strip().strip("\"'")
            break
    return f"{path.stem}-{version}-{hashlib.sha256(raw).hexdigest()[:8]}"


async def ask(
    *,
    session: AsyncSession,
    participant: Participant,
    question: Group,
    suspected: str,
    suspicion: Suspicion | None = None,
) -> ClarifyingQuestion:
    """Records a question about to be asked (the model's, when `suspicion` is given)."""
    assert participant.id is not None
    row = ClarifyingQuestion(
        participant_id=participant.id,
        question=question,
        source=MODEL if suspicion is not None else RULES,
        suspected=suspected,
        score=round(suspicion.score * 100) if suspicion is not None else None,
        rules_version=rules_version(participant.locale),
        model_version=suspicion.model_version if suspicion is not None else None,
    )
    session.add(row)
    await session.flush()
    return row


async def question_of(
    *, session: AsyncSession, participant: Participant, question_id: int
) -> ClarifyingQuestion | None:
    """Returns her question with this id; None when there is none or it is someone else's."""
    row = await session.get(ClarifyingQuestion, question_id)
    return row if row is not None and row.participant_id == participant.id else None


async def answer(
    *, session: AsyncSession, participant: Participant, question_id: int, choice: str
) -> ClarifyingQuestion | None:
    """Stores her choice once; None when the question is not hers or was answered already."""
    row = await question_of(session=session, participant=participant, question_id=question_id)
    if row is None or row.choice is not None:
        return None
    row.choice = choice
    row.answered_at = now()
    session.add(row)
    await session.flush()
    return row
