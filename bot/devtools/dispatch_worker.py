"""A stand-alone dispatcher process for load and concurrency tests.

Runs `run_tick` in a loop against a database and a Bot API base URL (e.g. the fake server in
`bot.devtools.bot_api_server`) until the queue stays empty, then prints a JSON summary. Several
of these at once over one PostgreSQL database show that claims never overlap and that the
rate limit holds across processes.

    python -m bot.devtools.dispatch_worker --database-url postgresql://... \\
        --base-url http://127.0.0.1:8081 --max-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.config import Settings
from bot.content import questionnaire
from bot.db import Database
from bot.dispatcher import TickReport, run_tick
from bot.models import OutboxState, OutgoingMessage, Participant
from bot.outbox import RenderedMessage
from bot.services import Services


async def render_first_question(
    session: AsyncSession, row: OutgoingMessage, participant: Participant | None
) -> RenderedMessage:
    """Renders a check-in as its first question (load tests need no per-answer state)."""
    item = questionnaire("daily_checkin").items[0]
    locale = participant.locale if participant else "en"
    return RenderedMessage(text=item.text(locale))


UNFINISHED = (OutboxState.queued, OutboxState.claimed, OutboxState.sending)


async def unfinished(db: Database) -> int:
    """Counts outbox rows not yet settled, including those another (perhaps dead) worker
    leased: a worker that quit while they wait for their lease to run out would leave them."""
    async with db.session() as session:
        query = select(func.count()).where(col(OutgoingMessage.state).in_(UNFINISHED))
        return int((await session.exec(query)).one())


async def work(args: argparse.Namespace) -> dict[str, int]:
    """Ticks until the queue has been empty (nothing queued or leased anywhere) for
    `idle_ticks` ticks, or time runs out."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_bot_token=args.token,
        database_url=args.database_url,
        telegram_api_base_url=args.base_url,
        global_rate_per_second=args.rate,
    )
    db = Database(settings.database_url)
    services = Services()
    services.configure(settings, db)
    services.renderers["checkin"] = render_first_question
    bot = Bot(
        settings.telegram_bot_token or "",
        base_url=settings.api_base_url or "",
        request=HTTPXRequest(connection_pool_size=2),
    )
    await bot.initialize()
    totals = {"sent": 0, "queued": 0, "failed": 0, "uncertain": 0, "ticks": 0}
    idle = 0
    deadline = time.monotonic() + args.max_seconds
    try:
        while time.monotonic() < deadline and idle < args.idle_ticks:
            report: TickReport = await run_tick(services, bot)
            totals["ticks"] += 1
            totals["sent"] += report.sent
            totals["queued"] += report.checkins_queued
            totals["failed"] += report.failed
            totals["uncertain"] += report.uncertain
            busy = report.sent or report.checkins_queued or report.rate_limited
            idle = 0 if busy or await unfinished(db) else idle + 1
            if not busy:
                await asyncio.sleep(args.pause)
    finally:
        await bot.shutdown()
        await db.dispose()
    return totals


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, runs the worker, prints a JSON summary with the process id."""
    parser = argparse.ArgumentParser(prog="python -m bot.devtools.dispatch_worker")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--base-url", required=True, help="Bot API server root")
    parser.add_argument("--token", default="123456:LOAD-test")
    parser.add_argument(
        "--rate",
        type=float,
        default=Settings.model_fields["global_rate_per_second"].default,
        help="global sends per second (the bot's default)",
    )
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--idle-ticks", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between idle ticks")
    args = parser.parse_args(argv)
    totals = asyncio.run(work(args))
    print(json.dumps({"pid": os.getpid(), **totals}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
