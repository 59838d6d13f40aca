"""clarifying questions (free-text safety)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Applies this revision."""
    op.create_table('clarifyingquestion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('question', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('suspected', sa.String(length=32), nullable=False),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('rules_version', sa.String(length=32), nullable=False),
    sa.Column('model_version', sa.String(length=32), nullable=True),
    sa.Column('choice', sa.String(length=8), nullable=True),
    sa.Column('asked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['participant_id'], ['participant.id'], name=op.f('fk_clarifyingquestion_participant_id_participant')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clarifyingquestion'))
    )
    with op.batch_alter_table('clarifyingquestion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clarifyingquestion_participant_id'), ['participant_id'], unique=False)


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table('clarifyingquestion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clarifyingquestion_participant_id'))

    op.drop_table('clarifyingquestion')
