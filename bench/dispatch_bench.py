"""Benchmark: N due check-ins through the real dispatcher and sender against the fake Bot API.

Creates N consented participants with a check-in due now in a fresh SQLite file (or the
PostgreSQL database named by --database-url, whose tables must be empty), runs dispatcher
ticks until every row is sent, and prints rows per second and peak memory. By default the
rate limiter sleeps in virtual time, so the number measures our own overhead; with
--real-sleep it also waits out the real rate limit (about 28 sends a second).

    .venv/bin/python bench/dispatch_bench.py --rows 2000
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlmodel import func, select
from telegram import Bot

from bot import clock
from bot.config import Settings
from bot.content import consent_text, questionnaire
from bot.db import Database
from bot.devtools.dispatch_worker import render_first_question
from bot.devtools.fake_telegram import FakeRequest, FakeTelegram
from bot.dispatcher import run_tick
from bot.models import CheckIn, Lifecycle, OutboxState, OutgoingMessage, Participant
from bot.services import Services

FIRST_CHAT = 6_000_000_000


async def seed(db: Database, rows: int) -> None:
    """Creates `rows` participants, each with one check-in due a minute ago."""
    at = clock.now()
    q = questionnaire("daily_checkin")
    version = consent_text("en").version
    async with db.session() as session:
        people = [
            Participant(
                telegram_user_id=FIRST_CHAT + i,
                chat_id=FIRST_CHAT + i,
                pseudonym=f"bench{i}",
                timezone="Europe/London",
                status=Lifecycle.active,
                consent_version=version,
            )
            for i in range(rows)
        ]
        session.add_all(people)
        await session.flush()
        session.add_all(
            CheckIn(
                participant_id=p.id or 0,
                questionnaire_id=q.id,
                questionnaire_version=q.version,
                due_at=at - timedelta(minutes=1),
                window_closes_at=at + timedelta(hours=6),
            )
            for p in people
        )


async def bench(rows: int, database_url: str, real_sleep: bool, budget: float) -> int:
    """Runs the benchmark and prints the results; returns a process exit code."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_bot_token="123456:BENCH",
        database_url=database_url,
    )
    db = Database(database_url)
    await db.create_all()
    await seed(db, rows)
    services = Services()
    services.configure(settings, db)
    services.renderers["checkin"] = render_first_question
    services.sleep = clock.real_sleep if real_sleep else clock.virtual_sleep
    fake = FakeTelegram(time_source=lambda: clock.now().timestamp())
    bot = Bot(settings.telegram_bot_token or "", request=FakeRequest(fake))
    await bot.initialize()

    started = time.perf_counter()
    virtual_start = clock.now()
    ticks = 0
    while len(fake.messages) < rows and time.perf_counter() - started < budget:
        await run_tick(services, bot)
        ticks += 1
    elapsed = time.perf_counter() - started

    async with db.session() as session:
        sent = (
            await session.exec(
                select(func.count())
                .select_from(OutgoingMessage)
                .where(OutgoingMessage.state == OutboxState.sent)
            )
        ).one()
    await bot.shutdown()
    await db.dispose()
    virtual = (clock.now() - virtual_start).total_seconds()
    # ru_maxrss is in KiB on Linux: the process's peak resident memory, start-up included.
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows sent:       {sent} of {rows} in {ticks} ticks")
    print(f"wall time:       {elapsed:8.2f} s  ->  {sent / elapsed:6.1f} rows/s (our overhead)")
    print(f"clock time:      {virtual:8.2f} s  ->  {sent / max(virtual, 1e-9):6.1f} rows/s paced")
    print(f"busiest second:  {fake.max_accepted_in_any_second()} sends")
    print(f"peak memory:     {maxrss_mb:8.0f} MB (resident set size)")
    return 0 if sent == rows else 1


def main(argv: list[str] | None = None) -> int:
    """Parses arguments and runs the benchmark (under a minute by default)."""
    parser = argparse.ArgumentParser(prog="bench/dispatch_bench.py")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--real-sleep", action="store_true", help="wait out the real rate")
    parser.add_argument("--budget", type=float, default=55.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    if not args.real_sleep:
        clock.freeze(clock.now())  # virtual time: the limiter moves the clock, not the wall
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        return asyncio.run(bench(args.rows, url, args.real_sleep, args.budget))


if __name__ == "__main__":
    sys.exit(main())
