"""staff state: the message a coordinator typed, waiting for Send

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Applies this revision."""
    with op.batch_alter_table('staffstate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('draft', sa.String(length=4000), nullable=True))


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table('staffstate', schema=None) as batch_op:
        batch_op.drop_column('draft')
