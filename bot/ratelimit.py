"""Send pacing that holds across processes: each send reserves an instant in the `RateSlot` table.

GCRA-style: a key ('global', 'chat:<id>', 'group:<id>') stores its theoretical arrival time,
the instant its next send may go were there no burst. Reserving takes the later of now, the
global instant and the chat's instant less its burst allowance, then pushes each key one
interval on. A private chat may take a short burst (an edit and the next question go at once),
then about one message a second. The 'global' row is always locked first (an upsert,
which on SQLite also takes the write lock), so concurrent reservations in any number of
processes are serialised and never deadlock. A 429 moves the global instant past
`retry_after`, which pauses every sender at once. The sender reserves a whole round of sends
at once: `lock_keys` and `store_keys` read and write the global row and every chat of the
round in one statement each (the global row first, the chats in sorted order).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import clock
from bot.clock import Sleeper
from bot.db import Database
from bot.models import RateSlot

GLOBAL_KEY = "global"
PRIVATE_CHAT_INTERVAL = timedelta(seconds=1)  # about one message a second per private chat
PRIVATE_CHAT_BURST = 3  # a tap's edit, the next question and one more go without waiting
GROUP_CHAT_INTERVAL = timedelta(seconds=3)  # 20 messages a minute per group


def chat_key(chat_id: int) -> tuple[str, timedelta, timedelta]:
    """Returns the pacing key, interval and burst allowance for a chat (groups are negative)."""
    if chat_id < 0:
        return f"group:{chat_id}", GROUP_CHAT_INTERVAL, timedelta(0)
    allowance = PRIVATE_CHAT_INTERVAL * (PRIVATE_CHAT_BURST - 1)
    return f"chat:{chat_id}", PRIVATE_CHAT_INTERVAL, allowance


def _insert(db: Database) -> Any:
    """Returns the dialect's INSERT construct (both support ON CONFLICT ... RETURNING)."""
    # Imported here: the PostgreSQL dialect module costs about 0.15 s at start-up on SQLite.
    if db.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


async def _lock_slot(session: AsyncSession, db: Database, key: str, at: datetime) -> datetime:
    """Creates the key's row if needed, locks it, and returns its next allowed instant."""
    # An upsert that rewrites the row with itself locks it on PostgreSQL (and takes SQLite's
    # write lock), so the read-modify-write below cannot interleave with another process.
    stmt = _insert(db)(RateSlot).values(key=key, next_at=at)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"next_at": RateSlot.__table__.c.next_at},  # type: ignore[attr-defined]
    ).returning(col(RateSlot.next_at))
    result = await session.exec(stmt)
    value: datetime = result.scalar_one()
    return value


async def _store(session: AsyncSession, key: str, next_at: datetime) -> None:
    """Writes a key's next allowed instant."""
    await session.exec(
        sa.update(RateSlot)
        .where(col(RateSlot.key) == key)
        .values(next_at=next_at)
        .execution_options(synchronize_session=False)
    )


async def reserve_in(
    session: AsyncSession,
    *,
    db: Database,
    chat_id: int,
    per_second: float,
    count: int = 1,
    burst: bool = False,
) -> list[datetime]:
    """Reserves `count` consecutive send instants for one chat inside the caller's transaction.

    `burst` lets a reply to her tap use the chat's short burst; messages the bot starts keep
    a steady one a second.
    """
    key, chat_interval, allowance = chat_key(chat_id)
    if not burst:
        allowance = timedelta(0)
    global_interval = timedelta(seconds=1.0 / per_second)
    now = clock.now()
    # Always the global row first: every reservation queues behind it, so none deadlock.
    global_next = await _lock_slot(session, db, GLOBAL_KEY, now)
    chat_tat = await _lock_slot(session, db, key, now)
    slots: list[datetime] = []
    for _ in range(count):
        at = max(now, global_next, chat_tat - allowance)
        slots.append(at)
        global_next = at + global_interval
        chat_tat = max(chat_tat, at) + chat_interval
    await _store(session, GLOBAL_KEY, global_next)
    await _store(session, key, chat_tat)
    return slots


async def lock_keys(
    session: AsyncSession, db: Database, keys: list[str], at: datetime
) -> dict[str, datetime]:
    """Creates and locks several keys' rows in one statement; returns their next instants.

    The global row comes first and the chat keys in sorted order, so that a batch queues
    behind any other reservation on the global row exactly as `reserve_in` does, and two
    batches never take chat rows in opposite orders (no deadlock).
    """
    ordered = [GLOBAL_KEY, *sorted(set(keys) - {GLOBAL_KEY})]
    table = RateSlot.__table__  # type: ignore[attr-defined]
    stmt = _insert(db)(table).values([{"key": key, "next_at": at} for key in ordered])
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"], set_={"next_at": table.c.next_at}
    ).returning(table.c.key, table.c.next_at)
    result = await session.exec(stmt)
    return {key: _aware(next_at) for key, next_at in result.all()}


async def store_keys(session: AsyncSession, db: Database, values: dict[str, datetime]) -> None:
    """Writes several keys' next instants in one statement (their rows are locked already)."""
    if not values:
        return
    table = RateSlot.__table__  # type: ignore[attr-defined]
    stmt = _insert(db)(table).values([{"key": k, "next_at": v} for k, v in values.items()])
    excluded = stmt.excluded
    await session.exec(
        stmt.on_conflict_do_update(index_elements=["key"], set_={"next_at": excluded.next_at})
    )


def _aware(value: datetime) -> datetime:
    """Returns a UTC-aware instant, whatever the driver handed back."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def chat_ready_at(session: AsyncSession, *, chat_id: int) -> datetime | None:
    """Returns when a steady (non-burst) send to this chat may go next, if that is known.

    Read without a lock: a sender uses it only to put a row back rather than wait for one
    busy chat while every other chat waits behind it (a slot reserved for a chat that is not
    ready would hold the global slot too).
    """
    key, _, _ = chat_key(chat_id)
    slot = await session.get(RateSlot, key)
    return slot.next_at if slot is not None else None


async def reserve(
    *, db: Database, chat_id: int, per_second: float, burst: bool = False
) -> datetime:
    """Reserves the next instant a message to `chat_id` may be sent, across all processes."""
    async with db.session() as session:
        slots = await reserve_in(
            session, db=db, chat_id=chat_id, per_second=per_second, burst=burst
        )
    return slots[0]


async def pause_all(*, db: Database, until: datetime) -> None:
    """Holds every send in every process until `until` (Telegram's retry_after)."""
    async with db.session() as session:
        await _lock_slot(session, db, GLOBAL_KEY, clock.now())
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


async def forget_idle_slots(session: AsyncSession, *, idle_for: timedelta) -> int:
    """Deletes chat keys whose next instant passed long ago; returns how many went.

    Such a row says nothing a missing row would not (the next reservation starts from now),
    so this only keeps the table the size of the recently active chats. The global row stays:
    it carries a 429 pause.
    """
    result = await session.exec(
        sa.delete(RateSlot).where(
            col(RateSlot.key) != GLOBAL_KEY, col(RateSlot.next_at) < clock.now() - idle_for
        )
    )
    return int(result.rowcount or 0)


async def wait_until(at: datetime, sleep: Sleeper) -> None:
    """Waits until the reserved instant on the one clock (virtual in tests)."""
    delay = (at - clock.now()).total_seconds()
    if delay > 0:
        await sleep(delay)
