"""Migrations build the same schema as the models, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

from bot.migrate import current_revision, head_revision, schema_differences, upgrade_to_head


def _tables(url: str) -> set[str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_empty_sqlite_database_upgrades_to_head_matching_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'bot.db'}"  # the folder does not exist yet
    upgrade_to_head(url)
    assert current_revision(url) == head_revision()
    assert set(SQLModel.metadata.tables) <= _tables(url)
    assert schema_differences(url) == []


def test_upgrading_twice_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade_to_head(url)
    upgrade_to_head(url)
    assert current_revision(url) == head_revision()


@pytest.mark.postgres
def test_empty_postgres_database_upgrades_to_head_matching_the_models(pg_url: str) -> None:
    upgrade_to_head(pg_url)
    assert current_revision(pg_url) == head_revision()
    assert set(SQLModel.metadata.tables) <= _tables(pg_url)
    assert schema_differences(pg_url) == []


def test_migrations_are_found_from_another_working_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert current_revision(url) == head_revision()


def test_start_up_at_head_reads_the_revision_without_importing_alembic(tmp_path: Path) -> None:
    """`run` checks a database already at head with one SELECT; Alembic loads only to migrate."""
    url = f"sqlite:///{tmp_path / 'fresh' / 'bot.db'}"
    script = (
        "import sys\n"
        "from bot.migrate import ensure_at_head\n"
        "first = ensure_at_head(sys.argv[1])\n"
        "print(first, 'alembic' in sys.modules)\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script, url], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    head = head_revision()
    assert runs[0] == [str(head), "True"]  # an empty database: migrated through Alembic
    assert runs[1] == [str(head), "False"]  # at head: no Alembic import at all
    assert current_revision(url) == head
