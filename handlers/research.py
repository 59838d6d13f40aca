"""/export in Telegram: a researcher gets the research export as a zip, if the study allows it.

Off unless TELEGRAM_EXPORT_ENABLED=true (the file would be stored on Telegram's servers; the
CLI always works). Researchers and admins only, in a private chat; anyone else gets the
unknown-command reply. The command warns first; "Send" makes a CSV export (in a worker
thread), audits it, and sends the zip with protect_content. Over Telegram's 50 MB limit for
bots it says to use the CLI instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import tempfile
from pathlib import Path

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import roles
from bot.audit import record_audit
from bot.callbacks import Codec, choice
from bot.clock import now
from bot.config import Settings
from bot.export.run import (
    EXPORT_ACTION,
    ExportOptions,
    ExportResult,
    export_audit_detail,
    run_export,
)
from handlers.common import BotContext
from handlers.ui import Screen, Turn, turn
from handlers.views.staff_gate import allowed, answer_as_unknown, in_private, staff_m

log = logging.getLogger(__name__)

EXPORT = Codec("rx", (choice("op", "send", "cancel"),))
# Telegram refuses documents over 50 MB from bots (Bot API sendDocument).
TELEGRAM_MAX_BYTES = 50 * 1024 * 1024


async def _may_export(t: Turn) -> bool:
    """Tells whether this person may export here (researchers and admins, private chat)."""
    return in_private(t) and await allowed(t, roles.RESEARCH_WORK)


@turn
async def on_export(t: Turn) -> None:
    """Warns that the export will be stored on Telegram's servers and asks to go on."""
    if not await _may_export(t):
        answer_as_unknown(t)
        return
    m = staff_m()
    if not t.settings.telegram_export_enabled:
        t.reply.say(m.get("research.tg_off"))
        return
    buttons = [
        [
            (m.get("research.tg_send"), EXPORT.build("send")),
            (m.get("research.tg_cancel"), EXPORT.build("cancel")),
        ]
    ]
    t.reply.say(m.get("research.tg_warning"), buttons)


def _make_zip(settings: Settings) -> tuple[ExportOptions, ExportResult, Path]:
    """Writes a CSV export as a zip in a new temporary folder (runs in a worker thread)."""
    folder = Path(tempfile.mkdtemp(prefix="tg-export-"))
    stamp = now().strftime("%Y%m%d-%H%M%S")
    options = ExportOptions(out=folder / f"research-export-{stamp}.zip", zip=True)
    try:
        return options, run_export(settings, options), folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _read_and_remove(path: Path, folder: Path) -> bytes:
    """Returns the zip's bytes and removes its folder (called after commit, in a thread)."""
    try:
        return path.read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@turn
async def on_export_press(t: Turn) -> None:
    """Makes the export and sends it as a protected zip, or says to use the CLI."""
    parsed = EXPORT.parse(t.data)
    m = staff_m()
    if parsed is None or not t.settings.telegram_export_enabled or not await _may_export(t):
        t.reply.toast = m.get("common.expired_button")  # a press changes nothing
        return
    t.reply.drop_buttons = True
    if parsed[0] == "cancel":
        t.reply.say(m.get("research.tg_cancelled"))
        return
    try:
        options, result, folder = await asyncio.to_thread(_make_zip, t.settings)
    except Exception as exc:
        # Logged by class only (an export error may quote data); the CLI shows the details.
        log.warning("telegram export failed: %s", type(exc).__name__)
        t.reply.say(m.get("research.tg_failed"))
        return
    actor = roles.staff_actor(t.user_id or 0, t.settings)
    await record_audit(
        session=t.session,
        actor=actor,
        action=EXPORT_ACTION,
        detail=export_audit_detail(options, result),
    )
    size = result.path.stat().st_size
    if size > TELEGRAM_MAX_BYTES:
        shutil.rmtree(folder, ignore_errors=True)
        t.reply.say(m.get("research.tg_too_big", size=round(size / 1024 / 1024)))
        return
    caption = m.get("research.tg_caption", rows=sum(result.counts.values()))
    t.reply.show(
        Screen(
            caption,
            document=functools.partial(_read_and_remove, result.path, folder),
            filename=result.path.name,
        )
    )
    # Protected whatever her own discreet setting: no forwarding or saving from Telegram.
    t.reply.protect = True


HANDLERS: list[BaseHandler[Update, BotContext, None]] = [
    CommandHandler("export", on_export),
    CallbackQueryHandler(on_export_press, pattern=EXPORT.pattern),
]
