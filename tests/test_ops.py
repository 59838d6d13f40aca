"""Health and metrics: /healthz says whether the bot is working, /metrics what it has done."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from bot import clock
from bot import ops as ops_module
from bot.awaiting import AwaitKind
from bot.config import Settings
from bot.db import Database
from bot.models import (
    Alert,
    AlertStatus,
    CheckIn,
    CheckInStatus,
    OutboxState,
    OutgoingMessage,
    Participant,
)
from bot.ops import Ops, OpsServer, start_ops_server
from bot.scheduling import new_checkin
from bot.services import Services
from tests.conftest import PATIENT, make_settings
from tests.factories import make_active_participant

TIMEOUT = httpx.Timeout(5.0)


@dataclass
class Probe:
    """A real database and a running ops server on a free port, with a client to ask it."""

    db: Database
    services: Services
    ops: Ops
    server: OpsServer
    client: httpx.AsyncClient

    async def get(self, path: str) -> httpx.Response:
        """Fetches one path from the ops server."""
        return await self.client.get(f"http://127.0.0.1:{self.server.port}{path}")

    async def metric(self, sample: str) -> float:
        """Returns the value of one sample line (name with labels) from /metrics."""
        text = (await self.get("/metrics")).text
        match = re.search(rf"^{re.escape(sample)} (\S+)$", text, flags=re.M)
        assert match, f"{sample} not in /metrics"
        return float(match.group(1))


@pytest.fixture
async def probe(tmp_path: Path) -> AsyncIterator[Probe]:
    """A fresh database, fresh counters and a started ops server."""
    settings = make_settings(f"sqlite:///{tmp_path / 'ops.db'}", dispatch_interval_seconds=10)
    db = Database(settings.database_url)
    await db.create_all()
    services = Services()
    services.configure(settings, db)
    ops = Ops()
    server = await start_ops_server(services, ops, host="127.0.0.1", port=0)
    # trust_env=False: a proxy set in the environment must not intercept 127.0.0.1.
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        yield Probe(db=db, services=services, ops=ops, server=server, client=client)
    await server.stop()
    await db.dispose()


async def add_due_rows(db: Database) -> Participant:
    """Adds two due outbox rows, one due check-in and rows that are not due; returns her."""
    participant = await make_active_participant(db)
    assert participant.id is not None and participant.chat_id is not None
    at = clock.now()
    async with db.session() as session:
        for not_before, state in [
            (at - timedelta(minutes=2), OutboxState.queued),  # due
            (at, OutboxState.queued),  # due (exactly now)
            (at + timedelta(minutes=5), OutboxState.queued),  # later
            (at - timedelta(hours=1), OutboxState.sent),  # done
            (at - timedelta(hours=1), OutboxState.uncertain),  # done, outcome unknown
        ]:
            session.add(
                OutgoingMessage(
                    kind="checkin",
                    chat_id=participant.chat_id,
                    participant_id=participant.id,
                    state=state,
                    not_before=not_before,
                )
            )
        session.add(checkin_due(participant, at - timedelta(minutes=1)))
        session.add(checkin_due(participant, at + timedelta(hours=3)))  # not yet due
        queued = checkin_due(participant, at - timedelta(minutes=3))
        queued.queued_at = at - timedelta(minutes=3)  # its outbox row is counted instead
        session.add(queued)
        for kind, status in [
            ("red_flag", AlertStatus.open),
            ("red_flag", AlertStatus.acknowledged),
            ("stop_intent", AlertStatus.open),
            ("therapy_change", AlertStatus.closed),
        ]:
            session.add(Alert(participant_id=participant.id, kind=kind, status=status))
    return participant


def checkin_due(participant: Participant, due_at: datetime) -> CheckIn:
    """Builds a scheduled check-in (no schedule, so no slot clash) due at `due_at`."""
    assert participant.id is not None
    checkin = new_checkin(
        participant_id=participant.id, schedule_id=None, due_at=due_at, window_hours=6
    )
    assert checkin.status == CheckInStatus.scheduled
    return checkin


async def test_healthy_bot_answers_200_with_its_backlog(probe: Probe) -> None:
    await add_due_rows(probe.db)
    probe.ops.mark_tick(clock.now() - timedelta(seconds=5))
    response = await probe.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body == {
        "status": "ok",
        "reasons": [],
        "database": "ok",
        "last_tick_age_seconds": 5.0,
        "tick_stale_after_seconds": 60.0,
        "due_backlog": 3,
        "oldest_due_age_seconds": 120.0,
    }


async def test_health_holds_no_patient_data(probe: Probe) -> None:
    await add_due_rows(probe.db)
    text = (await probe.get("/healthz")).text + (await probe.get("/metrics")).text
    assert str(PATIENT) not in text
    assert "pseudonym" not in text.lower()


async def test_no_tick_within_start_up_grace_is_healthy(probe: Probe) -> None:
    clock.advance(timedelta(seconds=59))
    response = await probe.get("/healthz")
    assert response.status_code == 200
    assert response.json()["last_tick_age_seconds"] is None


async def test_no_tick_after_start_up_grace_is_unhealthy(probe: Probe) -> None:
    clock.advance(timedelta(seconds=61))
    response = await probe.get("/healthz")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["dispatcher_stalled"]


async def test_stalled_dispatcher_answers_503(probe: Probe) -> None:
    probe.ops.mark_tick(clock.now())
    clock.advance(timedelta(seconds=3 * 10 + 30 + 1))
    response = await probe.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["reasons"] == ["dispatcher_stalled"]
    assert body["last_tick_age_seconds"] == 61.0


async def test_row_due_for_over_ten_minutes_answers_503(probe: Probe) -> None:
    participant = await make_active_participant(probe.db)
    assert participant.chat_id is not None
    async with probe.db.session() as session:
        session.add(
            OutgoingMessage(
                kind="reminder",
                chat_id=participant.chat_id,
                not_before=clock.now() - timedelta(minutes=11),
            )
        )
    probe.ops.mark_tick(clock.now())
    response = await probe.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["reasons"] == ["backlog_stuck"]
    assert (body["due_backlog"], body["oldest_due_age_seconds"]) == (1, 660.0)


async def test_checkin_held_for_reconsent_is_counted_but_not_stuck(probe: Probe) -> None:
    participant = await make_active_participant(probe.db)
    async with probe.db.session() as session:
        participant.awaiting = str(AwaitKind.reconsent)
        session.add(participant)
        session.add(checkin_due(participant, clock.now() - timedelta(hours=2)))
    probe.ops.mark_tick(clock.now())
    response = await probe.get("/healthz")
    assert response.status_code == 200
    assert (response.json()["due_backlog"], response.json()["oldest_due_age_seconds"]) == (1, None)


async def test_unreachable_database_answers_503(probe: Probe, tmp_path: Path) -> None:
    probe.ops.mark_tick(clock.now())
    # A directory cannot be opened as a SQLite file.
    unreachable = Database(f"sqlite:///{tmp_path}")
    probe.services.configure(probe.services.settings, unreachable)
    try:
        response = await probe.get("/healthz")
        assert response.status_code == 503
        body = response.json()
        assert body["reasons"] == ["database_unreachable"]
        assert (body["database"], body["due_backlog"]) == ("error", None)
        # Metrics still answer: the counters are in memory; the database gauges read NaN.
        metrics = await probe.get("/metrics")
        assert metrics.status_code == 200
        assert "adherence_due_backlog NaN" in metrics.text
    finally:
        await unreachable.dispose()


class HangingEngine:
    """An engine whose connections never open, like a database behind a dropped network."""

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        """Waits forever for a connection."""
        await asyncio.Event().wait()
        yield


async def test_hanging_database_answers_503_within_the_timeout(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops_module, "DB_TIMEOUT_SECONDS", 0.05)
    monkeypatch.setattr(probe.db, "engine", HangingEngine())
    probe.ops.mark_tick(clock.now())
    response = await probe.get("/healthz")
    assert response.status_code == 503
    assert (response.json()["database"], response.json()["reasons"]) == (
        "timeout",
        ["database_unreachable"],
    )


async def test_metrics_lists_every_metric_in_prometheus_format(probe: Probe) -> None:
    response = await probe.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    for name in [
        "adherence_sends_total",
        "adherence_telegram_429_total",
        "adherence_reply_calls_total",
        "adherence_updates_total",
        "adherence_malformed_updates_total",
        "adherence_update_seconds",
        "adherence_due_backlog",
        "adherence_uncertain_rows",
        "adherence_open_alerts",
        "adherence_last_tick_age_seconds",
    ]:
        assert f"# TYPE {name} " in response.text, name
    # Closed label sets start at zero, so a rate works from the first scrape.
    assert await probe.metric('adherence_reply_calls_total{outcome="given_up"}') == 0


async def test_counters_move_when_the_bot_records_events(probe: Probe) -> None:
    ops = probe.ops
    ops.record_send("checkin", "sent")
    ops.record_send("checkin", "sent")
    ops.record_send("reminder", "blocked")
    ops.record_send("reminder", "no-such-outcome")
    ops.record_429()
    ops.record_reply("delivered")
    ops.record_malformed()
    ops.observe_update(0.02, "handled")
    ops.observe_update(3.0, "error")
    assert await probe.metric('adherence_sends_total{kind="checkin",outcome="sent"}') == 2
    assert await probe.metric('adherence_sends_total{kind="reminder",outcome="blocked"}') == 1
    assert await probe.metric('adherence_sends_total{kind="reminder",outcome="other"}') == 1
    assert await probe.metric("adherence_telegram_429_total") == 1
    assert await probe.metric('adherence_reply_calls_total{outcome="delivered"}') == 1
    assert await probe.metric("adherence_malformed_updates_total") == 1
    assert await probe.metric('adherence_updates_total{result="handled"}') == 1
    assert await probe.metric('adherence_updates_total{result="error"}') == 1
    assert await probe.metric("adherence_update_seconds_count") == 2
    assert await probe.metric('adherence_update_seconds_bucket{le="0.025"}') == 1
    assert await probe.metric('adherence_update_seconds_bucket{le="5.0"}') == 2


async def test_database_gauges_count_due_uncertain_and_open_alerts(probe: Probe) -> None:
    await add_due_rows(probe.db)
    probe.ops.mark_tick(clock.now() - timedelta(seconds=7))
    assert await probe.metric("adherence_due_backlog") == 3
    assert await probe.metric("adherence_uncertain_rows") == 1
    assert await probe.metric('adherence_open_alerts{kind="red_flag"}') == 2
    assert await probe.metric('adherence_open_alerts{kind="stop_intent"}') == 1
    assert 'kind="therapy_change"' not in (await probe.get("/metrics")).text
    assert await probe.metric("adherence_last_tick_age_seconds") == 7


async def test_each_ops_has_its_own_counters() -> None:
    first, second = Ops(), Ops()
    first.record_429()
    assert first.registry.get_sample_value("adherence_telegram_429_total") == 1
    assert second.registry.get_sample_value("adherence_telegram_429_total") == 0


async def test_stopped_server_refuses_connections(probe: Probe) -> None:
    await probe.server.stop()
    with pytest.raises(httpx.ConnectError):
        await probe.get("/healthz")


def test_health_server_settings_default_to_localhost_8090() -> None:
    settings = make_settings("sqlite:///:memory:")
    assert (settings.health_listen, settings.health_port) == ("127.0.0.1", 8090)


def test_health_server_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEALTH_LISTEN", "0.0.0.0")
    monkeypatch.setenv("HEALTH_PORT", "0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.health_listen, settings.health_port) == ("0.0.0.0", 0)


@pytest.mark.parametrize("port", [-1, 65536])
def test_health_port_outside_the_tcp_range_is_refused(port: int) -> None:
    with pytest.raises(ValidationError, match="health_port"):
        make_settings("sqlite:///:memory:", health_port=port)


def test_every_send_outcome_has_its_own_metric_label() -> None:
    """A new sender outcome must not vanish into "other" on the dashboard."""
    from bot.ops import SEND_OUTCOMES
    from bot.sender import Outcome

    assert {outcome.value for outcome in Outcome} <= set(SEND_OUTCOMES)
