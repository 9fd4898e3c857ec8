"""Scanning: snapshot → evaluate → record → enqueue reconciliation of what changed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from app.actions import REGISTRY as ACTIONS
from app.config import OrgConfig, PolicyConfig
from app.db.models import Installation, Repository, Scan, Violation, utcnow
from app.policies import REGISTRY, Needs, Result
from app.services.config import config_for, refresh_config
from app.services.context import Services
from app.services.queue import enqueue_coalesced
from app.services.snapshot import fetch_snapshot
from app.services.store import (
    ensure_installation,
    mark_removed,
    scannable_repositories,
    upsert_repository,
)

log = logging.getLogger(__name__)


def scan_key(installation_id: int, repo_id: int) -> str:
    return f"scan-repo:{installation_id}:{repo_id}"


def reconcile_key(violation_id: int) -> str:
    return f"reconcile:{violation_id}"


async def request_repo_scan(svc: Services, installation_id: int, repo_id: int, *,
                            trigger: str | None = None, scan_id: int | None = None) -> bool:
    note: dict[str, Any] = {"scan": scan_id} if scan_id is not None else {"trigger": trigger}
    # Event-triggered scans are debounced: a burst of pushes joins one queued scan.
    debounce = svc.settings.SCAN_DEBOUNCE_SECONDS if scan_id is None else 0
    return await enqueue_coalesced(svc.redis, "scan_repo", scan_key(installation_id, repo_id),
                                   installation_id, repo_id, note=note,
                                   defer_by=debounce or None)


def full_scan_key(installation_id: int) -> str:
    return f"scan-installation:{installation_id}"


async def request_full_scan(svc: Services, installation_id: int, trigger: str) -> bool:
    """Queue a full scan (config reload, repository sync, fan-out); bursts coalesce."""
    return await enqueue_coalesced(svc.redis, "scan_installation", full_scan_key(installation_id),
                                   installation_id, note={"trigger": trigger})


async def request_reconcile(svc: Services, installation_id: int, violation_id: int) -> bool:
    return await enqueue_coalesced(svc.redis, "reconcile_violation",
                                   reconcile_key(violation_id), installation_id, violation_id)


async def sync_repositories(svc: Services, installation_id: int) -> int:
    """Mirror the installation's repository list; returns how many it has."""
    gh = svc.github.installation(installation_id)
    seen: dict[int, dict[str, Any]] = {}
    async for repo in gh.getiter("/installation/repositories?per_page=100",
                                 iterable_key="repositories"):
        seen[int(repo["id"])] = repo
    async with svc.db() as db, db.begin():
        for data in seen.values():
            await upsert_repository(db, installation_id, data)
        stored = await db.scalars(select(Repository.id).where(
            Repository.installation_id == installation_id, Repository.present.is_(True)))
        await mark_removed(db, [rid for rid in stored if rid not in seen])
    return len(seen)


async def scan_installation(svc: Services, installation_id: int, trigger: str,
                            reload_config: bool = True) -> int | None:
    """Refresh config and repositories, then fan out one scan_repo job per repository."""
    async with svc.db() as db, db.begin():
        inst = await db.get(Installation, installation_id)
        if inst is None or not inst.active:
            return None
        if reload_config or inst.config_status == "unknown":
            await refresh_config(svc.github.installation(installation_id), inst)
    await sync_repositories(svc, installation_id)
    async with svc.db() as db, db.begin():
        targets = await scannable_repositories(db, installation_id)
        scan = Scan(installation_id=installation_id, kind="full", trigger=trigger,
                    total=len(targets))
        if not targets:
            scan.status, scan.finished_at = "ok", utcnow()
        db.add(scan)
        await db.flush()
        scan_id = scan.id
    for repo in targets:
        await request_repo_scan(svc, installation_id, repo.id, scan_id=scan_id)
    log.info("installation %s: full scan %s of %d repositories (%s)",
             installation_id, scan_id, len(targets), trigger)
    return scan_id


@dataclass
class RepoScanResult:
    status: str  # ok / skipped / not-configured
    full_name: str = ""
    opened: int = 0
    resolved: int = 0
    results: dict[str, Result] = field(default_factory=dict)
    reason: str = ""


def _needs(cfg: OrgConfig) -> Needs:
    needs = Needs()
    for pc in cfg.policies:
        needs = needs | REGISTRY[pc.type].needs
    return needs


