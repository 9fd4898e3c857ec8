"""Reconcile one violation: run each of its policy's actions whose state is behind."""

from __future__ import annotations

import logging

from app.actions import REGISTRY as ACTIONS
from app.actions import ActionContext, Outcome, ViolationView
from app.config import PolicyConfig
from app.db.models import ActionLog, Installation, Repository, Violation
from app.github.errors import RateLimited, describe_error
from app.policies import REGISTRY as POLICIES
from app.services.config import config_for
from app.services.context import Services

log = logging.getLogger(__name__)


class ActionFailed(Exception):
    """An action failed; later actions of the policy wait (e.g. no archive before the issue)."""


CREATE_ISSUE = "create-issue"
# reconciled[CREATE_ISSUE] once the issue was closed because the action left the policy.
WITHDRAWN = "withdrawn"


def _issue_withdrawn(v: Violation, pc: PolicyConfig | None) -> bool:
    """create-issue left the policy's actions while its issue is still open."""
    return (pc is not None and CREATE_ISSUE not in pc.actions and v.issue_number is not None
            and v.reconciled.get(CREATE_ISSUE) not in (None, "resolved", WITHDRAWN))


def pending_actions(v: Violation, pc: PolicyConfig | None) -> list[str]:
    """The actions whose last reconciled state is behind the violation's, in order."""
    actions = pc.actions if pc is not None else ((CREATE_ISSUE,) if v.issue_number else ())
    names = [a for a in actions if a in ACTIONS and v.reconciled.get(a) != v.state]
    if _issue_withdrawn(v, pc):
        names.append(CREATE_ISSUE)
    return [n for n in ACTIONS if n in names]


def _policy_config(v: Violation, cfg_policies: dict[str, PolicyConfig]) -> PolicyConfig | None:
    pc = cfg_policies.get(v.policy)
    if pc is not None or not v.issue_number:
        return pc
    # The policy left the config: its issue is still closed properly.
    return PolicyConfig.model_validate(
        {"name": v.policy, "type": v.policy_type, "action": ["create-issue"]})


async def reconcile_violation(svc: Services, installation_id: int, violation_id: int) -> int:
    """Returns how many actions ran. Raises ActionFailed after logging a failure."""
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
    gh = svc.github.installation(installation_id)
    bot_login = await svc.github.bot_login()
    policy = POLICIES.get(v.policy_type)
    ran = 0
    for name in pending_actions(v, pc):
        action = ACTIONS[name]
        withdrawn = name == CREATE_ISSUE and _issue_withdrawn(v, pc)
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
                else None),
            policy=pc,
        )
        try:
            if read_only is not None and name != "log-only":
                what = f"issue #{v.issue_number} left as it is" if v.issue_number else \
                    "nothing done"
                outcome = Outcome("skipped", f"{what}: {read_only}")
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
            if outcome.status != "failed":
                done = {**row.reconciled, name: WITHDRAWN if withdrawn else row.state}
                if name == CREATE_ISSUE and row.state == "open" and not withdrawn:
                    done.pop("closed-by", None)
                row.reconciled = done
            v = row
        ran += 1
        if outcome.status == "failed":
            raise ActionFailed(f"{name}: {outcome.detail}")
    return ran
