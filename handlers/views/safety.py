"""The answer to a safety signal in free text: emergency, red flag, stopping, "no messages".

The fallback, a check-in note and a saved question all end here, so every flow answers the
same signal the same way. Every signal gets its answer, highest first: the emergency reply
(with a crisis line for thoughts of self-harm); then red-flag advice with, in the same reply,
the doctor-first path when she also said she stopped; then the pause-or-leave menu. Only the
kind and rule ids are logged, never her words.
"""

from __future__ import annotations

import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import doctor_first, intent, intent_model, offers
from bot.config import Settings
from bot.crisis import crisis_line
from bot.intent import Detection
from bot.models import Participant
from bot.outbox import Buttons
from handlers.common import msgs
from handlers.ui import Screen
from handlers.views.clarify import question_screen
from handlers.views.common import emergency_for
from handlers.views.doctor_first import (
    STOPPING_PAGE,
    TALK_PAGE,
    WHEN_TO_CALL_PAGE,
    page_buttons,
    start_view,
)
from handlers.views.lifecycle import unsubscribe_menu

log = logging.getLogger(__name__)

# The page offered with a neutral question about taking the medicine, by rule id.
USAGE_PAGES = {
    "usage.duration": "staying-on-therapy",
    "usage.missed_dose": TALK_PAGE,
    "usage.time": TALK_PAGE,
    "usage.lifestyle": TALK_PAGE,
    # "What are the signs of ...", "who do I ring if ...": when to call, and whom.
    "usage.info": WHEN_TO_CALL_PAGE,
}


def detect(text: str | None, participant: Participant | None) -> Detection:
    """Reads her text as the bot does (every rule book, and its language); logs only codes."""
    locale = participant.locale if participant else "en"
    detection = intent.read_text(text or "", locale)
    if detection.kind != "none":
        log.info("free text signal %s (%s)", detection.kind, ",".join(detection.matched))
    elif detection.topic or detection.foreign:
        log.info("free text %s", detection.topic or f"language {detection.language}")
    return detection


def is_self_harm(detection: Detection) -> bool:
    """Tells whether a self-harm rule fired (in any rule book)."""
    return any(
        intent.rule_name(rid).startswith(doctor_first.SELF_HARM_RULES) for rid in detection.matched
    )


def emergency_screen(
    participant: Participant | None, settings: Settings, detection: Detection | None = None
) -> Screen:
    """Returns the emergency reply with her own emergency number first.

    For thoughts of self-harm: a warm reply with her emergency number and her country's crisis
    line (when one is listed).
    """
    m = msgs(participant)
    emergency = emergency_for(participant, settings)
    if detection is not None and is_self_harm(detection):
        line = crisis_line(participant.country if participant else None)
        if line is not None:
            return Screen(m.get("free_text.self_harm", emergency=emergency, crisis=line.says))
        return Screen(m.get("free_text.self_harm_no_line", emergency=emergency))
    return Screen(m.get("doctor_first.emergency", emergency=emergency))


def _without(detection: Detection, *kinds: str) -> Detection:
    """Returns the detection as if it carried none of `kinds`: the next signal wins."""
    signals = detection.signals - set(kinds)
    kind: intent.Kind = next((k for k in intent.PRECEDENCE if k in signals), "none")
    return Detection(
        kind=kind, signals=signals, matched=detection.matched, language=detection.language
    )


def _without_red_flag(detection: Detection) -> Detection:
    """Returns the detection as if it carried no red flag: the next signal in her words wins."""
    return _without(detection, "red_flag")


