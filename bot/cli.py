"""The `adherence-bot` command: run the bot, the offline demo, migrations and invites.

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
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.engine import URL, make_url

from bot import clock
from bot.config import Settings
from bot.content import t

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2  # something in .env must be fixed first

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


def say(key: str, /, **params: object) -> None:
    """Prints one message from content to stdout."""
    print(t(key, **params), flush=True)


def complain(key: str, /, **params: object) -> None:
    """Prints one message from content to stderr."""
    print(t(key, **params), file=sys.stderr, flush=True)


def load_settings() -> Settings | None:
    """Reads the settings; on a bad value prints one line per variable and returns None."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            name = str(error["loc"][0]).upper() if error["loc"] else "?"
            # pydantic prefixes messages from our validators with "Value error, ".
            reason = str(error["msg"]).removeprefix("Value error, ")
            complain("cli.setting_invalid", name=name, reason=reason)
        complain("cli.settings_help")
        return None


def shown_database(url: str) -> str:
    """Returns the database URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


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


def migrate(settings: Settings) -> bool:
    """Brings the database up to the newest revision, printing what happened."""
    from bot.migrate import current_revision, upgrade_to_head

    database = shown_database(settings.database_url)
    try:
        upgrade_to_head(settings.database_url)
        revision = current_revision(settings.database_url)
    except Exception as exc:  # a wrong URL or a refused connection: explain, no traceback
        complain("cli.migration_failed", database=database, reason=type(exc).__name__)
        return False
    say("cli.migrated", revision=revision or "-")
    return True


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
    local_midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=ZoneInfo(zone))
    return local_midnight.astimezone(UTC)


def cmd_invite_create(args: argparse.Namespace) -> int:
    """Creates an invite (and its cohort if new) and prints the deep link to send."""
    settings = load_settings()
    if settings is None:
        return EXIT_CONFIG
    if not _COHORT.match(args.cohort):
        complain("cli.invite_bad_cohort")
        return EXIT_CONFIG
    if args.uses < 1:
        complain("cli.invite_bad_uses")
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
    code = asyncio.run(_create_invite(settings, args.cohort, args.study_id, expires_at, args.uses))
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
    if not known:
        say("cli.invite_username_placeholder_note")
    return EXIT_OK


async def _create_invite(
    settings: Settings,
    cohort: str,
    study_id: str | None,
    expires_at: datetime | None,
    uses: int,
) -> str:
    from bot.db import Database
    from bot.enrollment import create_invite

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            invite = await create_invite(
                session=session,
                cohort_code=cohort,
                site_study_id=study_id,
                expires_at=expires_at,
                max_uses=uses,
            )
            return invite.code
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
    create.set_defaults(handler=cmd_invite_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand and returns its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
