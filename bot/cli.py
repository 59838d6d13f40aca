"""The `adherence-bot` command: run the bot, the offline demo, migrations, invites, the care team.

Everything it prints comes from `content/messages/<locale>/cli.yaml`. Problems a person can fix
(a missing token, a bad setting) end with a clear message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shlex
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import URL, make_url

from bot import clock
from bot.cli_common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    complain,
    load_settings,
    migrate,
    say,
    shown_database,
)
from bot.cli_common import database_failed as _database_failed
from bot.cli_common import team_settings as _team_settings
from bot.config import Settings
from bot.content import t
from bot.startup import resume_collector

if TYPE_CHECKING:
    from bot.models import Alert, AuditEvent, OutgoingMessage, Role


_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_COHORT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_USERNAME_PLACEHOLDER = "<your_bot_username>"

# Settings.problems_for_run() codes -> the message that explains how to fix each.
PROBLEM_MESSAGES = {
    "token_missing": "cli.token_missing",
    "token_malformed": "cli.token_malformed",
    "emergency_number_missing": "cli.emergency_number_missing",
    "pseudonym_key_missing": "cli.pseudonym_key_missing",
    "contact_expectation_replaced": "cli.contact_expectation_replaced",
}


def shown_server(settings: Settings) -> str:
    """Returns the Bot API server root the bot talks to, for messages."""
    base = settings.api_base_url
    return base[: -len("/bot")] if base else "https://api.telegram.org"


def run_problems(settings: Settings) -> list[str]:
    """Lists the content keys of every problem that stops `run` (empty when all is well)."""
    problems = [PROBLEM_MESSAGES.get(p, "cli.problem_other") for p in settings.problems_for_run()]
    if settings.webhook_url:
        if not settings.webhook_secret:
            problems.append("cli.webhook_secret_missing")
        elif not _SECRET_TOKEN.match(settings.webhook_secret):
            problems.append("cli.webhook_secret_malformed")
    return problems


class TokenProblem(Exception):
    """The Bot API server refused the token or could not be reached; holds the message key."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


async def fetch_bot_username(settings: Settings) -> str:
    """Asks the Bot API who we are (getMe) and returns the bot's username."""
    from telegram import Bot
    from telegram.error import InvalidToken, TelegramError

    token = settings.telegram_bot_token or ""
    kwargs: dict[str, Any] = {}
    if settings.api_base_url:
        kwargs["base_url"] = settings.api_base_url
        kwargs["base_file_url"] = settings.api_base_file_url
    server = shown_server(settings)
    try:
        async with Bot(token, **kwargs) as bot:  # initialize() calls getMe
            return bot.username
    except InvalidToken as exc:
        raise TokenProblem("cli.token_rejected", server=server) from exc
    except TelegramError as exc:
        # The error text may quote the request URL, which carries the token.
        reason = (str(exc) or type(exc).__name__).replace(token, "<token>")
        raise TokenProblem("cli.server_unreachable", server=server, reason=reason) from exc


def _configure_logging(settings: Settings, level: str) -> None:
    from bot.logging_setup import configure_logging

    secrets = [settings.telegram_bot_token or "", settings.pseudonym_key or ""]
    configure_logging(level, secrets=[s for s in secrets if s])
    # Alembic announces each of its plugins at INFO; only the migrations themselves matter.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if logging.getLogger().level > logging.DEBUG:
        # APScheduler logs every dispatcher tick (several a minute) at INFO.
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)


# ---------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    """Checks the settings and the token, migrates, then serves updates until stopped."""
    settings = load_settings()
    if settings is None:
        return EXIT_CONFIG
    problems = run_problems(settings)
    if problems:
        complain("cli.problems_header")
        for key in problems:
            print(file=sys.stderr)
            complain(key)
        return EXIT_CONFIG
    return serve(settings, args.log_level)


