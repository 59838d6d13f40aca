"""Health and metrics: counters the bot bumps as it works, and a small HTTP server for probes.

`record_send`, `record_429`, `record_reply`, `observe_update`, `record_malformed` and
`mark_tick` are called from hot paths: they only touch in-process counters and never raise.
The database is read only when somebody asks: `GET /healthz` (200 or 503 with the reasons) and
`GET /metrics` (Prometheus text; the backlog gauges are refreshed just before each scrape).
Nothing here carries patient data: labels are message kinds, outcomes and alert codes.

The composition root starts the server in `post_init` (unless HEALTH_PORT is 0) and stops it
in `post_shutdown`; tests build their own `Ops()` so counters never leak between them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from bot import clock
from bot.awaiting import AwaitKind
from bot.models import (
    Alert,
    AlertStatus,
    CheckIn,
    CheckInStatus,
    OutboxState,
    OutgoingMessage,
    Participant,
)

if TYPE_CHECKING:
    from bot.db import Database
    from bot.services import Services

log = logging.getLogger(__name__)

# A probe must answer quickly even when the database hangs; a slow answer counts as down.
DB_TIMEOUT_SECONDS = 2.0
# The dispatcher is stalled after 3 missed ticks plus this much slack (start-up, slow ticks).
TICK_SLACK_SECONDS = 30.0
# A due row older than this means sending is stuck, not merely busy: at 25 messages per
# second ten minutes clears a 15,000-message broadcast.
STUCK_AFTER = timedelta(minutes=10)

# Known label values; anything else is counted as "other" so a caller's typo cannot create
# an unbounded number of series.
SEND_OUTCOMES = (
    "sent",
    "failed",
    "uncertain",
    "blocked",
    "rate_limited",
    "retry",
    "cancelled",
    # bot.sender.Outcome has these as well: a row handed back untouched, one put back because
    # its chat is busy (a broadcast goes on with the others), or one no longer ours.
    "released",
    "deferred",
    "gone",
)
REPLY_OUTCOMES = ("delivered", "given_up")
UPDATE_RESULTS = ("handled", "replay", "error")
OTHER = "other"
KIND_MAX_LENGTH = 32  # OutgoingMessage.kind's column length
# Update handling takes milliseconds when all is well and seconds while replies wait out a 429.
UPDATE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

NAN = float("nan")


@contextmanager
def _never_raise(what: str) -> Iterator[None]:
    """Logs and swallows a metrics failure: counting must never break a send or a reply."""
    try:
        yield
    except Exception as exc:
        log.warning("metrics: %s failed: %s", what, type(exc).__name__)


def _known(value: object, known: tuple[str, ...]) -> str:
    """Returns the value as a label, or "other" when it is not one of the known values."""
    text = str(value)
    return text if text in known else OTHER


class Ops:
    """One Prometheus registry with the bot's metrics, and when the dispatcher last ticked."""

    def __init__(self) -> None:
        # Our own registry, not prometheus_client's global one: tests and several
        # applications in one process each get a fresh set of counters.
        self.registry = CollectorRegistry()
        r = self.registry
        self.sends = Counter(
            "adherence_sends",
            "Outbox sends by message kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.telegram_429 = Counter(
            "adherence_telegram_429",
            "429 Too Many Requests answers from Telegram (replies and outbox sends).",
            registry=r,
        )
        self.reply_calls = Counter(
            "adherence_reply_calls", "Reply calls by final outcome.", ["outcome"], registry=r
        )
        self.updates = Counter(
            "adherence_updates", "Updates by how handling ended.", ["result"], registry=r
        )
        self.malformed_updates = Counter(
            "adherence_malformed_updates",
            "Updates that could not be read (dropped without a reply).",
            registry=r,
        )
        self.update_seconds = Histogram(
            "adherence_update_seconds",
            "Time to handle one update, in seconds.",
            buckets=UPDATE_BUCKETS,
            registry=r,
        )
        self.due_backlog = Gauge(
            "adherence_due_backlog",
            "Due rows not yet sent: queued outbox rows and due check-ins not yet queued.",
            registry=r,
        )
        self.uncertain_rows = Gauge(
            "adherence_uncertain_rows",
            "Outbox rows whose delivery is unknown (state uncertain).",
            registry=r,
        )
        self.open_alerts = Gauge(
            "adherence_open_alerts", "Alerts not closed, by kind.", ["kind"], registry=r
        )
        self.last_tick_age = Gauge(
            "adherence_last_tick_age_seconds",
            "Seconds since the dispatcher's last tick (since start-up before the first).",
            registry=r,
        )
        # Labels with a closed set of values are created at zero, so a rate() over them
        # works from the first scrape rather than from the first event.
        for outcome in REPLY_OUTCOMES:
            self.reply_calls.labels(outcome=outcome)
        for result in UPDATE_RESULTS:
            self.updates.labels(result=result)
        self.started_at: datetime = clock.now()
        self.last_tick: datetime | None = None
        self._alert_kinds: list[str] = []

    def record_send(self, kind: str, outcome: str) -> None:
        """Counts one outbox send by message kind and outcome."""
        with _never_raise("record_send"):
            label = str(kind)[:KIND_MAX_LENGTH] or OTHER
            self.sends.labels(kind=label, outcome=_known(outcome, SEND_OUTCOMES)).inc()

    def record_429(self) -> None:
        """Counts one 429 answer from Telegram."""
        with _never_raise("record_429"):
            self.telegram_429.inc()

    def record_reply(self, outcome: str) -> None:
        """Counts one reply call by its final outcome (delivered or given_up)."""
        with _never_raise("record_reply"):
            self.reply_calls.labels(outcome=_known(outcome, REPLY_OUTCOMES)).inc()

    def observe_update(self, seconds: float, result: str) -> None:
        """Records how long one update took and how its handling ended."""
        with _never_raise("observe_update"):
            # A clock moved by tests or the demo can make a duration negative.
            self.update_seconds.observe(max(0.0, float(seconds)))
            self.updates.labels(result=_known(result, UPDATE_RESULTS)).inc()

    def record_malformed(self) -> None:
        """Counts one update that could not be read."""
        with _never_raise("record_malformed"):
            self.malformed_updates.inc()

    def mark_tick(self, at: datetime) -> None:
        """Remembers when the dispatcher last finished a tick."""
        self.last_tick = at

    def tick_age(self, at: datetime) -> float:
        """Returns seconds since the last tick, or since start-up while none has run."""
        return (at - (self.last_tick or self.started_at)).total_seconds()

    def set_database_gauges(
        self, *, due: float, uncertain: float, alerts: Mapping[str, float]
    ) -> None:
        """Sets the gauges read from the database (NaN: could not be read)."""
        self.due_backlog.set(due)
        self.uncertain_rows.set(uncertain)
        # Kinds with no open alert disappear rather than linger at their last value.
        self.open_alerts.clear()
        for kind, count in alerts.items():
            self.open_alerts.labels(kind=kind).set(count)
        self._alert_kinds = list(alerts)

    def database_unknown(self) -> None:
        """Marks the database gauges unknown, so a failed read never looks like an empty queue."""
        self.set_database_gauges(
            due=NAN, uncertain=NAN, alerts=dict.fromkeys(self._alert_kinds, NAN)
        )


