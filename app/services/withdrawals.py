"""Violations that end without the repository coming to comply, so no issue is orphaned.

Their config was deleted, or the repository was archived, removed from the installation,
transferred away or deleted. Each such violation is resolved with `closed_reason`, and its
issue is closed by the reconciler with a comment that gives the reason (or, where GitHub
allows no write, the action log records why it was left).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from app.config.scope import EXEMPT
from app.db.models import Violation, utcnow
from app.services.context import Services
from app.services.notifications import record_withdrawn
from app.services.scan_requests import request_reconcile

CONFIG_DELETED = ("{path} was deleted from {org}/.github, so policy-enforcer no longer "
                  "enforces any policy in this organization.")
REPO_ARCHIVED = "The repository was archived."
FORKS_LEFT_OUT = ("The repository is a fork, and no policy of the organization's config "
                  "takes in forks any more (`fork: true`).")
REPO_REMOVED = "The repository was removed from the App's installation."
REPO_DELETED = "The repository was deleted."
REPO_TRANSFERRED = "The repository was transferred to another account."


async def withdraw(svc: Services, installation_id: int, reason: str, *,
                   repo_ids: Iterable[int] | None = None) -> int:
    """Resolve the open violations of these repositories (all of the installation's when
    None) with `reason`, and queue their reconciliation. Returns how many."""
    ids = None if repo_ids is None else list(repo_ids)
    if ids is not None and not ids:
        return 0
    now = utcnow()
    # Exempt ones too: an exemption is about a repository that is still enforced.
    query = select(Violation).where(Violation.installation_id == installation_id,
                                    Violation.state.in_(("open", EXEMPT)))
    if ids is not None:
        query = query.where(Violation.repository_id.in_(ids))
    async with svc.db() as db, db.begin():
        rows = list(await db.scalars(query))
        was_open = [v for v in rows if v.state == "open"]
        for v in rows:
            v.state, v.resolved_at = "resolved", now
            v.message = v.closed_reason = reason
        await record_withdrawn(db, installation_id, was_open)  # `notify:` channels hear of it
        touched = [v.id for v in rows if v.issue_number is not None or v.reconciled]
    for vid in touched:
        await request_reconcile(svc, installation_id, vid)
    return len(rows)
