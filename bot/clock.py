"""The one clock. Every timestamp the bot reads comes from `now()`; tests and the demo move it.

ADHERENCE_CLOCK_OFFSET_SECONDS (a test and demo aid, never set in production) starts the
process with its clock shifted by that many seconds, read once at import. The end-to-end test
uses it to start `adherence-bot run` a few seconds before a minute boundary instead of waiting
for the next one on the wall clock; everything the process does (due times, leases, pacing,
stored timestamps) then runs in the shifted frame. It is read from the process environment
only, never from `.env`, and a shifted process says so on stderr when it starts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

OFFSET_VARIABLE = "ADHERENCE_CLOCK_OFFSET_SECONDS"

log = logging.getLogger(__name__)


def offset_from_environment(environ: Mapping[str, str]) -> timedelta:
    """Returns the development clock offset named in `environ` (zero when unset)."""
    raw = environ.get(OFFSET_VARIABLE, "").strip()
    if not raw:
        return timedelta(0)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        # A typo must not quietly run the bot on the real clock a test thinks it shifted.
        raise ValueError(f"{OFFSET_VARIABLE} must be a number of seconds, got {raw!r}")
    return timedelta(seconds=seconds)


# The process's own time: real time, plus the development offset when one is set.
_start_offset = offset_from_environment(os.environ)
if _start_offset:
    log.warning(
        "clock shifted by %+.3f s by %s (a test aid; never set it in production)",
        _start_offset.total_seconds(),
        OFFSET_VARIABLE,
    )
_offset = _start_offset
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
    """Returns to the process's own time (real time, shifted only by the development offset)."""
    global _frozen, _offset
    _frozen = None
    _offset = _start_offset


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
