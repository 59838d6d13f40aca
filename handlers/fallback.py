"""The last handlers: free text routed by what she was asked, and a helpful reply otherwise.

This module owns the ONE free-text handler. Every text (and caption) is first read by
`bot.intent.read_text` (every rule book, and its language): an emergency gets her emergency
number before anything else; a red flag, stop intent or "stop sending me messages" gets its
safety reply (`handlers.views.safety`) after any note or question she was asked for has been
saved; a question about taking the medicine, or a message in another language, gets its own
helpful reply. Otherwise what a typed message
means is decided by `Participant.awaiting` in the database (never by process memory), so any
worker can route it: `services.text_routes` maps what is awaited to the flow that takes it
(filled by the routing table in bot/app.py, so this module imports no other flow). Before all
of that, text from a member of staff who is writing to a participant (`bot.staff`, only for
someone who holds a role) goes to the care team's route and is never read as a patient's. Photos,
voice notes and files are answered but never downloaded or stored. Nothing here logs what
she wrote (only the detected kind and rule ids).
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, MessageHandler, filters

from bot import broadcasts, checkins, doctor_first, invites, staff
from bot.awaiting import AwaitKind, awaiting
from bot.models import Participant
from handlers.common import BotContext, msgs
from handlers.ui import Screen, Turn, turn
from handlers.views.checkin import open_question
from handlers.views.common import emergency_for, unknown_command, way_on
from handlers.views.safety import (
    clarify_screen,
    detect,
    other_language_screen,
    outsider_screen,
    safety_reply,
    safety_screens,
    usage_screen,
)

log = logging.getLogger(__name__)

OPEN_CHECKIN = "open_checkin"  # the route for a typed answer to her open check-in's question
# Signals that get "talk with your doctor first" from someone not (or no longer) in the study.
_HEALTH_KINDS = ("red_flag", "stop_intent", "stop_intent_weak")


async def _route(t: Turn, key: str) -> bool:
    """Hands the text to the flow registered for `key`; False when it did not take it."""
    route = t.services.text_routes.get(key)
    return route is not None and await route(t)


@turn
async def on_text(t: Turn) -> None:
    """Answers safety signals first, then hands typed text to the flow that asked for it."""
    # A member of staff writing to a participant: their text is theirs, not a patient's, so
    # it goes to the care team's route before any safety detection reads it.
    writing = await staff.pending_text(
        session=t.session, settings=t.settings, telegram_user_id=t.user_id
    )
    if writing is not None and await _route(t, staff.TEXT_ROUTE):
        return
    # A coordinator answering a step of /invite (a cohort code, a site study id) or typing a
    # broadcast after a bare /broadcast: same rule.
    if writing is None and await _route(t, invites.TEXT_ROUTE):
        return
    if writing is None and await _route(t, broadcasts.TEXT_ROUTE):
        return
    participant = t.participant
    detection = detect(t.text, participant)
    wanted = awaiting(participant)
    kind = wanted.kind if wanted is not None else None
    start = len(t.reply.messages)
    if detection.kind == "emergency":
        # Her emergency number comes before anything else (then any other signal's answer);
        # a note she typed is still kept.
        for screen in await safety_screens(
            session=t.session, participant=participant, settings=t.settings, detection=detection
        ):
            t.reply.show(screen)
        if kind == AwaitKind.note:
            await _route(t, AwaitKind.note)
        _one_message_for_overlong_text(t, start)
        return
    if participant is None:
        # Not in the study: talk of stopping or a symptom still gets "see your doctor first".
        if detection.kind in _HEALTH_KINDS:
            t.reply.show(outsider_screen(None, t.settings))
        else:
            t.reply.say(msgs().get("fallback.not_started"))
        return
    # Red flag, stop intent (strong or weak) or unsubscribe, for someone who consented.
    signal = detection.kind != "none" and doctor_first.may_record(participant)
    if kind in (AwaitKind.reconsent, AwaitKind.onboarding) or (
        kind == AwaitKind.settings and not signal
    ):
        await _route(t, kind)
        return
    # Looked up before her note is saved, which may close the check-in.
    checkin_id = await _checkin_of(t) if signal else None
    handled = False
    if kind in (AwaitKind.question, AwaitKind.note):
        handled = await _route(t, kind)
    if not handled and (not signal or await _note_is_next(t)):
        handled = await _route(t, OPEN_CHECKIN)
    if signal:
        # After her note or question is saved: the safety reply (doctor-first path and so on).
        screens = await safety_screens(
            session=t.session,
            participant=participant,
            settings=t.settings,
            detection=detection,
            checkin_id=checkin_id,
        )
        if screens:
            for screen in screens:
                t.reply.show(screen)
            _one_message_for_overlong_text(t, start)
            return
        # This check-in had its red-flag reply already (the alert is updated): she goes on
        # where she was.
        if not handled:
            handled = await _route(t, OPEN_CHECKIN)
    # Issue 13, second reader: only when the rules found nothing, the intent model may ask one
    # clarifying question (never a path by itself); not while she types a question to save.
    if not signal and kind != AwaitKind.question:
        ask = await clarify_screen(
            session=t.session,
            participant=participant,
            settings=t.settings,
            detection=detection,
            text=t.text,
        )
        if ask is not None:
            t.reply.show(ask)
            _one_message_for_overlong_text(t, start)
            return
    if handled:
        return
    log.debug("free text from participant %s with nothing awaited", participant.id)
    if participant.has_left and detection.kind in _HEALTH_KINDS:
        t.reply.show(outsider_screen(participant, t.settings))
    elif detection.topic is not None:
        t.reply.show(usage_screen(participant, t.settings, detection.topic))
    elif detection.foreign:
        t.reply.show(other_language_screen(participant, t.settings))
    else:
        t.reply.say(helpful_text(t, participant), way_on(participant))


async def _checkin_of(t: Turn) -> int | None:
    """Returns the check-in her words came during: the note's check-in, else her open one."""
    wanted = awaiting(t.participant)
    if wanted is not None and wanted.checkin_id is not None:
        return wanted.checkin_id
    if t.participant is None:
        return None
    checkin = await checkins.open_checkin_for(session=t.session, participant=t.participant)
    return checkin.id if checkin is not None else None


