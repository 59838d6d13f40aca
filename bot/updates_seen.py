"""Processed update ids, kept as a set for about a week (never a 'highest id seen' mark)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import now
from bot.db import Database
from bot.models import ProcessedUpdate

KEEP_FOR = timedelta(days=7)


async def claim_update(db: Database, update_id: int) -> bool:
    """Records an update id; returns False if it was already handled (a replay)."""
    try:
        async with db.session() as session:
            session.add(ProcessedUpdate(update_id=update_id, processed_at=now()))
    except IntegrityError:
        return False
    return True


async def forget_old_updates(session: AsyncSession) -> int:
    """Deletes ids older than a week; Telegram may restart ids after a quiet week."""
    stale = col(ProcessedUpdate.processed_at) < now() - KEEP_FOR
    result = await session.exec(delete(ProcessedUpdate).where(stale))
    return int(result.rowcount or 0)
