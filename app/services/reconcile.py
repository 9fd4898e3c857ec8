"""Reconcile one violation: run each of its policy's actions whose state is behind."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import date
from typing import Any

from app.actions import REGISTRY as ACTIONS
from app.actions import ActionContext, Outcome, ViolationView
from app.config import OrgConfig, PolicyConfig
from app.db.models import ActionLog, Installation, Repository, Violation
from app.github.errors import RateLimited, describe_error
from app.policies import REGISTRY as POLICIES
from app.services import archiving
from app.services.config import config_for
from app.services.context import Services
from app.services.issue_index import RedisIssueIndex
from app.services.links import repo_page_url
from app.services.queue import exclusive

log = logging.getLogger(__name__)


class ActionFailed(Exception):
    """An action failed; later actions of the policy wait (e.g. no archive before the issue)."""


CREATE_ISSUE = "create-issue"
FIX = "fix"
# reconciled[CREATE_ISSUE] once the issue was closed because the action left the policy.
WITHDRAWN = "withdrawn"


def _issue_withdrawn(v: Violation, pc: PolicyConfig | None, dry_run: bool = False) -> bool:
    """create-issue left the policy's actions while its issue is still open."""
    return (pc is not None and CREATE_ISSUE not in pc.actions and v.issue_number is not None
            and archiving.action_progress(v.reconciled, CREATE_ISSUE, dry_run)
            not in (None, "resolved", WITHDRAWN))


def dry_run_of(cfg: OrgConfig | None, pc: PolicyConfig | None) -> bool:
    """Whether the policy only says what it would do (`dry_run`, `enforcement: dry-run`)."""
    return cfg is not None and pc is not None and cfg.effective(pc).dry_run


# reconciled[HELD][action]: a failure that retrying cannot fix while nothing changes (e.g.
# issues disabled): {"state", "policy", "target", "repo"}. The action, and the actions after
# it, wait until the violation's state, the policy's config or its issue repository
# changes, or the repository `repo` is seen with issues enabled (release_holds).
HELD = "held"
# reconciled[FILING]: create-issue is filing an issue in a central repository (see there).
FILING = "filing"
# reconciled[RESPECTED]: a person closed the open violation's issue and the policy has
# `respect_manual_close`: create-issue leaves it closed until the violation resolves.
RESPECTED = "closed-respected"


def policy_key(pc: PolicyConfig | None) -> str:
    """A digest of the policy's config: a held action is tried again when it changes."""
    return "" if pc is None else hashlib.sha256(pc.model_dump_json().encode()).hexdigest()[:16]


def issue_repo_of(cfg: OrgConfig | None, pc: PolicyConfig | None) -> str | None:
    """The name (within the org) of the repository the policy's issues go to, or None."""
    if cfg is None or pc is None or pc not in cfg.policies:
        return None
    return cfg.effective(pc).issue_repo


def _same_repo(a: str | None, b: str | None) -> bool:
    """Repository names compared without their owner (an org may be renamed)."""
    return (a or "").rsplit("/", 1)[-1].lower() == (b or "").rsplit("/", 1)[-1].lower()


def _issue_misplaced(v: Violation, pc: PolicyConfig | None, cfg: OrgConfig | None) -> bool:
    """An open issue that is not where the config now files the policy's issues."""
    return (cfg is not None and pc is not None and v.state == "open"
            and CREATE_ISSUE in pc.actions and v.issue_number is not None
            and not _same_repo(v.issue_repository, issue_repo_of(cfg, pc)))


def _held(v: Violation, name: str, pc: PolicyConfig | None, cfg: OrgConfig | None) -> bool:
    entry = (v.reconciled.get(HELD) or {}).get(name)
    if not isinstance(entry, dict) or entry.get("state") != v.state \
            or entry.get("policy") != policy_key(pc):
        return False
    return cfg is None or _same_repo(entry.get("target"), issue_repo_of(cfg, pc))


def pending_actions(v: Violation, pc: PolicyConfig | None,
                    cfg: OrgConfig | None = None, *, on: date | None = None) -> list[str]:
    """The actions whose last reconciled state is behind the violation's, in order. With
    `cfg`, an open issue whose issue repository changed is behind too. A held action and
    the actions after it are not pending (they wait for a change); after a held action
    that is not `blocking` (fix), the later ones are. In dry-run (per `cfg`)
    actions keep their own progress, so enforcing later still does everything; archive-repo
    waits for its date `on` or after (app/services/archiving.py)."""
    actions = pc.actions if pc is not None else ((CREATE_ISSUE,) if v.issue_number else ())
    dry_run = dry_run_of(cfg, pc)
    on = on or archiving.today()
    names = [a for a in actions if a in ACTIONS and (
        archiving.archive_pending(v, dry_run, on) if a == archiving.ARCHIVE
        else archiving.action_progress(v.reconciled, a, dry_run) != v.state)]
    if _issue_withdrawn(v, pc, dry_run) or _issue_misplaced(v, pc, cfg):
        names.append(CREATE_ISSUE)
    if v.state == "open" and isinstance(v.reconciled.get(RESPECTED), dict):
        names = [n for n in names if n != CREATE_ISSUE]
    pending: list[str] = []
    for name in ACTIONS:
        if name in names:
            if _held(v, name, pc, cfg):
                if blocking(name):
                    break
                continue  # e.g. a refused fix: the later actions go ahead
            pending.append(name)
    return pending


