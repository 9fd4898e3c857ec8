"""`block-prs` and `comment-on-prs`: a pull request is judged on its head commit and the
result is reported as check runs on that commit and one sticky comment.

One job per pull request (`check_pull`, serialised by a Redis lock per pull request):
1. From the database alone: the head SHA the webhooks recorded, the config's pull-request
   policies and the repository's settings (as the last scan read them). When their digest
   equals the last evaluation's (`pull_checks.evaluated_key`) nothing changed: no request.
2. GET the pull request: closed means recorded and done; a head that moved is used.
3. One GraphQL query reads the files at the head SHA from the base repository (GitHub keeps
   a fork's pull request heads there), so nothing is read from, or run for, the fork.
4. Evaluate (pure), then reconcile: a check run is created or updated only where GitHub's
   differs from the wanted one, the comment only when its text changes.
A merge group (`check_merge_group`) is judged the same way on its head SHA; its state lives
in Redis for a week (merge queue commits live minutes).

Idempotent under retries and concurrency: before creating a check run the App has no record
of, it asks GitHub for one it made on that commit (a crash between the POST and the
database write); the sticky comment is found again by its hidden marker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import gidgethub
from sqlalchemy import select

from app.config import OrgConfig, PolicyConfig
from app.db.models import ActionLog, Installation, PullCheck, Repository
from app.github.paths import repo_path
from app.policies import Needs, RepoSnapshot, Result
from app.services.config import config_for
from app.services.context import Services
from app.services.judging import judge, policy_needs, scanned
from app.services.links import repo_page_url
from app.services.pull_events import MERGE_GROUP_TTL, merge_group_key, pull_key
from app.services.pull_publish import (
    BLOCK,
    CheckTarget,
    digest,
    refused,
    set_check_runs,
    set_comment,
)
from app.services.pull_report import CHECK_NAME, Judged, comment_body, on_head
from app.services.queue import exclusive
from app.services.rest_reads import fetch_org_workflow_permissions, fetch_workflow_permissions
from app.services.snapshot import fetch_one

log = logging.getLogger(__name__)

COMMENT = "comment-on-prs"
# Bump when the reports' wording changes: every pull request is then reported once more.
REPORT_VERSION = 1


@dataclass(frozen=True)
class PullPlan:
    """The config's pull-request policies."""

    policies: tuple[PolicyConfig, ...]  # every policy with a pull-request action
    checks: dict[str, tuple[PolicyConfig, ...]]  # check run name -> its policies
    commenting: tuple[PolicyConfig, ...]  # in the sticky comment
    dry: tuple[tuple[PolicyConfig, str], ...]  # (policy, action) only logged (dry run)
    needs: Needs
    fingerprint: str
    cfg: OrgConfig | None = None


# What a refused check of a pull request most often lacks.
PULL_PERMISSIONS = "permissions `checks: write` and `pull_requests: write`"


def commit_key(repo_id: int, sha: str) -> str:
    """The lock of one commit's check runs."""
    return f"check-runs:{repo_id}:{sha}"


def plan_of(cfg: OrgConfig | None) -> PullPlan:
    policies: list[PolicyConfig] = []
    checks: dict[str, list[PolicyConfig]] = {}
    commenting: list[PolicyConfig] = []
    dry: list[tuple[PolicyConfig, str]] = []
    needs = Needs()
    shape: list[Any] = []
    if cfg is None:
        return PullPlan((), {}, (), (), needs, hashlib.sha256(b"[]").hexdigest(), None)
    for pc in cfg.policies:
        actions = [a for a in (BLOCK, COMMENT) if a in pc.actions]
        if not actions:
            continue
        policies.append(pc)
        needs = needs | policy_needs(cfg, pc)
        dry_run = cfg.effective(pc).dry_run
        name = pc.block_prs_details.status_check_name if pc.block_prs_details else CHECK_NAME
        for action in actions:
            if dry_run:
                dry.append((pc, action))
            elif action == BLOCK:
                checks.setdefault(name, []).append(pc)
            else:
                commenting.append(pc)
        shape.append([pc.name, pc.type, actions, dry_run, name,
                      pc.pr_comment_details.message if pc.pr_comment_details else None,
                      pc.params.model_dump(mode="json"), repr(cfg.target(pc)),
                      [e.model_dump(mode="json") for e in cfg.exemptions
                       if "*" in e.policies or pc.name in e.policies]])
    fingerprint = hashlib.sha256(json.dumps(shape).encode()).hexdigest()
    return PullPlan(tuple(policies), {k: tuple(v) for k, v in checks.items()}, tuple(commenting),
                tuple(dry), needs, fingerprint, cfg)


