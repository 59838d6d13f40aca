"""Processed update ids, kept as a set for about a week (never a 'highest id seen' mark).

Each turn records its update id in its own transaction (`handlers.ui.turn`); this module
forgets them after a week.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import now
from bot.models import ProcessedUpdate

KEEP_FOR = timedelta(days=7)


async def forget_old_updates(session: AsyncSession) -> int:
    """Deletes ids older than a week; Telegram may restart ids after a quiet week."""
    stale = col(ProcessedUpdate.processed_at) < now() - KEEP_FOR
    result = await session.exec(delete(ProcessedUpdate).where(stale))
    return int(result.rowcount or 0)
