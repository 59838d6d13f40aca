"""Where the project's data folders live, found from any working directory."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def content_dir() -> Path:
    """Returns the content folder (questionnaires, messages, pages); ADHERENCE_CONTENT_DIR wins."""
    override = os.environ.get("ADHERENCE_CONTENT_DIR")
    return Path(override) if override else REPO_DIR / "content"


def migrations_dir() -> Path:
    """Returns the Alembic script folder shipped inside the package."""
    return PACKAGE_DIR / "migrations"


def data_dir() -> Path:
    """Returns the folder for the default SQLite file."""
    return REPO_DIR / "data"
