"""Shared pieces for handlers: the typed context, keyboards, looking up the participant."""

from __future__ import annotations

from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackContext, ExtBot

from bot.content import Messages, messages
from bot.models import Participant
from bot.outbox import Buttons
from bot.services import Services


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], Services]):
    """CallbackContext whose bot_data is the typed `Services`."""

    @property
    def services(self) -> Services:
        """Returns settings, database and renderers."""
        return self.bot_data


def keyboard(buttons: Buttons | None) -> InlineKeyboardMarkup | None:
    """Turns rows of (label, callback data) into an inline keyboard."""
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(label, callback_data=data) for label, data in row]
            for row in buttons
        ]
    )


def msgs(participant: Participant | None = None) -> Messages:
    """Returns the messages in the participant's locale (English by default)."""
    return messages(participant.locale if participant else "en")


def discreet(participant: Participant | None) -> bool:
    """Tells whether her messages should be protected from forwarding and saving."""
    return participant is not None and participant.discreet


async def participant_for(session: AsyncSession, update: Update) -> Participant | None:
    """Returns the participant behind the update's sender, if she has ever started the bot."""
    user = update.effective_user
    if user is None:
        return None
    result = await session.exec(select(Participant).where(Participant.telegram_user_id == user.id))
    return result.first()
