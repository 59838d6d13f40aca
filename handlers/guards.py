"""Cross-cutting pre-checks that run before any flow (handler group -1)."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ApplicationHandlerStop, BaseHandler, TypeHandler

from bot.updates_seen import claim_update
from handlers.common import BotContext

log = logging.getLogger(__name__)


async def drop_replays(update: Update, context: BotContext) -> None:
    """Stops an update Telegram delivered before, so a replay changes nothing."""
    if not await claim_update(context.services.db, update.update_id):
        log.info("replayed update %s ignored", update.update_id)
        raise ApplicationHandlerStop


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    TypeHandler(Update, drop_replays),
]