def serve(settings: Settings, log_level: str) -> int:
    """Checks the token (one getMe), migrates, and runs polling or the webhook until stopped."""
    from telegram.error import InvalidToken, TelegramError

    from bot import runtime
    from bot.app import build_application
    from bot.db import Database

    db = Database(settings.database_url)
    app = build_application(settings, db)
    resume_collector()  # what start-up built is frozen; polling runs with the collector on
    server = shown_server(settings)
    token = settings.telegram_bot_token or ""

    async def dispose_database(_app: Any) -> None:
        await db.dispose()

    app.post_shutdown = dispose_database

    async def main() -> int:
        try:
            # The token is checked before anything is written: a wrong one creates nothing.
            await app.bot.initialize()
        except InvalidToken:
            complain("cli.token_rejected", server=server)
            return EXIT_CONFIG
        except TelegramError as exc:
            reason = (str(exc) or type(exc).__name__).replace(token, "<token>")
            complain("cli.server_unreachable", server=server, reason=reason)
            return EXIT_CONFIG
        _configure_logging(settings, log_level)
        if not await asyncio.to_thread(migrate, settings):
            await db.dispose()
            return EXIT_FAILED
        username = app.bot.username
        if settings.webhook_url:
            say(
                "cli.starting_webhook",
                username=username,
                url=settings.webhook_url,
                listen=settings.webhook_listen,
                port=settings.webhook_port,
            )
        else:
            say("cli.starting_polling", username=username)
        await runtime.run(app, settings, db)
        return EXIT_OK

    try:
        code = asyncio.run(main())
    except TelegramError as exc:
        reason = (str(exc) or type(exc).__name__).replace(token, "<token>")
        complain("cli.server_unreachable", server=server, reason=reason)
        return EXIT_FAILED
    if code == EXIT_OK:
        say("cli.stopped")
    return code


# ---------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """Starts the offline terminal demo."""
    from bot.demo import main as demo_main

    return demo_main(keep=args.keep, database=args.database)


# ---------------------------------------------------------------- db


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    """Applies every pending migration."""
    settings = load_settings()
    if settings is None:
        return EXIT_CONFIG
    say("cli.migrating", database=shown_database(settings.database_url))
    return EXIT_OK if migrate(settings) else EXIT_FAILED


def cmd_db_check(_args: argparse.Namespace) -> int:
    """Reports whether the database schema matches the models (exit 1 when it does not)."""
    from bot.migrate import schema_differences

    settings = load_settings()
    if settings is None:
        return EXIT_CONFIG
    try:
        differences = schema_differences(settings.database_url)
    except Exception as exc:
        database = shown_database(settings.database_url)
        complain("cli.migration_failed", database=database, reason=type(exc).__name__)
        return EXIT_FAILED
    if not differences:
        say("cli.schema_matches")
        return EXIT_OK
    details = "\n".join(f"  {d!r}" for d in differences)
    complain("cli.schema_differs", count=len(differences), details=details)
    return EXIT_FAILED


def cmd_db_backup(args: argparse.Namespace) -> int:
    """Copies a SQLite database consistently to PATH, or prints the pg_dump command to use."""
    settings = load_settings()
    if settings is None:
        return EXIT_CONFIG
    url = make_url(settings.database_url)
    target = Path(args.path).expanduser().absolute()
    if url.get_backend_name() != "sqlite":
        # pg_dump takes PostgreSQL's own consistent copy. The printed command leaves the
        # password out, so it never lands in the terminal's scrollback or a shell history.
        server = URL.create(
            "postgresql", url.username, None, url.host, url.port, url.database, url.query
        )
        complain(
            "cli.backup_postgres",
            url=shlex.quote(server.render_as_string(hide_password=False)),
            path=shlex.quote(str(target)),
        )
        return EXIT_CONFIG
    database = shown_database(settings.database_url)
    source = Path(url.database or "").expanduser()
    if url.database in (None, "", ":memory:") or not source.is_file():
        complain("cli.backup_no_database", database=database)
        return EXIT_CONFIG
    if target.exists():
        complain("cli.backup_exists", path=target)
        return EXIT_CONFIG
    try:
        size = _copy_sqlite(source.resolve(), target)
    except (OSError, sqlite3.Error) as exc:
        if target.exists():  # somebody wrote the same file meanwhile
            complain("cli.backup_exists", path=target)
            return EXIT_CONFIG
        complain("cli.backup_failed", database=database, path=target, reason=exc)
        return EXIT_FAILED
    say("cli.backup_written", database=database, path=target, size=f"{size:,}")
    return EXIT_OK


