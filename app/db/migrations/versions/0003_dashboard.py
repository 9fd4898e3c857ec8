"""dashboard: compliance trend, failed jobs, page indexes, longer scan triggers

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compliance_days",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("evaluated", sa.Integer(), nullable=False),
        sa.Column("compliant", sa.Integer(), nullable=False),
        sa.Column("open_violations", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["installation_id"], ["installations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("installation_id", "day", name="uq_compliance_day"),
    )
    op.create_table(
        "failed_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=False),
        sa.Column("function", sa.String(length=64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("retried_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retried_by", sa.String(length=255), nullable=True),
        sa.Column("retry_job_id", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("failed_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_failed_jobs_failed_at", ["failed_at"], unique=False)
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.create_index("ix_repositories_installation_name",
                              ["installation_id", "full_name"], unique=False)
    with op.batch_alter_table("violations", schema=None) as batch_op:
        batch_op.create_index("ix_violations_installation_state",
                              ["installation_id", "state", "policy"], unique=False)
    # The action log page reads newest first (ORDER BY id DESC LIMIT 50): without it every
    # request sorts the installation's whole log (250 ms at 200,000 rows; it is not pruned).
    with op.batch_alter_table("action_log", schema=None) as batch_op:
        batch_op.create_index("ix_action_log_installation_id", ["installation_id", "id"],
                              unique=False)
    # Coalesced triggers ("webhook:push,user:someone,...") outgrew 64 characters.
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.alter_column("trigger", existing_type=sa.String(length=64),
                              type_=sa.String(length=255), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("action_log", schema=None) as batch_op:
        batch_op.drop_index("ix_action_log_installation_id")
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.alter_column("trigger", existing_type=sa.String(length=255),
                              type_=sa.String(length=64), existing_nullable=False)
    with op.batch_alter_table("violations", schema=None) as batch_op:
        batch_op.drop_index("ix_violations_installation_state")
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_index("ix_repositories_installation_name")
    with op.batch_alter_table("failed_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_failed_jobs_failed_at")
    op.drop_table("failed_jobs")
    op.drop_table("compliance_days")
