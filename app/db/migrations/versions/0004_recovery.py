"""recovery: redelivery requests, renamed and vanished installations, why an issue closed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "redelivery_requests",
        sa.Column("guid", sa.String(length=64), nullable=False),
        sa.Column("hook_delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guid"),
    )
    with op.batch_alter_table("redelivery_requests", schema=None) as batch_op:
        batch_op.create_index("ix_redelivery_requests_at", ["requested_at"], unique=False)
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("renamed_from", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("gone_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("violations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("violations", schema=None) as batch_op:
        batch_op.drop_column("closed_reason")
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.drop_column("gone_at")
        batch_op.drop_column("renamed_from")
    with op.batch_alter_table("redelivery_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_redelivery_requests_at")
    op.drop_table("redelivery_requests")