def blocking(name: str) -> bool:
    """Whether the action's failure makes the policy's later actions wait (`blocking`
    False on the action: they go ahead, e.g. a fix GitHub refused)."""
    return bool(getattr(ACTIONS.get(name), "blocking", True))


def release_holds(violations: Iterable[Violation], repo_full_name: str) -> list[int]:
    """Lift the holds that wait for `repo_full_name` (seen with issues enabled); returns
    the ids of the violations changed (to reconcile)."""
    changed = []
    for v in violations:
        held = v.reconciled.get(HELD)
        if not isinstance(held, dict):
            continue
        kept = {n: e for n, e in held.items()
                if not (isinstance(e, dict) and str(e.get("repo", "")).lower()
                        == repo_full_name.lower())}
        if len(kept) != len(held):
            v.reconciled = {**v.reconciled, HELD: kept}
            changed.append(v.id)
    return changed


def _policy_config(v: Violation, cfg_policies: dict[str, PolicyConfig]) -> PolicyConfig | None:
    pc = cfg_policies.get(v.policy)
    if pc is not None or not v.issue_number:
        return pc
    # The policy left the config: its issue is still closed properly.
    return PolicyConfig.model_validate(
        {"name": v.policy, "type": v.policy_type, "action": ["create-issue"]})