OPS = Ops()


def record_send(kind: str, outcome: str) -> None:
    """Counts one outbox send by message kind and outcome."""
    OPS.record_send(kind, outcome)


def record_429() -> None:
    """Counts one 429 answer from Telegram."""
    OPS.record_429()


def record_reply(outcome: str) -> None:
    """Counts one reply call by its final outcome (delivered or given_up)."""
    OPS.record_reply(outcome)


def observe_update(seconds: float, result: str) -> None:
    """Records how long one update took and how its handling ended."""
    OPS.observe_update(seconds, result)


def record_malformed() -> None:
    """Counts one update that could not be read."""
    OPS.record_malformed()


def mark_tick(at: datetime) -> None:
    """Remembers when the dispatcher last finished a tick."""
    OPS.mark_tick(at)


# ---------------------------------------------------------------- database reads


@dataclass(frozen=True)
class Backlog:
    """Rows due by now and not yet sent, and the due time of the oldest that should have gone."""

    due: int
    oldest_due_at: datetime | None


async def _backlog(conn: AsyncConnection, at: datetime) -> Backlog:
    """Counts due outbox rows and due check-ins not yet queued."""
    outbox = await conn.execute(
        sa.select(sa.func.count(), sa.func.min(col(OutgoingMessage.not_before))).where(
            col(OutgoingMessage.state) == OutboxState.queued,
            col(OutgoingMessage.not_before) <= at,
        )
    )
    outbox_due, outbox_oldest = outbox.one()
    waiting = sa.and_(
        col(CheckIn.status) == CheckInStatus.scheduled,
        col(CheckIn.queued_at).is_(None),
        col(CheckIn.due_at) <= at,
    )
    checkins_due = await conn.scalar(
        sa.select(sa.func.count()).select_from(CheckIn).where(waiting)
    )
    # A check-in held until she accepts the new consent text stays due all window long by
    # design; it is not a stuck dispatcher, so it is counted but not aged.
    checkin_oldest = await conn.scalar(
        sa.select(sa.func.min(col(CheckIn.due_at)))
        .join(Participant, col(Participant.id) == col(CheckIn.participant_id))
        .where(waiting, sa.func.coalesce(col(Participant.awaiting), "") != AwaitKind.reconsent)
    )
    dues = [d for d in (outbox_oldest, checkin_oldest) if d is not None]
    return Backlog(
        due=int(outbox_due) + int(checkins_due or 0), oldest_due_at=min(dues, default=None)
    )


async def read_backlog(db: Database, at: datetime) -> Backlog:
    """Checks the database answers (SELECT 1) and reads the due backlog, within the timeout."""
    async with asyncio.timeout(DB_TIMEOUT_SECONDS), db.engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
        return await _backlog(conn, at)


