"""The last handler: logs a failure with a correlation id and no patient text."""

from __future__ import annotations

import logging
import traceback
import uuid

from telegram import Update

from handlers.common import BotContext, msgs

log = logging.getLogger("adherence_bot.errors")


async def on_error(update: object, context: BotContext) -> None:
    """Logs the exception type and a correlation id, and tells the person something went wrong."""
    ref = uuid.uuid4().hex[:8]
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
    chat = update.effective_chat if isinstance(update, Update) else None
    if chat is not None and chat.type == "private":
        try:
            await context.bot.send_message(chat.id, msgs().get("common.error", ref=ref))
        except Exception:  # already failing: never raise from the error handler
            log.warning("could not tell the participant about error ref=%s", ref)
