"""Logging for every entry point: our own loggers at the chosen level, chatty libraries capped.

Some libraries dump whole payloads at DEBUG: PTB logs Bot API parameters, return values (with
names) and the API URL (with the token); httpx logs request URLs (with the token); SQLAlchemy,
aiosqlite and psycopg log SQL parameters (with what a patient typed). Those loggers are capped
whatever level is asked for, so turning on DEBUG never puts health data or secrets in the logs.
PTB also logs whole updates on errors (a batch it cannot parse, at CRITICAL, with the names and
words of every patient in it), so its records lose their arguments and exception text at every
level: `WithholdLibraryDetails` keeps the message template, the exception class and where in
our code it happened.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

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

# Loggers (with their children) whose records may quote an update or a Bot API payload.
WITHHELD_LOGGERS = ("telegram",)
WITHHELD = "[withheld]"
# A %-style placeholder of a log template, as logging's own `msg % args` reads it.
_PLACEHOLDER = re.compile(
    r"%(?:\([^)]*\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]"
)
_PROJECT = Path(__file__).resolve().parent.parent
# Frames in these folders are ours: their file and line say where, and never quote a patient.
_OUR_CODE = tuple(f"{_PROJECT / folder}/" for folder in ("bot", "handlers"))


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


class WithholdLibraryDetails(logging.Filter):
    """Strips arguments and exception text from library records; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites a record from a withheld logger to its template and exception class."""
        if not _is_withheld(record.name):
            return True
        if isinstance(record.msg, str):
            template = record.msg
            if record.args:
                template = _PLACEHOLDER.sub(_withhold_placeholder, template)
        else:
            # Something logged as an object (an update, a dict) is withheld whole.
            template = f"<{type(record.msg).__name__}> {WITHHELD}"
        if record.exc_info:
            template = f"{template} | {_exception_summary(record.exc_info)}"
        record.msg, record.args = template, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _is_withheld(name: str) -> bool:
    """Tells whether a logger is one of the withheld libraries or a child of one."""
    return any(name == root or name.startswith(f"{root}.") for root in WITHHELD_LOGGERS)


def _withhold_placeholder(match: re.Match[str]) -> str:
    """Returns what one placeholder of a template shows once its argument is withheld."""
    # "%%" is a literal percent sign once the arguments are gone, as logging would print it.
    return "%" if match.group() == "%%" else WITHHELD


def _exception_summary(
    exc_info: tuple[type[BaseException] | None, BaseException | None, TracebackType | None],
) -> str:
    """Returns the exception class and our frames (file:line), nothing of its message."""
    if exc_info[0] is None:
        return "exception (details withheld)"
    frames = [
        f"{Path(frame.filename).relative_to(_PROJECT)}:{frame.lineno}"
        for frame in traceback.extract_tb(exc_info[2])
        if frame.filename.startswith(_OUR_CODE)
    ]
    where = f" at {', '.join(frames)}" if frames else ""
    return f"{exc_info[0].__name__} (details withheld){where}"


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
    withhold, redactor = WithholdLibraryDetails(), RedactSecrets(secrets)
    for handler in root.handlers:
        for old in [
            f for f in handler.filters if isinstance(f, WithholdLibraryDetails | RedactSecrets)
        ]:
            handler.removeFilter(old)
        # In this order: a withheld record has no arguments left for the redactor to format.
        handler.addFilter(withhold)
        handler.addFilter(redactor)
    for name, cap in CAPPED_LOGGERS.items():
        logging.getLogger(name).setLevel(max(numeric, cap))
