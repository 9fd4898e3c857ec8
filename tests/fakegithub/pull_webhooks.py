"""Webhook payloads for pull requests, check runs, check suites and merge groups, shaped like
GitHub's (@octokit/webhooks-examples) and built from the fake's state (tests/fakegithub/pulls.py)
so ids, shas and names match what its API serves."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from tests.fakegithub.pulls import (
    CheckRun,
    MergeGroup,
    PullRequest,
    _minimal_pull,
    check_runs,
    matching_pulls,
    render_app,
    render_check_run,
    render_pull,
    suite_id,
)
from tests.fakegithub.state import FakeState, Repo, User, iso, node_id
from tests.fakegithub.webhooks import _repo_context, _sender


def pull_request(st: FakeState, pr: PullRequest, action: str, *, before: str | None = None,
                 sender: str | User | None = None) -> dict[str, Any]:
    """`pull_request` event: opened, synchronize (`before`: the earlier head), reopened,
    ready_for_review, closed, edited, ..."""
    payload: dict[str, Any] = {"action": action, "number": pr.number}
    if action == "synchronize":
        payload["before"] = before or hashlib.sha1(f"before:{pr.head_sha}".encode()).hexdigest()
        payload["after"] = pr.head_sha
    payload["pull_request"] = render_pull(st, pr)
    payload.update(_repo_context(st, pr.base, None))
    payload["sender"] = _sender(st, sender, pr.issue.user)
    return payload


def _suite(st: FakeState, repo: Repo, sha: str, app_id: int, head_branch: str | None
           ) -> dict[str, Any]:
    ident = suite_id(st, repo, sha, app_id)
    runs = [r for r in check_runs(st, repo.full_name, sha) if r.app_id == app_id]
    done = bool(runs) and all(r.status == "completed" for r in runs)
    conclusion = None
    if done:
        conclusion = "failure" if any(r.conclusion == "failure" for r in runs) else "success"
    now = iso(time.time())
    return {
        "id": ident,
        "node_id": node_id("CheckSuite", ident),
        "head_branch": head_branch,
        "head_sha": sha,
        "status": "completed" if done else "queued",
        "conclusion": conclusion,
        "url": f"{st.api_url}/repos/{repo.full_name}/check-suites/{ident}",
        "before": hashlib.sha1(f"before:{sha}".encode()).hexdigest(),
        "after": sha,
        # GitHub lists only pull requests from branches of the same repository.
        "pull_requests": [_minimal_pull(st, p) for p in matching_pulls(st, repo, sha)]
        if head_branch is not None else [],
        "app": render_app(st, app_id),
        "created_at": now,
        "updated_at": now,
        "rerequestable": True,
        "runs_rerequestable": True,
        "latest_check_runs_count": len(runs),
        "check_runs_url": f"{st.api_url}/repos/{repo.full_name}/check-suites/{ident}/check-runs",
        "head_commit": _head_commit(sha),
    }


def _head_commit(sha: str) -> dict[str, Any]:
    who = {"name": "Octo Cat", "email": "octocat@github.com"}
    return {"id": sha, "tree_id": hashlib.sha1(f"tree:{sha}".encode()).hexdigest(),
            "message": "Update files", "timestamp": iso(time.time()), "author": who,
            "committer": who}


def _head_branch(st: FakeState, repo: Repo, sha: str) -> str | None:
    """The branch a commit is the head of in this repository; None for a fork's head."""
    return next((b for b, s in repo.heads.items() if s == sha), None)


def check_run(st: FakeState, run: CheckRun, action: str = "rerequested", *,
              sender: str | User | None = None) -> dict[str, Any]:
    """`check_run` event (created, completed, rerequested, requested_action)."""
    repo = run.repo
    data = render_check_run(st, run)
    data["check_suite"] = _suite(st, repo, run.head_sha, run.app_id,
                                 _head_branch(st, repo, run.head_sha))
    payload: dict[str, Any] = {"action": action, "check_run": data}
    payload.update(_repo_context(st, repo, None))
    payload["sender"] = _sender(st, sender, st.user("octocat"))
    return payload


def check_suite(st: FakeState, full_name: str, sha: str, action: str = "rerequested", *,
                app_id: int | None = None, sender: str | User | None = None) -> dict[str, Any]:
    """`check_suite` event (requested, rerequested, completed) for the App's suite on `sha`."""
    repo = st.repo(full_name)
    payload: dict[str, Any] = {
        "action": action,
        "check_suite": _suite(st, repo, sha, app_id or st.app_id, _head_branch(st, repo, sha)),
    }
    payload.update(_repo_context(st, repo, None))
    payload["sender"] = _sender(st, sender, st.user("octocat"))
    return payload


def merge_group(st: FakeState, group: MergeGroup, action: str = "checks_requested", *,
                sender: str | User | None = None) -> dict[str, Any]:
    """`merge_group` event (checks_requested, destroyed) for a merge queue entry."""
    payload: dict[str, Any] = {
        "action": action,
        "merge_group": {
            "head_sha": group.head_sha,
            "head_ref": group.head_ref,
            "base_sha": group.base_sha,
            "base_ref": group.base_ref,
            "head_commit": _head_commit(group.head_sha),
        },
    }
    if action == "destroyed":
        payload["reason"] = "merged"
    payload.update(_repo_context(st, group.repo, None))
    payload["sender"] = _sender(st, sender, st.user("octocat"))
    return payload
