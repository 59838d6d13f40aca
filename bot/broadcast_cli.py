"""`adherence-bot broadcast`: queue a broadcast from a text file, or show how broadcasts went.

    adherence-bot broadcast --text-file F [--cohort C]
        [--at 2026-12-01T18:00+01:00 | --local 18:00] [--dry-run]
    adherence-bot broadcast status

No prompt (scripts run it): the broadcast is checked (advice scan, lock-screen first line),
queued for all active participants (of one cohort with --cohort) and sent by the running bot
(`bot.broadcasts`); --dry-run prints the count and the preview instead. Audited as `cli`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot import broadcasts
from bot.broadcasts import Audience, BroadcastError, When
from bot.config import Settings
from bot.content import t

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
ACTOR = "cli"


def add_broadcast_command(sub: Any) -> None:
    """Adds `broadcast` (and `broadcast status`) to the CLI's subcommands."""
    parser = sub.add_parser(
        "broadcast",
        help="queue a message to all active participants (or show status)",
        description="Queue a broadcast for the running bot to send, or show how they went.",
    )
    parser.add_argument("action", nargs="?", choices=["status"], help="show recent broadcasts")
    parser.add_argument("--text-file", type=Path, help="the message, as UTF-8 text")
    parser.add_argument("--cohort", help="only this cohort (default: all active participants)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--at", help="one moment for all, with its zone: 2026-12-01T18:00+01:00")
    when.add_argument("--local", help="HH:MM in each participant's own time zone")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the count and the preview; queue nothing"
    )
    parser.set_defaults(handler=cmd_broadcast)


def _say(key: str, /, **params: object) -> None:
    print(t(key, **params), flush=True)


def _complain(key: str, /, **params: object) -> None:
    import sys

    print(t(key, **params), file=sys.stderr, flush=True)


def _refusal(error: BroadcastError) -> None:
    """Prints why the text was refused (the failing sentences, or the word)."""
    if error.code == "advice":
        quoted = "\n".join(f'  "{s}"' for s in error.detail.splitlines())
        _complain("broadcasts.cli_refused_advice", sentences=quoted)
    elif error.code == "lock_screen":
        _complain("broadcasts.refused_lock_screen", word=error.detail)
    elif error.code == "too_long":
        _complain(
            "broadcasts.refused_too_long", chars=error.detail, limit=broadcasts.MAX_TEXT_CHARS
        )
    else:
        _complain("broadcasts.cli_empty")


def cmd_broadcast(args: argparse.Namespace) -> int:
    """Queues a broadcast (or with --dry-run shows it), or lists recent ones (`status`)."""
    from bot.cli_common import database_failed as _database_failed
    from bot.cli_common import team_settings as _team_settings

    settings = _team_settings(staff_codes=False)
    if settings is None:
        return EXIT_CONFIG
    if args.action == "status":
        try:
            lines = asyncio.run(_status_lines(settings))
        except Exception as exc:
            return _database_failed(settings, exc)
        for line in lines:
            print(line, flush=True)
        return EXIT_OK
    if args.text_file is None:
        _complain("broadcasts.cli_usage")
        return EXIT_CONFIG
    try:
        text = args.text_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _complain("broadcasts.cli_unreadable", path=args.text_file, reason=type(exc).__name__)
        return EXIT_CONFIG
    try:
        text = broadcasts.check_text(text)
        when = _when(args, settings)
    except BroadcastError as error:
        if error.code in ("bad_time", "past", "no_zone", "local_only"):
            _complain(f"broadcasts.cli_time_{error.code}", raw=error.detail)
            return EXIT_CONFIG
        _refusal(error)
        return EXIT_FAILED
    try:
        return asyncio.run(
            _queue(settings, text, Audience(cohort=args.cohort), when, args.dry_run)
        )
    except BroadcastError as error:
        _complain("broadcasts.cli_no_cohort", cohort=error.detail)
        return EXIT_FAILED
    except Exception as exc:
        return _database_failed(settings, exc)


def _when(args: argparse.Namespace, settings: Settings) -> When:
    """Reads --at (absolute, with a zone) or --local (HH:MM); none means now."""
    if args.local:
        when = broadcasts.parse_when(args.local, default_zone=settings.default_timezone)
        if when.local_time is None:
            raise BroadcastError("bad_time", args.local[:64])
        return when
    if args.at:
        when = broadcasts.parse_when(args.at, default_zone=settings.default_timezone)
        if when.send_at is None:
            raise BroadcastError("local_only", args.at[:64])
        return when
    return When()


async def _queue(
    settings: Settings, text: str, audience: Audience, when: When, dry_run: bool
) -> int:
    """Counts the audience and prints the preview, or queues the broadcast."""
    from sqlmodel import select

    from bot.db import Database
    from bot.models import Cohort

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            if audience.cohort is not None:
                found = await session.exec(select(Cohort).where(Cohort.code == audience.cohort))
                if found.first() is None:
                    raise BroadcastError("no_cohort", audience.cohort)
            count = await broadcasts.count_audience(session, audience)
            broadcast = await broadcasts.create_draft(
                session=session, text=text, actor=ACTOR, audience=audience, when=when
            )
            shown = _when_text(broadcast, settings)
            if dry_run:
                await session.rollback()
                _say(
                    "broadcasts.cli_dry_run",
                    reach=count.reach,
                    skipped=sum(count.skipped.values()),
                    when=shown,
                )
                print(broadcasts.render_for(text, "en"), flush=True)
                return EXIT_OK
            queued = await broadcasts.queue(
                session=session, broadcast=broadcast, settings=settings, actor=ACTOR
            )
            _say("broadcasts.cli_queued", id=broadcast.id, count=queued, when=shown)
            return EXIT_OK
    finally:
        await db.dispose()


def _when_text(broadcast: Any, settings: Settings) -> str:
    """Returns the send time in words for the terminal."""
    if broadcast.local_time:
        return t("broadcasts.when_local", time=broadcast.local_time)
    if broadcast.send_at:
        zone = ZoneInfo(settings.coverage_timezone or settings.default_timezone)
        return t("broadcasts.when_at", time=broadcast.send_at.astimezone(zone).isoformat())
    return t("broadcasts.when_now")


async def _status_lines(settings: Settings) -> list[str]:
    """Returns one line per recent broadcast: status and counts so far."""
    from bot.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            found = await broadcasts.recent_broadcasts(session=session)
            if not found:
                return [t("broadcasts.cli_status_none")]
            lines = [t("broadcasts.cli_status_header")]
            for broadcast in found:
                assert broadcast.id is not None
                c = await broadcasts.tally(session, broadcast.id)
                lines.append(
                    t(
                        "broadcasts.cli_status_line",
                        id=broadcast.id,
                        status=broadcast.status,
                        who=broadcast.created_by,
                        when=_when_text(broadcast, settings),
                        settled=c.settled,
                        total=c.recipients,
                        delivered=c.delivered,
                        skipped=c.skipped_total,
                        blocked=c.blocked,
                        failed=c.failed,
                        uncertain=c.uncertain,
                    )
                )
            return lines
    finally:
        await db.dispose()
