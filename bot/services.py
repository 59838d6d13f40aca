"""The shared objects every handler and job reaches through `context.bot_data`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.db import Database
from bot.outbox import AfterSend, Renderer

if TYPE_CHECKING:
    from bot.clock import Sleeper


class Services:
    """Settings, database and outbox renderers; configured once by the composition root."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._db: Database | None = None
        self.renderers: dict[str, Renderer] = {}
        self.after_send: dict[str, AfterSend] = {}
        self.sleep: Sleeper | None = None
        # How replies wait for their pacing slot (None: like `sleep`). Tests that tap at
        # machine speed set one that does not move the clock, as a person tapping never waits.
        self.reply_sleep: Sleeper | None = None
        self.bot_username: str = ""
        # Set after a 429 in this process: no reply goes out before it (shared/architecture.md).
        self.held_until: datetime | None = None
        # When this process next looks for schedules with no check-in waiting (the dispatcher's
        # safety net, a scan of every schedule): once a minute, not on every tick.
        self.heal_after: datetime | None = None
        # Typed text by what she was asked (`bot.awaiting.AwaitKind`), filled by the routing
        # table in bot/app.py, so the fallback hands text on without importing other flows.
        self.text_routes: dict[str, Callable[[Any], Awaitable[bool]]] = {}

    def configure(self, settings: Settings, db: Database) -> None:
        """Fills in the settings and the database."""
        self._settings = settings
        self._db = db

    @property
    def settings(self) -> Settings:
        """Returns the settings (configured at start-up)."""
        if self._settings is None:
            raise RuntimeError("Services.configure() was not called")
        return self._settings

    @property
    def db(self) -> Database:
        """Returns the database (configured at start-up)."""
        if self._db is None:
            raise RuntimeError("Services.configure() was not called")
        return self._db
