"""Scanning: snapshot → evaluate → record → enqueue reconciliation of what changed.

A full scan refreshes the config and the repository list, then fans out one `scan_batch`
job per BATCH_SIZE repositories: one GraphQL query per batch, REST only for what GraphQL
lacks, one transaction to record the batch. Scans of one repository (webhooks, commands,
repositories a batch could not do) are `scan_repo` jobs; both use the same snapshot layer
and the same recording, and take the same per-repository lock.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import String, cast, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import OrgConfig, PolicyConfig
from app.config.scope import EXEMPT
from app.db.models import Installation, Repository, Scan, Violation, utcnow
from app.github.errors import RateLimited
from app.notify.outbox import record_events
from app.policies import Needs, RepoSnapshot, Result
from app.policies.base import inline_code
from app.services import filing
from app.services.config import CONFIG_PATH, DELETED, config_for, refresh_config
from app.services.context import Services
from app.services.dashboard import record_compliance_day
from app.services.judging import Judgement, exempt_reason, judge, needs_of
from app.services.pull_events import recheck_open_pulls
from app.services.queue import release_many, try_lock_many
from app.services.reconcile import HELD, RESPECTED, pending_actions, release_holds
from app.services.reminders import OVERRIDES_PATH, parse_overrides
from app.services.repositories import keep_org_listing, org_listed, sync_repositories
from app.services.scan_requests import (
    batch_job_id,
    request_reconcile,
    request_repo_scan,
    scan_key,
)
from app.services.snapshot import Fetched, fetch_one, fetch_snapshots
from app.services.snapshot_cache import cache_of, cached_snapshot
from app.services.store import (
    count_scan,
    ensure_installation,
    fork_ids_held,
    scannable_repository_ids,
    upsert_repository,
)
from app.services.withdrawals import CONFIG_DELETED, FORKS_LEFT_OUT, REPO_ARCHIVED, withdraw

log = logging.getLogger(__name__)

# Repositories per scan_batch job (and per GraphQL query).
BATCH_SIZE = 100
async def scan_installation(svc: Services, installation_id: int, trigger: str,
                            reload_config: bool = True, *, scan_id: int | None = None,
                            on_created: Callable[[int], Awaitable[None]] | None = None
                            ) -> int | None:
    """Refresh config and repositories, then fan out one scan_batch job per BATCH_SIZE
    repositories. `scan_id`: a record made for this scan already (by an earlier, interrupted
    try of the same job, or `queued` by the dashboard's Scan Now); `on_created` is told the
    id as soon as it exists. The record exists from the start, so the dashboard shows the
    scan while the config and the repository list are read."""
    async with svc.db() as db, db.begin():
        inst = await db.get(Installation, installation_id)
        if inst is None or not inst.active:
            return None
        scan = await db.get(Scan, scan_id) if scan_id is not None else None
        if scan is not None and scan.status not in ("queued", "running"):
            return scan.id  # that try got as far as the end already
        if scan is None or scan.installation_id != installation_id:
            scan = Scan(installation_id=installation_id, kind="full", trigger=trigger[:255])
            db.add(scan)
        elif scan.status == "queued":
            scan.status, scan.started_at = "running", utcnow()
            scan.trigger = ",".join(sorted({*scan.trigger.split(","), *trigger.split(",")}
                                           - {"unknown"}))[:255] or trigger[:255]
        scan.detail = "reading the config and listing repositories"
        await db.flush()
        scan_id = scan.id
    if on_created is not None:
        await on_created(scan_id)
    await _reload_config(svc, installation_id, only_unknown=not reload_config)
    await sync_repositories(svc, installation_id)
    await _list_org(svc, installation_id)
    async with svc.db() as db, db.begin():
        inst = await db.get(Installation, installation_id)
        cfg = config_for(inst) if inst is not None else None
        forks = cfg is not None and cfg.scans_forks()
        ids = await scannable_repository_ids(db, installation_id, forks=forks)
        left_out = [] if forks or cfg is None else await fork_ids_held(db, installation_id)
        scan = await db.get(Scan, scan_id)
        if scan is None:  # deleted meanwhile (the installation was removed)
            return None
        scan.total = len(ids)
        if scan.detail and scan.detail.startswith("reading the config"):
            scan.detail = None
        if not ids:
            scan.status, scan.finished_at = "ok", utcnow()
            await record_compliance_day(db, installation_id)
    if left_out:
        # No policy takes in forks any more: what they held ends, with the reason.
        await withdraw(svc, installation_id, FORKS_LEFT_OUT, repo_ids=left_out)
    # Fixed job ids: a re-run of this job queues nothing twice, and a batch that ran already
    # and runs again finds its repositories accounted for.
    for index, start in enumerate(range(0, len(ids), BATCH_SIZE)):
        await svc.redis.enqueue_job("scan_batch", installation_id, scan_id,
                                    ids[start:start + BATCH_SIZE],
                                    _job_id=batch_job_id(scan_id, index))
    log.info("installation %s: full scan %s of %d repositories in %d batches (%s)",
             installation_id, scan_id, len(ids), -(-len(ids) // BATCH_SIZE), trigger)
    return scan_id


async def _list_org(svc: Services, installation_id: int) -> None:
    """What the sources take from the organization's repository listing instead of asking
    per repository (the security settings), when an enabled policy reads them."""
    async with svc.db() as db:
        inst = await db.get(Installation, installation_id)
    cfg = config_for(inst) if inst is not None else None
    org = _org(inst) if inst is not None else None
    if cfg is not None and org and "security" in needs_of(cfg).sources:
        await keep_org_listing(svc, installation_id, org)


def stopped_reason(inst: Installation | None) -> str:
    """Why a scan of an installation that is no longer active stopped."""
    if inst is not None and inst.suspended:
        return "stopped: the installation was suspended"
    return "stopped: the App was uninstalled from this account"


@dataclass
class RepoScanResult:
    status: str  # ok / skipped / not-configured / stopped (the installation is inactive)
    full_name: str = ""
    opened: int = 0
    resolved: int = 0
    results: dict[str, Result] = field(default_factory=dict)
    reason: str = ""
    judged: Judgement | None = None


@dataclass
class BatchOutcome:
    done: int = 0  # recorded (skipped ones included) and counted in the scan
    handed_off: int = 0  # given to scan_repo jobs, which count them
    waiting: list[int] = field(default_factory=list)  # deferred for the rate limit
    retry_at: float | None = None
    reused: int = 0  # evaluated from the files of the last scan (unchanged since)
    opened: int = 0
    resolved: int = 0


def _needs(cfg: OrgConfig) -> Needs:
    return needs_of(cfg)


def _org(inst: Installation) -> str | None:
    return inst.account_login if inst.account_type == "Organization" else None


def _evaluate(cfg: OrgConfig, snapshot: RepoSnapshot) -> Judgement:
    return judge(cfg, snapshot)


async def _reload_config(svc: Services, installation_id: int, *, only_unknown: bool) -> None:
    """Read the config again (or only when it never was); a config that was deleted ends
    every open violation of the installation, closing the App's issues with the reason.
    A config in force that changed has the open pull requests checked again."""
    async with svc.db() as db, db.begin():
        inst = await db.get(Installation, installation_id)
        if inst is None or not inst.active or (only_unknown and inst.config_status != "unknown"):
            return
        before = inst.config_sha
        status = await refresh_config(svc.github.installation(installation_id), inst,
                                      svc.settings)
        org, changed = inst.account_login, inst.config_sha != before
    if status == DELETED:
        await withdraw(svc, installation_id, CONFIG_DELETED.format(path=CONFIG_PATH, org=org))
    if changed:
        await recheck_open_pulls(svc, installation_id, "config changed")


async def _load(svc: Services, installation_id: int, repo_id: int
                ) -> tuple[Installation | None, Repository | None, OrgConfig | None]:
    await _reload_config(svc, installation_id, only_unknown=True)
    async with svc.db() as db:
        inst = await db.get(Installation, installation_id)
        repo = await db.get(Repository, repo_id)
        if inst is None or repo is None:
            return inst, repo, None
        return inst, repo, config_for(inst)


async def scan_repository(svc: Services, installation_id: int, repo_id: int) -> RepoScanResult:
    """One repository, read fresh (webhooks, commands, and what a batch could not do)."""
    inst, repo, cfg = await _load(svc, installation_id, repo_id)
    if inst is not None and repo is not None and not inst.active:
        why = stopped_reason(inst)
        await record_repo_error(svc, repo_id, why)
        return RepoScanResult("stopped", repo.full_name, reason=why)
    if inst is None or repo is None or not inst.active or not repo.present:
        return RepoScanResult("skipped", reason="repository or installation is gone or inactive")
    if cfg is None:
        return RepoScanResult("not-configured", repo.full_name,
                              reason=f"config is {inst.config_status}; nothing is enforced")
    gh = svc.github.installation(installation_id)
    got = await fetch_one(gh, repo.id, repo.full_name, _needs(cfg), org=_org(inst),
                          forks=cfg.scans_forks())
    snapshot = got.snapshot
    if snapshot.archived or (snapshot.fork and not cfg.scans_forks()):
        async with svc.db() as db, db.begin():
            await upsert_repository(db, installation_id, got.meta)
        if snapshot.archived:
            await withdraw(svc, installation_id, REPO_ARCHIVED, repo_ids=[repo.id])
        return RepoScanResult("skipped", snapshot.full_name,
                              reason="archived repositories and forks are not scanned")
    if got.meta.get("empty"):
        async with svc.db() as db, db.begin():
            _record_empty(await upsert_repository(db, installation_id, got.meta), utcnow())
        return RepoScanResult("skipped", snapshot.full_name, reason=EMPTY_REASON)
    judged = _evaluate(cfg, snapshot)
    out = RepoScanResult("ok", snapshot.full_name, results=judged.results, judged=judged)
    to_reconcile = await _record(svc, installation_id, got, cfg, judged, out)
    for vid in to_reconcile:
        await request_reconcile(svc, installation_id, vid)
    return out


# ----------------------------------------------------------------------------- batches
async def _mark(db: AsyncSession, repo_ids: Sequence[int], scan_id: int) -> None:
    if repo_ids:
        await db.execute(update(Repository).where(Repository.id.in_(list(repo_ids)))
                         .values(last_full_scan_id=scan_id))


async def scan_batch(svc: Services, installation_id: int, scan_id: int,
                     repo_ids: Sequence[int], *, token: str) -> BatchOutcome:
    """Scan a batch of a full scan. Safe to run again (arq re-runs a batch whose worker
    died): repositories this scan already accounted for are skipped, and locks still held
    under `token` (the job id) by an earlier try are taken back.

    Per repository, exactly one of: recorded and counted here; handed to a scan_repo job
    that counts it (it errored, or its lock is busy with a scan_repo of its own); or left
    waiting for the rate limit (`outcome.waiting`, for the caller to defer).
    """
    out = BatchOutcome()
    async with svc.db() as db, db.begin():
        inst = await db.get(Installation, installation_id)
        rows = list(await db.scalars(select(Repository).where(Repository.id.in_(repo_ids))
                                     .order_by(Repository.full_name)))
        cfg = config_for(inst) if inst is not None and inst.active else None
        org = _org(inst) if inst is not None else None
    pending = [r for r in rows if r.last_full_scan_id != scan_id]
    if cfg is not None and len(pending) < len(rows):
        # A re-run: an earlier try recorded these and may have died before it queued their
        # reconciliation (the issues would then wait for the next full scan).
        await _reconcile_recorded(svc, installation_id, cfg,
                                  [r.id for r in rows if r.last_full_scan_id == scan_id])
    if inst is None or not inst.active:
        # Suspended or uninstalled mid scan: the scan ends errored and says why, rather
        # than finishing as if it had looked at these repositories.
        why = stopped_reason(inst)
        async with svc.db() as db, db.begin():
            await _mark(db, [r.id for r in pending], scan_id)
            scan = await db.get(Scan, scan_id)
            if scan is not None:
                scan.detail = why
            await count_scan(db, scan_id, errored=len(pending))
        out.done = len(pending)
        return out
    forks = cfg is not None and cfg.scans_forks()
    skipped = [r for r in pending if cfg is None or not r.present or r.archived
               or (r.fork and not forks)
               or r.installation_id != installation_id]
    candidates = [r for r in pending if r not in skipped]
    keys = [scan_key(installation_id, r.id) for r in candidates]
    ours = await try_lock_many(svc.redis, keys, token)
    mine = [r for r, ok in zip(candidates, ours, strict=True) if ok]
    busy = [r for r, ok in zip(candidates, ours, strict=True) if not ok]
    held = [k for k, ok in zip(keys, ours, strict=True) if ok]
    to_reconcile: list[int] = []
    try:
        # A repository another job is scanning right now goes to a scan_repo job (queued
        # before it is marked, so it is never lost); it counts the repository when done.
        for r in busy:
            await request_repo_scan(svc, installation_id, r.id, scan_id=scan_id)
        if skipped or busy:
            async with svc.db() as db, db.begin():
                await _mark(db, [r.id for r in skipped + busy], scan_id)
                await count_scan(db, scan_id, done=len(skipped))
        out.done, out.handed_off = len(skipped), len(busy)
        if not mine or cfg is None:
            return out
        needs = _needs(cfg)
        reuse = {r.id: c for r in mine if (c := cached_snapshot(r, needs)) is not None}
        out.reused = len(reuse)
        gh = svc.github.installation(installation_id)
        try:
            got = await fetch_snapshots(gh, [(r.id, r.full_name) for r in mine], needs,
                                        reuse=reuse, org=org, forks=forks,
                                        listed=await org_listed(svc, [r.id for r in mine])
                                        if "security" in needs.sources else None)
        except RateLimited as exc:
            out.waiting, out.retry_at = [r.id for r in mine], exc.until
            return out
        fetched: dict[int, Fetched] = {}
        failed: dict[int, str] = {}
        for rid, item in got.items():
            if isinstance(item, Fetched):
                fetched[rid] = item
            elif item.retry_at is not None:
                out.waiting.append(rid)
                out.retry_at = max(out.retry_at or 0.0, item.retry_at)
            else:
                failed[rid] = item.reason
        results: dict[int, Judgement] = {}
        for rid, item in fetched.items():
            if item.snapshot.archived or (item.snapshot.fork and not forks) \
                    or item.meta.get("empty"):
                continue
            try:
                results[rid] = _evaluate(cfg, item.snapshot)
            except Exception as exc:  # a policy bug fails this repository, not the batch
                log.exception("evaluating repository %s failed", rid)
                failed[rid] = f"{type(exc).__name__}: {exc}"
        for rid in failed:
            fetched.pop(rid, None)
            await request_repo_scan(svc, installation_id, rid, scan_id=scan_id)
        to_reconcile = await _record_batch(svc, installation_id, scan_id, cfg, fetched,
                                           results, failed, out)
        out.handed_off += len(failed)
    finally:
        await release_many(svc.redis, held, token)
    await filing.planned(svc, scan_id, to_reconcile)
    for vid in to_reconcile:
        await request_reconcile(svc, installation_id, vid)
    return out


async def _reconcile_recorded(svc: Services, installation_id: int, cfg: OrgConfig,
                              repo_ids: Sequence[int]) -> None:
    by_name = {pc.name: pc for pc in cfg.policies}
    async with svc.db() as db:
        behind = [v.id for v in await db.scalars(select(Violation).where(
            Violation.repository_id.in_(list(repo_ids))))
            if _needs_reconcile(v, by_name.get(v.policy), cfg)]
    for vid in behind:
        await request_reconcile(svc, installation_id, vid)


async def _record_batch(svc: Services, installation_id: int, scan_id: int, cfg: OrgConfig,
                        fetched: dict[int, Fetched], results: dict[int, Judgement],
                        failed: dict[int, str], out: BatchOutcome) -> list[int]:
    """Record a batch in one transaction, with its count in the scan."""
    now = utcnow()
    by_name = {pc.name: pc for pc in cfg.policies}
    needs = _needs(cfg)
    ids = list(fetched) + list(failed)
    if not ids:
        return []
    async with svc.db() as db, db.begin():
        await ensure_installation(db, installation_id)
        rows = {r.id: r for r in await db.scalars(select(Repository)
                                                    .where(Repository.id.in_(ids)))}
        stored: dict[int, dict[str, Violation]] = defaultdict(dict)
        for v in await db.scalars(select(Violation).where(Violation.repository_id.in_(ids))):
            stored[v.repository_id][v.policy] = v
        opened = resolved = 0
        released: list[int] = []
        for rid, got in fetched.items():
            repo = await upsert_repository(db, installation_id, got.meta, flush=False)
            if rid in results:
                o, r = _apply(db, installation_id, repo.id, cfg, results[rid], stored[repo.id],
                              now, repository=repo.full_name)
                opened, resolved = opened + o, resolved + r
                repo.last_scanned_at, repo.last_scan_status, repo.last_scan_error = now, "ok", None
                repo.snapshot_cache = cache_of(got, needs, repo.snapshot_cache)
                released += await _seen(db, installation_id, repo, got, cfg,
                                        stored[repo.id].values(), results[rid].notes)
            elif got.meta.get("empty"):
                _record_empty(repo, now)
        for rid, reason in failed.items():
            row = rows.get(rid)
            if row is not None:
                _set_errored(row, reason, now)
        await db.flush()
        await _mark(db, ids, scan_id)
        await count_scan(db, scan_id, done=len(fetched), opened=opened, resolved=resolved)
        out.done += len(fetched)
        out.opened += opened
        out.resolved += resolved
        return [v.id for rid in fetched for v in stored[rid].values()
                if _needs_reconcile(v, by_name.get(v.policy), cfg)] + released


async def hand_off_batch(svc: Services, installation_id: int, scan_id: int,
                         repo_ids: Sequence[int]) -> int:
    """A batch that keeps failing as a whole: every repository it has not accounted for
    gets a scan_repo job of its own (which retries, and counts it in the scan)."""
    async with svc.db() as db:
        todo = list(await db.scalars(select(Repository.id).where(
            Repository.id.in_(repo_ids),
            (Repository.last_full_scan_id.is_(None))
            | (Repository.last_full_scan_id != scan_id))))
    for rid in todo:
        await request_repo_scan(svc, installation_id, rid, scan_id=scan_id)
    async with svc.db() as db, db.begin():
        await _mark(db, todo, scan_id)
    return len(todo)


# ----------------------------------------------------------------------------- recording
def _needs_reconcile(v: Violation, pc: PolicyConfig | None, cfg: OrgConfig) -> bool:
    # Actions that parse but are not implemented yet never catch up; they are not pending.
    return bool(pending_actions(v, pc, cfg))


def _apply(db: AsyncSession, installation_id: int, repo_id: int, cfg: OrgConfig,
           judged: Judgement, stored: dict[str, Violation], now: datetime,
           *, repository: str) -> tuple[int, int]:
    """Diff results against the repository's stored violations (updated in place, new ones
    added to `stored`); returns how many were opened and resolved. The `notify:` outbox
    gets the openings and resolutions in the same transaction."""
    by_name = {pc.name: pc for pc in cfg.policies}
    was_open = {name for name, v in stored.items() if v.state == "open"}
    opened = resolved = 0
    for name, result in judged.results.items():
        v = stored.get(name)
        pc = by_name[name]
        if result.unknown:
            continue  # not judged (GitHub would not give the data): left as it was
        exemption = judged.exempt.get(name)
        if exemption is not None:
            # Failing, and let off: visible as exempt, never as compliant; no action runs.
            details = {**result.details, "exemption": exemption}
            if v is None:
                # Never open: no action has anything to undo (nor to look for).
                v = Violation(installation_id=installation_id, repository_id=repo_id,
                              policy=name, policy_type=pc.type, state=EXEMPT,
                              first_seen_at=now, resolved_at=now,
                              reconciled={a: EXEMPT for a in pc.actions})
                db.add(v)
                stored[name] = v
            elif v.state != EXEMPT:
                if v.state == "open":
                    resolved += 1
                v.state, v.resolved_at = EXEMPT, now
            v.message, v.details, v.last_seen_at = result.message, details, now
            v.closed_reason = exempt_reason(name, exemption)
            v.policy_type = pc.type
        elif not result.passed:
            if v is None:
                v = Violation(installation_id=installation_id, repository_id=repo_id,
                              policy=name, policy_type=pc.type, state="open",
                              message=result.message, details=result.details,
                              first_seen_at=now, last_seen_at=now, reconciled={})
                db.add(v)
                stored[name] = v
                opened += 1
            elif v.state != "open":
                # Resolved, or exempt until an exemption that has now expired.
                v.state, v.resolved_at, v.first_seen_at = "open", None, now
                v.closed_reason = None
                v.reconciled = {k: x for k, x in v.reconciled.items() if k != RESPECTED}
                v.archive_due = None  # a new grace period, announced anew
                opened += 1
            v.message, v.details, v.last_seen_at = result.message, result.details, now
            v.policy_type = pc.type
        elif v is not None and v.state in ("open", EXEMPT):
            resolved += v.state == "open"
            v.state, v.resolved_at, v.message = "resolved", now, result.message
            v.closed_reason = None
    # A policy removed from the config, or whose targeting no longer takes in the
    # repository, no longer holds anything open.
    for name, v in stored.items():
        if name not in judged.results and v.state in ("open", EXEMPT):
            resolved += v.state == "open"
            v.state, v.resolved_at = "resolved", now
            why = judged.out_of_scope.get(name)
            v.message = v.closed_reason = (
                f"The policy **{name}** no longer applies to this repository: "
                f"{inline_code(why)}." if why is not None else
                f"The policy **{name}** was removed from the organization's config.")
    record_events(db, installation_id, cfg, repository, [
        ("opened" if v.state == "open" else "resolved", name, v.message)
        for name, v in stored.items() if (name in was_open) != (v.state == "open")])
    return opened, resolved


async def _record(svc: Services, installation_id: int, got: Fetched, cfg: OrgConfig,
                  judged: Judgement, out: RepoScanResult) -> list[int]:
    """Diff results against stored violations; returns the violations to reconcile."""
    now = utcnow()
    by_name = {pc.name: pc for pc in cfg.policies}
    async with svc.db() as db, db.begin():
        await ensure_installation(db, installation_id)
        repo = await upsert_repository(db, installation_id, got.meta)
        repo.last_scanned_at, repo.last_scan_status, repo.last_scan_error = now, "ok", None
        repo.snapshot_cache = cache_of(got, _needs(cfg), repo.snapshot_cache)
        stored = {v.policy: v for v in await db.scalars(
            select(Violation).where(Violation.repository_id == repo.id))}
        out.opened, out.resolved = _apply(db, installation_id, repo.id, cfg, judged, stored,
                                          now, repository=repo.full_name)
        released = await _seen(db, installation_id, repo, got, cfg, stored.values(),
                               judged.notes)
        await db.flush()
        return [v.id for v in stored.values()
                if _needs_reconcile(v, by_name.get(v.policy), cfg)] + released


async def _seen(db: AsyncSession, installation_id: int, repo: Repository, got: Fetched,
                cfg: OrgConfig, own: Iterable[Violation], notes: Sequence[str] = ()
                ) -> list[int]:
    """What the snapshot says beyond the policies: the repository's own settings file (and
    `notes` on its exemptions file, shown with the settings file's), and
    whether it has issues enabled, which lifts the holds of actions that found them
    disabled (its own violations', and, for an issue repository, those of every violation
    filed there). Returns the other repositories' violations to reconcile."""
    repo.overrides = parse_overrides(got.snapshot.files.get(OVERRIDES_PATH), cfg)
    if notes:
        kept = repo.overrides or {}
        repo.overrides = {**kept, "notes": [*kept.get("notes", []), *notes]}
    if not got.meta.get("has_issues"):
        return []
    release_holds(own, repo.full_name)
    name = repo.full_name.rsplit("/", 1)[-1].lower()
    if name not in {r.lower() for r in (cfg.issue_repo, *(p.issue_repo for p in cfg.policies))
                    if r}:
        return []
    held = await db.scalars(select(Violation).where(
        Violation.installation_id == installation_id, Violation.repository_id != repo.id,
        cast(Violation.reconciled, String).like(f'%"{HELD}"%')))
    return release_holds(held, repo.full_name)


async def fail_scan(svc: Services, scan_id: int, reason: str) -> None:
    """A full scan whose job gave up: errored, with the reason (repositories it had handed
    to batches may still be counted in, but it no longer shows as running)."""
    async with svc.db() as db, db.begin():
        scan = await db.get(Scan, scan_id)
        if scan is not None and scan.status in ("queued", "running"):
            scan.status, scan.finished_at = "errored", utcnow()
            scan.detail = reason[:2000]


def _set_errored(repo: Repository, reason: str, now: datetime) -> None:
    repo.last_scanned_at, repo.last_scan_status = now, "errored"
    repo.last_scan_error = reason[:2000]


EMPTY_REASON = "the repository is empty (no commit yet); it is evaluated after its first push"


def _record_empty(repo: Repository, now: datetime) -> None:
    """Scanned, and not evaluated: nothing is filed or archived until the first push."""
    repo.empty = True
    repo.last_scanned_at, repo.last_scan_status, repo.last_scan_error = now, "ok", None
    repo.snapshot_cache = None


async def record_repo_error(svc: Services, repo_id: int, reason: str) -> None:
    async with svc.db() as db, db.begin():
        repo = await db.get(Repository, repo_id)
        if repo is not None:
            _set_errored(repo, reason, utcnow())
