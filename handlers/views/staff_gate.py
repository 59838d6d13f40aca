"""The gate in front of a staff command or button: the same answer as an unknown command for
anyone without the role, so nobody learns that the command exists.

One gate for every staff flow (care team, invites, overview, broadcasts, exports): a staff
command runs in a private chat or the coordinators' group, for someone whose role may do the
work (checked in `bot.roles`, the one place).
"""

from __future__ import annotations

from typing import Any

from telegram.constants import ChatType

from bot import roles
from bot.callbacks import Codec
from bot.content import Messages, messages
from bot.models import Role
from handlers.common import msgs
from handlers.ui import Turn
from handlers.views.common import unknown_command


def staff_m() -> Messages:
    """Returns the care team's messages (English: staff text is operator text)."""
    return messages("en")


def in_private(t: Turn) -> bool:
    """Tells whether the update comes from a private chat."""
    chat = t.update.effective_chat
    return chat is not None and chat.type == ChatType.PRIVATE


def in_staff_place(t: Turn) -> bool:
    """Tells whether the update comes from a private chat or the coordinators' group."""
    chat = t.update.effective_chat
    if chat is None:
        return False
    return chat.type == ChatType.PRIVATE or chat.id == t.settings.coordinator_chat_id


def answer_as_unknown(t: Turn) -> None:
    """Answers exactly as an unknown command is answered in this chat: the unknown-command
    reply in private, nothing in the coordinators' group, "private chat only" elsewhere."""
    chat = t.update.effective_chat
    if chat is not None and chat.type == ChatType.PRIVATE:
        t.reply.show(unknown_command(t.participant))
    elif chat is not None and chat.id != t.settings.coordinator_chat_id:
        t.reply.say(msgs().get("fallback.private_only"))


async def allowed(t: Turn, work: frozenset[Role]) -> bool:
    """Tells whether the person behind the update may do this work."""
    return await roles.may(
        session=t.session, settings=t.settings, telegram_user_id=t.user_id, work=work
    )


async def staff_command(t: Turn, work: frozenset[Role]) -> bool:
    """Tells whether a staff command may run here and by this person; otherwise answers as
    for any unknown command."""
    if not in_staff_place(t) or not await allowed(t, work):
        answer_as_unknown(t)
        return False
    return True


async def staff_press(t: Turn, codec: Codec, work: frozenset[Role]) -> tuple[Any, ...] | None:
    """Returns a staff button's fields, or None (and the expired toast) for anybody else."""
    parsed = codec.parse(t.data)
    if parsed is None or not in_staff_place(t) or not await allowed(t, work):
        t.reply.toast = staff_m().get("common.expired_button")  # a press changes nothing
        return None
    return parsed
