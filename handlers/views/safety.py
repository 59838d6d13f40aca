"""The answer to a safety signal in free text: emergency, red flag, stopping, "no messages".

The fallback, a check-in note and a saved question all end here, so every flow answers the
same signal the same way. Only the kind and rule ids are logged, never her words.
"""

from __future__ import annotations

import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import doctor_first, intent
from bot.config import Settings
from bot.intent import Detection
from bot.models import Participant
from handlers.common import msgs
from handlers.ui import Screen
from handlers.views.common import emergency_for
from handlers.views.doctor_first import (
    WHEN_TO_CALL_PAGE,
    page_buttons,
    start_view,
    weak_question,
)
from handlers.views.lifecycle import unsubscribe_menu

log = logging.getLogger(__name__)


def detect(text: str | None, participant: Participant | None) -> Detection:
    """Classifies her text in her locale and logs only the kind and the rule ids."""
    locale = participant.locale if participant else "en"
    detection = intent.detect(text or "", locale)
    if detection.kind != "none":
        log.info("free text signal %s (%s)", detection.kind, ",".join(detection.matched))
    return detection


def emergency_screen(participant: Participant | None, settings: Settings) -> Screen:
    """Returns the emergency reply with her own emergency number first."""
    m = msgs(participant)
    return Screen(m.get("doctor_first.emergency", emergency=emergency_for(participant, settings)))


async def safety_reply(
    *,
    session: AsyncSession,
    participant: Participant | None,
    settings: Settings,
    detection: Detection,
) -> Screen | None:
    """Answers an emergency, red flag, stop intent or unsubscribe request; None for none.

    Emergencies are answered for anybody; the rest only for someone who consented and has not
    left (nothing is stored for anybody else, and the usual reply follows instead).
    """
    if detection.kind == "none":
        return None
    if detection.kind == "emergency":
        return emergency_screen(participant, settings)
    if participant is None or not doctor_first.may_record(participant):
        return None
    m = msgs(participant)
    if detection.kind == "red_flag":
        await doctor_first.record_red_flag(
            session=session, participant=participant, source="free_text", rules=detection.matched
        )
        text = m.get("doctor_first.red_flag", emergency=emergency_for(participant, settings))
        return Screen(text, page_buttons(m, WHEN_TO_CALL_PAGE))
    if detection.kind == "stop_intent":
        text, buttons = await start_view(
            session=session, participant=participant, source="free_text"
        )
        return Screen(text, buttons)
    if detection.kind == "stop_intent_weak":
        return Screen(*weak_question(participant))
    # Unsubscribe: pause or leave, never read as stopping her medicine.
    return Screen(*unsubscribe_menu(participant))
