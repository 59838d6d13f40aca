"""The last handler: logs a failure with a correlation id and no patient text."""

from __future__ import annotations

import logging
import traceback

from telegram import Update

from handlers.common import BotContext, msgs
from handlers.ui import Reply, deliver, new_ref

log = logging.getLogger("adherence_bot.errors")


async def on_error(update: object, context: BotContext) -> None:
    """Logs the exception type and a correlation id, and tells the person something went wrong.

    The reply goes through the one reply path: the press is answered (no spinning button),
    and the message waits out any `retry_after` window like every other reply.
    """
    ref = new_ref()
    error = context.error
    update_id = update.update_id if isinstance(update, Update) else None
    # Never log the update or the exception text: either may carry what she typed.
    log.error(
        "handler failed ref=%s update_id=%s error=%s",
        ref,
        update_id,
        type(error).__name__ if error else None,
    )
    if error is not None and error.__traceback__ is not None:
        # Frames only (file, line, code): the exception message could quote patient text.
        log.error("ref=%s traceback:\n%s", ref, "".join(traceback.format_tb(error.__traceback__)))
    if not isinstance(update, Update):
        return
    chat = update.effective_chat
    reply = Reply(protect=True)  # nothing sensitive, but never forwardable either
    if chat is not None and chat.type == "private":
        reply.say(msgs().get("common.error", ref=ref))
    await deliver(update, context, reply)
