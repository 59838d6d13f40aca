"""broadcasts

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Applies this revision."""
    op.create_table(
        "broadcast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("creator_user_id", sa.BigInteger(), nullable=True),
        sa.Column("creator_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.String(length=4096), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("audience", sa.String(length=500), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("local_time", sa.String(length=5), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("progress_message_id", sa.BigInteger(), nullable=True),
        sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast")),
    )
    with op.batch_alter_table("broadcast", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_broadcast_status"), ["status"], unique=False)

    with op.batch_alter_table("outgoingmessage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("broadcast_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_outgoingmessage_broadcast_id"), ["broadcast_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_outgoingmessage_broadcast_id_broadcast"),
            "broadcast",
            ["broadcast_id"],
            ["id"],
        )
        batch_op.create_unique_constraint(
            "uq_outgoingmessage_broadcast", ["broadcast_id", "participant_id"]
        )


def downgrade() -> None:
    """Reverts this revision."""
    with op.batch_alter_table("outgoingmessage", schema=None) as batch_op:
        batch_op.drop_constraint("uq_outgoingmessage_broadcast", type_="unique")
        batch_op.drop_constraint(
            batch_op.f("fk_outgoingmessage_broadcast_id_broadcast"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_outgoingmessage_broadcast_id"))
        batch_op.drop_column("broadcast_id")

    with op.batch_alter_table("broadcast", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_broadcast_status"))

    op.drop_table("broadcast")