def _copy_sqlite(source: Path, target: Path) -> int:
    """Copies a live SQLite file with the online backup API into a new file; returns its size."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written beside the target, then renamed: a failed copy never looks like a backup.
    # mkstemp makes it readable by its owner only, as health data should be.
    handle, partial_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
    )
    os.close(handle)
    partial = Path(partial_name)
    try:
        # Read-only, so a mistyped DATABASE_URL never creates an empty database. The copy is
        # the last committed state: in WAL mode an open write transaction neither blocks it
        # nor leaks into it.
        with (
            closing(sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True, timeout=30)) as src,
            closing(sqlite3.connect(partial)) as dst,
        ):
            src.backup(dst)
            # One self-contained file (no -wal beside it); the bot turns WAL on again at open.
            dst.execute("PRAGMA journal_mode=DELETE")
        if target.exists():
            raise FileExistsError(target)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size


# ---------------------------------------------------------------- invites


def expiry_instant(day: date, zone: str) -> datetime:
    """Returns the UTC instant an invite valid 'until the end of `day`' in `zone` expires."""
    from bot.invites import expiry_instant as rule  # the invite rules live in one place

    return rule(day, zone)


def cmd_invite_create(args: argparse.Namespace) -> int:
    """Creates an invite (and its cohort if new) and prints the deep link to send.

    A site study id that already has a participant or a live invite is refused unless
    --force (audited as forced); the rules are `bot.invites`, shared with /invite.
    """
    from bot.invites import site_study_id_ok

    settings = load_settings()
    if settings is None:
        return EXIT_CONFIG
    if not _COHORT.match(args.cohort):
        complain("cli.invite_bad_cohort")
        return EXIT_CONFIG
    if args.uses < 1:
        complain("cli.invite_bad_uses")
        return EXIT_CONFIG
    if args.study_id is not None and not site_study_id_ok(args.study_id):
        complain("invites.cli_bad_site")
        return EXIT_CONFIG
    expires_at: datetime | None = None
    if args.expires is not None:
        try:
            day = date.fromisoformat(args.expires)
        except ValueError:
            complain("cli.invite_bad_date", value=args.expires)
            return EXIT_CONFIG
        expires_at = expiry_instant(day, settings.default_timezone)
        if expires_at <= clock.now():
            complain("cli.invite_date_past", value=args.expires)
            return EXIT_CONFIG
    if not migrate(settings):
        return EXIT_FAILED
    code, conflict = asyncio.run(
        _create_invite(settings, args.cohort, args.study_id, expires_at, args.uses, args.force)
    )
    if code is None:
        complain(
            "invites.cli_refused",
            site=args.study_id,
            joined=conflict.participants,
            live=conflict.live_invites,
        )
        return EXIT_FAILED
    username, known = _username_for_links(settings)
    say(
        "cli.invite_created",
        cohort=args.cohort,
        study_id_note=t("cli.invite_study_id_note", study_id=args.study_id)
        if args.study_id
        else "",
        uses=args.uses,
        expiry_note=t(
            "cli.invite_expiry_note", date=args.expires, timezone=settings.default_timezone
        )
        if args.expires
        else "",
        username=username,
        code=code,
    )
    if conflict.any:
        say("invites.cli_forced")
    if not known:
        say("cli.invite_username_placeholder_note")
    return EXIT_OK


async def _create_invite(
    settings: Settings,
    cohort: str,
    study_id: str | None,
    expires_at: datetime | None,
    uses: int,
    force: bool = False,
) -> tuple[str | None, Any]:
    """Returns the new invite's code (None when refused) and what already existed."""
    from bot import invites
    from bot.db import Database
    from bot.roles import CLI_ACTOR

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            created = await invites.create(
                session=session,
                actor=CLI_ACTOR,
                cohort_code=cohort,
                site_study_id=study_id,
                expires_at=expires_at,
                max_uses=uses,
                force=force,
            )
            return (created.invite.code if created.invite else None), created.conflict
    finally:
        await db.dispose()


def cmd_invite_list(args: argparse.Namespace) -> int:
    """Lists invites, newest first: live ones, or every one with --all."""
    settings = _team_settings(staff_codes=False)
    if settings is None:
        return EXIT_CONFIG
    try:
        found = asyncio.run(_list_invites(settings, args.all))
    except Exception as exc:
        return _database_failed(settings, exc)
    if not found:
        say("invites.cli_list_none")
        return EXIT_OK
    zone = _team_zone(settings)
    rows = [
        [
            str(x.invite.id),
            x.cohort,
            x.invite.site_study_id or "-",
            f"{x.invite.uses}/{x.invite.max_uses}",
            _local(x.invite.expires_at, zone),
            t(f"invites.status_{x.status}"),
            x.invite.code,
        ]
        for x in found
    ]
    _print_lines(_columns("invites.cli_list_columns", rows))
    return EXIT_OK


async def _list_invites(settings: Settings, include_all: bool) -> list[Any]:
    from bot import invites
    from bot.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return list(
                await invites.list_invites(session=session, include_all=include_all, limit=1000)
            )
    finally:
        await db.dispose()


