"""enforcement: pull-request checks, archive grace dates, reminders, issue repository,
fixes, notification outbox, filing progress, empty repositories

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 11:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pull_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("head_sha", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("evaluated_key", sa.String(length=64), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("check_runs", sa.JSON(), nullable=False),
        sa.Column("comment_id", sa.BigInteger(), nullable=True),
        sa.Column("comment_digest", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["installation_id"], ["installations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repository_id", "number", name="uq_pull_checks_repo_number"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("policy", sa.String(length=255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["installation_id"], ["installations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_pending", ["installation_id", "channel",
                                                           "sent_at"], unique=False)
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_on_github", sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("empty", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("overrides", sa.JSON(), nullable=True))
    with op.batch_alter_table("violations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("archive_due", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("issue_repository", sa.String(length=255),
                                      nullable=True))
        batch_op.add_column(sa.Column("reminded_at", sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("fix_pr_number", sa.Integer(), nullable=True))
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("filing_total", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("filing_done", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("filing_next_at", sa.DateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_column("filing_next_at")
        batch_op.drop_column("filing_done")
        batch_op.drop_column("filing_total")
    with op.batch_alter_table("violations", schema=None) as batch_op:
        batch_op.drop_column("fix_pr_number")
        batch_op.drop_column("reminded_at")
        batch_op.drop_column("issue_repository")
        batch_op.drop_column("archive_due")
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("overrides")
        batch_op.drop_column("empty")
        batch_op.drop_column("created_on_github")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_pending")
    op.drop_table("notifications")
    op.drop_table("pull_checks")
