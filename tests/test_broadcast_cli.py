"""`adherence-bot broadcast` and `broadcast status`: queued from a terminal, sent by the bot."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest
from sqlmodel import select

from bot import clock
from bot.cli import main
from bot.config import Settings
from bot.db import Database
from bot.models import AuditEvent, Broadcast, Cohort, Lifecycle, OutgoingMessage, Participant
from tests.conftest import make_harness

FIRST = 7_100_000_000
_T = TypeVar("_T")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A clean environment in an empty folder with a migrated SQLite file; returns its URL."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    for name, value in {
        "DATABASE_URL": url,
        "EMERGENCY_NUMBER": "112",
        "PSEUDONYM_KEY": "test-pseudonym-key",
        "DEFAULT_TIMEZONE": "Europe/London",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["db", "upgrade"]) == 0
    yield url


def _run(coro: Awaitable[_T]) -> _T:
    async def wrapped() -> _T:
        return await coro

    return asyncio.run(wrapped())


async def _add(url: str, cohort: str, chats: list[int]) -> None:
    db = Database(url)
    try:
        async with db.session() as session:
            found = (await session.exec(select(Cohort).where(Cohort.code == cohort))).first()
            if found is None:
                found = Cohort(code=cohort)
                session.add(found)
                await session.flush()
            for chat in chats:
                session.add(
                    Participant(
                        telegram_user_id=chat,
                        chat_id=chat,
                        pseudonym=f"p_{chat}",
                        cohort_id=found.id,
                        status=Lifecycle.active,
                        timezone="Europe/London",
                        onboarded_at=clock.now(),
                    )
                )
    finally:
        await db.dispose()


async def _rows(url: str) -> tuple[list[Broadcast], list[OutgoingMessage], list[AuditEvent]]:
    db = Database(url)
    try:
        async with db.session() as session:
            return (
                list((await session.exec(select(Broadcast))).all()),
                list(
                    (
                        await session.exec(
                            select(OutgoingMessage).where(OutgoingMessage.kind == "broadcast")
                        )
                    ).all()
                ),
                list((await session.exec(select(AuditEvent))).all()),
            )
    finally:
        await db.dispose()


def _message(tmp_path: Path, text: str) -> str:
    path = tmp_path / "message.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_dry_run_prints_count_and_preview_and_queues_nothing(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(_add(env, "site-a", [FIRST, FIRST + 1]))
    text = "News from the study team\nThe clinic is closed on Friday."
    assert main(["broadcast", "--text-file", _message(tmp_path, text), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "It would reach 2 participants now" in out
    assert text in out and "From your study team" in out
    broadcasts, rows, _ = _run(_rows(env))
    assert not broadcasts and not rows


def test_cli_queues_for_one_cohort_and_the_running_bot_sends_it(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(_add(env, "site-a", [FIRST, FIRST + 1]))
    _run(_add(env, "site-b", [FIRST + 2]))
    file = _message(tmp_path, "News from the study team\nThank you all.")
    assert main(["broadcast", "--text-file", file, "--cohort", "site-a"]) == 0
    assert "queued for 2 participants" in capsys.readouterr().out
    [broadcast], rows, audits = _run(_rows(env))
    assert {r.chat_id for r in rows} == {FIRST, FIRST + 1}
    [audit] = [a for a in audits if a.action == "broadcast_queued"]
    assert audit.actor == "cli" and "cohort=site-a" in (audit.detail or "")

    async def send() -> list[str]:
        h = await make_harness(env)
        try:
            await h.tick()
            return h.texts(FIRST) + h.texts(FIRST + 1) + h.texts(FIRST + 2)
        finally:
            await h.app.shutdown()
            await h.db.dispose()

    got = _run(send())
    assert len(got) == 2 and all(x.startswith("News from the study team") for x in got)
    assert main(["broadcast", "status"]) == 0
    out = capsys.readouterr().out
    assert f"#{broadcast.id} done by cli" in out and "Delivered 2" in out


def test_cli_refuses_advice_with_the_sentence_and_queues_nothing(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(_add(env, "site-a", [FIRST]))
    file = _message(tmp_path, "Holiday news\nYou can stop your tablets for a week.")
    assert main(["broadcast", "--text-file", file]) == 1
    assert '"You can stop your tablets for a week"' in capsys.readouterr().err
    broadcasts, rows, _ = _run(_rows(env))
    assert not broadcasts and not rows


def test_cli_local_time_inside_quiet_hours_waits_for_her_morning(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(_add(env, "site-a", [FIRST]))
    file = _message(tmp_path, "News from the study team\nHello.")
    assert main(["broadcast", "--text-file", file, "--local", "23:00"]) == 0
    _, [row], _ = _run(_rows(env))
    assert row.not_before == datetime(2026, 1, 13, 8, 0, tzinfo=row.not_before.tzinfo)
    assert main(["broadcast", "--text-file", file, "--at", "2026-01-01T10:00+00:00"]) == 2
    assert "already passed" in capsys.readouterr().err