def cmd_invite_revoke(args: argparse.Namespace) -> int:
    """Revokes an invite by id (audited as cli): its link stops working."""
    settings = _team_settings(staff_codes=False)
    if settings is None:
        return EXIT_CONFIG
    raw = args.invite_id
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        complain("invites.cli_revoke_bad_id")
        return EXIT_CONFIG
    try:
        done = asyncio.run(_revoke_invite(settings, int(raw)))
    except Exception as exc:
        return _database_failed(settings, exc)
    if done == "not_found":
        complain(f"invites.revoke_{done}", id=raw)
        return EXIT_FAILED
    say(f"invites.revoke_{done}", id=raw)
    return EXIT_OK


async def _revoke_invite(settings: Settings, invite_id: int) -> str:
    from bot import invites
    from bot.db import Database
    from bot.roles import CLI_ACTOR

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return str(await invites.revoke(session=session, actor=CLI_ACTOR, invite_id=invite_id))
    finally:
        await db.dispose()


def _username_for_links(settings: Settings) -> tuple[str, bool]:
    """Returns (bot username, known?): from getMe with a token, else BOT_USERNAME."""
    if settings.telegram_bot_token:
        try:
            return asyncio.run(fetch_bot_username(settings)), True
        except TokenProblem:
            pass
    if settings.bot_username:
        return settings.bot_username.lstrip("@"), True
    return _USERNAME_PLACEHOLDER, False


# ---------------------------------------------------------------- the care team
#
# For the people who run the study: which alerts are open and whether each reached somebody
# (with Telegram's reason when it did not), who holds which role, and the audit log. Grants and
# revocations go through `bot.roles`, the one place roles are checked, audited as "cli".

# Outbox states of an alert message that mean it did not reach that chat.
_NOT_DELIVERED = frozenset({"failed", "uncertain", "cancelled"})
# Words in Telegram's refusal (`OutgoingMessage.last_error`, lower case) -> the cause, in words.
_REFUSALS = (
    (("kicked", "not a member", "bot was removed"), "cli.team.why_removed"),
    (("blocked by the user",), "cli.team.why_blocked"),
    (("initiate conversation", "chat not found", "peer_id_invalid"), "cli.team.why_not_started"),
    (("upgraded to a supergroup", "migrate"), "cli.team.why_migrated"),
    (("deactivated",), "cli.team.why_deactivated"),
)
_ROLE_SETTINGS = {
    "admin": "ADMIN_IDS",
    "coordinator": "COORDINATOR_IDS",
    "researcher": "RESEARCHER_IDS",
}
_USER_ID = re.compile(r"^[0-9]{1,19}$")


def _team_zone(settings: Settings) -> ZoneInfo:
    """Returns the care team's time zone (COVERAGE_TIMEZONE, else DEFAULT_TIMEZONE)."""
    return ZoneInfo(settings.coverage_timezone or settings.default_timezone)


def _local(at: datetime | None, zone: ZoneInfo) -> str:
    """Formats an instant in the care team's time zone ("-" for none)."""
    return "-" if at is None else at.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _columns(header_key: str, rows: list[list[str]]) -> list[str]:
    """Returns the header line and one line per row, each column padded to its widest cell.

    The column names are a message (`|`-separated); the cells are data: ids, codes, times.
    """
    header = [name.strip() for name in t(header_key).split("|")]
    table = [header, *rows]
    widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]


def _print_lines(lines: list[str]) -> None:
    """Prints table lines (data laid out under column names that come from content)."""
    for line in lines:
        print(line, flush=True)


def refusal_key(error: str | None) -> str:
    """Returns the message that says in plain words why Telegram refused an alert message."""
    text = (error or "").lower()
    for needles, key in _REFUSALS:
        if any(needle in text for needle in needles):
            return key
    return "cli.team.why_other"


@dataclass(frozen=True)
class AlertRow:
    """One alert as `adherence-bot alerts` shows it, with what became of each message about it.

    An urgent alert is a message of its own to each care-team chat; one that is not urgent is a
    line in the daily summary (the digest) of each chat.
    """

    alert: Alert
    pseudonym: str
    site_study_id: str | None
    copies: dict[int, OutgoingMessage]  # chat id -> its own message there (a sent one if any)
    summaries: dict[int, OutgoingMessage]  # chat id -> a daily summary that listed it

    @property
    def reached_at(self) -> datetime | None:
        """Returns when it first reached the care team: its own message, or a daily summary."""
        if self.alert.delivered_at is not None:
            return self.alert.delivered_at
        sent = [r.sent_at for r in self.summaries.values() if str(r.state) == "sent"]
        return min((at for at in sent if at is not None), default=None)

    @property
    def lost_somewhere(self) -> bool:
        """Tells whether a chat it was sent to never got it."""
        rows = [*self.copies.values(), *self.summaries.values()]
        return any(str(row.state) in _NOT_DELIVERED for row in rows)

    @property
    def undelivered(self) -> bool:
        """Tells whether it reached nobody (and nobody acted on it), or some chat never got it."""
        acted = self.alert.acknowledged_at is not None or str(self.alert.closed_by).startswith(
            "staff:"
        )
        return self.lost_somewhere or (self.reached_at is None and not acted)


