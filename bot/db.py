"""Database engine and sessions: SQLite (WAL, busy timeout) by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


def async_url(url: str) -> str:
    """Returns the URL with the async driver this project uses (aiosqlite / psycopg)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


def sync_url(url: str) -> str:
    """Returns the URL with a synchronous driver (Alembic)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


def is_sqlite(url: str) -> bool:
    """Tells whether the URL names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def ensure_sqlite_folder(url: str) -> None:
    """Creates the folder of a SQLite file so a fresh clone needs no manual step."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


BUSY_TIMEOUT_SECONDS = 30
POOL_RECYCLE_SECONDS = 600


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling off: SQLAlchemy's "begin" event below decides.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # A writer waits its turn rather than failing: a patient's tap should be slow, not lost.
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a commit need not fsync
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_immediate(conn: Any) -> None:
    """Starts every SQLite transaction as a writer (BEGIN IMMEDIATE).

    A deferred transaction that reads and then writes cannot wait for the lock if another
    connection committed in between (SQLite answers "database is locked" at once, without the
    busy timeout). Update handlers, the dispatcher job and the reply path run concurrently in
    one process, so every transaction takes the write lock up front and simply queues behind
    the one before it (busy_timeout). Readers outside a transaction are not affected (WAL).
    """
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        ensure_sqlite_folder(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if is_sqlite(url):
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_SECONDS}
        else:
            # No pre-ping: it cost a round trip per checkout (two per send). Connections are
            # renewed before a server or proxy would drop them idle, and a connection found
            # dead fails that one transaction, which empties the pool (SQLAlchemy invalidates
            # it on a disconnect); the dispatcher's next tick or the next update starts afresh.
            kwargs["pool_recycle"] = POOL_RECYCLE_SECONDS
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        if is_sqlite(url):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _begin_immediate)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        """Returns 'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Yields a session that commits on success and rolls back on error."""
        async with self._sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def create_all(self) -> None:
        """Creates every table from the models (tests; real databases use migrations)."""
        from sqlmodel import SQLModel

        import bot.models  # noqa: F401  (registers the tables)

        async with self.engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)

    async def dispose(self) -> None:
        """Closes every pooled connection."""
        await self.engine.dispose()
