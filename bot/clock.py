"""The one clock. Every timestamp the bot reads comes from `now()`; tests and the demo move it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)
_frozen: datetime | None = None


def now() -> datetime:
    """Returns the current time as an aware UTC datetime."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC) + _offset


def freeze(at: datetime) -> None:
    """Stops the clock at `at` (tests)."""
    global _frozen
    if at.tzinfo is None:
        raise ValueError("clock times must be timezone-aware")
    _frozen = at.astimezone(UTC)


def advance(delta: timedelta) -> None:
    """Moves the clock forward; works frozen (tests) or running (demo)."""
    global _frozen, _offset
    if _frozen is not None:
        _frozen = _frozen + delta
    else:
        _offset = _offset + delta


def reset() -> None:
    """Returns to real time."""
    global _frozen, _offset
    _frozen = None
    _offset = timedelta(0)


Sleeper = Callable[[float], Awaitable[None]]


async def real_sleep(seconds: float) -> None:
    """Sleeps on the event loop; the default `Sleeper`."""
    if seconds > 0:
        await asyncio.sleep(seconds)


async def virtual_sleep(seconds: float) -> None:
    """Moves the clock instead of sleeping; the `Sleeper` tests inject."""
    if seconds > 0:
        advance(timedelta(seconds=seconds))
    await asyncio.sleep(0)
