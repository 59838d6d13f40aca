"""Database migrations (Alembic), driven from code so they work from any working directory."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

from bot.db import ensure_sqlite_folder, is_sqlite, sync_url
from bot.paths import migrations_dir


def alembic_config(url: str) -> Config:
    """Returns an Alembic config for the packaged script folder and this database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # Passed as an attribute, not an ini option: configparser would choke on '%' in passwords.
    cfg.attributes["database_url"] = url
    return cfg


def upgrade_to_head(url: str) -> None:
    """Applies every migration not yet applied to the database at `url`."""
    ensure_sqlite_folder(url)
    command.upgrade(alembic_config(url), "head")


def head_revision() -> str | None:
    """Returns the newest revision in the packaged script folder."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    """Returns the revision the database is at (None for an empty database)."""
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def schema_differences(url: str) -> list[Any]:
    """Lists what autogenerate would change to make the database match the models."""
    import bot.models  # noqa: F401  (registers every table)

    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "render_as_batch": is_sqlite(url),
                    "target_metadata": SQLModel.metadata,
                },
            )
            return list(compare_metadata(ctx, SQLModel.metadata))
    finally:
        engine.dispose()


def make_revision(message: str, *, rev_id: str | None = None) -> Path:
    """Writes a new revision with what the models add over head (autogenerate on a scratch db).

    The scratch database is a SQLite file upgraded to head; revisions render in batch mode,
    which PostgreSQL runs as plain ALTERs, so one revision serves both databases.
    """
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'scratch.db'}"
        upgrade_to_head(url)
        cfg = alembic_config(url)
        script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
    scripts = script if isinstance(script, list) else [script]
    if not scripts or scripts[0] is None:
        raise RuntimeError("alembic wrote no revision")
    return Path(scripts[0].path)


def reset_initial_revision() -> Path:
    """Rewrites versions/0001_initial.py from the current models (only before any release)."""
    versions = migrations_dir() / "versions"
    for old in versions.glob("*.py"):
        old.unlink()
    path = make_revision("initial schema", rev_id="0001")
    target = versions / "0001_initial.py"
    path.rename(target)
    return target
