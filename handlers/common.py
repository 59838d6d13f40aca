"""Shared pieces for handlers: the typed context, messages by locale, who sent the update."""

from __future__ import annotations

from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Update
from telegram.ext import CallbackContext, ExtBot

from bot.content import Messages, messages
from bot.models import Participant
from bot.services import Services


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], Services]):
    """CallbackContext whose bot_data is the typed `Services`."""

    @property
    def services(self) -> Services:
        """Returns settings, database and renderers."""
        return self.bot_data


def msgs(participant: Participant | None = None) -> Messages:
    """Returns the messages in the participant's locale (English by default)."""
    return messages(participant.locale if participant else "en")


async def participant_for(session: AsyncSession, update: Update) -> Participant | None:
    """Returns the participant behind the update's sender, if she has ever started the bot."""
    user = update.effective_user
    if user is None:
        return None
    result = await session.exec(select(Participant).where(Participant.telegram_user_id == user.id))
    return result.first()
