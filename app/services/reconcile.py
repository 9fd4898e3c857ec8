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
    gh = svc.github.installation(installation_id)
    bot_login = await svc.github.bot_login()
    policy = POLICIES.get(v.policy_type)
    ran = 0
    for name, action in ACTIONS.items():
        if name not in pc.actions or v.reconciled.get(name) == v.state:
            continue
        ctx = ActionContext(
            gh=gh, full_name=full_name, html_base=svc.settings.GITHUB_URL, bot_login=bot_login,
            violation=ViolationView(
                id=v.id, policy=v.policy, policy_type=v.policy_type,
                policy_title=policy.title if policy else v.policy_type, state=v.state,
                message=v.message, issue_number=v.issue_number,
                since=((v.resolved_at if v.state == "resolved" else None)
                       or v.first_seen_at).isoformat()),
            policy=pc,
        )
        try:
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
                row.reconciled = {**row.reconciled, name: v.state}
            v = row
        ran += 1
        if outcome.status == "failed":
            raise ActionFailed(f"{name}: {outcome.detail}")
    return ran
