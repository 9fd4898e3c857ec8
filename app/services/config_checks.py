"""The config's own check run on the `.github` repository, where its authors look.

- A push to the default branch: the pushed commit gets `policy-enforcer/config`, failing
  with one annotation per error (on its line) when config.yaml is invalid (the last valid
  config stays in force), or passing with a summary of the policies.
- A pull request that changes config.yaml: its head gets the same check, and when the
  config is valid, a preview of what it would change (app/services/config_preview.py).

Idempotent: the check run is found again by name on the commit and written only when it
shows something else.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from collections import defaultdict
from urllib.parse import quote

import gidgethub
from sqlalchemy import select

from app.config import ConfigError, OrgConfig, parse_config
from app.config.loader import ConfigProblem
from app.db.models import Installation, Repository, Violation
from app.github.paths import repo_path
from app.services.config import CONFIG_PATH, CONFIG_REPO, config_for
from app.services.config_preview import Preview, merged, preview, preview_markdown
from app.services.context import Services
from app.services.pull_publish import CheckTarget, refused, set_check_run
from app.services.pull_report import CheckOutput
from app.services.queue import ahead_of_bulk
from app.yamlsafe import MAX_BYTES

log = logging.getLogger(__name__)

CONFIG_CHECK = "policy-enforcer/config"
# GitHub takes at most 50 annotations per request.
MAX_ANNOTATIONS = 50
# Repositories judged at a time for a preview.
PREVIEW_CHUNK = 200
# A queued check waits this long for a worker (ahead_of_bulk puts its score in the past).
CHECK_JOB_EXPIRY = 24 * 3600


async def request_config_check(svc: Services, installation_id: int, repo_id: int, sha: str,
                               pull_number: int | None = None,
                               base_sha: str | None = None, *, preview: bool = True) -> None:
    """Queue the check of one commit (one job per commit and pull request: a redelivery
    joins it). `preview`: a pull request's check previews the change."""
    await svc.redis.enqueue_job(
        "check_config", installation_id, repo_id, sha, pull_number, base_sha, preview,
        _job_id=f"config-check:{repo_id}:{sha}:{pull_number or ''}",
        _defer_until=ahead_of_bulk(), _expires=CHECK_JOB_EXPIRY)


async def _read(t: CheckTarget, ref: str) -> str | None:
    url = (f"{repo_path(t.repo.full_name)}/contents/{quote(CONFIG_PATH)}"
           f"?ref={quote(ref, safe='')}")
    try:
        data = await t.gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) == 404:
            return None
        raise
    if not isinstance(data, dict) or data.get("type") != "file":
        return None
    size = int(data.get("size") or 0)
    if size > MAX_BYTES:
        # GitHub's contents API sends no content past 1 MB: not read, and said so.
        raise ConfigError([ConfigProblem(None, None, "", f"the file is {size:,} bytes; the "
                                                         f"limit is {MAX_BYTES:,} bytes")])
    return base64.b64decode(data.get("content") or "").decode("utf-8", errors="replace")


def invalid_output(exc: ConfigError, in_force: bool) -> CheckOutput:
    problems = exc.problems
    kept = (" The last valid config stays in force until this is fixed." if in_force
            else " Nothing is enforced until it is valid.")
    summary = "\n".join([f"`{CONFIG_PATH}` has {len(problems)} "
                         f"error{'s' if len(problems) != 1 else ''}.{kept}", ""]
                        + [f"- {p}" for p in problems])
    notes = [{"path": CONFIG_PATH, "start_line": p.line or 1, "end_line": p.line or 1,
              "annotation_level": "failure",
              "message": f"{p.path}: {p.message}" if p.path else p.message,
              "title": "Invalid config"} for p in problems[:MAX_ANNOTATIONS]]
    return CheckOutput("failure", f"{CONFIG_PATH} is invalid: {len(problems)} "
                                  f"error{'s' if len(problems) != 1 else ''}",
                       summary[:60000], tuple(notes))


