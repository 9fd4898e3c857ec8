"""Pull request events → pull request checks: the webhook handlers (`pull_request`,
`check_run`, `check_suite`, `merge_group`) and the calls that queue the checks.

The handlers only record what the payload says (the pull request's head, open or closed) in
`pull_checks` and queue a job; they never call GitHub. The checks themselves are
app/services/pull_checks.py. Every check job is interactive: it goes ahead of bulk work
(scan batches, issue filing) in the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.db.models import PullCheck, Repository
from app.services import fixes
from app.services.config import CONFIG_REPO
from app.services.config_checks import request_config_check
from app.services.context import Services
from app.services.queue import ahead_of_bulk, enqueue_coalesced
from app.services.store import ensure_installation, upsert_repository

log = logging.getLogger(__name__)

Payload = dict[str, Any]
# pull_request actions after which the head is judged again (a draft is judged too).
CHECKED_ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})
# Where GitHub's merge queue puts its temporary branches.
MERGE_QUEUE_PREFIX = "gh-readonly-queue/"
# How long a merge group's last evaluation is remembered (its commit lives minutes).
MERGE_GROUP_TTL = 7 * 24 * 3600


def pull_key(repo_id: int, number: int) -> str:
    return f"pull-check:{repo_id}:{number}"


def merge_group_key(repo_id: int, head_sha: str) -> str:
    return f"merge-group:{repo_id}:{head_sha}"


async def request_pull_check(svc: Services, installation_id: int, repo_id: int, number: int,
                             trigger: str) -> bool:
    """Queue a check of the pull request; requests made before it starts join it."""
    return await enqueue_coalesced(svc.redis, "check_pull", pull_key(repo_id, number),
                                   installation_id, repo_id, number,
                                   note={"trigger": trigger[:255]}, interactive=True)


async def request_merge_group_check(svc: Services, installation_id: int, repo_id: int,
                                    head_sha: str) -> bool:
    job = await svc.redis.enqueue_job("check_merge_group", installation_id, repo_id, head_sha,
                                      _job_id=merge_group_key(repo_id, head_sha),
                                      _defer_until=ahead_of_bulk(),
                                      _expires=MERGE_GROUP_TTL)
    return job is not None


async def recheck_open_pulls(svc: Services, installation_id: int, trigger: str, *,
                             repo_ids: Iterable[int] | None = None) -> int:
    """The config changed (or, given `repo_ids`, something about those repositories): every
    open pull request the App knows gets its check again. Known: every pull request that
    had an event since the App was installed. A check whose inputs did not change costs no
    request, so all of them are queued."""
    query = select(PullCheck.repository_id, PullCheck.number).where(
        PullCheck.installation_id == installation_id, PullCheck.state == "open")
    if repo_ids is not None:
        query = query.where(PullCheck.repository_id.in_(list(repo_ids)))
    async with svc.db() as db:
        rows = list(await db.execute(query))
    for repo_id, number in rows:
        await request_pull_check(svc, installation_id, repo_id, number, trigger)
    if rows:
        log.info("installation %s: %d open pull requests checked again (%s)",
                 installation_id, len(rows), trigger)
    return len(rows)


# ----------------------------------------------------------------------------- recording
def _account(p: Payload) -> dict[str, Any] | None:
    owner = p.get("organization") or (p.get("repository") or {}).get("owner")
    if isinstance(owner, dict) and owner.get("login"):
        return {"login": owner["login"], "type": owner.get("type", "Organization")}
    return None


async def _known_repository(svc: Services, inst_id: int, p: Payload) -> Repository:
    async with svc.db() as db, db.begin():
        await ensure_installation(db, inst_id, _account(p), authoritative=False)
        repo = await db.get(Repository, int(p["repository"]["id"]))
        if repo is None:
            repo = await upsert_repository(db, inst_id, p["repository"])
        return repo


async def record_pull(svc: Services, inst_id: int, repo_id: int, number: int, *,
                      head_sha: str | None, state: str, updated_at: str | None = None) -> None:
    """Create or update the pull request's row. An event older than the one recorded (GitHub
    sends events concurrently; jobs may run out of order) does not move the head back."""
    for attempt in range(2):
        try:
            async with svc.db() as db, db.begin():
                row = await db.scalar(select(PullCheck).where(
                    PullCheck.repository_id == repo_id, PullCheck.number == number))
                if row is None:
                    db.add(PullCheck(installation_id=inst_id, repository_id=repo_id,
                                     number=number, head_sha=head_sha or "", state=state,
                                     results={"updated_at": updated_at} if updated_at else {},
                                     check_runs={}))
                    return
                seen = row.results.get("updated_at")
                if updated_at and isinstance(seen, str) and updated_at < seen:
                    return  # GitHub's timestamps are ISO 8601 UTC: they sort as text
                if head_sha:
                    row.head_sha = head_sha
                row.state = state
                if updated_at:
                    row.results = {**row.results, "updated_at": updated_at}
                return
        except IntegrityError:
            if attempt:  # created by a concurrent event twice in a row: give up loudly
                raise


# Who may see a config preview: the pull request comes from the organization's own
# repository, or from someone GitHub says belongs to it.
TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


def _trusted(pr: dict[str, Any]) -> bool:
    head = ((pr.get("head") or {}).get("repo") or {}).get("id")
    base = ((pr.get("base") or {}).get("repo") or {}).get("id")
    return (head is not None and head == base) \
        or pr.get("author_association") in TRUSTED_ASSOCIATIONS


# ----------------------------------------------------------------------------- handlers
async def on_pull_request(svc: Services, p: Payload) -> str:
    action = str(p.get("action"))
    pr = p["pull_request"]
    inst_id = int(p["installation"]["id"])
    number = int(pr["number"])
    if action not in CHECKED_ACTIONS and action != "closed":
        return f"ignored: pull_request.{action}"
    repo = await _known_repository(svc, inst_id, p)
    if action == "closed":
        await record_pull(svc, inst_id, repo.id, number, head_sha=None, state="closed",
                          updated_at=pr.get("updated_at"))
        # A person closing the App's fix pull request declines those fixes (for now).
        held = await fixes.pull_closed(svc, inst_id, repo.id, pr,
                                       str((p.get("sender") or {}).get("login", "")))
        return "pull request closed; recorded" + (f"; {held} fixes held" if held else "")
    await record_pull(svc, inst_id, repo.id, number, head_sha=str(pr["head"]["sha"]),
                      state="open", updated_at=pr.get("updated_at"))
    await request_pull_check(svc, inst_id, repo.id, number, f"webhook:pull_request.{action}")
    if repo.full_name.rsplit("/", 1)[-1] == CONFIG_REPO:
        # A change to the config: its own check, with a preview of what it would change
        # for the organization's own people only (a preview names repositories, private
        # ones too, and runs the proposed rules over what the scans stored).
        await request_config_check(svc, inst_id, repo.id, str(pr["head"]["sha"]), number,
                                   str((pr.get("base") or {}).get("sha") or "") or None,
                                   preview=_trusted(pr))
        return "check and config preview queued"
    return "check queued"


async def _rerequested(svc: Services, p: Payload, what: str, head_sha: str,
                       pulls: Iterable[dict[str, Any]], head_branch: str | None) -> str:
    """Someone asked for the App's checks on `head_sha` again."""
    inst_id = int(p["installation"]["id"])
    repo = await _known_repository(svc, inst_id, p)
    # GitHub lists only pull requests from branches of the same repository; a fork's are
    # found by the head the App recorded.
    numbers = {int(pr["number"]) for pr in pulls if pr.get("number") is not None}
    async with svc.db() as db:
        numbers |= set(await db.scalars(select(PullCheck.number).where(
            PullCheck.repository_id == repo.id, PullCheck.head_sha == head_sha,
            PullCheck.state == "open")))
    if numbers:
        for number in sorted(numbers):
            await record_pull(svc, inst_id, repo.id, number, head_sha=None, state="open")
            await request_pull_check(svc, inst_id, repo.id, number, f"webhook:{what}")
        return f"{len(numbers)} check(s) queued"
    if (head_branch or "").startswith(MERGE_QUEUE_PREFIX):
        await request_merge_group_check(svc, inst_id, repo.id, head_sha)
        return "merge group check queued"
    return "ignored: no open pull request has this commit at its head"