def _keep(found: dict[int, OutgoingMessage], row: OutgoingMessage) -> None:
    """Keeps one message per chat: a sent one if any, else the newest (rows come oldest first)."""
    kept = found.get(row.chat_id)
    if kept is None or str(kept.state) != "sent":
        found[row.chat_id] = row


async def read_alerts(settings: Settings, *, include_closed: bool) -> list[AlertRow]:
    """Reads alerts (open and acknowledged, or all) with her pseudonym and every message's fate."""
    from sqlmodel import col, select

    from bot.alerts import ACTIVE, ALERT_KIND, DIGEST_KIND
    from bot.db import Database
    from bot.models import Alert, OutgoingMessage, Participant
    from bot.outbox import payload_of

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            query = select(Alert, Participant).join(
                Participant, col(Participant.id) == col(Alert.participant_id), isouter=True
            )
            if not include_closed:
                query = query.where(col(Alert.status).in_(ACTIVE))
            found = (await session.exec(query.order_by(col(Alert.id)))).all()
            sent = await session.exec(
                select(OutgoingMessage)
                .where(col(OutgoingMessage.kind).in_([ALERT_KIND, DIGEST_KIND]))
                .order_by(col(OutgoingMessage.id))
            )
            copies: dict[int, dict[int, OutgoingMessage]] = {}
            digests: list[tuple[datetime, OutgoingMessage]] = []
            for row in sent.all():
                payload = payload_of(row)
                alert_id, cutoff = payload.get("alert_id"), payload.get("cutoff")
                if row.kind == ALERT_KIND and isinstance(alert_id, int):
                    _keep(copies.setdefault(alert_id, {}), row)
                elif row.kind == DIGEST_KIND and isinstance(cutoff, str):
                    # A summary lists what was raised by its cut-off and still open then.
                    digests.append((datetime.fromisoformat(cutoff), row))
    finally:
        await db.dispose()
    rows = []
    for alert, participant in found:
        summaries: dict[int, OutgoingMessage] = {}
        if not alert.urgent:
            for cutoff, row in digests:
                if cutoff >= alert.created_at:
                    _keep(summaries, row)
        rows.append(
            AlertRow(
                alert=alert,
                pseudonym=participant.pseudonym if participant else "-",
                site_study_id=participant.site_study_id if participant else None,
                copies=copies.get(alert.id or 0, {}),
                summaries=summaries,
            )
        )
    return rows


def _alert_cells(row: AlertRow, zone: ZoneInfo) -> list[str]:
    """Returns one alert's cells, in the order of `cli.team.alert_columns`."""
    alert = row.alert
    due = "-"
    if alert.contact_requested and alert.due_by is not None:
        due = _local(alert.due_by, zone)
        if alert.due_by < clock.now() and str(alert.status) != "closed":
            due += " " + t("cli.team.overdue")
    reached = row.reached_at
    return [
        str(alert.id),
        row.pseudonym,
        row.site_study_id or "-",
        str(alert.kind),
        t("cli.team.yes") if alert.urgent else t("cli.team.no"),
        str(alert.count),
        _local(alert.created_at, zone),
        _local(reached, zone) if reached else t("cli.team.not_delivered"),
        str(alert.status),
        due,
    ]


def _fates(what: str, found: dict[int, OutgoingMessage], zone: ZoneInfo) -> list[str]:
    """Returns one line per chat a message (the alert's own, or a summary) did not reach."""
    lines = []
    for chat, row in found.items():
        state = str(row.state)
        error = row.last_error or "-"
        if state == "failed":
            why = t(refusal_key(row.last_error))
            lines.append(t("cli.team.copy_failed", what=what, chat=chat, why=why, error=error))
        elif state == "queued":
            when = _local(row.not_before, zone)
            lines.append(t("cli.team.copy_waiting", what=what, chat=chat, when=when))
        elif state in ("claimed", "sending"):
            lines.append(t("cli.team.copy_sending", what=what, chat=chat))
        elif state != "sent":  # uncertain, cancelled
            lines.append(t("cli.team.copy_unsure", what=what, chat=chat, error=error))
    return lines