def _one_message_for_overlong_text(t: Turn, start: int) -> None:
    """Joins everything said since `start` into one message when her text was an overlong note.

    "Too long" and the safety answer her words need arrive together, in the order they were
    planned, with all their buttons.
    """
    said = t.reply.messages[start:]
    if len(said) < 2 or not checkins.too_long(t.text):
        return
    text = "\n\n".join(screen.text for screen in said)
    buttons = [row for screen in said for row in (screen.buttons or [])]
    t.reply.messages[start:] = [Screen(text, buttons or None)]


async def _note_is_next(t: Turn) -> bool:
    """Tells whether her open check-in is waiting for the typed note."""
    found = await open_question(t.session, t.participant)
    return found is not None and found[1].type == "text"


def helpful_text(t: Turn, participant: Participant) -> str:
    """Returns the reply to text nothing was waiting for (a shorter one once she has left)."""
    key = "fallback.text_left" if participant.has_left else "fallback.text"
    return msgs(participant).get(key, emergency=emergency_for(participant, t.settings))


@turn
async def on_unknown_command(t: Turn) -> None:
    """Answers a command no flow knows with the commands that exist."""
    t.reply.show(unknown_command(t.participant))


@turn
async def on_media(t: Turn) -> None:
    """Says photos, voice notes and files cannot be read and belong with her care team."""
    # Nothing of the attachment (file, caption) is downloaded, stored or logged; the caption
    # is only read for safety signals, like typed text.
    participant = t.participant
    detection = detect(t.text, participant)
    red_flag = detection.kind == "red_flag"
    screen = await safety_reply(
        session=t.session,
        participant=participant,
        settings=t.settings,
        detection=detection,
        checkin_id=await _checkin_of(t) if red_flag else None,
    )
    if detection.kind == "emergency" and screen is not None:
        t.reply.show(screen)
        return
    if participant is None:
        t.reply.say(msgs().get("fallback.not_started"))
        return
    t.reply.say(t.m.get("fallback.media", emergency=emergency_for(participant, t.settings)))
    if screen is not None:
        t.reply.show(screen)


@turn
async def on_group_command(t: Turn) -> None:
    """Tells a group that the bot works in a private chat (other group messages are ignored)."""
    if t.chat_id is None or t.chat_id == t.settings.coordinator_chat_id:
        return  # the coordinator group gets its own commands in a later flow
    t.reply.say(msgs().get("fallback.private_only"))


@turn
async def on_expired_button(t: Turn) -> None:
    """Answers a press no flow reads (an old message, or forged data): never a spinning button."""
    t.reply.toast = msgs(t.participant).get("common.expired_button")


PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGES
ATTACHMENTS = (
    filters.PHOTO
    | filters.VIDEO
    | filters.VOICE
    | filters.AUDIO
    | filters.VIDEO_NOTE
    | filters.ANIMATION
    | filters.Document.ALL
    | filters.Sticker.ALL
    | filters.LOCATION
    | filters.CONTACT
)

# Registered last in group 0: anything a flow did not take ends up here.
HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    MessageHandler(PRIVATE & filters.TEXT & ~filters.COMMAND, on_text),
    MessageHandler(PRIVATE & filters.COMMAND, on_unknown_command),
    MessageHandler(PRIVATE & ATTACHMENTS, on_media),
    MessageHandler(filters.ChatType.GROUPS & filters.COMMAND, on_group_command),
    CallbackQueryHandler(on_expired_button),
]
