"""archive-repo's schedule: when a violating repository is archived, and when it never is.

- The grace period starts the day the warning is first published for the violation (its
  first reconciliation with archive-repo among the policy's actions; for a fresh violation,
  the day it was found) and lasts `archive_after_days`: the archive date D is its end, kept
  in `violations.archive_due` and written into the issue.
- Only a violation still open on D archives: a scan must have seen it failing on or after D
  (`last_seen_at`), so a fix pushed the day before, or a webhook that never arrived, is
  never archived on stale data. `sweep` asks for that scan when D comes.
- Never before the announced date: a config change that shortens the grace period keeps D;
  one that lengthens it moves D later (and the issue says so).
- Never younger than the grace period: D is at least `created_on_github` + archive_after_days.
- Never at all: the `.github` repository, an issue repository, `protected_repos` globs, an
  empty repository (a "hold", recorded once in the action log).
- A violation that resolves cancels D; one that fails again gets a new grace period.
- Dry run keeps its own grace start, so switching to `enforce` announces a full grace period
  rather than archiving at once on a date nobody was told.

Progress is kept in `Violation.reconciled`, next to the per-action states: the grace start
per mode and the hold. In dry-run, an action's progress lives under "dry-run:<action>".
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import or_, select

from app.config import OrgConfig, PolicyConfig
from app.db.models import ActionLog, Installation, Repository, Violation, utcnow
from app.services.config import config_for
from app.services.context import Services
from app.services.scan_requests import request_reconcile, request_repo_scan
from app.services.withdrawals import REPO_ARCHIVED, withdraw

log = logging.getLogger(__name__)

ARCHIVE = "archive-repo"
CREATE_ISSUE = "create-issue"
DRY_RUN_PREFIX = "dry-run:"
# Keys of Violation.reconciled besides the actions' own.
GRACE_FROM = "archive-from"  # ISO date the grace period started (per mode)
HOLD = "archive-hold"  # why the repository is never archived (logged when it changes)
# The sweep nudges a due violation (a confirming scan, or its reconciliation) at most once
# in this time; the nightly scan is the backstop.
NUDGE_SECONDS = 20 * 3600


def mode_key(name: str, dry_run: bool) -> str:
    """Where `name`'s progress is kept: dry-run keeps its own."""
    return f"{DRY_RUN_PREFIX}{name}" if dry_run else name


def action_progress(reconciled: Mapping[str, Any], name: str, dry_run: bool) -> Any:
    """What `name` last reconciled. In dry-run, what it last would have done, if anything
    since enforcement last ran (the real progress otherwise)."""
    key = mode_key(name, dry_run)
    if dry_run and key in reconciled:
        return reconciled[key]
    return reconciled.get(name)


def today() -> date:
    return utcnow().date()


def due_now(v: Violation, on: date) -> bool:
    """D has come and a scan saw the violation still failing on or after D."""
    return v.archive_due is not None and v.archive_due <= on \
        and v.last_seen_at.date() >= v.archive_due


def archive_pending(v: Violation, dry_run: bool, on: date) -> bool:
    """Whether archive-repo has work for this violation (pending_actions asks)."""
    done = action_progress(v.reconciled, ARCHIVE, dry_run)
    if v.state != "open":
        # Something was done or announced while open: record that it resolved.
        # (An exempt violation's own state counts as recorded, as "resolved" does.)
        return done not in (None, "resolved", v.state) or v.archive_due is not None
    if done == "open":
        return False
    if v.archive_due is None:
        return HOLD not in v.reconciled  # never scheduled: the reconciler schedules it
    return due_now(v, on)