def _known_settings(repo: Repository, stored: dict[str, Any], plan: PullPlan
                    ) -> dict[str, Any] | None:
    """The repository-level inputs without asking GitHub: the last scan's, else those read
    for this pull request's last evaluation. None: they must be read."""
    if not plan.needs.workflow_permissions:
        return {}
    cache = repo.snapshot_cache or {}
    if "workflow_permissions" in cache:
        return {"workflow_permissions": cache["workflow_permissions"]}
    earlier = stored.get("settings")
    return earlier if isinstance(earlier, dict) and "workflow_permissions" in earlier else None


def _key(head_sha: str, plan: PullPlan, settings: dict[str, Any] | None, url: str | None
         ) -> str | None:
    """What an evaluation depends on; an unchanged key is not judged again. Data the head
    does not pin down counts too: sources read live (branch rules, collaborators...) by
    the hour, and exemption expiry by the day."""
    if settings is None:
        return None
    now = time.time()
    live = int(now // 3600) if plan.needs.sources else None
    expiring = plan.cfg is not None and any(e.expires for e in plan.cfg.exemptions)
    day = time.strftime("%Y-%m-%d", time.gmtime(now)) if expiring else None
    return digest(REPORT_VERSION, head_sha, plan.fingerprint, settings, url, live, day)


# ----------------------------------------------------------------------------- evaluating
async def _read_settings(t: CheckTarget, plan: PullPlan) -> dict[str, Any]:
    if not plan.needs.workflow_permissions:
        return {}
    org = t.inst.account_login if t.inst.account_type == "Organization" else None
    if org and await fetch_org_workflow_permissions(t.gh, org) == "read":
        return {"workflow_permissions": "read"}  # GitHub applies it to every repository
    return {"workflow_permissions": await fetch_workflow_permissions(t.gh, t.repo.full_name)}


async def _judge(t: CheckTarget, plan: PullPlan, settings: dict[str, Any]) -> list[Judged]:
    perms = settings.get("workflow_permissions")
    # Read at the pull request's head: files, and the other sources (settings and rules
    # are the repository's; files, workflows and the tree are the head's).
    wanted = replace(plan.needs, workflow_permissions=False)
    if wanted.files or wanted.sources:
        got = await fetch_one(t.gh, t.repo.id, t.repo.full_name, wanted, ref=t.sha)
        snap = replace(got.snapshot, workflow_permissions=perms)
    else:
        snap = RepoSnapshot(id=t.repo.id, full_name=t.repo.full_name,
                            default_branch=t.repo.default_branch,
                            visibility=t.repo.visibility, workflow_permissions=perms)
    if plan.cfg is None:
        return []
    # Out-of-scope policies are left out; an exempt failure passes, saying so (only the
    # org config's exemptions count here: the head could carry an exemptions file).
    judged = judge(plan.cfg, snap, plan.policies, repo_file=False)
    out = []
    for pc in plan.policies:
        result = judged.results.get(pc.name)
        if result is None:
            continue
        exemption = judged.exempt.get(pc.name)
        if exemption is not None:
            result = Result(True, f"{exemption['text']}: {result.message}",
                            {**result.details, "exemption": exemption})
        out.append(Judged(pc, result))
    return out


# ----------------------------------------------------------------------------- the jobs
def _log(db: Any, t: CheckTarget, action: str, policies: Sequence[PolicyConfig], status: str,
         detail: str, url: str | None = None) -> None:
    db.add(ActionLog(installation_id=t.inst.id, repository_id=t.repo.id,
                     repository=t.repo.full_name, violation_id=None,
                     policy=policies[0].name if len(policies) == 1 else None,
                     action=action, status=status, detail=detail[:4000], url=url))


def _dry_lines(t: CheckTarget, plan: PullPlan, judged: Sequence[Judged]) -> list[tuple[PolicyConfig,
                                                                               str, str]]:
    by_name = {j.policy.name: j for j in judged}
    out = []
    for pc, action in plan.dry:
        r = by_name[pc.name].result
        where = "in a check run" if action == BLOCK else "in the pull request comment"
        verdict = "passes" if r.passed else f"fails: {on_head(r.message)}"
        out.append((pc, action, f"on {t.label} would have reported {where} that the "
                                f"policy {verdict}"))
    return out


async def _load(svc: Services, installation_id: int, repo_id: int
                ) -> tuple[Installation, Repository, OrgConfig | None] | str:
    """The installation, repository and config in force (None: no config, so no policy:
    check runs left from an earlier config are retired)."""
    async with svc.db() as db:
        inst = await db.get(Installation, installation_id)
        repo = await db.get(Repository, repo_id)
    if inst is None or not inst.active:
        return "skipped: the installation is gone or inactive"
    cfg = config_for(inst)
    if repo is None or not scanned(repo, cfg):
        return "skipped: the repository is gone, archived or a fork (not enforced)"
    return inst, repo, cfg


async def check_pull(svc: Services, installation_id: int, repo_id: int, number: int) -> str:
    async with exclusive(svc.redis, pull_key(repo_id, number)):
        try:
            return await _check_pull(svc, installation_id, repo_id, number)
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) not in (403, 404):
                raise
            return await refused(svc, installation_id, repo_id, BLOCK, f"#{number}", exc,
                                 PULL_PERMISSIONS)


