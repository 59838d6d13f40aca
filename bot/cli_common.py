"""What every `adherence-bot` subcommand shares: exit codes, printing from content, reading the
settings, migrating, and the checks before a command reads the study's database.

Kept apart from `bot.cli` (the parser and the commands) so that subcommands living with their
own code (`bot.broadcast_cli`, `bot.export.cli`) and the demo import this, not the parser that
imports them: no import circle.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.content import t

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2  # something in .env must be fixed first


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


def migrate(settings: Settings) -> bool:
    """Brings the database up to the newest revision, printing what happened."""
    from bot.migrate import ensure_at_head

    database = shown_database(settings.database_url)
    try:
        revision = ensure_at_head(settings.database_url)
    except Exception as exc:  # a wrong URL or a refused connection: explain, no traceback
        complain("cli.migration_failed", database=database, reason=type(exc).__name__)
        return False
    say("cli.migrated", revision=revision or "-")
    return True


def team_settings(*, staff_codes: bool) -> Settings | None:
    """Reads the settings, or says what is missing: staff codes need PSEUDONYM_KEY (to match
    the running bot's), and a SQLite database must exist (it is never created here)."""
    settings = load_settings()
    if settings is None:
        return None
    if staff_codes and "pseudonym_key_missing" in settings.problems_for_run():
        complain("cli.pseudonym_key_missing")
        return None
    url = make_url(settings.database_url)
    # Opening a mistyped SQLite path would create an empty database there; say so instead.
    on_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if on_file and not Path(url.database or "").expanduser().is_file():
        complain("cli.team.no_database", database=shown_database(settings.database_url))
        return None
    return settings


def database_failed(settings: Settings, exc: BaseException) -> int:
    """Explains a database that cannot be read (never migrated, wrong URL): no traceback."""
    complain(
        "cli.team.database_unreadable",
        database=shown_database(settings.database_url),
        reason=type(exc).__name__,
    )
    return EXIT_FAILED
