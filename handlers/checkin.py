"""Placeholder flow module; its handlers are being written."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler

from handlers.common import BotContext

HANDLERS: list[BaseHandler[Update, BotContext, None]] = []


def register_outbox(services: object) -> None:
    """Registers the check-in renderers with the outbox (filled in with the check-in flow)."""
