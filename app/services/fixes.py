"""Fixes outside the automatic flow: a maintainer's one-shot fix (CLI, dashboard), and
respecting a fix pull request a person closed (app/actions/fix.py makes them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from app.actions.fix import FIX_BRANCH, remedy_for
from app.db.models import ActionLog, Installation, Repository, Violation
from app.services.config import config_for
from app.services.context import Services
from app.services.queue import enqueue_coalesced, exclusive
from app.services.reconcile import (
    FIX,
    HELD,
    ActionFailed,
    issue_repo_of,
    policy_key,
    reconcile_violation,
)
from app.services.scan_requests import reconcile_key, request_reconcile

log = logging.getLogger(__name__)


class FixRefused(Exception):
    """The one-shot fix cannot start (unknown repository or policy, nothing to fix)."""


@dataclass(frozen=True)
class FixReport:
    repository: str
    policy: str
    status: str  # success / failed / skipped / dry-run
    detail: str
    url: str | None = None


async def find_violation(svc: Services, full_name: str, policy: str) -> tuple[int, int]:
    """(installation id, violation id) of the open violation of `policy` in `full_name`."""
    async with svc.db() as db:
        repo = await db.scalar(select(Repository).where(
            func.lower(Repository.full_name) == full_name.lower(),
            Repository.present.is_(True)))
        if repo is None:
            raise FixRefused(f"{full_name} is not a repository the App knows (is it "
                             "installed, and scanned?)")
        inst = await db.get(Installation, repo.installation_id)
        cfg = config_for(inst) if inst is not None else None
        names = [p.name for p in cfg.policies] if cfg is not None else []
        if policy not in names:
            raise FixRefused(f"no policy named {policy!r} in the config of "
                             f"{full_name.partition('/')[0]} (policies: "
                             f"{', '.join(names) or 'none'})")
        v = await db.scalar(select(Violation).where(
            Violation.repository_id == repo.id, Violation.policy == policy,
            Violation.state == "open"))
        if v is None:
            raise FixRefused(f"nothing to fix: {repo.full_name} has no open violation of "
                             f"{policy!r} (as of its last scan)")
        return repo.installation_id, v.id


async def last_fix(svc: Services, violation_id: int, after: int) -> ActionLog | None:
    async with svc.db() as db:
        return await db.scalar(
            select(ActionLog).where(ActionLog.violation_id == violation_id,
                                    ActionLog.action == FIX, ActionLog.id > after)
            .order_by(ActionLog.id.desc()).limit(1))


async def fix_once(svc: Services, installation_id: int, violation_id: int) -> FixReport:
    """Run the fix of one violation now, against GitHub, whether or not the policy lists
    `fix` (a maintainer's one-shot fix); recorded in the action log like any other."""
    async with svc.db() as db:
        before = await db.scalar(select(func.max(ActionLog.id))) or 0
        v = await db.get(Violation, violation_id)
        repo = await db.get(Repository, v.repository_id) if v is not None else None
    if v is None or repo is None:
        raise FixRefused(f"violation {violation_id} no longer exists")
    try:
        # The violation's own reconciliation waits (they share its progress record).
        async with exclusive(svc.redis, reconcile_key(violation_id)):
            await reconcile_violation(svc, installation_id, violation_id, only=FIX)
    except ActionFailed:
        pass  # logged: the report below says why
    entry = await last_fix(svc, violation_id, before)
    if entry is None:
        return FixReport(repo.full_name, v.policy, "skipped",
                         "nothing was done (the violation resolved, or the App cannot "
                         "act on the installation)")
    return FixReport(repo.full_name, v.policy, entry.status, entry.detail, entry.url)


def fixable(policy_type: str) -> bool:
    """Whether the policy type has an automatic fix (a remedy)."""
    return remedy_for(policy_type) is not None


def fix_key(violation_id: int) -> str:
    return f"fix-violation:{violation_id}"


async def request_fix(svc: Services, installation_id: int, violation_id: int,
                      requested_by: str) -> bool:
    """Queue a one-shot fix (the dashboard's "Fix now"); True when a new job was queued."""
    return await enqueue_coalesced(svc.redis, "fix_violation", fix_key(violation_id),
                                   installation_id, violation_id,
                                   note={"trigger": f"user:{requested_by}"}, interactive=True)


async def release_refused(svc: Services, installation_id: int) -> int:
    """The installation accepted new permissions: the fixes GitHub refused (not those a
    person declined by closing their pull request) are tried again. Returns how many."""
    released: list[int] = []
    async with svc.db() as db, db.begin():
        rows = await db.scalars(select(Violation).where(
            Violation.installation_id == installation_id, Violation.state == "open"))
        for v in rows:
            held = v.reconciled.get(HELD)
            entry = held.get(FIX) if isinstance(held, dict) else None
            if isinstance(held, dict) and isinstance(entry, dict) and not entry.get("declined"):
                v.reconciled = {**v.reconciled,
                                HELD: {k: e for k, e in held.items() if k != FIX}}
                released.append(v.id)
    for violation_id in released:
        await request_reconcile(svc, installation_id, violation_id)
    return len(released)


async def pull_closed(svc: Services, installation_id: int, repo_id: int,
                      pr: dict[str, Any], sender: str) -> int:
    """A fix pull request closed without merging: the fixes it carried are held (no new
    pull request for them) until their policy's config changes or they resolve.
    Returns how many violations were held."""
    head = pr.get("head") or {}
    base_repo = (pr.get("base") or {}).get("repo") or {}
    head_repo = head.get("repo") or {}
    if head.get("ref") != FIX_BRANCH or pr.get("merged") \
            or head_repo.get("id") != base_repo.get("id"):
        return 0
    number = int(pr["number"])
    async with svc.db() as db, db.begin():
        inst = await db.get(Installation, installation_id)
        cfg = config_for(inst) if inst is not None else None
        by_name = {p.name: p for p in cfg.policies} if cfg is not None else {}
        rows = list(await db.scalars(select(Violation).where(
            Violation.repository_id == repo_id, Violation.fix_pr_number == number,
            Violation.state == "open")))
        repo = await db.get(Repository, repo_id)
        for v in rows:
            pc = by_name.get(v.policy)
            reason = (f"pull request #{number} was closed by {sender} without merging: no "
                      "new fix pull request until the policy's config changes")
            held = dict(v.reconciled.get(HELD) or {})
            held[FIX] = {"state": "open", "policy": policy_key(pc),
                         "target": issue_repo_of(cfg, pc), "repo": None, "reason": reason,
                         "declined": True}
            # Not done any more: once the hold lifts (a config change), the fix runs again.
            v.reconciled = {**{k: x for k, x in v.reconciled.items() if k != FIX},
                            HELD: held}
            db.add(ActionLog(installation_id=installation_id, repository_id=repo_id,
                             repository=repo.full_name if repo else "", violation_id=v.id,
                             policy=v.policy, action=FIX, status="skipped", detail=reason,
                             url=pr.get("html_url")))
    if rows:
        log.info("fix pull request #%s closed by %s: %d fixes held", number, sender, len(rows))
    return len(rows)
