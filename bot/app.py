"""The composition root: builds the Application and registers every handler, in order.

This is the one place in `bot/` that imports `handlers/`. Read it as the routing table.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import BotCommand, BotCommandScopeAllPrivateChats, Update
from telegram.ext import Application, ContextTypes
from telegram.request import BaseRequest

from bot import dispatcher
from bot.config import Settings
from bot.content import messages
from bot.db import Database
from bot.safe_bot import TELEGRAM_BOT_URL, TELEGRAM_FILE_URL, SafeBot
from bot.services import Services
from handlers import (
    broadcasts,
    care_team,
    checkin,
    clarify,
    doctor_first,
    errors,
    fallback,
    invites,
    learn,
    lifecycle,
    offers,
    onboarding,
    pictures,
    research,
    settings,
    stats,
)
from handlers.common import BotContext
from handlers.views.common import PATIENT_COMMANDS

log = logging.getLogger(__name__)

# Updates the bot asks Telegram for; my_chat_member tells us when she blocks or unblocks us.
ALLOWED_UPDATES = [
    Update.MESSAGE,
    Update.EDITED_MESSAGE,
    Update.CALLBACK_QUERY,
    Update.MY_CHAT_MEMBER,
]

BotApplication = Application[Any, BotContext, Any, Any, Services, Any]


def register_handlers(app: BotApplication) -> None:
    """Registers every handler in order, and the typed-text routes the fallback hands on to.

    Every handler is a turn (`handlers.ui.turn`): the replay guard runs inside its
    transaction, so a replayed update changes nothing and sends nothing.
    """
    # What she was asked -> the flow that takes her typed answer (read by handlers/fallback).
    for flow in (onboarding, settings, checkin, pictures, care_team, invites, broadcasts):
        app.bot_data.text_routes.update(flow.TEXT_ROUTES)
    # Group 0: the flows. Specific commands and buttons first, free text last.
    for module in (
        care_team,  # staff commands and alert buttons; the role check is in bot/roles.py
        invites,  # /invite (coordinators): make, list and revoke invite links
        stats,  # /stats (coordinators, researchers): the study at a glance and its chart
        broadcasts,  # /broadcast, /broadcastat, /broadcasts and their buttons (coordinators)
        research,  # /export (researchers; off unless TELEGRAM_EXPORT_ENABLED=true)
        onboarding,
        settings,
        checkin,
        offers,
        learn,
        pictures,
        doctor_first,
        clarify,  # cq: the answer to a clarifying question about her free text
        lifecycle,
        fallback,
    ):
        for handler in module.HANDLERS:
            app.add_handler(handler, group=0)
    app.add_error_handler(errors.on_error)


async def post_init(app: BotApplication) -> None:
    """Publishes the command menu once the bot is connected."""
    texts = messages("en")
    commands = [BotCommand(name, texts.get(f"commands.{name}")) for name in PATIENT_COMMANDS]
    await app.bot.set_my_commands(commands, scope=BotCommandScopeAllPrivateChats())
    app.bot_data.bot_username = app.bot.username or ""
    # Staff see their own commands in their private chats (per-chat scope).
    await care_team.publish_staff_menus(app.bot, app.bot_data)


def build_application(
    settings: Settings,
    db: Database,
    *,
    request: BaseRequest | None = None,
    with_updater: bool = True,
) -> BotApplication:
    """Builds the Application: services, handlers, outbox renderers and the dispatcher job."""
    context_types = ContextTypes(context=BotContext, bot_data=Services)
    # Our own bot, so that one update PTB cannot parse is skipped instead of stopping polling
    # (and dumping everyone's messages into the log). Given a bot, the builder takes no token,
    # URLs or requests; without a request, PTB's defaults are the builder's (256 / 1 conns).
    bot = SafeBot(
        settings.telegram_bot_token or "1:offline",
        base_url=settings.api_base_url or TELEGRAM_BOT_URL,
        base_file_url=settings.api_base_file_url or TELEGRAM_FILE_URL,
        request=request,
        get_updates_request=request,
    )
    builder = Application.builder().bot(bot).context_types(context_types).post_init(post_init)
    if not with_updater:
        builder = builder.updater(None)
    app: BotApplication = builder.build()
    app.bot_data.configure(settings, db)
    checkin.register_outbox(app.bot_data)
    care_team.register_outbox(app.bot_data)
    onboarding.register_outbox(app.bot_data)
    broadcasts.register_outbox(app.bot_data)
    register_handlers(app)
    # One dispatcher tick claims every due row (no job per patient). A late tick still runs
    # (APScheduler's default grace is 1 s) and piled-up ticks coalesce into one.
    if app.job_queue is not None:
        interval = min(settings.dispatch_interval_seconds, 15.0)
        app.job_queue.run_repeating(
            dispatcher.dispatch_job,
            interval=interval,
            first=1.0,
            name="dispatcher",
            job_kwargs={"max_instances": 1, "coalesce": True, "misfire_grace_time": 60},
        )
        # Hourly: forget week-old update ids and idle pacing rows (safe in every process).
        app.job_queue.run_repeating(
            dispatcher.housekeeping_job,
            interval=dispatcher.HOUSEKEEPING_INTERVAL_SECONDS,
            first=60.0,
            name="housekeeping",
            job_kwargs={"max_instances": 1, "coalesce": True, "misfire_grace_time": 600},
        )
    return app
