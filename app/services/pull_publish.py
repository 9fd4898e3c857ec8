"""A pull request's report, written to GitHub: check runs (`block-prs`) on a commit and
the sticky comment (`comment-on-prs`), each written only where what GitHub shows differs
from what it should show.

Never twice: a check run the App has no record of for this commit is first looked for on
GitHub (a crash between the POST and the database write leaves one); the comment is found
again by its hidden marker. The caller serialises the work per pull request.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import gidgethub
from gidgethub.abc import GitHubAPI

from app.config import PolicyConfig
from app.db.models import ActionLog, Installation, Repository, utcnow
from app.github.errors import describe_error
from app.github.paths import repo_path
from app.services.context import Services
from app.services.pull_report import COMMENT_MARKER, CheckOutput, Judged, check_output

log = logging.getLogger(__name__)

BLOCK = "block-prs"
# Told of each write: (action, policies, what was done, the URL of what was written).
OnWrite = Callable[[str, Sequence[PolicyConfig], str, "str | None"], Awaitable[None]]

_RETIRED = CheckOutput(
    "neutral", "No longer enforced",
    "No policy of the organization's config reports in this check any more (its "
    "`block-prs` action, or the policy, was removed), so it does not block this pull request.")


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class CheckTarget:
    """What is reported on: a pull request's head, or a merge group's."""

    svc: Services
    gh: GitHubAPI
    inst: Installation
    repo: Repository
    sha: str
    number: int | None  # None: a merge group
    details_url: str | None

    @property
    def label(self) -> str:
        where = f"#{self.number}" if self.number is not None else "merge group"
        return f"{where} ({self.sha[:7]})"


async def refused(svc: Services, installation_id: int, repo_id: int, action: str, label: str,
                  exc: gidgethub.BadRequest, permissions: str) -> str:
    """GitHub refused a read or write (403: most often an installation that has not
    accepted the App's `permissions` yet; 404: gone). Retrying cannot help: it is recorded
    in the action log, and the next event tries again."""
    detail = (f"{label}: GitHub refused ({describe_error(exc)}); if the installation has not "
              f"accepted the App's {permissions}, an organization owner accepts them in the "
              "App's installation settings")
    async with svc.db() as db, db.begin():
        repo = await db.get(Repository, repo_id)
        db.add(ActionLog(installation_id=installation_id, repository_id=repo_id,
                         repository=repo.full_name if repo else None, action=action,
                         status="failed", detail=detail[:4000]))
    log.warning("%s", detail)
    return f"failed: {describe_error(exc)}"


# ----------------------------------------------------------------------------- check runs
def _run_body(out: CheckOutput, details_url: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "completed", "conclusion": out.conclusion,
                            "output": {"title": out.title, "summary": out.summary}}
    if out.annotations:
        body["output"]["annotations"] = list(out.annotations[:50])
    if details_url:
        body["details_url"] = details_url
    return body


def _shows(run: dict[str, Any], body: dict[str, Any]) -> bool:
    """The check run on GitHub already shows `body`."""
    output = run.get("output") or {}
    return (run.get("status") == "completed" and run.get("conclusion") == body["conclusion"]
            and output.get("title") == body["output"]["title"]
            and output.get("summary") == body["output"]["summary"]
            and run.get("details_url") == body.get("details_url", run.get("details_url")))


async def _existing_run(t: CheckTarget, name: str) -> dict[str, Any] | None:
    """This App's latest check run named `name` on the commit, if GitHub has one."""
    app_id = t.svc.settings.APP_ID
    query = {"check_name": name, "filter": "latest", "per_page": 100}
    if app_id is not None:
        query["app_id"] = app_id
    data = await t.gh.getitem(f"{repo_path(t.repo.full_name)}/commits/{t.sha}/check-runs?"
                              + urlencode(query))
    runs = [r for r in data.get("check_runs") or [] if r.get("name") == name
            and (app_id is None or (r.get("app") or {}).get("id") == app_id)]
    return max(runs, key=lambda r: int(r["id"])) if runs else None


async def set_check_run(t: CheckTarget, name: str, out: CheckOutput, stored: dict[str, Any] | None
                   ) -> tuple[dict[str, Any], str | None]:
    """Make the check run `name` on the commit show `out`. Returns its record and, when
    something was written, the check run's URL."""
    body = _run_body(out, t.details_url)
    wanted = digest(body)
    record = {"sha": t.sha, "conclusion": out.conclusion, "digest": wanted}
    run_id = stored.get("id") if stored and stored.get("sha") == t.sha else None
    if run_id is not None and stored and stored.get("digest") == wanted:
        return {**record, "id": run_id}, None
    if run_id is None:
        found = await _existing_run(t, name)
        if found is not None:
            run_id = int(found["id"])
            if _shows(found, body):
                return {**record, "id": run_id}, None
    path = f"{repo_path(t.repo.full_name)}/check-runs"
    if run_id is not None:
        # GitHub adds a PATCH's annotations to those the run has: they are sent once, when
        # it is created (a commit's annotations, e.g. its config's errors, do not change).
        body["output"].pop("annotations", None)
        data = await t.gh.patch(f"{path}/{run_id}", data=body)
    else:
        data = await t.gh.post(path, data={"name": name, "head_sha": t.sha,
                                           "completed_at": utcnow().isoformat(), **body})
    return {**record, "id": int(data["id"])}, str(data.get("html_url") or "") or None


async def set_check_runs(t: CheckTarget, checks: Mapping[str, Sequence[PolicyConfig]],
                         judged: Sequence[Judged], stored: dict[str, Any], on_write: OnWrite
                         ) -> dict[str, Any]:
    """Every check run `checks` names shows its policies' results on the commit; one left
    from an earlier config on this commit turns neutral. Returns the records to store."""
    by_name = {j.policy.name: j for j in judged}
    runs: dict[str, Any] = {}
    for name, policies in checks.items():
        out = check_output([by_name[pc.name] for pc in policies], t.sha, t.details_url)
        runs[name], url = await set_check_run(t, name, out, stored.get(name))
        if url is not None:
            await on_write(BLOCK, policies, f"check run `{name}` on {t.label}: "
                                            f"{out.conclusion} ({out.title})", url)
    for name, old in stored.items():
        # A check run no policy reports in any more must not keep blocking the commit.
        if name in runs or old.get("sha") != t.sha or old.get("conclusion") == "neutral":
            continue
        runs[name], url = await set_check_run(t, name, _RETIRED, old)
        if url is not None:
            await on_write(BLOCK, (), f"check run `{name}` on {t.label}: neutral "
                                      "(no policy reports in it any more)", url)
    return runs


# ----------------------------------------------------------------------------- the comment
async def _find_comment(t: CheckTarget, bot_login: str) -> dict[str, Any] | None:
    url = f"{repo_path(t.repo.full_name)}/issues/{t.number}/comments?per_page=100"
    async for comment in t.gh.getiter(url):
        if (comment.get("user") or {}).get("login") == bot_login \
                and COMMENT_MARKER in (comment.get("body") or ""):
            return dict(comment)
    return None


async def set_comment(t: CheckTarget, body: str, failing: bool, comment_id: int | None,
                      last: str | None) -> tuple[int | None, str, str | None, str | None]:
    """(comment id, digest, what was done, its URL). Not written when the text's digest is
    `last` (what was last written); never a first comment just to say all is clear."""
    new_digest = digest(body)
    if new_digest == last:
        return comment_id, new_digest, None, None
    base = f"{repo_path(t.repo.full_name)}/issues"
    if comment_id is not None:
        try:
            data = await t.gh.patch(f"{base}/comments/{comment_id}", data={"body": body})
            return comment_id, new_digest, "updated", data.get("html_url")
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) != 404:
                raise
            comment_id = None  # deleted by someone: found again below, or written anew
    found = await _find_comment(t, await t.svc.github.bot_login())
    if found is not None:
        if found.get("body") == body:
            return int(found["id"]), new_digest, None, None
        data = await t.gh.patch(f"{base}/comments/{found['id']}", data={"body": body})
        return int(found["id"]), new_digest, "updated", data.get("html_url")
    if not failing:
        return None, new_digest, None, None
    data = await t.gh.post(f"{base}/{t.number}/comments", data={"body": body})
    return int(data["id"]), new_digest, "created", data.get("html_url")
