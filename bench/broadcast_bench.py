"""Benchmark: a broadcast to 1,000 participants through the real sender, against the fake Bot
API enforcing Telegram's limits (30 messages/s for the bot with a burst of 30, 1/s per chat
with a burst of 3).

A coordinator writes the broadcast and presses Send through the real handlers (`/broadcast`,
then the Send button), and dispatcher ticks (`bot.dispatcher.run_tick`, as the running bot's
JobQueue calls it) send the deliveries through `bot.sender` with the shared pacing
(`bot.ratelimit`, GLOBAL_RATE_PER_SECOND), the progress edits and the final report. Measured:

- the send time: from the start of the first tick to the last delivery Telegram accepted
  (the limit allows 1,000 / 30 = 33.3 s; the target is at most 35 s);
- the 429s the fake answered (target 0) and its busiest one-second window;
- the process's peak resident memory (the sender, the handlers and the in-process fake);
- with `--blocked 0.2 --errors 0.05` (the second run): that every recipient ends delivered,
  skipped, blocked, failed or uncertain, and that no chat got the broadcast twice.

Clock (`--clock`): `virtual` (the default) freezes the bot clock and lets the pacing's waits
move it (as the tests do), so the figure is what the pacing and the fake's limits allow,
independent of how busy this shared machine is; `real` runs on the wall clock with real
sleeps, so our own per-send overhead counts too. The fake is in-process (`FakeRequest`) in
both: its limits read the same bot clock.

    .venv/bin/python bench/broadcast_bench.py
    .venv/bin/python bench/broadcast_bench.py --blocked 0.2 --errors 0.05
    .venv/bin/python bench/broadcast_bench.py --clock real
    .venv/bin/python bench/broadcast_bench.py --rate 25   # the old default pacing
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import col, select  # noqa: E402

from bot import broadcasts, clock  # noqa: E402
from bot.app import build_application  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.db import Database  # noqa: E402
from bot.devtools.fake_telegram import FakeRequest, FakeTelegram  # noqa: E402
from bot.devtools.updates import UpdateFactory  # noqa: E402
from bot.dispatcher import run_tick  # noqa: E402
from bot.models import (  # noqa: E402
    Broadcast,
    BroadcastStatus,
    Lifecycle,
    OutboxState,
    OutgoingMessage,
    Participant,
)

COORDINATOR = 5_100_000_001
FIRST_CHAT = 7_000_000_000
START = datetime(2026, 1, 12, 10, 0, tzinfo=UTC)  # a Monday morning in London: no quiet hours
TEXT = "News from the study team\nThank you for your answers this month. They help a lot."
MAX_TICKS = 200


async def _no_wait(_seconds: float) -> None:
    """Replies never wait in the bench (the coordinator taps once)."""
    await asyncio.sleep(0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs one broadcast and returns its figures."""
    virtual = args.clock == "virtual"
    if virtual:
        clock.freeze(START)
    folder = Path(tempfile.mkdtemp(prefix="broadcast_bench_"))
    url = args.database_url or f"sqlite:///{folder / 'bench.db'}"
    overrides: dict[str, Any] = {}
    if args.rate is not None:
        overrides["global_rate_per_second"] = args.rate
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_bot_token="123456:BENCH-broadcast",
        database_url=url,
        emergency_number="999",
        pseudonym_key="bench-pseudonym-key",
        default_timezone="Europe/London",
        coordinator_ids=[COORDINATOR],
        **overrides,
    )
    db = Database(url)
    await db.create_all()
    fake = FakeTelegram()
    app = build_application(settings, db, request=FakeRequest(fake), with_updater=False)
    services = app.bot_data
    services.sleep = clock.virtual_sleep if virtual else clock.real_sleep
    services.reply_sleep = _no_wait
    await app.initialize()
    updates = UpdateFactory(app.bot)
    rng = random.Random(args.seed)
    chats = list(range(FIRST_CHAT, FIRST_CHAT + args.participants))
    async with db.session() as session:
        for chat in chats:
            session.add(
                Participant(
                    telegram_user_id=chat,
                    chat_id=chat,
                    pseudonym=f"p_{chat}",
                    status=Lifecycle.active,
                    timezone="Europe/London",
                    medicine="letrozole",
                    consent_version="1",
                    onboarded_at=clock.now(),
                )
            )
    blocked = set(rng.sample(chats, int(len(chats) * args.blocked)))
    for chat in blocked:
        fake.block(chat)
    fake.enable_limits(error_rate=args.errors, seed=args.seed)

    # The coordinator writes it and presses Send, through the real handlers.
    await app.process_update(updates.command(COORDINATOR, "broadcast", TEXT))
    summary = fake.last(COORDINATOR)
    send = next(data for _, data in summary.buttons() if data.startswith("bc:go:"))
    await app.process_update(updates.callback(COORDINATOR, send, summary))
    async with db.session() as session:
        broadcast = (
            await session.exec(select(Broadcast).order_by(col(Broadcast.id).desc()))
        ).first()
    assert broadcast is not None and broadcast.id is not None
    assert broadcast.status == BroadcastStatus.queued, broadcast.status

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started_at = clock.now()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    ticks = 0
    while ticks < MAX_TICKS:
        ticks += 1
        await run_tick(services, app.bot)
        async with db.session() as session:
            found = await session.get(Broadcast, broadcast.id)
        assert found is not None
        if found.status != BroadcastStatus.queued:
            break
        # The JobQueue's next tick (the dispatch interval; at most 15 s).
        await services.sleep(min(settings.dispatch_interval_seconds, 15.0))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    async with db.session() as session:
        rows = list(
            (
                await session.exec(
                    select(OutgoingMessage).where(
                        OutgoingMessage.broadcast_id == broadcast.id,
                        OutgoingMessage.kind == broadcasts.KIND,
                    )
                )
            ).all()
        )
        counts = await broadcasts.tally(session, broadcast.id)
    sent_times = [r.sent_at for r in rows if r.sent_at is not None]
    last_sent = max(sent_times) if sent_times else started_at
    first_sent = min(sent_times) if sent_times else started_at
    received = Counter(m.chat_id for m in fake.messages if m.chat_id >= FIRST_CHAT)
    ended = Counter(str(r.state) for r in rows)
    terminal = {OutboxState.sent, OutboxState.cancelled, OutboxState.failed, OutboxState.uncertain}
    figures = {
        "participants": args.participants,
        "rate": settings.global_rate_per_second,
        "clock": args.clock,
        "blocked_share": args.blocked,
        "error_rate": args.errors,
        "ticks": ticks,
        "send_seconds": round((last_sent - started_at).total_seconds(), 2),
        "first_to_last_seconds": round((last_sent - first_sent).total_seconds(), 2),
        "limit_seconds": round(args.participants / 30, 1),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "rate_limited_429": fake.stats()["rate_limited"],
        "inside_retry_window": fake.requests_inside_retry_window,
        "max_in_one_second": _busiest_second(fake),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_sending_mb": round(rss_before / 1024, 1),
        "rows": len(rows),
        "rows_by_state": dict(ended),
        "report": {
            "delivered": counts.delivered,
            "skipped": counts.skipped,
            "blocked": counts.blocked,
            "failed": counts.failed,
            "uncertain": counts.uncertain,
            "pending": counts.pending,
        },
        "every_row_ended": all(r.state in terminal for r in rows),
        "one_row_each": len({r.participant_id for r in rows}) == len(rows) == len(chats),
        "most_received_by_one_chat": max(received.values(), default=0),
        "blocked_chats_reached": len(set(received) & blocked),
        "progress_edits": sum(1 for m in fake.calls if m[0] == "editMessageText"),
        "status": str(found.status),
    }
    await app.shutdown()
    await db.dispose()
    if virtual:
        clock.reset()
    return figures


def _busiest_second(fake: FakeTelegram) -> int:
    """Returns the most messages and edits the fake accepted within any one-second window."""
    times = sorted(m.sent_at for m in fake.messages)
    best, start = 0, 0
    for end, at in enumerate(times):
        while (at - times[start]).total_seconds() >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, runs the broadcast and prints its figures as JSON."""
    parser = argparse.ArgumentParser(prog="bench/broadcast_bench.py")
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument(
        "--rate", type=float, default=None, help="GLOBAL_RATE_PER_SECOND (default: the setting)"
    )
    parser.add_argument("--clock", choices=("virtual", "real"), default="virtual")
    parser.add_argument("--blocked", type=float, default=0.0, help="share who blocked the bot")
    parser.add_argument("--errors", type=float, default=0.0, help="share of sends answered 500")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite)")
    parser.add_argument("--json", type=Path, default=None, help="also save the figures here")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB's deprecation notices on RetryAfter
        figures = asyncio.run(run(args))
    text = json.dumps(figures, indent=2, default=str)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    ok = (
        figures["every_row_ended"]
        and figures["one_row_each"]
        and figures["most_received_by_one_chat"] <= 1
        and figures["blocked_chats_reached"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