async def _check_pull(svc: Services, installation_id: int, repo_id: int, number: int) -> str:
    loaded = await _load(svc, installation_id, repo_id)
    async with svc.db() as db:
        row = await db.scalar(select(PullCheck).where(PullCheck.repository_id == repo_id,
                                                      PullCheck.number == number))
    if row is None or row.state != "open":
        return "skipped: the pull request is closed"
    if isinstance(loaded, str):
        return loaded
    inst, repo, cfg = loaded
    plan = plan_of(cfg)
    url = repo_page_url(svc.settings.PUBLIC_URL, repo.full_name)
    settings = _known_settings(repo, row.results, plan)
    if _key(row.head_sha, plan, settings, url) == row.evaluated_key:
        return "unchanged"
    if not plan.policies and not row.check_runs:
        await _save(svc, row.id, evaluated_key=_key(row.head_sha, plan, settings, url))
        return "no pull-request policies"
    gh = svc.github.installation(installation_id)
    pull = await gh.getitem(f"{repo_path(repo.full_name)}/pulls/{number}")
    if pull.get("state") != "open":
        await _save(svc, row.id, state="closed")
        return "skipped: the pull request is closed"
    head = str(pull["head"]["sha"])
    if head != row.head_sha and _key(head, plan, settings, url) == row.evaluated_key:
        await _save(svc, row.id, moved=(row.head_sha, head))
        return "unchanged"
    t = CheckTarget(svc, gh, inst, repo, head, number, url)
    if settings is None:
        settings = await _read_settings(t, plan)
    judged = await _judge(t, plan, settings)
    written: list[tuple[str, Sequence[PolicyConfig], str, str | None]] = []

    async def on_write(action: str, policies: Sequence[PolicyConfig], detail: str,
                       link: str | None) -> None:
        written.append((action, policies, detail, link))

    # Check runs belong to a commit, which several pull requests may share.
    async with exclusive(svc.redis, commit_key(repo_id, head)):
        runs = await set_check_runs(t, plan.checks, judged, dict(row.check_runs), on_write)
    # Recorded before the comment: a retry after a failure below finds these check runs.
    await _save(svc, row.id, moved=(row.head_sha, head), check_runs=runs)
    comment_id, digest = row.comment_id, row.comment_digest
    if plan.commenting:
        shown = [j for j in judged if j.policy in plan.commenting]
        failing = [j for j in shown if not j.result.passed]
        comment_id, digest, done, link = await set_comment(
            t, comment_body(shown), bool(failing), comment_id, digest)
        if done is not None:
            written.append((COMMENT, tuple(plan.commenting),
                            f"comment {done} on {t.label}: "
                            f"{len(failing)} of {len(shown)} policies fail", link))
    results = {j.policy.name: {"passed": j.result.passed, "message": j.result.message}
               for j in judged}
    async with svc.db() as db, db.begin():
        for action, policies, detail, link in written:
            _log(db, t, action, policies, "success", detail, link)
        for pc, action, detail in _dry_lines(t, plan, judged):
            _log(db, t, action, [pc], "dry-run", detail)
        fresh = await db.get(PullCheck, row.id, populate_existing=True)
        if fresh is not None:
            fresh.evaluated_key = _key(head, plan, settings, url)
            fresh.results = {**fresh.results, "policies": results, "settings": settings}
            fresh.comment_id, fresh.comment_digest = comment_id, digest
    failing_count = sum(not j.result.passed for j in judged)
    return f"{failing_count} of {len(judged)} pull-request policies fail; {len(written)} written"


