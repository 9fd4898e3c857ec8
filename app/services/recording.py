"""Recording what a scan found: results diffed against the stored violations (opened,
still open, exempt, resolved), the repository's row brought up to date, and the
violations whose actions are behind returned for reconciliation. Used by scanning; one
transaction per repository, or per batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import String, cast, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import OrgConfig, PolicyConfig
from app.config.scope import EXEMPT
from app.db.models import Repository, Violation, utcnow
from app.notify.outbox import record_events
from app.policies import Result
from app.policies.base import inline_code
from app.services.context import Services
from app.services.judging import Judgement, exempt_reason, needs_of
from app.services.reconcile import HELD, RESPECTED, pending_actions, release_holds
from app.services.reminders import OVERRIDES_PATH, parse_overrides
from app.services.scan_requests import request_reconcile
from app.services.snapshot import Fetched
from app.services.snapshot_cache import cache_of
from app.services.store import count_scan, ensure_installation, upsert_repository


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


async def mark_in_scan(db: AsyncSession, repo_ids: Sequence[int], scan_id: int) -> None:
    if repo_ids:
        await db.execute(update(Repository).where(Repository.id.in_(list(repo_ids)))
                         .values(last_full_scan_id=scan_id))


async def reconcile_recorded(svc: Services, installation_id: int, cfg: OrgConfig,
                              repo_ids: Sequence[int]) -> None:
    by_name = {pc.name: pc for pc in cfg.policies}
    async with svc.db() as db:
        behind = [v.id for v in await db.scalars(select(Violation).where(
            Violation.repository_id.in_(list(repo_ids))))
            if needs_reconcile(v, by_name.get(v.policy), cfg)]
    for vid in behind:
        await request_reconcile(svc, installation_id, vid)


async def record_batch(svc: Services, installation_id: int, scan_id: int, cfg: OrgConfig,
                        fetched: dict[int, Fetched], results: dict[int, Judgement],
                        failed: dict[int, str], out: BatchOutcome) -> list[int]:
    """Record a batch in one transaction, with its count in the scan."""
    now = utcnow()
    by_name = {pc.name: pc for pc in cfg.policies}
    needs = needs_of(cfg)
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
                o, r = apply_results(db, installation_id, repo.id, cfg, results[rid],
                                     stored[repo.id], now, repository=repo.full_name)
                opened, resolved = opened + o, resolved + r
                repo.last_scanned_at, repo.last_scan_status, repo.last_scan_error = now, "ok", None
                repo.snapshot_cache = cache_of(got, needs, repo.snapshot_cache)
                released += await note_seen(db, installation_id, repo, got, cfg,
                                        stored[repo.id].values(), results[rid].notes)
            elif got.meta.get("empty"):
                record_empty(repo, now)
        for rid, reason in failed.items():
            row = rows.get(rid)
            if row is not None:
                set_errored(row, reason, now)
        await db.flush()
        await mark_in_scan(db, ids, scan_id)
        await count_scan(db, scan_id, done=len(fetched), opened=opened, resolved=resolved)
        out.done += len(fetched)
        out.opened += opened
        out.resolved += resolved
        return [v.id for rid in fetched for v in stored[rid].values()
                if needs_reconcile(v, by_name.get(v.policy), cfg)] + released


# ----------------------------------------------------------------------------- recording
def needs_reconcile(v: Violation, pc: PolicyConfig | None, cfg: OrgConfig) -> bool:
    # Actions that parse but are not implemented yet never catch up; they are not pending.
    return bool(pending_actions(v, pc, cfg))


def apply_results(db: AsyncSession, installation_id: int, repo_id: int, cfg: OrgConfig,
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


async def record_repo(svc: Services, installation_id: int, got: Fetched, cfg: OrgConfig,
                  judged: Judgement, out: RepoScanResult) -> list[int]:
    """Diff results against stored violations; returns the violations to reconcile."""
    now = utcnow()
    by_name = {pc.name: pc for pc in cfg.policies}
    async with svc.db() as db, db.begin():
        await ensure_installation(db, installation_id)
        repo = await upsert_repository(db, installation_id, got.meta)
        repo.last_scanned_at, repo.last_scan_status, repo.last_scan_error = now, "ok", None
        repo.snapshot_cache = cache_of(got, needs_of(cfg), repo.snapshot_cache)
        stored = {v.policy: v for v in await db.scalars(
            select(Violation).where(Violation.repository_id == repo.id))}
        out.opened, out.resolved = apply_results(db, installation_id, repo.id, cfg, judged,
                                                 stored, now, repository=repo.full_name)
        released = await note_seen(db, installation_id, repo, got, cfg, stored.values(),
                               judged.notes)
        await db.flush()
        return [v.id for v in stored.values()
                if needs_reconcile(v, by_name.get(v.policy), cfg)] + released


async def note_seen(db: AsyncSession, installation_id: int, repo: Repository, got: Fetched,
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


def set_errored(repo: Repository, reason: str, now: datetime) -> None:
    repo.last_scanned_at, repo.last_scan_status = now, "errored"
    repo.last_scan_error = reason[:2000]


EMPTY_REASON = "the repository is empty (no commit yet); it is evaluated after its first push"


def record_empty(repo: Repository, now: datetime) -> None:
    """Scanned, and not evaluated: nothing is filed or archived until the first push."""
    repo.empty = True
    repo.last_scanned_at, repo.last_scan_status, repo.last_scan_error = now, "ok", None
    repo.snapshot_cache = None


async def record_repo_error(svc: Services, repo_id: int, reason: str) -> None:
    async with svc.db() as db, db.begin():
        repo = await db.get(Repository, repo_id)
        if repo is not None:
            set_errored(repo, reason, utcnow())
