"""The `adherence-bot` command: run the bot, the offline demo, migrations and invites.

Everything it prints comes from `content/messages/<locale>/cli.yaml`. Problems a person can fix
(a missing token, a bad setting) end with a clear message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.engine import make_url

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
    try:
        username = asyncio.run(fetch_bot_username(settings))
    except TokenProblem as problem:
        complain(problem.key, **problem.params)
        return EXIT_CONFIG
    _configure_logging(settings, args.log_level)
    if not migrate(settings):
        return EXIT_FAILED
    return serve(settings, username)


def serve(settings: Settings, username: str) -> int:
    """Builds the application and runs long polling, or a webhook when WEBHOOK_URL is set."""
    from telegram.error import InvalidToken, TelegramError

    from bot.app import ALLOWED_UPDATES, BotApplication, build_application
    from bot.db import Database

    db = Database(settings.database_url)
    app = build_application(settings, db)

    async def dispose_database(_app: BotApplication) -> None:
        await db.dispose()

    app.post_shutdown = dispose_database
    try:
        if settings.webhook_url:
            say(
                "cli.starting_webhook",
                username=username,
                url=settings.webhook_url,
                listen=settings.webhook_listen,
                port=settings.webhook_port,
            )
            app.run_webhook(
                listen=settings.webhook_listen,
                port=settings.webhook_port,
                secret_token=settings.webhook_secret,
                webhook_url=settings.webhook_url,
                allowed_updates=ALLOWED_UPDATES,
            )
        else:
            say("cli.starting_polling", username=username)
            app.run_polling(allowed_updates=ALLOWED_UPDATES)
    except InvalidToken:
        complain("cli.token_rejected", server=shown_server(settings))
        return EXIT_CONFIG
    except TelegramError as exc:
        token = settings.telegram_bot_token or ""
        reason = (str(exc) or type(exc).__name__).replace(token, "<token>")
        complain("cli.server_unreachable", server=shown_server(settings), reason=reason)
        return EXIT_FAILED
    say("cli.stopped")
    return EXIT_OK


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

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply every pending migration").set_defaults(
        handler=cmd_db_upgrade
    )
    db_sub.add_parser("check", help="tell whether the database matches the models").set_defaults(
        handler=cmd_db_check
    )

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
