"""The clarifying question (`cq:`): one short Yes / No question when a reader is unsure.

Asked when the rules read only a weak doubt about her medicine, or when only the intent model
(`bot.intent_model`) suspects a symptom, stopping or "fewer messages" in her words. It always
names her emergency number, and it never starts a path or an alert by itself: her answer does
(`handlers.clarify`).

Callback data: `cq:<question id>:<y|n>`; the row says what was asked and whose it is.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import clarify
from bot.callbacks import Codec, choice, id_part
from bot.config import Settings
from bot.intent_model import Group, Suspicion
from bot.models import Participant
from handlers.common import msgs
from handlers.ui import Screen
from handlers.views.common import emergency_for

CODEC = Codec("cq", (id_part("question"), choice("answer", "y", "n")))
CHOICES = {"y": clarify.YES, "n": clarify.NO}
# The question each reader's doubt leads to; stopping keeps today's weak-intent wording.
ASK_KEYS: dict[Group, str] = {
    "symptom": "clarify.ask_symptom",
    "stop": "doctor_first.weak_ask",
    "fewer": "clarify.ask_fewer",
}


async def question_screen(
    *,
    session: AsyncSession,
    participant: Participant,
    settings: Settings,
    question: Group,
    suspected: str,
    suspicion: Suspicion | None = None,
    emergency: bool = True,
) -> Screen:
    """Records the question and returns it, with her emergency number and Yes / No buttons.

    `emergency=False` leaves the number out when the reply it joins already names it (the
    red-flag advice).
    """
    row = await clarify.ask(
        session=session,
        participant=participant,
        question=question,
        suspected=suspected,
        suspicion=suspicion,
    )
    m = msgs(participant)
    text = m.get(ASK_KEYS[question])
    if emergency:
        text += "\n\n" + m.get("clarify.emergency", emergency=emergency_for(participant, settings))
    return Screen(
        text,
        [
            [
                (m.get("doctor_first.btn_yes"), CODEC.build(row.id, "y")),
                (m.get("doctor_first.btn_no"), CODEC.build(row.id, "n")),
            ]
        ],
    )