async def _save(svc: Services, row_id: int, *, moved: tuple[str, str] | None = None,
                **values: Any) -> None:
    """Store `values`; `moved` (read, seen): the head GitHub showed, stored unless a newer
    event recorded another head meanwhile (its own check job is queued)."""
    async with svc.db() as db, db.begin():
        row = await db.get(PullCheck, row_id, populate_existing=True)
        if row is None:
            return
        for column, value in values.items():
            setattr(row, column, value)
        if moved is not None and row.head_sha == moved[0]:
            row.head_sha = moved[1]


async def check_merge_group(svc: Services, installation_id: int, repo_id: int,
                            head_sha: str) -> str:
    key = merge_group_key(repo_id, head_sha)
    async with exclusive(svc.redis, key):
        try:
            return await _check_merge_group(svc, installation_id, repo_id, head_sha, key)
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) not in (403, 404):
                raise
            return await refused(svc, installation_id, repo_id, BLOCK,
                                 f"merge group ({head_sha[:7]})", exc, PULL_PERMISSIONS)


async def _check_merge_group(svc: Services, installation_id: int, repo_id: int,
                             head_sha: str, key: str) -> str:
    loaded = await _load(svc, installation_id, repo_id)
    if isinstance(loaded, str):
        return loaded
    inst, repo, cfg = loaded
    plan = plan_of(cfg)
    url = repo_page_url(svc.settings.PUBLIC_URL, repo.full_name)
    raw = await svc.redis.get(f"pe:{key}")
    state: dict[str, Any] = json.loads(raw) if raw else {"check_runs": {}}
    settings = _known_settings(repo, state, plan)
    if _key(head_sha, plan, settings, url) == state.get("key"):
        return "unchanged"
    if not plan.checks and not state["check_runs"]:
        return "no block-prs policies"
    t = CheckTarget(svc, svc.github.installation(installation_id), inst, repo, head_sha, None,
               url)
    if settings is None:
        settings = await _read_settings(t, plan)
    judged = await _judge(t, plan, settings)
    logged: list[tuple[str, Sequence[PolicyConfig], str, str | None]] = []

    async def on_write(action: str, policies: Sequence[PolicyConfig], detail: str,
                       link: str | None) -> None:
        logged.append((action, policies, detail, link))

    async with exclusive(svc.redis, commit_key(repo_id, head_sha)):
        runs = await set_check_runs(t, plan.checks, judged, state["check_runs"], on_write)
    state = {"key": _key(head_sha, plan, settings, url), "check_runs": runs,
             "settings": settings}
    await svc.redis.set(f"pe:{key}", json.dumps(state), ex=MERGE_GROUP_TTL)
    async with svc.db() as db, db.begin():
        for action, policies, detail, link in logged:
            _log(db, t, action, policies, "success", detail, link)
        for pc, action, detail in _dry_lines(t, plan, judged):
            if action == BLOCK:
                _log(db, t, action, [pc], "dry-run", detail)
    return f"{sum(not j.result.passed for j in judged)} of {len(judged)} policies fail"
