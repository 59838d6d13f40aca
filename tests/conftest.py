"""Fixtures: a real database, real PTB handlers, a fake Bot API at the transport layer."""

# The imports below come after the collector is paused, on purpose.
# ruff: noqa: E402

from __future__ import annotations

import gc

from bot.startup import pause_collector, resume_collector

# The collector, as `bot/startup.py` handles it for the bot: off while each worker imports the
# stack and the test modules (collections then only rescan objects that live as long as the
# worker), then what collection built is frozen. Between tests, a larger first generation:
# each test builds an Application and a database and leaves most of it to reference counting,
# so collecting every 700 allocations mostly rescans live objects (on six of the heaviest
# files in turns, 70-73 s of user CPU against 80-89 s: docs/benchmarks.md).
pause_collector()


def _resume_collector() -> None:
    resume_collector()
    gc.set_threshold(50_000, 20, 100)


import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot import clock
from bot.app import BotApplication, build_application
from bot.config import Settings
from bot.db import Database
from bot.devtools.fake_telegram import FakeMessage, FakeRequest, FakeTelegram
from bot.devtools.updates import UpdateFactory


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freezes what collection built and switches the collector back on."""
    _resume_collector()


def pytest_sessionstart(session: pytest.Session) -> None:
    """pytest-xdist's controller never collects: it gets the collector back at once."""
    if session.config.pluginmanager.hasplugin("dsession"):
        _resume_collector()


# A Monday morning in winter (no daylight saving in Europe or the US on this day).
START = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)
PATIENT = 5_000_000_001  # above 2**32: Telegram ids need 64 bits


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Returns settings for a test run, ignoring any .env on the machine."""
    values: dict[str, Any] = {
        "telegram_bot_token": "123456:TEST-token_abc",
        "database_url": database_url,
        "emergency_number": "999",
        "pseudonym_key": "test-pseudonym-key",
        "open_enrollment": True,
        "default_timezone": "Europe/London",
        "default_checkin_time": "19:00",
        "reminder_delay_minutes": 120,
        "checkin_window_hours": 6,
        "quiet_hours": "21:00-08:00",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    """Starts every test at the same instant; tests move time with `clock.advance`."""
    clock.freeze(START)
    yield
    clock.reset()


async def no_wait(seconds: float) -> None:
    """A sleeper that yields to the loop without moving the clock (a person's pace)."""
    await asyncio.sleep(0)


@dataclass
class Harness:
    """Real Application + real database + fake Bot API, driven the way Telegram would."""

    app: BotApplication
    fake: FakeTelegram
    updates: UpdateFactory
    db: Database
    settings: Settings

    async def process(self, update: Any) -> None:
        """Feeds one update through every registered handler."""
        await self.app.process_update(update)

    async def send(self, user_id: int, text: str, **kwargs: Any) -> None:
        """She types a message."""
        await self.process(self.updates.message(user_id, text, **kwargs))

    async def command(self, user_id: int, command: str, *args: str) -> None:
        """She sends a /command."""
        await self.process(self.updates.command(user_id, command, *args))

    def find_button(self, chat_id: int, label_or_data: str) -> tuple[FakeMessage, str]:
        """Returns the newest message with a button matching the label or callback data."""
        for message in reversed(self.fake.chat(chat_id)):
            for label, data in message.buttons():
                if label_or_data in (label, data):
                    return message, data
        raise AssertionError(f"no button {label_or_data!r} in chat {chat_id}")

    async def press(
        self, user_id: int, label_or_data: str, *, message: FakeMessage | None = None
    ) -> None:
        """She taps a button (by label or by callback data)."""
        if message is None:
            message, data = self.find_button(user_id, label_or_data)
        else:
            data = next(
                (d for lbl, d in message.buttons() if label_or_data in (lbl, d)), label_or_data
            )
        await self.process(self.updates.callback(user_id, data, message))

    async def tick(self) -> Any:
        """Runs one dispatcher tick (plan due check-ins, reminders, send the outbox)."""
        from bot.dispatcher import run_tick

        return await run_tick(self.app.bot_data, self.app.bot)

    def texts(self, chat_id: int) -> list[str]:
        """Returns every text the chat has received."""
        return self.fake.texts(chat_id)

    def last(self, chat_id: int) -> FakeMessage:
        """Returns the newest message in the chat."""
        return self.fake.last(chat_id)


_SQLITE_TEMPLATE: Path | None = None


def _copy_sqlite_template(database_url: str) -> bool:
    """Makes a new SQLite file a copy of an empty schema built once per test process.

    Creating some forty tables costs about 45 ms, a file copy about 1 ms: over the suite that
    is a quarter of a minute of set-up. Returns False when the URL is not a new SQLite file.
    """
    global _SQLITE_TEMPLATE
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    target = Path(url.database)
    if target.exists():
        return False
    if _SQLITE_TEMPLATE is None or not _SQLITE_TEMPLATE.exists():
        from sqlmodel import SQLModel

        import bot.models  # noqa: F401  (registers the tables)

        template = Path(tempfile.mkdtemp(prefix="adh-template-")) / "template.db"
        engine = create_engine(f"sqlite:///{template}")
        SQLModel.metadata.create_all(engine)
        engine.dispose()
        _SQLITE_TEMPLATE = template
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_SQLITE_TEMPLATE, target)
    return True


async def make_harness(database_url: str, **overrides: Any) -> Harness:
    """Builds and initialises a harness over an empty database."""
    settings = make_settings(database_url, **overrides)
    db = Database(database_url)
    if not _copy_sqlite_template(database_url):
        await db.create_all()
    fake = FakeTelegram()
    app = build_application(settings, db, request=FakeRequest(fake), with_updater=False)
    # The sender's rate limiter waits by moving the frozen clock, never by really sleeping.
    app.bot_data.sleep = clock.virtual_sleep
    # Replies are paced too, but a person taps far slower than a test: her taps never wait,
    # so by default they do not move the clock. Pacing and fault tests set virtual_sleep.
    app.bot_data.reply_sleep = no_wait
    await app.initialize()
    if app.post_init:
        await app.post_init(app)
    return Harness(app=app, fake=fake, updates=UpdateFactory(app.bot), db=db, settings=settings)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A fresh bot over a fresh SQLite file."""
    h = await make_harness(f"sqlite:///{tmp_path / 'test.db'}")
    yield h
    await h.app.shutdown()
    await h.db.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards.

    Skips when TEST_POSTGRES_URL is unset; `.ci/run` sets it and fails on any skip.
    """
    base = os.environ.get("TEST_POSTGRES_URL")
    if not base:
        pytest.skip("TEST_POSTGRES_URL is not set")
    name = f"adh_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# Files whose tests mostly wait on real time (a bot process answering at Telegram's pace, a
# real clock minute): started first, so that their waits overlap the rest of the suite on the
# other worker instead of being its last minute. (The PostgreSQL worker tests keep their place:
# they are busy, not waiting.)
WAITING_FILES = ("test_run_e2e.py", "test_care_team_e2e.py")


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    """Moves the tests that wait on real time to the front (a stable sort: same order on every
    xdist worker, as it must be)."""
    items.sort(key=lambda item: item.path.name not in WAITING_FILES)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """Under CI (FAIL_ON_SKIP=1) a skipped test fails the run: PostgreSQL must be tested."""
    skipped = terminalreporter.stats.get("skipped", [])
    if os.environ.get("FAIL_ON_SKIP") == "1" and skipped:
        terminalreporter.write_line(f"FAIL_ON_SKIP: {len(skipped)} test(s) skipped", red=True)
        terminalreporter._session.exitstatus = 1
