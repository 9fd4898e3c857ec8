"""Pull requests, merge groups and check runs of the fake GitHub: the state, the helpers tests
arrange them with, and their REST renderings (the routes are in tests/fakegithub/checks.py).

A pull request is also an issue (`Issue.pull_request`): it takes the next issue number and
its comments are the issue's, as on GitHub. Its head is a branch of the base repository or
of a fork (a repository outside the installation); as GitHub does with refs/pull/N/head,
every head commit is also stored in the base repository, so the App reads a fork's head
from the base repository without access to the fork.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakegithub import render
from tests.fakegithub.state import FakeState, Issue, Repo, User, iso, node_id

# GitHub's check run vocabulary (POST/PATCH /repos/{o}/{r}/check-runs).
CHECK_STATUSES = ("queued", "in_progress", "completed")
CHECK_CONCLUSIONS = ("action_required", "cancelled", "failure", "neutral", "success",
                     "skipped", "stale", "timed_out")
MAX_OUTPUT_CHARS = 65535
MERGE_QUEUE_PREFIX = "gh-readonly-queue/"


@dataclass(eq=False)
class PullRequest:
    id: int
    issue: Issue
    base_ref: str
    base_sha: str  # the base branch's head when the pull request was opened
    head_repo: Repo | None  # None: the fork was deleted
    head_ref: str
    head_sha: str
    draft: bool = False
    merged: bool = False
    merged_at: float | None = None

    @property
    def number(self) -> int:
        return self.issue.number

    @property
    def base(self) -> Repo:
        return self.issue.repo

    @property
    def state(self) -> str:
        return self.issue.state

    @property
    def from_fork(self) -> bool:
        return self.head_repo is not self.base


@dataclass(eq=False)
class CheckRun:
    id: int
    repo: Repo
    head_sha: str
    name: str
    app_id: int
    suite_id: int
    status: str = "queued"
    conclusion: str | None = None
    details_url: str | None = None
    external_id: str | None = None
    title: str | None = None
    summary: str | None = None
    text: str | None = None
    started_at: float = 0.0
    completed_at: float | None = None
    # How many times it was changed through PATCH.
    updates: int = 0
    # output.annotations as sent; GitHub adds each request's to the ones already there.
    annotations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(eq=False)
class MergeGroup:
    repo: Repo
    head_sha: str
    head_ref: str  # refs/heads/gh-readonly-queue/<base>/pr-<n>-<base sha>
    base_sha: str
    base_ref: str  # refs/heads/<base>
    pulls: list[PullRequest] = field(default_factory=list)


@dataclass
class PullStore:
    pulls: dict[tuple[int, int], PullRequest] = field(default_factory=dict)
    check_runs: dict[int, CheckRun] = field(default_factory=dict)
    # (repository id, head sha, app id) -> check suite id
    suites: dict[tuple[int, str, int], int] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(2_100_000_000))


_STORES: weakref.WeakKeyDictionary[FakeState, PullStore] = weakref.WeakKeyDictionary()


def store(st: FakeState) -> PullStore:
    found = _STORES.get(st)
    if found is None:
        found = _STORES[st] = PullStore()
    return found


# ----------------------------------------------------------------------------- arranging
def create_branch(st: FakeState, full_name: str, branch: str, *, from_branch: str | None = None
                  ) -> str:
    """A new branch at the head of `from_branch` (the default branch); returns its sha."""
    repo = st.repo(full_name)
    source = from_branch or repo.default_branch
    if branch in repo.branches:
        raise ValueError(f"branch {branch} already exists in {full_name}")
    repo.branches[branch] = dict(repo.branches.get(source, {}))
    repo.heads[branch] = repo.heads[source]
    return repo.heads[branch]


def commit(st: FakeState, full_name: str, branch: str, changes: Mapping[str, str | None]) -> str:
    """One commit on `branch` with these changes (text, or None to delete); returns its sha."""
    repo = st.repo(full_name)
    files = repo.branches.setdefault(branch, {})
    for path, text in changes.items():
        if text is None:
            files.pop(path.lstrip("/"), None)
        else:
            files[path.lstrip("/")] = text
    return st._touch(repo, branch)


def fork(st: FakeState, full_name: str, owner: str) -> Repo:
    """`owner` forks the repository: a repository of theirs, outside the installation."""
    source = st.repo(full_name)
    repo = st.add_repo(owner, source.name, fork=True, installed=False, owner_type="User",
                       default_branch=source.default_branch,
                       files=dict(source.files))
    return repo


def _share_head(pr: PullRequest) -> None:
    """GitHub keeps the head commit in the base repository (refs/pull/N/head)."""
    head = pr.head_repo
    if head is not None and head is not pr.base:
        found = head.commit(pr.head_sha)
        if found is not None:
            pr.base.commits[found[0]] = dict(found[1])


def open_pull(st: FakeState, base: str, head_ref: str, *, head_repo: str | None = None,
              title: str = "A change", body: str | None = "", user: str = "octocat",
              draft: bool = False, base_ref: str | None = None) -> PullRequest:
    """Open a pull request from `head_ref` of `head_repo` (default: the base repository)
    into `base_ref` (default: the default branch)."""
    base_repo = st.repo(base)
    head = st.repo(head_repo) if head_repo else base_repo
    if head_ref not in head.heads:
        raise ValueError(f"{head.full_name} has no branch {head_ref}")
    into = base_ref or base_repo.default_branch
    issue = st.add_issue(base, title, body, user_login=user)
    issue.pull_request = True
    pr = PullRequest(id=next(store(st).ids), issue=issue, base_ref=into,
                     base_sha=base_repo.heads[into], head_repo=head, head_ref=head_ref,
                     head_sha=head.heads[head_ref], draft=draft)
    store(st).pulls[(base_repo.id, issue.number)] = pr
    _share_head(pr)
    return pr


def push_to_pull(st: FakeState, pr: PullRequest, changes: Mapping[str, str | None]) -> str:
    """A commit on the pull request's head branch (in the fork, for a fork's); returns it."""
    assert pr.head_repo is not None
    sha = commit(st, pr.head_repo.full_name, pr.head_ref, changes)
    pr.head_sha = sha
    pr.issue.updated_at = time.time()
    _share_head(pr)
    return sha


def close_pull(st: FakeState, pr: PullRequest) -> PullRequest:
    now = time.time()
    pr.issue.state, pr.issue.closed_at, pr.issue.updated_at = "closed", now, now
    return pr


def pull(st: FakeState, full_name: str, number: int) -> PullRequest:
    return store(st).pulls[(st.repo(full_name).id, number)]


def pulls_of(st: FakeState, repo: Repo) -> list[PullRequest]:
    return sorted((p for (rid, _), p in store(st).pulls.items() if rid == repo.id),
                  key=lambda p: p.number)


def create_merge_group(st: FakeState, pr: PullRequest) -> MergeGroup:
    """The merge queue's temporary commit for `pr`: the base branch as it is now, plus the
    changes the pull request makes to its own base commit."""
    repo = pr.base
    base_sha = repo.heads[pr.base_ref]
    merged = dict(repo.branches[pr.base_ref])
    before = repo.commit(pr.base_sha)
    after = repo.commit(pr.head_sha)
    assert before is not None and after is not None
    for path in set(before[1]) | set(after[1]):
        if before[1].get(path) != after[1].get(path):
            if path in after[1]:
                merged[path] = after[1][path]
            else:
                merged.pop(path, None)
    branch = f"{MERGE_QUEUE_PREFIX}{pr.base_ref}/pr-{pr.number}-{base_sha}"
    repo.branches[branch] = merged
    sha = st._touch(repo, branch)
    return MergeGroup(repo, sha, f"refs/heads/{branch}", base_sha, f"refs/heads/{pr.base_ref}",
                      [pr])


def suite_id(st: FakeState, repo: Repo, sha: str, app_id: int) -> int:
    s = store(st)
    key = (repo.id, sha, app_id)
    if key not in s.suites:
        s.suites[key] = next(s.ids)
    return s.suites[key]


def add_check_run(st: FakeState, full_name: str, sha: str, name: str, *, app_id: int,
                  conclusion: str | None = "success") -> CheckRun:
    """Arrange a check run (of another App, say) on a commit."""
    repo = st.repo(full_name)
    now = time.time()
    run = CheckRun(id=next(store(st).ids), repo=repo, head_sha=sha, name=name, app_id=app_id,
                   suite_id=suite_id(st, repo, sha, app_id),
                   status="completed" if conclusion else "queued", conclusion=conclusion,
                   started_at=now, completed_at=now if conclusion else None)
    store(st).check_runs[run.id] = run
    return run


def check_runs(st: FakeState, full_name: str, sha: str | None = None,
               name: str | None = None) -> list[CheckRun]:
    """Check runs of the repository (on one commit, with one name), oldest first."""
    repo = st.repo(full_name)
    return [r for r in sorted(store(st).check_runs.values(), key=lambda r: r.id)
            if r.repo is repo and (sha is None or r.head_sha == sha)
            and (name is None or r.name == name)]


def pull_comments(st: FakeState, pr: PullRequest) -> list[Any]:
    return list(pr.issue.comments)


# ----------------------------------------------------------------------------- rendering
def _branch_end(st: FakeState, repo: Repo | None, ref: str, sha: str,
                fallback_user: User) -> dict[str, Any]:
    owner = repo.owner if repo is not None else fallback_user
    return {
        "label": f"{owner.login}:{ref}",
        "ref": ref,
        "sha": sha,
        "user": render.user(st, owner),
        "repo": render.repo(st, repo) if repo is not None else None,
    }


def render_pull(st: FakeState, pr: PullRequest) -> dict[str, Any]:
    """The pull-request object (GET /repos/{o}/{r}/pulls/{n}; webhook payloads)."""
    r = pr.base
    i = pr.issue
    api = f"{st.api_url}/repos/{r.full_name}"
    html = f"{st.web_url}/{r.full_name}/pull/{pr.number}"
    return {
        "url": f"{api}/pulls/{pr.number}",
        "id": pr.id,
        "node_id": node_id("PullRequest", pr.id),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": f"{api}/issues/{pr.number}",
        "commits_url": f"{api}/pulls/{pr.number}/commits",
        "review_comments_url": f"{api}/pulls/{pr.number}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{pr.number}/comments",
        "statuses_url": f"{api}/statuses/{pr.head_sha}",
        "number": pr.number,
        "state": i.state,
        "locked": i.locked,
        "title": i.title,
        "user": render.user(st, i.user),
        "body": i.body,
        "labels": [],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": iso(i.created_at),
        "updated_at": iso(i.updated_at),
        "closed_at": iso(i.closed_at) if i.closed_at else None,
        "merged_at": iso(pr.merged_at) if pr.merged_at else None,
        "merge_commit_sha": None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": _branch_end(st, pr.head_repo, pr.head_ref, pr.head_sha, i.user),
        "base": _branch_end(st, r, pr.base_ref, r.heads.get(pr.base_ref, pr.base_sha), i.user),
        "_links": {
            "self": {"href": f"{api}/pulls/{pr.number}"},
            "html": {"href": html},
            "issue": {"href": f"{api}/issues/{pr.number}"},
            "comments": {"href": f"{api}/issues/{pr.number}/comments"},
            "review_comments": {"href": f"{api}/pulls/{pr.number}/comments"},
            "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
            "commits": {"href": f"{api}/pulls/{pr.number}/commits"},
            "statuses": {"href": f"{api}/statuses/{pr.head_sha}"},
        },
        "author_association": render.author_association(st, r, i.user),
        "auto_merge": None,
        "draft": pr.draft,
        "merged": pr.merged,
        "mergeable": None,
        "rebaseable": None,
        "mergeable_state": "unknown",
        "merged_by": None,
        "comments": len(i.comments),
        "review_comments": 0,
        "maintainer_can_modify": False,
        "commits": 1,
        "additions": 1,
        "deletions": 0,
        "changed_files": 1,
    }


def _minimal_pull(st: FakeState, pr: PullRequest) -> dict[str, Any]:
    """The short pull request form in check runs and check suites."""
    def end(repo: Repo, ref: str, sha: str) -> dict[str, Any]:
        return {"ref": ref, "sha": sha, "repo": {"id": repo.id, "name": repo.name,
                                                "url": f"{st.api_url}/repos/{repo.full_name}"}}

    r = pr.base
    return {"url": f"{st.api_url}/repos/{r.full_name}/pulls/{pr.number}", "id": pr.id,
            "number": pr.number, "head": end(r, pr.head_ref, pr.head_sha),
            "base": end(r, pr.base_ref, r.heads.get(pr.base_ref, pr.base_sha))}


def matching_pulls(st: FakeState, repo: Repo, sha: str) -> list[PullRequest]:
    """Open pull requests of the repository whose head is `sha` from a branch of the same
    repository: GitHub lists only those in a check run's or suite's `pull_requests` (a
    fork's are left out)."""
    return [p for p in pulls_of(st, repo)
            if p.state == "open" and p.head_sha == sha and not p.from_fork]


def render_app(st: FakeState, app_id: int) -> dict[str, Any]:
    if app_id == st.app_id:
        return render.app(st)
    return {**render.app(st), "id": app_id, "slug": f"app-{app_id}", "name": f"App {app_id}",
            "node_id": node_id("Integration", app_id)}


def render_check_run(st: FakeState, run: CheckRun) -> dict[str, Any]:
    r = run.repo
    api = f"{st.api_url}/repos/{r.full_name}"
    return {
        "id": run.id,
        "head_sha": run.head_sha,
        "node_id": node_id("CheckRun", run.id),
        "external_id": run.external_id or "",
        "url": f"{api}/check-runs/{run.id}",
        "html_url": f"{st.web_url}/{r.full_name}/runs/{run.id}",
        "details_url": run.details_url,
        "status": run.status,
        "conclusion": run.conclusion,
        "started_at": iso(run.started_at),
        "completed_at": iso(run.completed_at) if run.completed_at else None,
        "output": {
            "title": run.title,
            "summary": run.summary,
            "text": run.text,
            "annotations_count": len(run.annotations),
            "annotations_url": f"{api}/check-runs/{run.id}/annotations",
        },
        "name": run.name,
        "check_suite": {"id": run.suite_id},
        "app": render_app(st, run.app_id),
        "pull_requests": [_minimal_pull(st, p) for p in matching_pulls(st, r, run.head_sha)],
    }
