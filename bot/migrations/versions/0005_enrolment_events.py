"""enrolment events (research exports)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 12:00:00.000000
"""

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Applies this revision."""


def downgrade() -> None:
    """Reverts this revision."""
