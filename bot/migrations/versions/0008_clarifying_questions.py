"""clarifying questions (free-text safety)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 12:00:00.000000
"""

from collections.abc import Sequence

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Applies this revision."""


def downgrade() -> None:
    """Reverts this revision."""
