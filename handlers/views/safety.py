"""The answer to a safety signal in free text: emergency, red flag, stopping, "no messages".

The fallback, a check-in note and a saved question all end here, so every flow answers the
same signal the same way. Only the kind and rule ids are logged, never her words.
"""

from __future__ import annotations

import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import doctor_first, intent, offers
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


def _without_red_flag(detection: Detection) -> Detection:
    """Returns the detection as if it carried no red flag: the next signal in her words wins."""
    signals = detection.signals - {"red_flag"}
    kind: intent.Kind = next((k for k in intent.PRECEDENCE if k in signals), "none")
    return Detection(kind=kind, signals=signals, matched=detection.matched)


async def safety_reply(
    *,
    session: AsyncSession,
    participant: Participant | None,
    settings: Settings,
    detection: Detection,
    checkin_id: int | None = None,
) -> Screen | None:
    """Answers an emergency, red flag, stop intent or unsubscribe request; None for none.

    Emergencies are answered for anybody; the rest only for someone who consented and has not
    left (nothing is stored for anybody else, and the usual reply follows instead). For her, an
    emergency (or thoughts of self-harm) is also an urgent alert to the care team: the detected
    kind and rule ids, never her text.

    `checkin_id` is the check-in her words came during. It gets one red-flag reply: a later red
    flag in it (ticked or typed) only updates the alert, and any other signal in her words
    (stopping, say) gets its own answer instead.
    """
    if detection.kind == "none":
        return None
    if detection.kind == "emergency":
        if participant is not None and doctor_first.may_record(participant):
            await doctor_first.record_emergency(
                session=session,
                participant=participant,
                source="free_text",
                rules=detection.matched,
            )
        return emergency_screen(participant, settings)
    if participant is None or not doctor_first.may_record(participant):
        return None
    m = msgs(participant)
    if detection.kind == "red_flag":
        advised = await offers.red_flag_advised(
            session=session, participant=participant, checkin_id=checkin_id
        )
        await doctor_first.record_red_flag(
            session=session,
            participant=participant,
            source="free_text",
            rules=detection.matched,
            checkin_id=checkin_id,
        )
        if not advised:
            text = m.get("doctor_first.red_flag", emergency=emergency_for(participant, settings))
            return Screen(text, page_buttons(m, WHEN_TO_CALL_PAGE))
        detection = _without_red_flag(detection)
        if detection.kind == "none":
            return None
    if detection.kind == "stop_intent":
        text, buttons = await start_view(
            session=session, participant=participant, source="free_text"
        )
        return Screen(text, buttons)
    if detection.kind == "stop_intent_weak":
        return Screen(*weak_question(participant))
    # Unsubscribe: pause or leave, never read as stopping her medicine.
    return Screen(*unsubscribe_menu(participant))