def _why_undelivered(row: AlertRow, settings: Settings, zone: ZoneInfo) -> list[str]:
    """Returns one line per chat an alert did not reach yet, or why it was never sent at all."""
    lines = _fates(t("cli.team.what_alert"), row.copies, zone)
    lines += _fates(t("cli.team.what_summary"), row.summaries, zone)
    if lines or row.reached_at is not None:
        return lines
    alert = row.alert
    if alert.notify_pending:
        return [t("cli.team.never_sent_pending")]
    if not alert.urgent:
        return [t("cli.team.never_sent_not_urgent", time=settings.digest_time, zone=zone.key)]
    if alert.last_notified_at is not None:  # it was handed on, to nobody
        return [t("cli.team.never_sent_nobody")]
    return [t("cli.team.never_sent_other")]


def cmd_alerts(args: argparse.Namespace) -> int:
    """Lists open alerts (or all), or only those that did not reach the care team, and why."""
    settings = _team_settings(staff_codes=False)
    if settings is None:
        return EXIT_CONFIG
    try:
        found = asyncio.run(read_alerts(settings, include_closed=args.all))
    except Exception as exc:  # never migrated, or a wrong DATABASE_URL
        return _database_failed(settings, exc)
    zone = _team_zone(settings)
    if args.undelivered:
        found = [row for row in found if row.undelivered]
        if not found:
            say("cli.team.undelivered_none_all" if args.all else "cli.team.undelivered_none")
            return EXIT_OK
        say("cli.team.undelivered_header", count=len(found), zone=zone.key)
        lines = _columns("cli.team.alert_columns", [_alert_cells(row, zone) for row in found])
        _print_lines(lines[:1])
        for row, line in zip(found, lines[1:], strict=True):
            _print_lines([line, *_why_undelivered(row, settings, zone)])
        say("cli.team.undelivered_advice")
        return EXIT_FAILED  # like `db check`: a person must look (and a cron job can tell)
    if not found:
        say("cli.team.alerts_none_all" if args.all else "cli.team.alerts_none")
        return EXIT_OK
    say(
        "cli.team.alerts_all_header" if args.all else "cli.team.alerts_header",
        count=len(found),
        zone=zone.key,
    )
    _print_lines(_columns("cli.team.alert_columns", [_alert_cells(row, zone) for row in found]))
    return EXIT_OK


def read_user_id(raw: str) -> int | None:
    """Reads a Telegram user id (a positive whole number in ASCII digits); None otherwise."""
    if not _USER_ID.match(raw):
        return None
    value = int(raw)
    return value if 0 < value < 2**63 else None


def cmd_grant_or_revoke(args: argparse.Namespace) -> int:
    """Grants or revokes a role through `bot.roles` (audited, actor "cli")."""
    from bot.models import Role

    granting = args.command == "grant"
    settings = _team_settings(staff_codes=True)
    if settings is None:
        return EXIT_CONFIG
    user = read_user_id(args.telegram_id)
    if user is None:
        complain("cli.team.bad_user_id", value=args.telegram_id)
        return EXIT_CONFIG
    if args.role not in Role.__members__:
        complain("cli.team.bad_role", value=args.role)
        return EXIT_CONFIG
    role = Role(args.role)
    try:
        done, reason = asyncio.run(_change_role(settings, user, role, granting=granting))
    except Exception as exc:
        return _database_failed(settings, exc)
    shown = {"user": user, "code": _staff_code(settings, user), "role": role}
    if done:
        say("cli.team.granted" if granting else "cli.team.revoked", **shown)
        return EXIT_OK
    if reason == "seeded":
        complain("cli.team.seeded", setting=_ROLE_SETTINGS[role], **shown)
        return EXIT_CONFIG  # only .env can take it away
    say("cli.team.already_granted" if reason == "already" else "cli.team.not_held", **shown)
    return EXIT_OK


def _staff_code(settings: Settings, user: int) -> str:
    """Returns the name a member of staff goes by in the audit log and on alerts."""
    from bot.roles import staff_code

    return staff_code(user, settings.pseudonym_key or "")


async def _change_role(
    settings: Settings, user: int, role: Role, *, granting: bool
) -> tuple[bool, str]:
    """Applies one grant or revocation in its own transaction; returns (done, why not)."""
    from bot import roles
    from bot.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            change = await (roles.grant if granting else roles.revoke)(
                session=session,
                settings=settings,
                actor=roles.CLI_ACTOR,
                telegram_user_id=user,
                role=role,
            )
            return change.done, change.reason
    finally:
        await db.dispose()


