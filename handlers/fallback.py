"""The last handlers: free text routed by what she was asked, and a helpful reply otherwise.

This module owns the ONE free-text handler. Every text (and caption) is first classified by
`bot.intent.detect`: an emergency gets her emergency number before anything else; a red flag,
stop intent or "stop sending me messages" gets its safety reply (handlers/doctor_first.py)
after any note or question she was asked for has been saved. Otherwise what a typed message
means is decided by `Participant.awaiting` in the database (never by process memory), so any
worker can route it. Photos, voice notes and files are answered but never downloaded or
stored. Nothing here logs what she wrote (only the detected kind and rule ids).
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import BaseHandler, MessageHandler, filters

from bot import checkins, doctor_first, lifecycle
from bot.models import Participant
from bot.outbox import Buttons
from handlers import doctor_first as safety_replies
from handlers.common import BotContext, msgs, participant_for
from handlers.lifecycle import HELP, PRIVACY, button, emergency_for, reply

log = logging.getLogger(__name__)

ONBOARDING_PREFIXES = ("onb:", "set:")
SETTINGS_PREFIX = "set:"
RECONSENT = "reconsent"
NOTE_PREFIX = "note:"
QUESTION_PREFIX = "q:"


def way_on(participant: Participant | None) -> Buttons:
    """Returns the buttons every dead end offers: what the bot can do, and privacy."""
    m = msgs(participant)
    return [
        [
            (m.get("fallback.btn_help"), button(HELP)),
            (m.get("fallback.btn_privacy"), button(PRIVACY)),
        ]
    ]


async def _note_is_next(participant: Participant | None, context: BotContext) -> bool:
    """Tells whether her open check-in is waiting for the typed note."""
    if participant is None or participant.id is None or lifecycle.has_left(participant):
        return False
    async with context.services.db.session() as session:
        checkin = await checkins.open_checkin_for(session=session, participant=participant)
        item = await checkins.current_item(session=session, checkin=checkin) if checkin else None
    return item is not None and item.type == "text"


async def on_text(update: Update, context: BotContext) -> None:
    """Answers safety signals first, then hands typed text to the flow that asked for it."""
    message = update.effective_message
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        open_checkin = (
            participant is not None
            and participant.id is not None
            and not lifecycle.has_left(participant)
            and await lifecycle.has_open_checkin(session=session, participant_id=participant.id)
        )
    detection = safety_replies.detect(message.text if message else None, participant)
    awaiting = (participant.awaiting if participant else None) or ""
    if detection.kind == "emergency":
        # Her emergency number comes before anything else; a note she typed is still kept.
        await safety_replies.respond_to_text(
            update, context, participant=participant, detection=detection
        )
        if awaiting.startswith(NOTE_PREFIX):
            from handlers import checkin

            await checkin.on_note_text(update, context)
        return
    if participant is None:
        await reply(update, msgs().get("fallback.not_started"))
        return
    # Red flag, stop intent (strong or weak) or unsubscribe, for someone who consented.
    signal = detection.kind != "none" and doctor_first.may_record(participant)
    if awaiting == RECONSENT or (
        awaiting.startswith(ONBOARDING_PREFIXES)
        and not (signal and awaiting.startswith(SETTINGS_PREFIX))
    ):
        from handlers import onboarding

        await onboarding.on_awaited_text(update, context)
        return
    handled = False
    if awaiting.startswith(QUESTION_PREFIX):
        from handlers import pictures

        await pictures.on_question_text(update, context)
        handled = True
    elif awaiting.startswith(NOTE_PREFIX):
        from handlers import checkin

        await checkin.on_note_text(update, context)
        handled = True
    elif open_checkin and (not signal or await _note_is_next(participant, context)):
        from handlers import checkin

        handled = await checkin.on_text_during_checkin(update, context)
    if signal:
        # After her note or question is saved: the safety reply (doctor-first path and so on).
        await safety_replies.respond_to_text(
            update, context, participant=participant, detection=detection
        )
        return
    if handled:
        return
    log.debug("free text from participant %s with nothing awaited", participant.id)
    await reply(update, helpful_text(participant, context), way_on(participant))


def helpful_text(participant: Participant, context: BotContext) -> str:
    """Returns the reply to text nothing was waiting for (a shorter one once she has left)."""
    key = "fallback.text_left" if lifecycle.has_left(participant) else "fallback.text"
    return msgs(participant).get(key, emergency=emergency_for(participant, context.services))


async def on_unknown_command(update: Update, context: BotContext) -> None:
    """Answers a command no flow knows with the commands that exist."""
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    if participant is None:
        await reply(update, msgs().get("fallback.not_started"))
        return
    await reply(update, msgs(participant).get("fallback.unknown_command"), way_on(participant))


async def on_media(update: Update, context: BotContext) -> None:
    """Says photos, voice notes and files cannot be read and belong with her care team."""
    # Nothing of the attachment (file, caption) is downloaded, stored or logged; the caption
    # is only read for safety signals, like typed text.
    message = update.effective_message
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    detection = safety_replies.detect(message.caption if message else None, participant)
    if detection.kind == "emergency":
        await safety_replies.respond_to_text(
            update, context, participant=participant, detection=detection
        )
        return
    if participant is None:
        await reply(update, msgs().get("fallback.not_started"))
        return
    text = msgs(participant).get(
        "fallback.media", emergency=emergency_for(participant, context.services)
    )
    await reply(update, text)
    await safety_replies.respond_to_text(
        update, context, participant=participant, detection=detection
    )


async def on_group_command(update: Update, context: BotContext) -> None:
    """Tells a group that the bot works in a private chat (other group messages are ignored)."""
    chat = update.effective_chat
    if chat is None or chat.id == context.services.settings.coordinator_chat_id:
        return  # the coordinator group gets its own commands in a later flow
    await reply(update, msgs().get("fallback.private_only"))


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
]
