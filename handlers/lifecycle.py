"""Placeholder flow module; its handlers are being written."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler

from handlers.common import BotContext

HANDLERS: list[BaseHandler[Update, BotContext, None]] = []