async def _read_staff(settings: Settings) -> list[list[str]]:
    """Returns one row per person and role: id, staff code, role, and where the role comes from."""
    from sqlmodel import col, select

    from bot import roles
    from bot.db import Database
    from bot.models import StaffRole

    zone = _team_zone(settings)
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            everyone = await roles.staff_ids(session=session, settings=settings)
            rows = await session.exec(
                select(StaffRole)
                .where(col(StaffRole.revoked_at).is_(None))
                .order_by(col(StaffRole.granted_at), col(StaffRole.id))
            )
            granted = {(r.telegram_user_id, str(r.role)): r for r in rows.all()}
    finally:
        await db.dispose()
    table: list[list[str]] = []
    for user in sorted(everyone):
        seeded = roles.seeded_roles(settings, user)
        for role in sorted(everyone[user]):
            grant = granted.get((user, str(role)))
            if role in seeded:
                how = t("cli.team.role_seeded", setting=_ROLE_SETTINGS[role])
            elif grant is not None:
                when = _local(grant.granted_at, zone)
                how = t("cli.team.role_granted", when=when, by=grant.granted_by)
            else:
                how = "-"
            table.append([str(user), _staff_code(settings, user), str(role), how])
    return table


def cmd_roles(_args: argparse.Namespace) -> int:
    """Lists the care team: Telegram id, staff code, role, and from the settings or granted."""
    settings = _team_settings(staff_codes=True)
    if settings is None:
        return EXIT_CONFIG
    try:
        table = asyncio.run(_read_staff(settings))
    except Exception as exc:
        return _database_failed(settings, exc)
    if table:
        say("cli.team.roles_header", count=len({row[0] for row in table}))
        _print_lines(_columns("cli.team.role_columns", table))
    else:
        say("cli.team.roles_none")
    if settings.coordinator_chat_id is not None:
        say("cli.team.receivers_group", chat=settings.coordinator_chat_id)
    elif any(row[2] == "coordinator" for row in table):
        say("cli.team.receivers_each")
    else:
        complain("cli.team.receivers_nobody")
    return EXIT_OK


async def _read_audit(settings: Settings, limit: int) -> tuple[int, list[AuditEvent]]:
    """Returns how many audit events there are, and the newest `limit`, newest first."""
    from sqlalchemy import func
    from sqlmodel import col, select

    from bot.db import Database
    from bot.models import AuditEvent

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            total = (await session.exec(select(func.count()).select_from(AuditEvent))).one()
            rows = await session.exec(
                select(AuditEvent)
                .order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
                .limit(limit)
            )
            return int(total), list(rows.all())
    finally:
        await db.dispose()


def cmd_audit(args: argparse.Namespace) -> int:
    """Lists the audit log, newest first: time, actor, action, subject, detail."""
    settings = _team_settings(staff_codes=False)
    if settings is None:
        return EXIT_CONFIG
    if args.limit < 1:
        complain("cli.team.bad_limit")
        return EXIT_CONFIG
    try:
        total, events = asyncio.run(_read_audit(settings, args.limit))
    except Exception as exc:
        return _database_failed(settings, exc)
    if not events:
        say("cli.team.audit_none")
        return EXIT_OK
    zone = _team_zone(settings)
    say("cli.team.audit_header", shown=len(events), total=total, zone=zone.key)
    rows = [
        [_local(e.at, zone), e.actor, e.action, e.subject or "-", e.detail or "-"] for e in events
    ]
    _print_lines(_columns("cli.team.audit_columns", rows))
    return EXIT_OK


# ---------------------------------------------------------------- the study overview


def cmd_stats(args: argparse.Namespace) -> int:
    """Prints the study at a glance (as /stats does), for one cohort with --cohort."""
    settings = _team_settings(staff_codes=False)
    if settings is None:
        return EXIT_CONFIG
    try:
        found, known = asyncio.run(_read_stats(settings, args.cohort))
    except Exception as exc:
        return _database_failed(settings, exc)
    if found is None:
        if known:
            complain("stats.no_cohort", cohort=args.cohort, cohorts=", ".join(known))
        else:
            complain("stats.no_cohort_none", cohort=args.cohort)
        return EXIT_FAILED
    from bot.content import messages
    from bot.stats import report_lines

    m = messages("en")
    _print_lines(report_lines(found, m))
    if args.png and found.chart is not None:
        from bot.charts import render_stats_png

        Path(args.png).write_bytes(render_stats_png(found.chart, m))
        say("stats.cli_chart_saved", path=args.png)
    return EXIT_OK


