"""Scanning: snapshot → evaluate → record → enqueue reconciliation of what changed.

A full scan refreshes the config and the repository list, then fans out one `scan_batch`
job per BATCH_SIZE repositories: one GraphQL query per batch, REST only for what GraphQL
lacks, one transaction to record the batch. Scans of one repository (webhooks, commands,
repositories a batch could not do) are `scan_repo` jobs; both use the same snapshot layer
and the same recording, and take the same per-repository lock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import select

from app.config import OrgConfig
from app.db.models import Installation, Repository, Scan, utcnow
from app.github.errors import RateLimited
from app.policies import Needs, RepoSnapshot
from app.services import filing
from app.services.config import CONFIG_PATH, DELETED, config_for, refresh_config
from app.services.context import Services
from app.services.dashboard import record_compliance_day
from app.services.judging import Judgement, judge, needs_of
from app.services.pull_events import recheck_open_pulls
from app.services.queue import release_many, try_lock_many
from app.services.recording import (
    EMPTY_REASON,
    BatchOutcome,
    RepoScanResult,
    mark_in_scan,
    reconcile_recorded,
    record_batch,
    record_empty,
    record_repo,
    record_repo_error,
)
from app.services.repositories import keep_org_listing, org_listed, sync_repositories
from app.services.scan_requests import (
    batch_job_id,
    request_reconcile,
    request_repo_scan,
    scan_key,
)
from app.services.snapshot import Fetched, fetch_one, fetch_snapshots
from app.services.snapshot_cache import cached_snapshot
from app.services.store import (
    count_scan,
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
            record_empty(await upsert_repository(db, installation_id, got.meta), utcnow())
        return RepoScanResult("skipped", snapshot.full_name, reason=EMPTY_REASON)
    judged = _evaluate(cfg, snapshot)
    out = RepoScanResult("ok", snapshot.full_name, results=judged.results, judged=judged)
    to_reconcile = await record_repo(svc, installation_id, got, cfg, judged, out)
    for vid in to_reconcile:
        await request_reconcile(svc, installation_id, vid)
    return out


# ----------------------------------------------------------------------------- batches
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
        await reconcile_recorded(svc, installation_id, cfg,
                                  [r.id for r in rows if r.last_full_scan_id == scan_id])
    if inst is None or not inst.active:
        # Suspended or uninstalled mid scan: the scan ends errored and says why, rather
        # than finishing as if it had looked at these repositories.
        why = stopped_reason(inst)
        async with svc.db() as db, db.begin():
            await mark_in_scan(db, [r.id for r in pending], scan_id)
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
                await mark_in_scan(db, [r.id for r in skipped + busy], scan_id)
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
        to_reconcile = await record_batch(svc, installation_id, scan_id, cfg, fetched,
                                           results, failed, out)
        out.handed_off += len(failed)
    finally:
        await release_many(svc.redis, held, token)
    await filing.planned(svc, scan_id, to_reconcile)
    for vid in to_reconcile:
        await request_reconcile(svc, installation_id, vid)
    return out


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
        await mark_in_scan(db, todo, scan_id)
    return len(todo)


async def fail_scan(svc: Services, scan_id: int, reason: str) -> None:
    """A full scan whose job gave up: errored, with the reason (repositories it had handed
    to batches may still be counted in, but it no longer shows as running)."""
    async with svc.db() as db, db.begin():
        scan = await db.get(Scan, scan_id)
        if scan is not None and scan.status in ("queued", "running"):
            scan.status, scan.finished_at = "errored", utcnow()
            scan.detail = reason[:2000]


