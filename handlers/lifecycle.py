"""/stop, /pause, /resume, /help, /privacy, /delete_my_data, and block/unblock updates.

Nothing changes on one tap: every choice that changes her lifecycle comes from an `lc:`
button (`handlers.views.lifecycle`) that carries her participant id and a fingerprint of her
state, so a button pressed by someone else, or pressed again after the state moved on,
changes nothing.
"""

from __future__ import annotations

import logging

from telegram import ChatMember, Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    filters,
)

from bot import lifecycle
from bot.clock import now
from bot.models import Lifecycle
from bot.outbox import Buttons
from handlers.common import BotContext, msgs
from handlers.ui import Turn, turn
from handlers.views.common import help_text, privacy_text, staff_help
from handlers.views.doctor_first import start_view
from handlers.views.lifecycle import (
    CANCEL,
    CHANGES,
    CODEC,
    DELETE_NO,
    DELETE_YES,
    HELP,
    LEAVE,
    LEAVE_YES,
    MEDICINE,
    OPEN_TO_ALL,
    PAUSE_ACTIONS,
    PAUSE_MENU,
    button,
    format_date,
    parse_button,
    pause_menu,
    stop_menu,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- commands


@turn
async def on_stop(t: Turn) -> None:
    """Asks what she wants to do: pause, leave, talk about her medicine, or cancel."""
    participant = t.participant
    if participant is None:
        t.reply.say(msgs().get("fallback.not_started"))
    elif participant.has_left:
        t.reply.say(t.m.get("lifecycle.already_left"))
    else:
        t.reply.say(*stop_menu(participant))


@turn
async def on_pause(t: Turn) -> None:
    """Offers the pause lengths (1 week, 1 month, until she resumes)."""
    participant = t.participant
    if participant is None:
        t.reply.say(msgs().get("fallback.not_started"))
    elif participant.has_left:
        t.reply.say(t.m.get("lifecycle.already_left"))
    elif not lifecycle.can_pause(participant):
        t.reply.say(t.m.get("lifecycle.nothing_to_pause"))
    else:
        t.reply.say(*pause_menu(participant, t.settings))


@turn
async def on_resume(t: Turn) -> None:
    """Ends her pause, or tells her she was not paused."""
    participant = t.participant
    if participant is None:
        t.reply.say(msgs().get("fallback.not_started"))
    elif participant.has_left:
        t.reply.say(t.m.get("lifecycle.already_left"))
    else:
        resumed = await lifecycle.resume(session=t.session, participant=participant)
        t.reply.say(t.m.get("lifecycle.resumed" if resumed else "lifecycle.not_paused"))


@turn
async def on_help(t: Turn) -> None:
    """Says what the bot can do (before /start: what it is and how to join), and her number."""
    t.reply.say(help_text(t.participant, t.settings))
    staff = await staff_help(session=t.session, settings=t.settings, user_id=t.user_id)
    if staff is not None:
        t.reply.show(staff)  # a role adds commands; it takes none away


@turn
async def on_privacy(t: Turn) -> None:
    """Says what is stored, under which name, and how to leave or delete it."""
    t.reply.say(privacy_text(t.participant, t.settings))


@turn
async def on_delete_my_data(t: Turn) -> None:
    """Asks her to confirm deleting her data; nothing is erased on this step."""
    participant = t.participant
    if participant is None:
        t.reply.say(msgs().get("lifecycle.nothing_to_delete"))
        return
    m = t.m
    rows: Buttons = [
        [(m.get("lifecycle.btn_delete_yes"), button(DELETE_YES, participant))],
        [(m.get("lifecycle.btn_delete_no"), button(DELETE_NO, participant))],
    ]
    t.reply.say(m.get("lifecycle.delete_confirm"), rows)


# ---------------------------------------------------------------- buttons


@turn
async def on_button(t: Turn) -> None:
    """Acts on a /stop, pause, leave or delete button after checking who pressed it and when."""
    reply, participant, settings = t.reply, t.participant, t.settings
    data = parse_button(t.data)
    if data is None:
        reply.toast = msgs(participant).get("common.expired_button")
        return
    if data.action in OPEN_TO_ALL:
        reply.say((help_text if data.action == HELP else privacy_text)(participant, settings))
        return
    if participant is None:
        # Never started, or her data was deleted: the button belongs to nobody now.
        reply.toast, reply.alert = msgs().get("lifecycle.stale"), True
        return
    m = t.m
    if participant.id != data.participant_id:
        reply.toast, reply.alert = m.get("lifecycle.not_yours"), True
        return
    if data.action in CHANGES and data.stamp != lifecycle.lifecycle_stamp(participant):
        reply.toast, reply.alert = m.get("lifecycle.stale"), True
        return
    if data.action == CANCEL:
        reply.replace(m.get("lifecycle.cancelled"))
    elif data.action == DELETE_NO:
        reply.replace(m.get("lifecycle.delete_kept"))
    elif data.action == MEDICINE:
        # The doctor-first path: its first question replaces the menu.
        reply.replace(
            *await start_view(session=t.session, participant=participant, source="stop_menu")
        )
    elif data.action == DELETE_YES:
        await lifecycle.delete_participant_data(session=t.session, participant=participant)
        reply.replace(m.get("lifecycle.deleted"))
    elif participant.has_left:
        reply.replace(m.get("lifecycle.already_left"))
    elif data.action == LEAVE:
        reply.replace(
            m.get("lifecycle.leave_confirm"),
            [
                [(m.get("lifecycle.btn_leave_yes"), button(LEAVE_YES, participant))],
                [(m.get("lifecycle.btn_leave_no"), button(CANCEL, participant))],
            ],
        )
    elif data.action == LEAVE_YES:
        await lifecycle.withdraw(session=t.session, participant=participant)
        reply.replace(m.get("lifecycle.left"))
    elif not lifecycle.can_pause(participant):
        reply.replace(m.get("lifecycle.nothing_to_pause"))
    elif data.action == PAUSE_MENU:
        reply.replace(*pause_menu(participant, settings))
    else:
        choice = PAUSE_ACTIONS[data.action]
        until = lifecycle.pause_end(choice=choice, at=now())
        await lifecycle.pause(session=t.session, participant=participant, until=until)
        if until is None:
            reply.replace(m.get("lifecycle.paused_open"))
        else:
            date = format_date(until, participant, settings, m)
            reply.replace(m.get("lifecycle.paused_until", date=date))


# ---------------------------------------------------------------- reachability


@turn
async def on_my_chat_member(t: Turn) -> None:
    """Marks her unreachable when she blocks the bot and reachable when she unblocks it.

    Only reachability changes: a pause or a withdrawal stays exactly as it was.
    """
    change = t.update.my_chat_member
    participant = t.participant
    if change is None or change.chat.type != "private":
        return
    status = change.new_chat_member.status
    if status in (ChatMember.BANNED, ChatMember.LEFT):
        reachable = False
    elif status in (ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER):
        reachable = True
    else:
        return
    if participant is None or participant.status == Lifecycle.deleted:
        return
    if await lifecycle.mark_reachable(
        session=t.session, participant=participant, reachable=reachable
    ):
        log.info("participant %s reachable=%s", participant.id, reachable)


PRIVATE = filters.ChatType.PRIVATE

HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("stop", on_stop, filters=PRIVATE),
    CommandHandler("pause", on_pause, filters=PRIVATE),
    CommandHandler("resume", on_resume, filters=PRIVATE),
    CommandHandler("help", on_help, filters=PRIVATE),
    CommandHandler("privacy", on_privacy, filters=PRIVATE),
    CommandHandler("delete_my_data", on_delete_my_data, filters=PRIVATE),
    CallbackQueryHandler(on_button, pattern=CODEC.pattern),
    ChatMemberHandler(on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER),
]
