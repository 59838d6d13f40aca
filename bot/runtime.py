"""Running the bot as a service: long polling (one holder of a lock) or a webhook behind a proxy.

`run()` owns the process's life: it starts the Application, the health and metrics server
(`bot.ops`, both modes), then either

- polling, once this process holds the polling lock (a PostgreSQL advisory lock, or a file
  lock beside the SQLite file), so a second poller waits and says so instead of fighting
  over getUpdates (Telegram answers two pollers with 409 Conflict); or
- a webhook: a small tornado server on WEBHOOK_LISTEN:WEBHOOK_PORT that accepts POSTs on the
  path of WEBHOOK_URL (or WEBHOOK_PATH), checks Telegram's secret-token header (403
  otherwise), and handles the update *before* answering 200. The turn commits before its
  reply goes out, so a crash before the 200 means Telegram delivers the update again and the
  replay guard drops it if it was already handled: no accepted update is lost. Several
  webhook workers can share one PostgreSQL database.

SIGINT and SIGTERM stop it cleanly.
"""

from __future__ import annotations

import asyncio
import fcntl
import hmac
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tornado.httpserver
import tornado.web
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from bot import ops
from bot.config import Settings
from bot.db import Database
from bot.safe_bot import parse_update
from bot.services import Services

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
POLL_LOCK_KEY = 0x6164686572656E63  # "adherenc": one advisory lock id for the polling process
LOCK_RETRY_SECONDS = 5.0
Application = Any  # the PTB Application built by bot.app (typed loosely to avoid a cycle)


def webhook_path(settings: Settings) -> str:
    """Returns the path Telegram posts to: WEBHOOK_PATH, else the path of WEBHOOK_URL, else /."""
    path = settings.webhook_path or urlsplit(settings.webhook_url or "").path or "/"
    return path if path.startswith("/") else "/" + path


# ---------------------------------------------------------------- the polling lock


class PollingLock:
    """One poller per bot: a PostgreSQL advisory lock, or an flock beside the SQLite file."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: AsyncConnection | None = None
        self._fd: int | None = None

    async def try_acquire(self) -> bool:
        """Takes the lock if it is free; never waits."""
        if self.db.dialect == "postgresql":
            conn = await self.db.engine.connect()
            got = (
                await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": POLL_LOCK_KEY})
            ).scalar()
            if got:
                self._conn = conn  # the lock lives as long as this connection
                return True
            await conn.close()
            return False
        path = _lock_file(self.db.url)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Waits for the lock, saying once that another instance holds it; False if stopped."""
        said = False
        while not stop.is_set():
            if await self.try_acquire():
                if said:
                    log.warning("the other instance stopped; this one polls now")
                return True
            if not said:
                log.warning(
                    "another instance of the bot is polling (it holds the polling lock); "
                    "this one waits and takes over if that one stops"
                )
                said = True
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=LOCK_RETRY_SECONDS)
        return False

    async def release(self) -> None:
        """Gives the lock back."""
        if self._conn is not None:
            with suppress(Exception):
                await self._conn.execute(
                    text("SELECT pg_advisory_unlock(:k)"), {"k": POLL_LOCK_KEY}
                )
            await self._conn.close()
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the flock
            self._fd = None


def _lock_file(url: str) -> str:
    """Returns the lock file beside a SQLite database (in-memory: the temp folder)."""
    database = make_url(url).database
    if not database or database == ":memory:":
        return str(Path(os.environ.get("TMPDIR", "/tmp")) / "adherence-bot.poll.lock")
    return str(Path(database).expanduser()) + ".poll.lock"


# ---------------------------------------------------------------- the webhook


class WebhookHandler(tornado.web.RequestHandler):
    """Takes Telegram's POSTs: secret checked, update handled, then 200."""

    def initialize(self, app: Application, secret: str) -> None:
        """Keeps the Application and the expected secret."""
        self.app = app
        self.secret = secret

    def check_xsrf_cookie(self) -> None:
        """Telegram sends no cookies; the secret header protects this endpoint."""

    async def post(self) -> None:
        """Handles one update; Telegram retries anything that is not a 2xx."""
        given = self.request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            self.set_status(403)
            return
        try:
            data = json.loads(self.request.body or b"null")
        except ValueError:
            self.set_status(400)  # not Telegram: it only sends JSON
            return
        update = parse_update(data, self.app.bot)
        if update is not None:
            await self.app.process_update(update)
        self.set_status(200)

    def log_exception(self, *args: Any) -> None:
        """Logs the class only: a request body may carry what she typed."""
        exc = args[1] if len(args) > 1 else None
        log.error("webhook request failed: %s", type(exc).__name__ if exc else "unknown")


async def start_webhook_server(
    app: Application, settings: Settings, *, port: int | None = None
) -> tornado.httpserver.HTTPServer:
    """Starts the webhook server on WEBHOOK_LISTEN:WEBHOOK_PORT at the webhook path."""
    web = tornado.web.Application(
        [
            (
                webhook_path(settings),
                WebhookHandler,
                {"app": app, "secret": settings.webhook_secret},
            )
        ],
        log_function=lambda handler: None,  # access lines would add nothing but noise
    )
    server = tornado.httpserver.HTTPServer(web, xheaders=True)
    server.listen(settings.webhook_port if port is None else port, settings.webhook_listen)
    return server


# ---------------------------------------------------------------- the process


async def run(app: Application, settings: Settings, db: Database) -> None:
    """Runs the bot until SIGINT/SIGTERM: health server, then webhook or polling."""
    from bot.app import ALLOWED_UPDATES

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    services: Services = app.bot_data
    cleanup: list[Callable[[], Awaitable[Any]]] = []
    lock = PollingLock(db)
    try:
        await app.initialize()
        cleanup.append(app.shutdown)
        if settings.health_port:
            server = await ops.start_ops_server(
                services, ops.OPS, host=settings.health_listen, port=settings.health_port
            )
            cleanup.append(server.stop)
        if settings.webhook_url:
            await _start(app, cleanup)
            web = await start_webhook_server(app, settings)

            async def stop_web() -> None:
                web.stop()  # no new requests; the ones under way finish first
                await web.close_all_connections()

            cleanup.append(stop_web)
            await app.bot.set_webhook(
                url=settings.webhook_url,
                secret_token=settings.webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
            )
        else:
            if not await lock.acquire(stop):
                return
            cleanup.append(lock.release)
            await _start(app, cleanup)
            assert app.updater is not None
            # start_polling removes any webhook itself (one deleteWebhook, not two).
            await app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
            cleanup.append(app.updater.stop)
        await stop.wait()
    finally:
        for step in reversed(cleanup):
            try:
                await step()
            except Exception as exc:  # keep shutting down; say what failed by class
                log.warning("shutdown step failed: %s", type(exc).__name__)
        if app.post_shutdown is not None:
            await app.post_shutdown(app)


async def _start(app: Application, cleanup: list[Callable[[], Awaitable[Any]]]) -> None:
    """Runs post_init (the command menu) and starts the Application and its JobQueue."""
    if app.post_init is not None:
        await app.post_init(app)
    await app.start()
    cleanup.append(app.stop)