def protection(cfg: OrgConfig, full_name: str) -> str | None:
    """Why the repository is never archived (OrgConfig.is_protected decides), or None."""
    if not cfg.is_protected(full_name):
        return None
    name = full_name.rsplit("/", 1)[-1].lower()
    if name == ".github":
        return "the organization's `.github` repository"
    if name in {r.lower() for r in (cfg.issue_repo, *(p.issue_repo for p in cfg.policies))
                if r}:
        return "the repository issues are filed in (`issue_repo`)"
    globs = [g for g in cfg.protected_repos if fnmatch.fnmatchcase(name, g.lower())]
    return f"matches `protected_repos` glob `{globs[0]}`" if globs else "listed as protected"


@dataclass(frozen=True)
class ArchivePlan:
    """The schedule a violation should have now."""

    due: date | None = None
    hold: str | None = None  # why never (then due is None)
    start: date | None = None  # the grace period's first day


def _iso_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def plan(v: Violation, repo: Repository, cfg: OrgConfig | None, pc: PolicyConfig | None, *,
         dry_run: bool, on: date) -> ArchivePlan:
    if cfg is None or pc is None or ARCHIVE not in pc.actions or v.state != "open":
        return ArchivePlan()
    reason = protection(cfg, repo.full_name)
    if reason is not None:
        return ArchivePlan(hold=f"protected ({reason})")
    if repo.empty:
        return ArchivePlan(hold="the repository is empty")
    if repo.created_on_github is None:
        return ArchivePlan(hold="its creation date is not known yet (the next scan reads it)")
    days = timedelta(days=cfg.effective(pc).archive_after_days)
    start = max(_iso_date(v.reconciled.get(mode_key(GRACE_FROM, dry_run))) or on,
                v.first_seen_at.date())
    due = max(start, repo.created_on_github.date()) + days
    if v.archive_due is not None and v.archive_due > due:
        due = v.archive_due  # a team trusts the date it was told: never earlier
    return ArchivePlan(due=due, start=start)


def _stale(v: Violation, p: ArchivePlan, dry_run: bool) -> bool:
    start = v.reconciled.get(mode_key(GRACE_FROM, dry_run))
    return (v.archive_due != p.due or v.reconciled.get(HOLD) != p.hold
            or (p.start is not None and start != p.start.isoformat()))


async def record_plan(svc: Services, violation_id: int, repo: Repository,
                      cfg: OrgConfig | None, pc: PolicyConfig | None, *,
                      dry_run: bool) -> Violation | None:
    """Bring the violation's schedule up to date (D, grace start, hold), log what changed,
    and have create-issue refresh the issue when the announced date changed. Returns the
    violation as stored (None when it is gone)."""
    on = today()
    async with svc.db() as db, db.begin():
        v = await db.get(Violation, violation_id, populate_existing=True)
        if v is None:
            return None
        p = plan(v, repo, cfg, pc, dry_run=dry_run, on=on)
        done = dict(v.reconciled)
        notes: list[tuple[str, str]] = []
        if p.start is not None:
            done[mode_key(GRACE_FROM, dry_run)] = p.start.isoformat()
        else:  # resolved, or no longer archived: the next grace period starts afresh
            done.pop(GRACE_FROM, None)
            done.pop(mode_key(GRACE_FROM, True), None)
        if done.get(HOLD) != p.hold:
            if p.hold is not None:
                done[HOLD] = p.hold
                notes.append(("skipped", f"not archived: {p.hold}"))
            else:
                done.pop(HOLD, None)
        old = v.archive_due
        if old != p.due:
            if p.due is not None:
                again = f" (was {old.isoformat()})" if old is not None else ""
                notes.append(("dry-run", f"would archive on {p.due.isoformat()} unless "
                                         f"fixed{again}") if dry_run else
                             ("skipped", f"archive scheduled for {p.due.isoformat()} unless "
                                         f"fixed{again}"))
            elif old is not None and v.state != "open" \
                    and action_progress(done, ARCHIVE, dry_run) != "open":  # (not: it archived)
                notes.append(("skipped", f"not archived: the violation was resolved before "
                                         f"{old.isoformat()}"))
            elif old is not None and p.hold is None:
                notes.append(("skipped", f"archive on {old.isoformat()} cancelled: "
                                         f"`{ARCHIVE}` is no longer an action of the policy"))
            v.archive_due = p.due
            if v.state == "open" and pc is not None and CREATE_ISSUE in pc.actions \
                    and action_progress(done, CREATE_ISSUE, dry_run) == "open":
                # The issue announces the date: create-issue runs again to update it.
                if dry_run:
                    done[mode_key(CREATE_ISSUE, True)] = "stale"
                else:
                    done.pop(CREATE_ISSUE, None)
        if done != v.reconciled:
            v.reconciled = done
        for status, detail in notes:
            db.add(ActionLog(installation_id=v.installation_id, repository_id=v.repository_id,
                             repository=repo.full_name, violation_id=v.id, policy=v.policy,
                             action=ARCHIVE, status=status, detail=detail))
        return v