async def _load(svc: Services, installation_id: int, repo_id: int
                ) -> tuple[Installation | None, Repository | None, OrgConfig | None]:
    async with svc.db() as db, db.begin():
        inst = await db.get(Installation, installation_id)
        repo = await db.get(Repository, repo_id)
        if inst is None or repo is None:
            return inst, repo, None
        if inst.active and inst.config_status == "unknown":
            await refresh_config(svc.github.installation(installation_id), inst)
        return inst, repo, config_for(inst)


async def scan_repository(svc: Services, installation_id: int, repo_id: int) -> RepoScanResult:
    inst, repo, cfg = await _load(svc, installation_id, repo_id)
    if inst is None or repo is None or not inst.active or not repo.present:
        return RepoScanResult("skipped", reason="repository or installation is gone or inactive")
    if cfg is None:
        return RepoScanResult("not-configured", repo.full_name,
                              reason=f"config is {inst.config_status}; nothing is enforced")
    gh = svc.github.installation(installation_id)
    snapshot, meta = await fetch_snapshot(gh, repo.full_name, _needs(cfg))
    if meta.get("archived") or meta.get("fork"):
        async with svc.db() as db, db.begin():
            await upsert_repository(db, installation_id, meta)
        return RepoScanResult("skipped", snapshot.full_name,
                              reason="archived repositories and forks are not scanned")
    results = {pc.name: REGISTRY[pc.type].evaluate(snapshot) for pc in cfg.policies}
    out = RepoScanResult("ok", snapshot.full_name, results=results)
    to_reconcile = await _record(svc, installation_id, meta, cfg, results, out)
    for vid in to_reconcile:
        await request_reconcile(svc, installation_id, vid)
    return out


def _needs_reconcile(v: Violation, pc: PolicyConfig | None) -> bool:
    actions = pc.actions if pc is not None else (("create-issue",) if v.issue_number else ())
    # Actions that parse but are not implemented yet never catch up; don't ask for them.
    return any(v.reconciled.get(a) != v.state for a in actions if a in ACTIONS)


async def _record(svc: Services, installation_id: int, meta: dict[str, Any], cfg: OrgConfig,
                  results: dict[str, Result], out: RepoScanResult) -> list[int]:
    """Diff results against stored violations; returns the violations to reconcile."""
    now = utcnow()
    by_name = {pc.name: pc for pc in cfg.policies}
    async with svc.db() as db, db.begin():
        await ensure_installation(db, installation_id)
        repo = await upsert_repository(db, installation_id, meta)
        repo.last_scanned_at, repo.last_scan_status, repo.last_scan_error = now, "ok", None
        stored = {v.policy: v for v in await db.scalars(
            select(Violation).where(Violation.repository_id == repo.id))}
        for name, result in results.items():
            v = stored.get(name)
            pc = by_name[name]
            if not result.passed:
                if v is None:
                    v = Violation(installation_id=installation_id, repository_id=repo.id,
                                  policy=name, policy_type=pc.type, state="open",
                                  message=result.message, details=result.details,
                                  first_seen_at=now, last_seen_at=now, reconciled={})
                    db.add(v)
                    stored[name] = v
                    out.opened += 1
                elif v.state != "open":
                    v.state, v.resolved_at, v.first_seen_at = "open", None, now
                    out.opened += 1
                v.message, v.details, v.last_seen_at = result.message, result.details, now
                v.policy_type = pc.type
            elif v is not None and v.state == "open":
                v.state, v.resolved_at, v.message = "resolved", now, result.message
                out.resolved += 1
        # A policy removed from the config no longer holds anything open.
        for name, v in stored.items():
            if name not in results and v.state == "open":
                v.state, v.resolved_at = "resolved", now
                v.message = f"The policy '{name}' was removed from the config."
                out.resolved += 1
        await db.flush()
        return [v.id for v in stored.values() if _needs_reconcile(v, by_name.get(v.policy))]


async def record_repo_error(svc: Services, repo_id: int, reason: str) -> None:
    async with svc.db() as db, db.begin():
        repo = await db.get(Repository, repo_id)
        if repo is not None:
            repo.last_scanned_at, repo.last_scan_status = utcnow(), "errored"
            repo.last_scan_error = reason[:2000]
