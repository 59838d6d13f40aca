"""`adherence-bot db backup`: a consistent SQLite copy while the bot writes; pg_dump otherwise."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.db import Database
from bot.models import Cohort

SETTING_NAMES = ["DATABASE_URL", "EMERGENCY_NUMBER", "PSEUDONYM_KEY", "TELEGRAM_BOT_TOKEN"]


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty folder (no .env) whose DATABASE_URL names a SQLite file that does not exist yet."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "live" / "adherence.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    yield path


def _committed_cohorts(path: Path, count: int) -> None:
    """Creates the tables and commits `count` cohorts through the bot's own sessions."""

    async def fill() -> None:
        db = Database(f"sqlite:///{path}")
        try:
            await db.create_all()
            async with db.session() as session:
                session.add_all(Cohort(code=f"site-{n}") for n in range(count))
        finally:
            await db.dispose()

    asyncio.run(fill())


def _cohorts(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM cohort").fetchone()[0])


def test_backup_copies_committed_rows_while_a_write_transaction_is_open(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _committed_cohorts(database, 3)
    # The bot's other worker: in WAL mode (as the bot opens it), with a commit still in the
    # -wal file and a write transaction it has not committed yet.
    writer = sqlite3.connect(database, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("INSERT INTO cohort (code, created_at) VALUES ('site-wal', '2026-01-12')")
        assert Path(f"{database}-wal").stat().st_size > 0
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO cohort (code, created_at) VALUES ('site-open', '2026-01-12')")

        target = tmp_path / "backups" / "2026-01-12" / "adherence.db"
        assert main(["db", "backup", str(target)]) == 0

        writer.execute("COMMIT")
    finally:
        writer.close()
    out = capsys.readouterr().out
    assert str(target) in out
    assert f"{target.stat().st_size:,} bytes" in out
    assert "PSEUDONYM_KEY" in out
    assert _cohorts(target) == 4  # three, and the one still in the -wal file
    assert _cohorts(database) == 5
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["adherence.db"]


def test_backup_refuses_to_overwrite_an_existing_file(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _committed_cohorts(database, 1)
    target = tmp_path / "adherence-backup.db"
    target.write_bytes(b"an older backup")
    assert main(["db", "backup", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert target.read_bytes() == b"an older backup"


def test_backup_of_a_missing_database_creates_nothing(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "backup.db"
    assert main(["db", "backup", str(target)]) == 2
    assert "nothing to back up" in capsys.readouterr().err
    assert not database.exists() and not target.exists()


def test_backup_of_postgres_prints_pg_dump_without_the_password(
    database: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on this port: the command must not try to connect.
    url = "postgresql+psycopg://study:s3cret-pw@127.0.0.1:9/adherence?sslmode=require"
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["db", "backup", "/backups/adherence.dump"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert (
        "pg_dump --format=custom --file=/backups/adherence.dump "
        "'postgresql://study@127.0.0.1:9/adherence?sslmode=require'"
    ) in err
    assert "pg_restore" in err and "PSEUDONYM_KEY" in err
    assert "s3cret-pw" not in err + captured.out
    assert not Path("/backups/adherence.dump").exists()
