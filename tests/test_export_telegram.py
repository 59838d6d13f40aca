"""/export in Telegram: researchers only, off unless enabled, a warning, a protected zip."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from bot.models import AuditEvent
from bot.roles import staff_actor
from handlers import research
from tests.conftest import PATIENT, Harness, make_harness
from tests.factories import make_active_participant

RESEARCHER = 5_200_000_001
COORDINATOR = 5_200_000_002


async def _harness(tmp_path: Path, *, enabled: bool) -> Harness:
    return await make_harness(
        f"sqlite:///{tmp_path / 'test.db'}",
        researcher_ids=[RESEARCHER],
        coordinator_ids=[COORDINATOR],
        telegram_export_enabled=enabled,
    )


@pytest.fixture
async def on(tmp_path: Path) -> AsyncIterator[Harness]:
    """A bot with /export turned on and one researcher."""
    h = await _harness(tmp_path, enabled=True)
    yield h
    await h.app.shutdown()
    await h.db.dispose()


@pytest.fixture
async def off(tmp_path: Path) -> AsyncIterator[Harness]:
    """A bot with /export turned off (the default)."""
    h = await _harness(tmp_path, enabled=False)
    yield h
    await h.app.shutdown()
    await h.db.dispose()


async def exports(h: Harness) -> list[AuditEvent]:
    """Returns the audit events of exports."""
    async with h.db.session() as session:
        rows = await session.exec(select(AuditEvent).where(AuditEvent.action == "export"))
        return list(rows.all())


async def test_export_is_answered_like_an_unknown_command_for_everyone_else(on: Harness) -> None:
    await make_active_participant(on.db)
    await on.command(PATIENT, "nosuchcommand")
    unknown = on.last(PATIENT).text
    await on.command(PATIENT, "export")
    assert on.last(PATIENT).text == unknown
    await on.command(COORDINATOR, "export")  # the care team is not the research team
    assert "Telegram's servers" not in on.last(COORDINATOR).text
    assert await exports(on) == []


async def test_export_is_off_unless_the_study_turns_it_on(off: Harness) -> None:
    await off.command(RESEARCHER, "export")
    assert "turned off" in off.last(RESEARCHER).text
    assert off.last(RESEARCHER).buttons() == []


async def test_researcher_gets_a_protected_zip_after_the_warning_and_it_is_audited(
    on: Harness,
) -> None:
    await make_active_participant(on.db)
    await on.command(RESEARCHER, "export")
    warning = on.last(RESEARCHER)
    assert "stored on Telegram's servers" in warning.text
    await on.press(RESEARCHER, "Send the export")
    sent = on.last(RESEARCHER)
    assert sent.protect_content and sent.file is not None
    assert (sent.document_name or "").endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(sent.file)) as archive:
        names = set(archive.namelist())
        assert {"participants.csv", "answers.csv", "manifest.json", "README.md"} <= names
        assert str(PATIENT) not in archive.read("participants.csv").decode()
    [audit] = await exports(on)
    assert audit.actor == staff_actor(RESEARCHER, on.settings)
    assert "participants:1" in (audit.detail or "")
    # The warning's buttons are gone: a second press makes nothing.
    assert warning.buttons() == []


async def test_cancel_makes_nothing(on: Harness) -> None:
    await on.command(RESEARCHER, "export")
    await on.press(RESEARCHER, "Cancel")
    assert on.last(RESEARCHER).text == "No export was made."
    assert await exports(on) == []


async def test_an_export_over_50_mb_says_to_use_the_command_line(
    on: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(research, "TELEGRAM_MAX_BYTES", 100)
    await on.command(RESEARCHER, "export")
    await on.press(RESEARCHER, "Send the export")
    last = on.last(RESEARCHER)
    assert "over Telegram's 50 MB limit" in last.text and last.file is None
    assert len(await exports(on)) == 1  # made (and audited), not sent


async def test_a_failed_export_says_so_and_sends_nothing(
    on: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_settings: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(research, "_make_zip", broken)
    await on.command(RESEARCHER, "export")
    await on.press(RESEARCHER, "Send the export")
    last = on.last(RESEARCHER)
    assert "The export failed" in last.text and last.file is None
    assert await exports(on) == []
