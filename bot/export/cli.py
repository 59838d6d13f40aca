"""The `export` and `verify-export` subcommands (registered by `bot.cli.build_parser`)."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bot import cli_common as cli
from bot.config import Settings
from bot.export.rows import Filters
from bot.export.run import (
    EXPORT_ACTION,
    ExportOptions,
    ExportRefused,
    ExportResult,
    export_audit_detail,
    run_export,
    verify_export,
)
from bot.roles import CLI_ACTOR


def parse_instant(raw: str) -> datetime | None:
    """Parses YYYY-MM-DD (midnight UTC) or an ISO date-time (UTC unless it names an offset)."""
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        at = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


async def record_export_audit(
    settings: Settings, actor: str, options: ExportOptions, result: ExportResult
) -> None:
    """Writes the audit event of one export (who, filters, row counts, manifest hash)."""
    from bot.audit import record_audit
    from bot.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            await record_audit(
                session=session,
                actor=actor,
                action=EXPORT_ACTION,
                detail=export_audit_detail(options, result),
            )
    finally:
        await db.dispose()


def _options(args: argparse.Namespace) -> ExportOptions | None:
    since = until = None
    for name in ("since", "until"):
        raw = getattr(args, name)
        if raw is None:
            continue
        at = parse_instant(raw)
        if at is None:
            cli.complain("research.bad_time", value=raw)
            return None
        since, until = (at, until) if name == "since" else (since, at)
    if since is not None and until is not None and since >= until:
        cli.complain("research.bad_range")
        return None
    return ExportOptions(
        out=Path(args.out),
        format=args.format,
        filters=Filters(since=since, until=until, cohort=args.cohort),
        zip=args.zip,
        shift_dates=args.shift_dates,
        include_notes=args.include_notes,
        include_site_ids=args.include_site_ids,
    )


def cmd_export(args: argparse.Namespace) -> int:
    """Writes a pseudonymised research export and audits it."""
    settings = cli.team_settings(staff_codes=False)
    if settings is None:
        return cli.EXIT_CONFIG
    options = _options(args)
    if options is None:
        return cli.EXIT_CONFIG
    try:
        result = run_export(settings, options)
    except ExportRefused as refused:
        cli.complain(refused.key, **refused.params)
        return cli.EXIT_CONFIG
    except Exception as exc:
        return cli.database_failed(settings, exc)
    asyncio.run(record_export_audit(settings, CLI_ACTOR, options, result))
    cli.say(
        "research.done",
        path=str(result.path),
        files=len(result.files),
        rows=sum(result.counts.values()),
    )
    for name, rows in sorted(result.counts.items()):
        cli.say("research.done_file", name=name, rows=rows)
    return cli.EXIT_OK


def cmd_verify_export(args: argparse.Namespace) -> int:
    """Checks an export folder (or zip) against its manifest's SHA-256 hashes."""
    try:
        found = verify_export(Path(args.path))
    except ExportRefused as refused:
        cli.complain(refused.key, **refused.params)
        return cli.EXIT_FAILED
    for name in found.bad:
        cli.complain("research.verify_bad", name=name)
    for name in found.missing:
        cli.complain("research.verify_missing", name=name)
    for name in found.extra:
        cli.complain("research.verify_extra", name=name)
    if not found.passed:
        cli.complain("research.verify_failed")
        return cli.EXIT_FAILED
    cli.say("research.verify_ok", count=len(found.ok))
    return cli.EXIT_OK


def add_export_commands(sub: Any) -> None:
    """Adds `export` and `verify-export` to the `adherence-bot` parser."""
    export = sub.add_parser("export", help="write a pseudonymised research export (audited)")
    export.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv")
    export.add_argument("--out", required=True, help="a new folder (or the zip file with --zip)")
    export.add_argument("--since", default=None, help="from this UTC date/time (included)")
    export.add_argument("--until", default=None, help="to this UTC date/time (excluded)")
    export.add_argument("--cohort", default=None, help="only this cohort code")
    export.add_argument("--zip", action="store_true", help="write one zip file")
    export.add_argument(
        "--shift-dates", action="store_true", help="move each person's dates by whole weeks"
    )
    export.add_argument(
        "--include-notes", action="store_true", help="add free text (notes, saved questions)"
    )
    export.add_argument("--include-site-ids", action="store_true", help="add the site's study ids")
    export.set_defaults(handler=cmd_export)
    verify = sub.add_parser("verify-export", help="check an export against its manifest")
    verify.add_argument("path", metavar="DIR", help="the export folder or zip")
    verify.set_defaults(handler=cmd_verify_export)
