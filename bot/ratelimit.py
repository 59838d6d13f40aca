"""Send pacing that holds across processes: each send reserves an instant in the `RateSlot` table.

GCRA-style: a key ('global', 'chat:<id>', 'group:<id>') stores the earliest instant its next
send may go. Reserving takes the later of now and every key's instant, then pushes each key
one interval past the reserved instant. The 'global' row is always locked first (an UPDATE,
which on SQLite also takes the write lock), so concurrent reservations in any number of
processes are serialised and never deadlock. A 429 moves the global instant past
`retry_after`, which pauses every sender at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import clock
from bot.clock import Sleeper
from bot.db import Database
from bot.models import RateSlot

GLOBAL_KEY = "global"
PRIVATE_CHAT_INTERVAL = timedelta(seconds=1)  # about one message a second per private chat
GROUP_CHAT_INTERVAL = timedelta(seconds=3)  # 20 messages a minute per group


def chat_key(chat_id: int) -> tuple[str, timedelta]:
    """Returns the pacing key and interval for a chat (negative ids are groups)."""
    if chat_id < 0:
        return f"group:{chat_id}", GROUP_CHAT_INTERVAL
    return f"chat:{chat_id}", PRIVATE_CHAT_INTERVAL


async def _ensure_keys(db: Database, keys: list[str], at: datetime) -> None:
    """Creates missing pacing rows in their own short transaction."""
    insert = pg_insert if db.dialect == "postgresql" else sqlite_insert
    async with db.session() as session:
        for key in keys:
            stmt = insert(RateSlot).values(key=key, next_at=at)
            await session.exec(stmt.on_conflict_do_nothing(index_elements=["key"]))


async def _lock_global(session: AsyncSession) -> None:
    """Takes the write lock on the global row first, so every reservation queues behind it."""
    # A no-op UPDATE locks the row on PostgreSQL and takes SQLite's write lock, so the
    # read-modify-write below cannot interleave with another process.
    await session.exec(
        sa.update(RateSlot)
        .where(col(RateSlot.key) == GLOBAL_KEY)
        .values(next_at=RateSlot.__table__.c.next_at)  # type: ignore[attr-defined]
        .execution_options(synchronize_session=False)
    )


async def reserve(*, db: Database, chat_id: int, per_second: float) -> datetime:
    """Reserves the next instant a message to `chat_id` may be sent, across all processes."""
    key, chat_interval = chat_key(chat_id)
    global_interval = timedelta(seconds=1.0 / per_second)
    keys = [GLOBAL_KEY, key]
    for _ in range(3):
        now = clock.now()
        async with db.session() as session:
            await _lock_global(session)
            query = select(RateSlot).where(col(RateSlot.key).in_(keys))
            if db.dialect == "postgresql":
                query = query.with_for_update()
            slots = {slot.key: slot for slot in (await session.exec(query)).all()}
            if len(slots) == len(keys):
                at = max([now, *(slot.next_at for slot in slots.values())])
                slots[GLOBAL_KEY].next_at = at + global_interval
                slots[key].next_at = at + chat_interval
                session.add_all(slots.values())
                return at
        await _ensure_keys(db, [k for k in keys if k not in slots], now)
    raise RuntimeError("could not create rate slots")


async def pause_all(*, db: Database, until: datetime) -> None:
    """Holds every send in every process until `until` (Telegram's retry_after)."""
    await _ensure_keys(db, [GLOBAL_KEY], clock.now())
    async with db.session() as session:
        await session.exec(
            sa.update(RateSlot)
            .where(col(RateSlot.key) == GLOBAL_KEY, col(RateSlot.next_at) < until)
            .values(next_at=until)
            .execution_options(synchronize_session=False)
        )


async def paused_until(*, db: Database) -> datetime | None:
    """Returns the instant the next global send may go, if that is in the future."""
    async with db.session() as session:
        slot = await session.get(RateSlot, GLOBAL_KEY)
    if slot is None or slot.next_at <= clock.now():
        return None
    return slot.next_at


async def wait_until(at: datetime, sleep: Sleeper) -> None:
    """Waits until the reserved instant on the one clock (virtual in tests)."""
    delay = (at - clock.now()).total_seconds()
    if delay > 0:
        await sleep(delay)
