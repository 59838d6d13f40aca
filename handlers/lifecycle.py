"""/stop, /pause, /resume, /help, /privacy, /delete_my_data, and block/unblock updates.

Nothing changes on one tap: every choice that changes her lifecycle comes from a button that
carries her participant id and a fingerprint of her state (`lc:<action>:<id>:<stamp>`), so a
button pressed by someone else, or pressed again after the state moved on, changes nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from telegram import CallbackQuery, ChatMember, Update
from telegram.error import BadRequest
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    filters,
)

from bot import lifecycle
from bot.clock import now
from bot.content import Messages
from bot.countries import emergency_number
from bot.models import Lifecycle, Participant
from bot.outbox import Buttons
from bot.services import Services
from handlers.common import BotContext, keyboard, msgs, participant_for

log = logging.getLogger(__name__)

PREFIX = "lc:"
_DATA = re.compile(r"^lc:([a-z0-9]{1,4})(?::(\d{1,19}):([0-9a-f]{6}))?$")

# Button actions. Those in CHANGES alter her lifecycle and must carry a fresh stamp.
PAUSE_MENU, LEAVE, LEAVE_YES, MEDICINE, CANCEL = "pm", "lv", "lvy", "med", "x"
DELETE_YES, DELETE_NO, HELP, PRIVACY = "dy", "dn", "help", "priv"
PAUSE_ACTIONS = {f"p{choice}": choice for choice in lifecycle.PAUSE_CHOICES}
CHANGES = {LEAVE_YES, DELETE_YES, *PAUSE_ACTIONS}
KNOWN = {PAUSE_MENU, LEAVE, MEDICINE, CANCEL, DELETE_NO, *CHANGES}
OPEN_TO_ALL = {HELP, PRIVACY}  # plain information, for anybody, no participant needed


@dataclass(frozen=True)
class ButtonData:
    """A parsed `lc:` button: the action, and whose state it was made for."""

    action: str
    participant_id: int | None = None
    stamp: str | None = None


def button(action: str, participant: Participant | None = None) -> str:
    """Returns the callback data for an action, bound to her id and current state."""
    if participant is None or participant.id is None:
        return f"{PREFIX}{action}"
    return f"{PREFIX}{action}:{participant.id}:{lifecycle.lifecycle_stamp(participant)}"


def parse_button(data: str | None) -> ButtonData | None:
    """Parses `lc:` callback data; returns None for anything malformed or unknown."""
    match = _DATA.match(data or "")
    if match is None:
        return None
    action, pid, stamp = match.groups()
    if action in OPEN_TO_ALL and pid is None:
        return ButtonData(action)
    if action in KNOWN and pid is not None and stamp is not None:
        return ButtonData(action, int(pid), stamp)
    return None


# ---------------------------------------------------------------- rendering helpers


def emergency_for(participant: Participant | None, services: Services) -> str:
    """Returns the emergency number to show her: her country's, else the study's."""
    number = emergency_number(
        country_code=participant.country if participant else None,
        default=services.settings.emergency_number,
    )
    return number or msgs(participant).get("help.emergency_unknown")


def format_date(at: datetime, participant: Participant, services: Services, m: Messages) -> str:
    """Formats an instant as a date in her own time zone."""
    zone = ZoneInfo(participant.timezone or services.settings.default_timezone)
    return at.astimezone(zone).strftime(m.get("lifecycle.date_format"))


def stop_menu(participant: Participant) -> tuple[str, Buttons]:
    """Returns the /stop question and its four choices."""
    m = msgs(participant)
    rows: Buttons = [
        [(m.get("lifecycle.btn_pause"), button(PAUSE_MENU, participant))],
        [(m.get("lifecycle.btn_leave"), button(LEAVE, participant))],
        [(m.get("lifecycle.btn_medicine"), button(MEDICINE, participant))],
        [(m.get("lifecycle.btn_cancel"), button(CANCEL, participant))],
    ]
    return m.get("lifecycle.stop_menu"), rows


def pause_menu(participant: Participant, services: Services) -> tuple[str, Buttons]:
    """Returns the pause-length question, saying how long she is paused if she already is."""
    m = msgs(participant)
    text = m.get("lifecycle.pause_menu")
    if lifecycle.is_paused(participant):
        if participant.paused_until is None:
            text = m.get("lifecycle.now_paused_open") + "\n\n" + text
        else:
            date = format_date(participant.paused_until, participant, services, m)
            text = m.get("lifecycle.now_paused_until", date=date) + "\n\n" + text
    rows: Buttons = [
        [
            (m.get(f"lifecycle.btn_pause_{choice}"), button(action, participant))
            for action, choice in PAUSE_ACTIONS.items()
        ],
        [(m.get("lifecycle.btn_cancel"), button(CANCEL, participant))],
    ]
    return text, rows


def help_text(participant: Participant | None, services: Services) -> str:
    """Returns the /help text with her emergency number."""
    return msgs(participant).get("help.text", emergency=emergency_for(participant, services))


def privacy_text(participant: Participant | None, services: Services) -> str:
    """Returns the /privacy text."""
    return msgs(participant).get("help.privacy", study=services.settings.study_name)


async def reply(
    update: Update, text: str, buttons: Buttons | None = None, *, protect: bool = False
) -> None:
    """Answers the message that triggered the update (protected in her discreet mode)."""
    message = update.effective_message
    if message is not None:
        await message.reply_text(text, reply_markup=keyboard(buttons), protect_content=protect)


async def show(
    query: CallbackQuery, context: BotContext, text: str, buttons: Buttons | None = None
) -> None:
    """Replaces the pressed message with the outcome (a fresh message if it cannot be edited)."""
    try:
        await query.edit_message_text(text, reply_markup=keyboard(buttons))
    except BadRequest as exc:
        if "not modified" in str(exc).lower():
            return  # the same outcome is already on screen
        log.info("could not edit lifecycle message: %s", type(exc).__name__)
        await context.bot.send_message(query.from_user.id, text, reply_markup=keyboard(buttons))


# ---------------------------------------------------------------- commands


async def on_stop(update: Update, context: BotContext) -> None:
    """Asks what she wants to do: pause, leave, talk about her medicine, or cancel."""
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    if participant is None:
        await reply(update, msgs().get("fallback.not_started"))
    elif lifecycle.has_left(participant):
        await reply(update, msgs(participant).get("lifecycle.already_left"))
    else:
        # It names her medicine choices; edits of it keep this protection.
        await reply(update, *stop_menu(participant), protect=participant.discreet)


async def on_pause(update: Update, context: BotContext) -> None:
    """Offers the pause lengths (1 week, 1 month, until she resumes)."""
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    if participant is None:
        await reply(update, msgs().get("fallback.not_started"))
    elif lifecycle.has_left(participant):
        await reply(update, msgs(participant).get("lifecycle.already_left"))
    elif not lifecycle.can_pause(participant):
        await reply(update, msgs(participant).get("lifecycle.nothing_to_pause"))
    else:
        await reply(update, *pause_menu(participant, context.services))


async def on_resume(update: Update, context: BotContext) -> None:
    """Ends her pause, or tells her she was not paused."""
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        resumed = False
        if participant is not None and not lifecycle.has_left(participant):
            resumed = await lifecycle.resume(session=session, participant=participant)
    if participant is None:
        await reply(update, msgs().get("fallback.not_started"))
    elif lifecycle.has_left(participant):
        await reply(update, msgs(participant).get("lifecycle.already_left"))
    else:
        key = "lifecycle.resumed" if resumed else "lifecycle.not_paused"
        await reply(update, msgs(participant).get(key))


async def on_help(update: Update, context: BotContext) -> None:
    """Says what the bot can do, that it is not a doctor, and her emergency number."""
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    await reply(update, help_text(participant, context.services))


async def on_privacy(update: Update, context: BotContext) -> None:
    """Says what is stored, under which name, and how to leave or delete it."""
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    await reply(update, privacy_text(participant, context.services))


async def on_delete_my_data(update: Update, context: BotContext) -> None:
    """Asks her to confirm deleting her data; nothing is erased on this step."""
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
    if participant is None:
        await reply(update, msgs().get("lifecycle.nothing_to_delete"))
        return
    m = msgs(participant)
    rows: Buttons = [
        [(m.get("lifecycle.btn_delete_yes"), button(DELETE_YES, participant))],
        [(m.get("lifecycle.btn_delete_no"), button(DELETE_NO, participant))],
    ]
    await reply(update, m.get("lifecycle.delete_confirm"), rows)


# ---------------------------------------------------------------- buttons


async def on_button(update: Update, context: BotContext) -> None:
    """Acts on a /stop, pause, leave or delete button after checking who pressed it and when."""
    query = update.callback_query
    if query is None:
        return
    data = parse_button(query.data)
    if data is None:
        await query.answer()
        return
    services = context.services
    if data.action in OPEN_TO_ALL:
        await query.answer()
        async with services.db.session() as session:
            participant = await participant_for(session, update)
        info = (help_text if data.action == HELP else privacy_text)(participant, services)
        await context.bot.send_message(query.from_user.id, info)
        return

    text: str
    buttons: Buttons | None = None
    async with services.db.session() as session:
        participant = await participant_for(session, update)
        if participant is None:
            # Never started, or her data was deleted: the button belongs to nobody now.
            await query.answer(msgs().get("lifecycle.stale"), show_alert=True)
            return
        if participant.id != data.participant_id:
            await query.answer(msgs(participant).get("lifecycle.not_yours"), show_alert=True)
            return
        m = msgs(participant)
        if data.action in CHANGES and data.stamp != lifecycle.lifecycle_stamp(participant):
            await query.answer(m.get("lifecycle.stale"), show_alert=True)
            return
        if data.action == CANCEL:
            text = m.get("lifecycle.cancelled")
        elif data.action == DELETE_NO:
            text = m.get("lifecycle.delete_kept")
        elif data.action == MEDICINE:
            # The doctor-first path: its first question replaces the menu.
            from handlers import doctor_first

            text, buttons = await doctor_first.start_view(
                session=session, participant=participant, source="stop_menu"
            )
        elif data.action == DELETE_YES:
            await lifecycle.delete_participant_data(session=session, participant=participant)
            text = m.get("lifecycle.deleted")
        elif lifecycle.has_left(participant):
            text = m.get("lifecycle.already_left")
        elif data.action == LEAVE:
            text = m.get("lifecycle.leave_confirm")
            buttons = [
                [(m.get("lifecycle.btn_leave_yes"), button(LEAVE_YES, participant))],
                [(m.get("lifecycle.btn_leave_no"), button(CANCEL, participant))],
            ]
        elif data.action == LEAVE_YES:
            await lifecycle.withdraw(session=session, participant=participant)
            text = m.get("lifecycle.left")
        elif not lifecycle.can_pause(participant):
            text = m.get("lifecycle.nothing_to_pause")
        elif data.action == PAUSE_MENU:
            text, buttons = pause_menu(participant, services)
        else:
            choice = PAUSE_ACTIONS[data.action]
            until = lifecycle.pause_end(choice=choice, at=now())
            await lifecycle.pause(session=session, participant=participant, until=until)
            if until is None:
                text = m.get("lifecycle.paused_open")
            else:
                date = format_date(until, participant, services, m)
                text = m.get("lifecycle.paused_until", date=date)
    await query.answer()
    await show(query, context, text, buttons)


# ---------------------------------------------------------------- reachability


async def on_my_chat_member(update: Update, context: BotContext) -> None:
    """Marks her unreachable when she blocks the bot and reachable when she unblocks it.

    Only reachability changes: a pause or a withdrawal stays exactly as it was.
    """
    change = update.my_chat_member
    if change is None or change.chat.type != "private":
        return
    status = change.new_chat_member.status
    if status in (ChatMember.BANNED, ChatMember.LEFT):
        reachable = False
    elif status in (ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER):
        reachable = True
    else:
        return
    async with context.services.db.session() as session:
        participant = await participant_for(session, update)
        if participant is None or participant.status == Lifecycle.deleted:
            return
        changed = await lifecycle.mark_reachable(
            session=session, participant=participant, reachable=reachable
        )
    if changed:
        log.info("participant %s reachable=%s", participant.id, reachable)


PRIVATE = filters.ChatType.PRIVATE

HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("stop", on_stop, filters=PRIVATE),
    CommandHandler("pause", on_pause, filters=PRIVATE),
    CommandHandler("resume", on_resume, filters=PRIVATE),
    CommandHandler("help", on_help, filters=PRIVATE),
    CommandHandler("privacy", on_privacy, filters=PRIVATE),
    CommandHandler("delete_my_data", on_delete_my_data, filters=PRIVATE),
    CallbackQueryHandler(on_button, pattern=f"^{PREFIX}"),
    ChatMemberHandler(on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER),
]