async def on_check_run(svc: Services, p: Payload) -> str:
    run = p["check_run"]
    if p.get("action") != "rerequested":
        return f"ignored: check_run.{p.get('action')}"
    if (run.get("app") or {}).get("id") != svc.settings.APP_ID:
        return "ignored: another App's check run"
    suite = run.get("check_suite") or {}
    return await _rerequested(svc, p, "check_run.rerequested", str(run["head_sha"]),
                              run.get("pull_requests") or suite.get("pull_requests") or [],
                              suite.get("head_branch"))


async def on_check_suite(svc: Services, p: Payload) -> str:
    suite = p["check_suite"]
    if p.get("action") != "rerequested":
        return f"ignored: check_suite.{p.get('action')}"
    if (suite.get("app") or {}).get("id") != svc.settings.APP_ID:
        return "ignored: another App's check suite"
    return await _rerequested(svc, p, "check_suite.rerequested", str(suite["head_sha"]),
                              suite.get("pull_requests") or [], suite.get("head_branch"))


async def on_merge_group(svc: Services, p: Payload) -> str:
    if p.get("action") != "checks_requested":
        return f"ignored: merge_group.{p.get('action')}"
    inst_id = int(p["installation"]["id"])
    repo = await _known_repository(svc, inst_id, p)
    await request_merge_group_check(svc, inst_id, repo.id, str(p["merge_group"]["head_sha"]))
    return "merge group check queued"
