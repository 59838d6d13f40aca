"""Research export options and guarantees: ranges, cohorts, zip, refusals, verification,
streaming on PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from bot import clock
from bot.cli import main
from bot.db import Database
from bot.export import writers
from bot.export.rows import Filters, export_pseudonym
from bot.export.run import MANIFEST, ExportOptions, ExportRefused, run_export, verify_export
from bot.models import Answer, CheckIn, CheckInStatus, Cohort, Participant
from tests.conftest import PATIENT, START, Harness, make_settings
from tests.factories import make_active_participant

KEY = "test-pseudonym-key"


async def add_checkin(
    db: Database, participant: Participant, due: datetime, answers: dict[str, str]
) -> int:
    """Stores one completed check-in with its answers (no chat needed for these tests)."""
    async with db.session() as session:
        checkin = CheckIn(
            participant_id=participant.id or 0,
            questionnaire_id="daily_checkin",
            questionnaire_version="1.1",
            due_at=due,
            window_closes_at=due + timedelta(hours=6),
            sent_at=due,
            first_answer_at=due + timedelta(minutes=1),
            status=CheckInStatus.completed,
            message_ids="12,13,!",  # the last reply never reached her
        )
        session.add(checkin)
        await session.flush()
        for code, value in answers.items():
            session.add(
                Answer(
                    checkin_id=checkin.id or 0,
                    item_code=code,
                    value=value,
                    answered_at=due,
                    first_value=value,
                    first_answered_at=due,
                )
            )
        return checkin.id or 0


async def cli(argv: list[str]) -> int:
    """Runs `adherence-bot ...` in a thread (it runs its own event loop)."""
    return await asyncio.to_thread(main, argv)


def rows(path: Path) -> list[dict[str, str]]:
    """Returns a CSV file's rows as dictionaries."""
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def env(harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The CLI pointed at the harness database, in an empty folder (no .env)."""
    from bot.config import Settings

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", harness.settings.database_url)
    monkeypatch.setenv("PSEUDONYM_KEY", KEY)
    return tmp_path


async def test_since_and_until_are_a_half_open_range_on_the_due_time(
    harness: Harness, env: Path
) -> None:
    p = await make_active_participant(harness.db)
    other = await make_active_participant(harness.db, telegram_user_id=PATIENT + 1)
    day = timedelta(days=1)
    first = await add_checkin(harness.db, p, START, {"took_med": "yes"})
    inside = await add_checkin(harness.db, p, START + day, {"took_med": "missed"})
    await add_checkin(harness.db, other, START + 2 * day, {"took_med": "yes"})  # == until
    settings = make_settings(harness.settings.database_url)
    options = ExportOptions(
        out=env / "range",
        filters=Filters(since=START + timedelta(hours=1), until=START + 2 * day),
    )
    result = run_export(settings, options)
    assert result.counts["checkins"] == 1
    [checkin] = rows(env / "range" / "checkins.csv")
    assert int(checkin["checkin_id"]) == inside != first
    assert checkin["reply_undelivered"] == "true"  # the "!" mark, never the raw ids
    assert "12,13" not in (env / "range" / "checkins.csv").read_text()
    [answer] = rows(env / "range" / "answers.csv")
    assert (answer["value"], answer["value_label"]) == ("missed", "No, I missed it")
    # Only people who appear in a filtered file are listed.
    listed = [r["pseudonym"] for r in rows(env / "range" / "participants.csv")]
    assert listed == [export_pseudonym(p.pseudonym, KEY)]


async def test_cohort_filter_keeps_only_that_cohort(harness: Harness, env: Path) -> None:
    a = await make_active_participant(harness.db)
    b = await make_active_participant(harness.db, telegram_user_id=PATIENT + 1)
    async with harness.db.session() as session:
        cohort = Cohort(code="arm_b")
        session.add(cohort)
        await session.flush()
        row = await session.get(Participant, b.id)
        assert row is not None
        row.cohort_id = cohort.id
        session.add(row)
    await add_checkin(harness.db, a, START, {"took_med": "yes"})
    await add_checkin(harness.db, b, START, {"took_med": "yes"})
    assert await cli(["export", "--out", str(env / "b"), "--cohort", "arm_b"]) == 0
    assert [r["pseudonym"] for r in rows(env / "b" / "participants.csv")] == [
        export_pseudonym(b.pseudonym, KEY)
    ]
    assert len(rows(env / "b" / "checkins.csv")) == 1
    assert await cli(["export", "--out", str(env / "x"), "--cohort", "nope"]) == 2


async def test_export_refuses_without_a_real_pseudonym_key(
    harness: Harness, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    for value in ("", "change-me", "changeme"):
        monkeypatch.setenv("PSEUDONYM_KEY", value)
        assert await cli(["export", "--out", str(env / "out")]) == 2
        assert "PSEUDONYM_KEY is not set" in capsys.readouterr().err
    assert not (env / "out").exists()


async def test_zip_export_verifies_and_a_changed_file_is_caught(
    harness: Harness, env: Path, capsys: Any
) -> None:
    p = await make_active_participant(harness.db)
    await add_checkin(harness.db, p, START, {"worst_pain": "4"})
    assert await cli(["export", "--out", str(env / "study"), "--zip", "--format", "jsonl"]) == 0
    archive = env / "study.zip"
    assert archive.is_file() and not (env / "study").exists()
    assert await cli(["verify-export", str(archive)]) == 0
    with zipfile.ZipFile(archive) as z:
        z.extractall(env / "open")
    names = {p.name for p in (env / "open").iterdir()}
    assert {"answers.jsonl", "data_dictionary.csv", "README.md", MANIFEST} <= names
    assert "redcap_dictionary_daily_checkin.csv" in names
    manifest = json.loads((env / "open" / MANIFEST).read_text())
    assert manifest["files"]["answers.jsonl"]["rows"] == 1
    assert manifest["questionnaires"] == {"daily_checkin": "1.1"}
    assert len(manifest["pseudonym"]["key_fingerprint"]) == 16
    assert KEY not in (env / "open" / MANIFEST).read_text()
    line = json.loads((env / "open" / "answers.jsonl").read_text().splitlines()[0])
    assert line["corrections"] == 0 and line["answered_at"].endswith("+00:00")
    # A changed answer file no longer matches its hash.
    (env / "open" / "answers.jsonl").write_text("{}\n")
    capsys.readouterr()
    assert await cli(["verify-export", str(env / "open")]) == 1
    assert "answers.jsonl" in capsys.readouterr().err
    assert not verify_export(env / "open").passed


async def test_parquet_without_pyarrow_says_how_to_install(
    harness: Harness, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(writers, "parquet_available", lambda: False)
    monkeypatch.setattr("bot.export.run.parquet_available", lambda: False)
    assert await cli(["export", "--format", "parquet", "--out", str(env / "pq")]) == 2
    assert "pip install -e '.[parquet]'" in capsys.readouterr().err


async def test_an_existing_folder_is_never_overwritten(harness: Harness, env: Path) -> None:
    (env / "full").mkdir()
    (env / "full" / "keep.txt").write_text("mine")
    settings = make_settings(harness.settings.database_url)
    with pytest.raises(ExportRefused):
        run_export(settings, ExportOptions(out=env / "full"))
    assert (env / "full" / "keep.txt").read_text() == "mine"


def test_redcap_dictionary_has_the_standard_header_and_checkbox_choices() -> None:
    from bot.content import questionnaire
    from bot.export.schema import REDCAP_HEADER, redcap_rows

    assert REDCAP_HEADER[:6] == [
        "Variable / Field Name",
        "Form Name",
        "Section Header",
        "Field Type",
        "Field Label",
        "Choices, Calculations, OR Slider Labels",
    ]
    by_name = {r[0]: r for r in redcap_rows(questionnaire("daily_checkin"))}
    assert by_name["new_symptoms"][3] == "checkbox"
    assert "swelling, A swollen or red joint" in by_name["new_symptoms"][5]
    assert by_name["worst_pain"][7:10] == ["integer", "0", "10"]
    assert by_name["interference"][11] == "[worst_pain] <> '0'"


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture
def cursor_log() -> Iterator[list[tuple[str, str]]]:
    """Records (statement start, cursor class) for every statement any engine runs."""
    seen: list[tuple[str, str]] = []

    def record(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        seen.append((" ".join(statement.split()), type(cursor).__name__))

    event.listen(sa.engine.Engine, "before_cursor_execute", record)
    yield seen
    event.remove(sa.engine.Engine, "before_cursor_execute", record)


async def test_postgres_export_streams_rows_through_server_side_cursors(
    pg_url: str, tmp_path: Path, cursor_log: list[tuple[str, str]]
) -> None:
    db = Database(pg_url)
    await db.create_all()
    try:
        p = await make_active_participant(db)
        for n in range(3):
            await add_checkin(db, p, START + timedelta(days=n), {"took_med": "yes"})
    finally:
        await db.dispose()
    clock.freeze(datetime(2026, 2, 1, tzinfo=UTC))
    result = run_export(make_settings(pg_url), ExportOptions(out=tmp_path / "pg"))
    assert result.counts["answers"] == 3 and result.counts["checkins"] == 3
    # The long file (codes and labels from the lookup tables) and the wide file's stream.
    answer_reads = [cls for sql, cls in cursor_log if "FROM answer JOIN checkin" in sql]
    assert len(answer_reads) == 2 and set(answer_reads) == {"ServerCursor"}
    assert any("export_label" in sql for sql, _ in cursor_log)
    checkin_reads = [
        cls
        for sql, cls in cursor_log
        if sql.startswith("SELECT checkin.participant_id, checkin.id, checkin.origin")
    ]
    assert checkin_reads == ["ServerCursor"]


async def test_sqlite_fast_path_writes_the_same_bytes_as_the_parsed_path(
    harness: Harness, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite times are read as stored text (no parsing); the files must not differ."""
    from bot.export.rows import Source

    p = await make_active_participant(harness.db)
    # Labels and values with commas: SQLite's CSV lines must quote them as csv does.
    first = {"worst_pain": "4", "took_med": "missed"}
    await add_checkin(harness.db, p, START + timedelta(microseconds=5), first)
    await add_checkin(harness.db, p, START + timedelta(days=1), {"new_symptoms": "fever,fall"})
    settings = make_settings(harness.settings.database_url)
    for fmt in ("csv", "jsonl"):
        fast = run_export(settings, ExportOptions(out=env / f"fast-{fmt}", format=fmt))
        with monkeypatch.context() as m:
            m.setattr(Source, "raw_times", property(lambda self: False))
            slow = run_export(settings, ExportOptions(out=env / f"slow-{fmt}", format=fmt))
        assert fast.counts == slow.counts
        for name in fast.files:
            if name != MANIFEST:
                assert (env / f"fast-{fmt}" / name).read_bytes() == (
                    env / f"slow-{fmt}" / name
                ).read_bytes(), name
    answers = rows(env / "fast-csv" / "answers.csv")
    assert answers[0]["answered_at"] == (START + timedelta(microseconds=5)).isoformat()
    assert [a["value_label"] for a in answers] == [
        "",
        "No, I missed it",
        "A fever with a hot or swollen joint; I had a fall",
    ]


async def test_parquet_from_the_sqlite_fast_path_has_the_same_typed_values(
    harness: Harness, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from bot.export.rows import Source

    p = await make_active_participant(harness.db)
    await add_checkin(harness.db, p, START, {"worst_pain": "4", "new_symptoms": "fever,fall"})
    settings = make_settings(harness.settings.database_url)
    fast = run_export(settings, ExportOptions(out=env / "fast", format="parquet"))
    with monkeypatch.context() as m:
        m.setattr(Source, "raw_times", property(lambda self: False))
        run_export(settings, ExportOptions(out=env / "slow", format="parquet"))
    for name in fast.files:
        if name.endswith(".parquet"):
            a = pd.read_parquet(env / "fast" / name)
            b = pd.read_parquet(env / "slow" / name)
            pd.testing.assert_frame_equal(a, b)
    answers = pd.read_parquet(env / "fast" / "answers.parquet")
    assert str(answers.answered_at.dtype) == "datetime64[us, UTC]"
    assert answers.answered_at.iloc[0] == pd.Timestamp(START)


async def test_broadcast_deliveries_carry_state_and_times_never_text_or_chat(
    harness: Harness, env: Path
) -> None:
    from bot.models import Broadcast, BroadcastStatus, OutboxState, OutgoingMessage

    p = await make_active_participant(harness.db)
    async with harness.db.session() as session:
        broadcast = Broadcast(
            created_by="cli",
            text="Clinic closed on Monday",
            text_hash="0" * 64,
            status=BroadcastStatus.done,
        )
        session.add(broadcast)
        await session.flush()
        session.add(
            OutgoingMessage(
                kind="broadcast",
                participant_id=p.id,
                chat_id=PATIENT,
                broadcast_id=broadcast.id,
                payload='{"text": "Clinic closed on Monday"}',
                state=OutboxState.uncertain,
                uncertain=True,
                attempts=1,
                sent_at=START,
            )
        )
    settings = make_settings(harness.settings.database_url)
    run_export(settings, ExportOptions(out=env / "b"))
    [row] = rows(env / "b" / "broadcast_deliveries.csv")
    assert (row["state"], row["uncertain"], row["attempts"]) == ("uncertain", "true", "1")
    raw = (env / "b" / "broadcast_deliveries.csv").read_text()
    assert "Clinic" not in raw and str(PATIENT) not in raw


async def test_alert_actions_carry_the_role_and_time_never_the_staff_code(
    harness: Harness, env: Path
) -> None:
    from bot.models import Alert, AlertAction
    from bot.roles import staff_actor

    p = await make_active_participant(harness.db)
    nurse = 5_100_000_001
    settings = make_settings(harness.settings.database_url, coordinator_ids=[nurse])
    async with harness.db.session() as session:
        alert = Alert(participant_id=p.id or 0, kind="red_flag", detail="src=checkin")
        session.add(alert)
        await session.flush()
        actor = staff_actor(nurse, settings)
        session.add(AlertAction(alert_id=alert.id or 0, actor=actor, action="acknowledge"))
        session.add(AlertAction(alert_id=alert.id or 0, actor="system:deleted", action="closed"))
    run_export(settings, ExportOptions(out=env / "a"))
    actions = rows(env / "a" / "alert_actions.csv")
    assert [(a["action"], a["actor_role"]) for a in actions] == [
        ("acknowledge", "coordinator"),
        ("closed", "system"),
    ]
    raw = (env / "a" / "alert_actions.csv").read_text() + (env / "a" / "alerts.csv").read_text()
    assert actor.split(":")[1] not in raw and "src=checkin" not in raw