async def after_archive(svc: Services, installation_id: int, repo_id: int) -> None:
    """The App archived the repository: it is read-only from now on (later actions say so
    instead of failing), and its violations end as when a person archives it."""
    async with svc.db() as db, db.begin():
        repo = await db.get(Repository, repo_id)
        if repo is not None:
            repo.archived = True
    await withdraw(svc, installation_id, REPO_ARCHIVED, repo_ids=[repo_id])


@dataclass
class SweepResult:
    rescheduled: int = 0  # reconciliations queued to update D or a hold
    confirming: int = 0  # scans queued to see whether a due violation is still open
    archiving: int = 0  # reconciliations queued for a confirmed, due violation


async def _nudge(svc: Services, violation_id: int, due: date) -> bool:
    key = f"pe:archive-nudge:{violation_id}:{due.isoformat()}"
    return bool(await svc.redis.set(key, 1, nx=True, ex=NUDGE_SECONDS))


async def sweep(svc: Services) -> SweepResult:
    """Hourly: queue what the archive schedules need. A schedule that is out of date (the
    config's grace period, protected_repos or dry-run changed) gets its reconciliation; a
    violation whose D has come gets a scan of its repository (it archives only if still
    open), or its reconciliation when a scan on or after D already confirmed it."""
    on = today()
    out = SweepResult()
    async with svc.db() as db:
        installations = list(await db.scalars(select(Installation).where(
            Installation.active.is_(True))))
    for inst in installations:
        cfg = config_for(inst)
        if cfg is None:
            continue
        by_name = {p.name: p for p in cfg.policies}
        archiving = [p.name for p in cfg.policies if ARCHIVE in p.actions]
        async with svc.db() as db:
            rows = (await db.execute(
                select(Violation, Repository)
                .join(Repository, Repository.id == Violation.repository_id)
                .where(Violation.installation_id == inst.id, Violation.state == "open",
                       Repository.present.is_(True), Repository.archived.is_(False),
                       or_(Violation.policy.in_(archiving), Violation.archive_due.is_not(None)))
            )).all()
        for v, repo in rows:
            pc = by_name.get(v.policy)
            dry_run = cfg.effective(pc).dry_run if pc is not None else False
            p = plan(v, repo, cfg, pc, dry_run=dry_run, on=on)
            if _stale(v, p, dry_run):
                await request_reconcile(svc, inst.id, v.id)
                out.rescheduled += 1
            elif v.archive_due is not None and v.archive_due <= on \
                    and action_progress(v.reconciled, ARCHIVE, dry_run) != "open" \
                    and await _nudge(svc, v.id, v.archive_due):
                if due_now(v, on):
                    await request_reconcile(svc, inst.id, v.id)
                    out.archiving += 1
                else:
                    await request_repo_scan(svc, inst.id, repo.id, trigger="archive-due")
                    out.confirming += 1
    if out.rescheduled or out.confirming or out.archiving:
        log.info("archive sweep: %d rescheduled, %d confirming scans, %d to archive",
                 out.rescheduled, out.confirming, out.archiving)
    return out