async def reconcile_violation(svc: Services, installation_id: int, violation_id: int,
                              *, only: str | None = None) -> int:
    """Returns how many actions ran. Raises ActionFailed after logging a failure. `only`:
    run just that action now, whether the policy lists it or not and even if held (a
    maintainer's one-shot fix, app/services/fixes.py); dry-run still writes nothing."""
    async with svc.db() as db:
        v = await db.get(Violation, violation_id)
        inst = await db.get(Installation, installation_id)
        if v is None or inst is None or not inst.active:
            return 0
        repo = await db.get(Repository, v.repository_id)
        if repo is None:
            return 0
        cfg = config_for(inst)
        pc = _policy_config(v, {p.name: p for p in cfg.policies} if cfg else {})
        if pc is None:
            return 0
        full_name = repo.full_name
        # GitHub allows no writes to an archived repository, and none at all to one the
        # installation lost: say so in the action log instead of failing for ever.
        read_only = ("the repository is archived, and GitHub allows no writes to archived "
                     "repositories" if repo.archived else
                     "the App no longer has access to the repository" if not repo.present
                     else None)
        target = issue_repo_of(cfg, pc)
        issue_repo = f"{inst.account_login}/{target}" if target else None
        # An issue in a central issue repository can still be written to.
        elsewhere = v.issue_repository or (issue_repo if v.issue_number is None else None)
        issue_writable = elsewhere is not None and not _same_repo(elsewhere, full_name)
    # Dry-run is decided here, for every action: nothing is written to GitHub, and the
    # action log says what would have been done.
    dry_run = dry_run_of(cfg, pc)
    stored = await archiving.record_plan(svc, violation_id, repo, cfg, pc, dry_run=dry_run)
    if stored is None:
        return 0
    v = stored
    names = pending_actions(v, pc, cfg) if only is None else \
        [only] if only in ACTIONS and v.state == "open" else []
    if not names:
        return 0
    # Filing is bulk work: it gives way to pull-request checks and command replies.
    gh = svc.github.installation(installation_id, bulk=True)
    bot_login = await svc.github.bot_login()
    policy = POLICIES.get(v.policy_type)
    index = RedisIssueIndex(svc.redis, gh, installation_id, bot_login)

    async def checkpoint(values: dict[str, Any]) -> None:
        async with svc.db() as db, db.begin():
            row = await db.get(Violation, violation_id, populate_existing=True)
            if row is None:
                return
            for column, value in values.items():
                if column == "reconciled":
                    merged = {**row.reconciled, **value}
                    row.reconciled = {k: x for k, x in merged.items() if x is not None}
                else:
                    setattr(row, column, value)

    ran = 0
    # A failure of a non-blocking action: raised (for a retry) once the others have run.
    deferred: ActionFailed | None = None
    for name in names:
        action = ACTIONS[name]
        withdrawn = name == CREATE_ISSUE and _issue_withdrawn(v, pc, dry_run)
        state = "resolved" if withdrawn else v.state
        closed_by = v.reconciled.get("closed-by")
        ctx = ActionContext(
            gh=gh, full_name=full_name, html_base=svc.settings.GITHUB_URL, bot_login=bot_login,
            violation=ViolationView(
                id=v.id, policy=v.policy, policy_type=v.policy_type,
                policy_title=policy.title if policy else v.policy_type, state=state,
                message=v.message, issue_number=v.issue_number,
                since=((v.resolved_at if v.state == "resolved" else None)
                       or v.first_seen_at).isoformat(),
                closed_reason=(f"`{CREATE_ISSUE}` was removed from the actions of the policy "
                               f"**{v.policy}**." if withdrawn else v.closed_reason),
                closed_by=closed_by if isinstance(closed_by, dict) and state == "open"
                else None,
                repository_id=v.repository_id, details=dict(v.details or {}),
                issue_repository=v.issue_repository,
                filing=v.reconciled.get(FILING) if isinstance(v.reconciled.get(FILING), dict)
                else None,
                archive_due=v.archive_due, fix_pr_number=v.fix_pr_number),
            policy=pc,
            issue_repo=issue_repo,
            dashboard_url=repo_page_url(svc.settings.PUBLIC_URL, full_name) or "",
            checkpoint=checkpoint,
            issue_index=index,
        )
        try:
            if read_only is not None and name != "log-only" \
                    and not (name == CREATE_ISSUE and issue_writable):
                what = f"issue #{v.issue_number} left as it is" if v.issue_number else \
                    "nothing done"
                outcome = Outcome("skipped", f"{what}: {read_only}")
            elif dry_run and name != "log-only":
                outcome = Outcome("dry-run", _would(action, ctx))
            elif name == FIX:
                # One fix at a time per repository: they share its one fix branch.
                async with exclusive(svc.redis, f"fix:{v.repository_id}"):
                    outcome = await action.reconcile(ctx)
            else:
                outcome = await action.reconcile(ctx)
        except RateLimited:
            raise
        except Exception as exc:
            log.exception("action %s for violation %s failed", name, v.id)
            outcome = Outcome("failed", describe_error(exc)[:2000])
        async with svc.db() as db, db.begin():
            row = await db.get(Violation, violation_id, populate_existing=True)
            if row is None:
                return ran
            db.add(ActionLog(installation_id=installation_id, repository_id=row.repository_id,
                             repository=full_name, violation_id=row.id, policy=row.policy,
                             action=name, status=outcome.status, detail=outcome.detail,
                             url=outcome.url))
            for column, value in outcome.updates.items():
                setattr(row, column, value)
            held = {k: e for k, e in (row.reconciled.get(HELD) or {}).items() if k != name}
            if outcome.status != "failed":
                done = {**row.reconciled, archiving.mode_key(name, dry_run):
                        WITHDRAWN if withdrawn else row.state}
                if not dry_run:  # done for real: what dry-run would have done is moot
                    done.pop(archiving.mode_key(name, True), None)
                if name == CREATE_ISSUE and row.state == "open" and not withdrawn \
                        and not dry_run:
                    done.pop("closed-by", None)
            else:
                done = dict(row.reconciled)
                if not outcome.retry:
                    # Not retried (no job retry, no re-run at each scan) until it can work.
                    held[name] = {"state": row.state, "policy": policy_key(pc),
                                  "target": target, "repo": outcome.held_on,
                                  "reason": outcome.detail[:500]}
            if outcome.status != "failed" or not outcome.retry:
                if name == CREATE_ISSUE and not dry_run:
                    done.pop(FILING, None)  # filed, or refused: nothing is half-filed
                if held:
                    done[HELD] = held
                else:
                    done.pop(HELD, None)
                row.reconciled = done
            v = row
        ran += 1
        if name == archiving.ARCHIVE and outcome.status == "success":
            await archiving.after_archive(svc, installation_id, v.repository_id)
        if outcome.status == "failed":
            if not blocking(name):
                if outcome.retry:
                    deferred = deferred or ActionFailed(f"{name}: {outcome.detail}")
                continue
            if not outcome.retry:
                return ran  # the later actions wait for it (no archive without the issue)
            raise ActionFailed(f"{name}: {outcome.detail}")
    if deferred is not None:
        raise deferred
    return ran


def _would(action: object, ctx: ActionContext) -> str:
    """Dry-run: what the action would do, from the context alone (no request is made)."""
    describe = getattr(action, "describe", None)
    if callable(describe):
        return str(describe(ctx))
    return f"would run {getattr(action, 'name', 'the action')} for the " \
           f"{ctx.violation.state} violation"
