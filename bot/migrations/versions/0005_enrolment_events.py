"""enrolment events (research exports)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Applies this revision."""
    op.create_table(
        "enrolmentevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("cohort_id", sa.Integer(), nullable=True),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohort.id"], name=op.f("fk_enrolmentevent_cohort_id_cohort")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolmentevent")),
    )
    with op.batch_alter_table("enrolmentevent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrolmentevent_event"), ["event"], unique=False)
        batch_op.create_index(batch_op.f("ix_enrolmentevent_person"), ["person"], unique=False)


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("enrolmentevent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrolmentevent_person"))
        batch_op.drop_index(batch_op.f("ix_enrolmentevent_event"))
    op.drop_table("enrolmentevent")