async def _read_stats(settings: Settings, cohort: str | None) -> tuple[Any, list[str]]:
    from bot import stats
    from bot.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            found = await stats.overview(session=session, settings=settings, cohort=cohort)
            return found, await stats.known_cohorts(session=session)
    finally:
        await db.dispose()


# ---------------------------------------------------------------- argument parsing


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="adherence-bot",
        description="Telegram check-in companion: run the bot, try it offline, manage the study.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="apply migrations and start the bot (needs a token)")
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO (default), WARNING")
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser("demo", help="chat with the bot in this terminal, offline, no token")
    demo.add_argument("--keep", action="store_true", help="keep the demo database from last time")
    demo.add_argument("--database", default=None, help="SQLite file (default data/demo.db)")
    demo.set_defaults(handler=cmd_demo)

    db = sub.add_parser("db", help="database migrations and backups")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply every pending migration").set_defaults(
        handler=cmd_db_upgrade
    )
    db_sub.add_parser("check", help="tell whether the database matches the models").set_defaults(
        handler=cmd_db_check
    )
    backup = db_sub.add_parser(
        "backup", help="copy the SQLite database to PATH (PostgreSQL: prints the pg_dump command)"
    )
    backup.add_argument("path", metavar="PATH", help="the new backup file (never overwritten)")
    backup.set_defaults(handler=cmd_db_backup)

    invite = sub.add_parser("invite", help="invite links for participants")
    invite_sub = invite.add_subparsers(dest="invite_command", required=True, metavar="ACTION")
    create = invite_sub.add_parser("create", help="create an invite and print its t.me link")
    create.add_argument("--cohort", required=True, help="cohort code (created if new)")
    create.add_argument("--study-id", default=None, help="the site's study id for this person")
    create.add_argument("--expires", default=None, help="last valid day, YYYY-MM-DD")
    create.add_argument("--uses", type=int, default=1, help="how many people may use it (1)")
    create.add_argument(
        "--force",
        action="store_true",
        help="create it even if the study id has a participant or a live invite (audited)",
    )
    create.set_defaults(handler=cmd_invite_create)
    listing = invite_sub.add_parser("list", help="list live invites (--all: every invite)")
    listing.add_argument("--all", action="store_true", help="used-up, expired, revoked too")
    listing.set_defaults(handler=cmd_invite_list)
    revoke_invite = invite_sub.add_parser("revoke", help="stop an invite's link from working")
    revoke_invite.add_argument("invite_id", metavar="ID", help="from adherence-bot invite list")
    revoke_invite.set_defaults(handler=cmd_invite_revoke)
    stats = sub.add_parser("stats", help="the study at a glance (small cells shown as <5)")
    stats.add_argument("--cohort", default=None, help="one cohort only")
    stats.add_argument("--png", default=None, metavar="PATH", help="also save the chart here")
    stats.set_defaults(handler=cmd_stats)

    alerts = sub.add_parser("alerts", help="list open alerts, or those that reached nobody")
    alerts.add_argument(
        "--undelivered",
        action="store_true",
        help="only alerts that did not reach the care team, with Telegram's reason (exit 1)",
    )
    alerts.add_argument("--all", action="store_true", help="closed alerts too")
    alerts.set_defaults(handler=cmd_alerts)
    for name, what in (("grant", "give someone a role"), ("revoke", "take a role back")):
        change = sub.add_parser(name, help=f"{what} (audited as cli)")
        change.add_argument("telegram_id", metavar="TELEGRAM_ID", help="from @userinfobot")
        change.add_argument("role", metavar="ROLE", help="admin, coordinator or researcher")
        change.set_defaults(handler=cmd_grant_or_revoke)
    sub.add_parser(
        "roles", help="list the care team: Telegram id, staff code, roles"
    ).set_defaults(handler=cmd_roles)
    audit = sub.add_parser("audit", help="list the audit log, newest first")
    audit.add_argument("--limit", type=int, default=50, help="how many events (50)")
    audit.set_defaults(handler=cmd_audit)
    # Broadcasts (`broadcast`, `broadcast status`) live with the broadcast code.
    from bot.broadcast_cli import add_broadcast_command

    add_broadcast_command(sub)
    # Research exports (`export`, `verify-export`) live with the export code.
    from bot.export.cli import add_export_commands

    add_export_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand and returns its exit code."""
    args = build_parser().parse_args(argv)
    if args.handler is not cmd_run:
        # Only `run` keeps the collector paused (`bot.startup`) until its Application is built.
        resume_collector()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