def summary_output(cfg: OrgConfig, today: dt.date, *, previewed: bool = True) -> CheckOutput:
    lines = [] if previewed else [
        "No preview: it is shown on pull requests from the organization's own repository "
        "or people (it names repositories and judges the proposed rules over stored "
        "data).", ""]
    lines += ["| Policy | Type | Actions | Applies to |", "| --- | --- | --- | --- |"]
    for pc in cfg.policies:
        t = cfg.target(pc)
        scope = [f"include {', '.join(t.include)}"] if t.include != ("*",) else []
        scope += [f"except {', '.join(t.exclude)}"] if t.exclude else []
        scope += [f"topics {', '.join(t.topics)}"] if t.topics else []
        scope += [f"visibility {', '.join(t.visibility)}"] if t.visibility else []
        scope += [f"{k} in {', '.join(v)}" for k, v in (t.custom_properties or {}).items()]
        scope += ["forks"] if t.fork else []
        dry = " (dry run)" if cfg.effective(pc).dry_run else ""
        lines.append(f"| {pc.name} | `{pc.type}` | {', '.join(pc.actions)}{dry} | "
                     f"{'; '.join(scope) or 'all'} |")
    if cfg.exemptions:
        lines += ["", "Exemptions:"]
        for e in cfg.exemptions:
            state = ("expired" if e.expires and e.expires < today
                     else f"until {e.expires.isoformat()}" if e.expires else "no expiry")
            lines.append(f"- `{', '.join(e.repos)}` from {', '.join(e.policies)}: "
                         f"{e.reason} ({state})")
    return CheckOutput("success", f"{CONFIG_PATH} is valid: {len(cfg.policies)} "
                                  f"polic{'ies' if len(cfg.policies) != 1 else 'y'}",
                       "\n".join(lines)[:60000])


async def _preview_output(svc: Services, t: CheckTarget, cfg: OrgConfig,
                          today: dt.date) -> CheckOutput:
    async with svc.db() as db:
        open_now: dict[int, set[str]] = defaultdict(set)
        for rid, name in await db.execute(select(Violation.repository_id, Violation.policy)
                                          .where(Violation.installation_id == t.inst.id,
                                                 Violation.state == "open")):
            open_now[rid].add(name)
    # In chunks (each repository's stored snapshot may be tens of KB), letting other work
    # run in between.
    parts: list[Preview] = []
    after = ""
    while True:
        async with svc.db() as db:
            repos = list(await db.scalars(select(Repository).where(
                Repository.installation_id == t.inst.id, Repository.full_name > after)
                .order_by(Repository.full_name).limit(PREVIEW_CHUNK)))
        if not repos:
            break
        parts.append(preview(cfg, repos, open_now, today))
        after = repos[-1].full_name
        await asyncio.sleep(0)
    p = merged(parts) if parts else preview(cfg, [], open_now, today)
    base = summary_output(cfg, today)
    title = (f"Preview: {p.violating} would newly violate, {p.complying} would newly "
             "comply")
    return CheckOutput("success", title,
                       (preview_markdown(p) + "\n\n" + base.summary)[:60000])


async def check_config(svc: Services, installation_id: int, repo_id: int, sha: str,
                       pull_number: int | None = None, base_sha: str | None = None,
                       preview: bool = True) -> str:
    """Report config.yaml at `sha` of the `.github` repository as a check run on it; with
    `pull_number`, also preview the change (unless config.yaml is the same as at
    `base_sha`). A refusal (403: an installation that has not accepted `checks: write`;
    404: gone) is recorded in the action log, not retried: the next push tries again."""
    try:
        return await _check_config(svc, installation_id, repo_id, sha, pull_number, base_sha,
                                   preview)
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) not in (403, 404):
            raise
        return await refused(svc, installation_id, repo_id, CONFIG_CHECK,
                             f"config check on {sha[:7]}", exc, "permission `checks: write`")


async def _check_config(svc: Services, installation_id: int, repo_id: int, sha: str,
                        pull_number: int | None, base_sha: str | None, preview: bool) -> str:
    async with svc.db() as db:
        inst = await db.get(Installation, installation_id)
        repo = await db.get(Repository, repo_id)
    if inst is None or repo is None or not inst.active \
            or repo.full_name.rsplit("/", 1)[-1] != CONFIG_REPO:
        return "skipped: not an active installation's .github repository"
    gh = svc.github.installation(installation_id)
    t = CheckTarget(svc=svc, gh=gh, inst=inst, repo=repo, sha=sha, number=pull_number,
                    details_url=None)
    today = dt.datetime.now(dt.UTC).date()
    try:
        text = await _read(t, sha)
        if text is None:
            return f"skipped: no {CONFIG_PATH} at {sha[:7]}"
        if pull_number is not None and base_sha and await _read(t, base_sha) == text:
            return f"skipped: {CONFIG_PATH} is unchanged in #{pull_number}"
        cfg = parse_config(text, CONFIG_PATH)
    except ConfigError as exc:
        out = invalid_output(exc, in_force=config_for(inst) is not None)
    else:
        out = (await _preview_output(svc, t, cfg, today) if pull_number is not None
               and preview else summary_output(cfg, today, previewed=pull_number is None))
    _, url = await set_check_run(t, CONFIG_CHECK, out, None)
    where = f"#{pull_number} ({sha[:7]})" if pull_number is not None else sha[:7]
    log.info("config check on %s %s: %s (%s)", repo.full_name, where, out.conclusion,
             out.title)
    return f"{out.conclusion}: {out.title}" + ("" if url else " (unchanged)")