async def refresh_gauges(services: Services, ops: Ops) -> None:
    """Fills the gauges read at scrape time; on a database failure they read NaN."""
    at = clock.now()
    ops.last_tick_age.set(ops.tick_age(at))
    try:
        async with asyncio.timeout(DB_TIMEOUT_SECONDS), services.db.engine.connect() as conn:
            backlog = await _backlog(conn, at)
            uncertain = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(OutgoingMessage)
                .where(col(OutgoingMessage.state) == OutboxState.uncertain)
            )
            alerts = await conn.execute(
                sa.select(col(Alert.kind), sa.func.count())
                .where(col(Alert.status) != AlertStatus.closed)
                .group_by(col(Alert.kind))
            )
            open_alerts = {str(kind): float(count) for kind, count in alerts.all()}
    except Exception as exc:
        # Class only: a database error can carry the values of the statement.
        log.warning("metrics: database read failed: %s", type(exc).__name__)
        ops.database_unknown()
        return
    ops.set_database_gauges(due=backlog.due, uncertain=uncertain or 0, alerts=open_alerts)


async def render_metrics(services: Services, ops: Ops) -> bytes:
    """Returns the registry in Prometheus text format, with fresh database gauges."""
    await refresh_gauges(services, ops)
    return generate_latest(ops.registry)


# ---------------------------------------------------------------- health


def tick_stale_after(services: Services) -> float:
    """Returns how many seconds without a tick mean the dispatcher has stalled."""
    return 3 * services.settings.dispatch_interval_seconds + TICK_SLACK_SECONDS


async def health(services: Services, ops: Ops) -> tuple[int, dict[str, Any]]:
    """Checks the database, the dispatcher's last tick and the due backlog; returns (status, body).

    The body holds counts, ages and reason codes only, never anything about a participant.
    """
    at = clock.now()
    reasons: list[str] = []
    stale_after = tick_stale_after(services)
    # Before the first tick the age runs from start-up, which is the start-up grace.
    tick_age = ops.tick_age(at)
    if tick_age > stale_after:
        reasons.append("dispatcher_stalled")
    body: dict[str, Any] = {
        "database": "ok",
        "last_tick_age_seconds": round(tick_age, 1) if ops.last_tick is not None else None,
        "tick_stale_after_seconds": stale_after,
        "due_backlog": None,
        "oldest_due_age_seconds": None,
    }
    try:
        backlog = await read_backlog(services.db, at)
    except TimeoutError:
        body["database"] = "timeout"
        reasons.append("database_unreachable")
    except Exception as exc:
        log.warning("health: database check failed: %s", type(exc).__name__)
        body["database"] = "error"
        reasons.append("database_unreachable")
    else:
        body["due_backlog"] = backlog.due
        if backlog.oldest_due_at is not None:
            oldest = at - backlog.oldest_due_at
            body["oldest_due_age_seconds"] = round(max(oldest.total_seconds(), 0.0), 1)
            if oldest > STUCK_AFTER:
                reasons.append("backlog_stuck")
    body["status"] = "unhealthy" if reasons else "ok"
    body["reasons"] = reasons
    return (503 if reasons else 200), body


# ---------------------------------------------------------------- HTTP server


class _OpsHandler(tornado.web.RequestHandler):
    """Shared set-up of the ops endpoints."""

    def initialize(self, services: Services, ops: Ops) -> None:
        self.services = services
        self.ops = ops

    def set_default_headers(self) -> None:
        # Probes and scrapers must see the present, never a cached answer.
        self.set_header("Cache-Control", "no-store")


class _HealthHandler(_OpsHandler):
    """GET /healthz."""

    async def get(self) -> None:
        status, body = await health(self.services, self.ops)
        self.set_status(status)
        self.finish(body)


class _MetricsHandler(_OpsHandler):
    """GET /metrics."""

    async def get(self) -> None:
        payload = await render_metrics(self.services, self.ops)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(payload)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Logs failed requests only: a scrape every few seconds would otherwise flood the log."""
    status = handler.get_status()
    level = logging.DEBUG if status < 400 else logging.INFO
    log.log(level, "ops %s %s -> %d", handler.request.method, handler.request.path, status)


@dataclass
class OpsServer:
    """The running health and metrics server."""

    server: tornado.httpserver.HTTPServer
    host: str
    port: int

    async def stop(self) -> None:
        """Stops listening and closes open connections."""
        self.server.stop()
        await self.server.close_all_connections()


async def start_ops_server(services: Services, ops: Ops, *, host: str, port: int) -> OpsServer:
    """Serves GET /healthz and GET /metrics on host:port in the running event loop.

    `port=0` binds any free port (tests; read it back from `OpsServer.port`). Whether the
    server runs at all (HEALTH_PORT=0 turns it off) is the caller's decision. The start-up
    grace of the tick check runs from here until the first tick.
    """
    handler_args = {"services": services, "ops": ops}
    app = tornado.web.Application(
        [
            (r"/healthz", _HealthHandler, handler_args),
            (r"/metrics", _MetricsHandler, handler_args),
        ],
        log_function=_log_request,
    )
    sockets = tornado.netutil.bind_sockets(port, address=host)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    if ops.last_tick is None:
        ops.started_at = clock.now()
    return OpsServer(server=server, host=host, port=sockets[0].getsockname()[1])