async def _stop_part(
    *, session: AsyncSession, participant: Participant, settings: Settings, detection: Detection
) -> tuple[str, Buttons] | None:
    """Returns the stopping answer her words need: the doctor-first path or the gentle question.

    The gentle question is the recorded clarifying question (`cq:`), as for a weak doubt alone;
    the red-flag advice it joins already names her emergency number.
    """
    if "stop_intent" in detection.signals:
        text, buttons = await start_view(
            session=session, participant=participant, source="free_text"
        )
        return text, buttons or []
    if "stop_intent_weak" in detection.signals:
        asked = await question_screen(
            session=session,
            participant=participant,
            settings=settings,
            question="stop",
            suspected="stop_intent_weak",
            emergency=False,
        )
        return asked.text, asked.buttons or []
    return None


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

    A red flag and stopping in the same words get one reply: the red-flag advice, then the
    doctor-first path (or the gentle question) with its buttons.

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
        return emergency_screen(participant, settings, detection)
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
            buttons = page_buttons(m, WHEN_TO_CALL_PAGE)
            stop = await _stop_part(
                session=session, participant=participant, settings=settings, detection=detection
            )
            if stop is not None:
                text = f"{text}\n\n{stop[0]}"
                buttons = [*stop[1], *buttons]
            return Screen(text, buttons)
        detection = _without_red_flag(detection)
        if detection.kind == "none":
            return None
    if detection.kind == "stop_intent_weak":
        # Issue 13: a weak doubt alone gets the recorded clarifying question (`cq:`), with her
        # emergency number, like the model's; her Yes starts the path (handlers/clarify.py).
        return await question_screen(
            session=session,
            participant=participant,
            settings=settings,
            question="stop",
            suspected="stop_intent_weak",
        )
    if detection.kind in ("stop_intent", "stop_intent_weak"):
        stop = await _stop_part(
            session=session, participant=participant, settings=settings, detection=detection
        )
        if stop is not None:
            return Screen(stop[0], stop[1] or None)
    # Unsubscribe: pause or leave, never read as stopping her medicine.
    return Screen(*unsubscribe_menu(participant))


async def safety_screens(
    *,
    session: AsyncSession,
    participant: Participant | None,
    settings: Settings,
    detection: Detection,
    checkin_id: int | None = None,
) -> list[Screen]:
    """Answers every signal in her words, highest first (see the module docstring).

    An emergency reply comes first and alone at the top; the other signals follow in their
    own reply; "stop the messages" said beside anything else gets the pause-or-leave menu last.
    """
    screens: list[Screen] = []
    rest = detection
    if detection.kind == "emergency":
        first = await safety_reply(
            session=session, participant=participant, settings=settings, detection=detection
        )
        if first is not None:
            screens.append(first)
        rest = _without(detection, "emergency")
    if rest.kind == "none":
        return screens
    main = await safety_reply(
        session=session,
        participant=participant,
        settings=settings,
        detection=rest,
        checkin_id=checkin_id,
    )
    if main is not None:
        screens.append(main)
        if rest.kind != "unsubscribe" and "unsubscribe" in rest.signals and participant:
            menu = Screen(*unsubscribe_menu(participant))
            if main.text != menu.text:  # a red flag already advised falls through to the menu
                screens.append(menu)
    return screens


def outsider_screen(participant: Participant | None, settings: Settings) -> Screen:
    """Returns the reply to someone not (or no longer) in the study who wrote about stopping
    or a symptom: talk with her doctor first, contact them about a symptom, the emergency number.
    """
    key = (
        "free_text.left_health"
        if participant is not None and participant.has_left
        else "free_text.not_joined_health"
    )
    m = msgs(participant)
    return Screen(
        m.get(key, emergency=emergency_for(participant, settings)),
        page_buttons(m, TALK_PAGE, STOPPING_PAGE) or None,
    )


def usage_screen(participant: Participant | None, settings: Settings, topic: str) -> Screen:
    """Returns the reply to a question about taking the medicine correctly, with a page."""
    m = msgs(participant)
    page = USAGE_PAGES.get(topic, TALK_PAGE)
    return Screen(
        m.get("free_text.usage_question", emergency=emergency_for(participant, settings)),
        page_buttons(m, page) or None,
    )


def other_language_screen(participant: Participant | None, settings: Settings) -> Screen:
    """Returns "I can only read English" with the care team, the path and the emergency number."""
    emergency = emergency_for(participant, settings)
    return Screen(msgs(participant).get("free_text.other_language", emergency=emergency))


# ---------------------------------------------------------------- second reader (issue 13)
# The intent model is consulted only when the rules found nothing (`Detection.undecided`), and
# its call alone only asks a clarifying question (handlers/views/clarify.py, handlers/clarify.py):
# never an emergency path, an alert or the doctor-first path.


async def clarify_screen(
    *,
    session: AsyncSession,
    participant: Participant | None,
    settings: Settings,
    detection: Detection,
    text: str | None,
) -> Screen | None:
    """Returns one clarifying question when only the intent model suspects something."""
    if participant is None or not doctor_first.may_record(participant):
        return None
    suspicion = intent_model.second_reading(text or "", detection, participant.locale)
    if suspicion is None:
        return None
    log.info(
        "intent model suspects %s (%s, %.2f, %s)",
        suspicion.group,
        suspicion.label,
        suspicion.score,
        suspicion.model_version,
    )
    return await question_screen(
        session=session,
        participant=participant,
        settings=settings,
        question=suspicion.group,
        suspected=suspicion.label,
        suspicion=suspicion,
    )
