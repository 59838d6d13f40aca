"""Database migrations (Alembic), driven from code so they work from any working directory."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from bot.db import ensure_sqlite_folder, is_sqlite, sync_url
from bot.paths import migrations_dir

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic (and the PostgreSQL dialect it pulls in) costs about 0.2 s to import: a start-up
# against a database that is already at head reads the revision ids from the files and the
# database with plain SQL, and imports Alembic only when there is something to do.
_REVISION_LINE = re.compile(r"^(revision|down_revision)\b[^=]*=\s*['\"]?([^'\"\s]*)", re.M)


def alembic_config(url: str) -> Config:
    """Returns an Alembic config for the packaged script folder and this database."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # Passed as an attribute, not an ini option: configparser would choke on '%' in passwords.
    cfg.attributes["database_url"] = url
    return cfg


def upgrade_to_head(url: str) -> None:
    """Applies every migration not yet applied to the database at `url`."""
    from alembic import command

    ensure_sqlite_folder(url)
    command.upgrade(alembic_config(url), "head")


def ensure_at_head(url: str) -> str | None:
    """Migrates the database when it is behind; returns the revision it is at afterwards.

    The common case (already at head) costs one SELECT and no Alembic import.
    """
    head = head_from_files()
    if head is not None and _read_version(url) == head:
        return head
    upgrade_to_head(url)
    return current_revision(url)


def head_from_files() -> str | None:
    """Returns the one head revision named in the version files (None when it is not one)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (migrations_dir() / "versions").glob("*.py"):
        found = dict((key, value) for key, value in _REVISION_LINE.findall(path.read_text()))
        if found.get("revision"):
            revisions.add(found["revision"])
        if found.get("down_revision") not in (None, "", "None"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _read_version(url: str) -> str | None:
    """Reads alembic_version with plain SQL; None when the table is missing or not one row."""
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:
        return None
    finally:
        engine.dispose()
    return str(rows[0][0]) if len(rows) == 1 else None


def head_revision() -> str | None:
    """Returns the newest revision in the packaged script folder."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    """Returns the revision the database is at (None for an empty database)."""
    from alembic.migration import MigrationContext

    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def schema_differences(url: str) -> list[Any]:
    """Lists what autogenerate would change to make the database match the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

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
        from alembic import command

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
