"""Tables. Everything is scoped by installation (one deployment serves many orgs)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Installation(Base):
    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_login: Mapped[str] = mapped_column(String(255))
    account_type: Mapped[str] = mapped_column(String(32), default="Organization")
    # The account's login before its last rename (installation_target, or the sync).
    renamed_from: Mapped[str | None] = mapped_column(String(255), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    # When GitHub stopped listing the installation (uninstalled while no event reached us).
    gone_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # valid / invalid / missing / unknown (never loaded yet) / unreadable (the last valid
    # config, if any, stays in force; config_error says why it could not be read)
    config_status: Mapped[str] = mapped_column(String(16), default="unknown")
    config_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    config_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The last valid config stays in force when a newer one is broken.
    config_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    config_notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    config_checked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Repository(Base):
    __tablename__ = "repositories"
    __table_args__ = (Index("ix_repositories_installation", "installation_id"),
                      Index("ix_repositories_installation_name", "installation_id", "full_name"))

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    installation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("installations.id", ondelete="CASCADE")
    )
    full_name: Mapped[str] = mapped_column(String(255))
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    fork: Mapped[bool] = mapped_column(Boolean, default=False)
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    # False once the repository is deleted, transferred away or removed from the installation.
    present: Mapped[bool] = mapped_column(Boolean, default=True)
    last_scanned_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # ok / errored
    last_scan_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    last_scan_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The full scan that has accounted for this repository (recorded it or handed it to a
    # job of its own): a re-run of a batch job skips it, so nothing is counted twice.
    last_full_scan_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # GitHub's pushed_at|updated_at as the last repository listing showed them.
    listed_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The files last read: {"version", "default_branch", "files": {path: text | None}}.
    # While listed_version equals its version nothing can have changed, so a full scan
    # re-evaluates these instead of reading the files again.
    snapshot_cache: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    # GitHub's created_at: a repository younger than a policy's archive grace period is
    # never archived.
    created_on_github: Mapped[datetime | None] = mapped_column(nullable=True)
    # No commits yet: not evaluated (nothing filed or archived) until the first push.
    empty: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # The repository's own `.github/policy-enforcer.yaml`, parsed (None: none).
    overrides: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)


class Scan(Base):
    __tablename__ = "scans"
    __table_args__ = (Index("ix_scans_installation", "installation_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("installations.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))  # full / repo
    trigger: Mapped[str] = mapped_column(String(255))  # webhook:push, cron, user:<login>, ...
    # queued (asked for from the dashboard, not started) / running / ok / errored
    status: Mapped[str] = mapped_column(String(16), default="running")
    repository_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    errored: Mapped[int] = mapped_column(Integer, default=0)
    # Repositories whose work is deferred until the rate limit resets.
    waiting: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    violations_open: Mapped[int] = mapped_column(Integer, default=0)
    violations_opened: Mapped[int] = mapped_column(Integer, default=0)
    violations_resolved: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Issues and comments this scan's violations need, and how many are done: filing is
    # paced by GitHub's content limits, so a large first scan files over hours.
    filing_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    filing_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    filing_next_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Violation(Base):
    """One row per (repository, policy name); its state flips between open and resolved."""

    __tablename__ = "violations"
    __table_args__ = (UniqueConstraint("repository_id", "policy", name="uq_violation_repo_policy"),
                      Index("ix_violations_installation_state", "installation_id", "state",
                            "policy"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("installations.id", ondelete="CASCADE")
    )
    repository_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    policy: Mapped[str] = mapped_column(String(255))  # the config's policy name
    policy_type: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # open / resolved / exempt (scope.EXEMPT)
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    issue_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    check_run_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # action name -> the violation state that action last reconciled ("open"/"resolved").
    reconciled: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Why the violation was resolved when the repository did not come to comply (its
    # policy or action was removed, the config deleted, the repository archived or gone):
    # the comment that closes its issue says this instead of "now complies".
    closed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # archive-repo: the day (UTC) the repository is archived if still violating.
    archive_due: Mapped[date | None] = mapped_column(Date, nullable=True)
    # Where the issue lives when it is not the repository itself (a central issue_repo).
    issue_repository: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # When the last reminder comment was posted on the issue.
    reminded_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # fix: the pull request that adds a missing file.
    fix_pr_number: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ActionLog(Base):
    __tablename__ = "action_log"
    __table_args__ = (Index("ix_action_log_installation", "installation_id", "at"),
                      # The action log page: newest first.
                      Index("ix_action_log_installation_id", "installation_id", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[int] = mapped_column(BigInteger)
    repository_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    repository: Mapped[str | None] = mapped_column(String(255), nullable=True)
    violation_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    policy: Mapped[str | None] = mapped_column(String(255), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # success / failed / skipped
    detail: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_received", "received_at"),)

    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64), nullable=True)
    installation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(255), default="queued")


class RedeliveryRequest(Base):
    """A redelivery asked of GitHub for a delivery that never reached us: at most one per
    delivery GUID. Pruned with the delivery records."""

    __tablename__ = "redelivery_requests"
    __table_args__ = (Index("ix_redelivery_requests_at", "requested_at"),)

    guid: Mapped[str] = mapped_column(String(64), primary_key=True)
    # GitHub's numeric id of the attempt that was redelivered.
    hook_delivery_id: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(64))
    installation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # requested / refused (GitHub answered 4xx, e.g. past its 3-day window)
    status: Mapped[str] = mapped_column(String(16), default="requested")
    detail: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)


class ComplianceDay(Base):
    """One point of an installation's compliance trend: the figures when its last full scan
    of that (UTC) day finished."""

    __tablename__ = "compliance_days"
    __table_args__ = (UniqueConstraint("installation_id", "day", name="uq_compliance_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("installations.id", ondelete="CASCADE")
    )
    day: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD, UTC
    evaluated: Mapped[int] = mapped_column(Integer, default=0)
    compliant: Mapped[int] = mapped_column(Integer, default=0)
    open_violations: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class FailedJob(Base):
    """A job that failed for good (arq keeps no registry of them); shown by the job monitor
    with its error and a Retry button. Pruned by age and count (tasks' nightly job)."""

    __tablename__ = "failed_jobs"
    __table_args__ = (Index("ix_failed_jobs_failed_at", "failed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(255))
    function: Mapped[str] = mapped_column(String(64))
    # The job's arguments as JSON (bytes are replaced by their length).
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    installation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tries: Mapped[int] = mapped_column(Integer, default=1)
    enqueued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    error: Mapped[str] = mapped_column(Text, default="")
    retried_at: Mapped[datetime | None] = mapped_column(nullable=True)
    retried_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    retry_job_id: Mapped[str | None] = mapped_column(String(255), nullable=True)


class PullCheck(Base):
    """What was last reported on one pull request: its check runs and sticky comment."""

    __tablename__ = "pull_checks"
    __table_args__ = (UniqueConstraint("repository_id", "number",
                                       name="uq_pull_checks_repo_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("installations.id", ondelete="CASCADE")
    )
    repository_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    head_sha: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="open")  # open / closed
    # A digest of everything the last evaluation depended on (head SHA, config, repository
    # settings): equal means nothing changed, so no request is made.
    evaluated_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # check run name -> {"id", "sha", "conclusion"}
    check_runs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    comment_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    comment_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Notification(Base):
    """The outbox of `notify:` channels: one row per violation opened or resolved."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_pending", "installation_id", "channel",
                            "sent_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("installations.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(255))
    event: Mapped[str] = mapped_column(String(16))  # opened / resolved
    repository: Mapped[str] = mapped_column(String(255))
    policy: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
