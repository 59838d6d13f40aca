"""Logging for every entry point: our own loggers at the chosen level, chatty libraries capped.

Some libraries dump whole payloads at DEBUG: PTB logs Bot API parameters, return values (with
names) and the API URL (with the token); httpx logs request URLs (with the token); SQLAlchemy,
aiosqlite and psycopg log SQL parameters (with what a patient typed). Those loggers are capped
whatever level is asked for, so turning on DEBUG never puts health data or secrets in the logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

# Logger name -> the most detailed level it may ever emit.
CAPPED_LOGGERS: dict[str, int] = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "telegram": logging.INFO,
    "sqlalchemy": logging.WARNING,
    "aiosqlite": logging.WARNING,
    "psycopg": logging.WARNING,
    "apscheduler": logging.INFO,
}

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Replaces known secrets (such as the bot token) in a record's final message."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites the record's message if it contains a secret; never drops a record."""
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, "[redacted]")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: int | str = logging.INFO, *, secrets: Iterable[str] = ()) -> None:
    """Sets the root level and format, caps payload-dumping libraries, and redacts secrets."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    if not root.handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(stream)
    root.setLevel(numeric)
    redactor = RedactSecrets(secrets)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(redactor)
    for name, cap in CAPPED_LOGGERS.items():
        logging.getLogger(name).setLevel(max(numeric, cap))
