"""What an action is: an idempotent reconciler from a violation's state to GitHub's."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, ClassVar, Protocol
from urllib.parse import quote, unquote

from gidgethub.abc import GitHubAPI

from app.config import PolicyConfig


@dataclass
class ViolationView:
    id: int
    policy: str
    policy_type: str
    policy_title: str
    state: str  # open / resolved
    message: str
    issue_number: int | None
    # When the violation entered its current state; marks comments made for this transition.
    since: str = ""
    # Why it resolved when the repository did not come to comply (config deleted, ...).
    closed_reason: str | None = None
    # A person closed its issue while it was open: {"login", "at"}; the issue is reopened.
    closed_by: dict[str, str] | None = None
    repository_id: int = 0
    # The policy's details of the violation (the `{details}` placeholder).
    details: dict[str, Any] = field(default_factory=dict)
    # Where its issue is when not in the repository itself (a central issue repository).
    issue_repository: str | None = None
    # A filing started and not known to have finished: {"repo", "at"} (see create_issue).
    filing: dict[str, Any] | None = None
    # archive-repo: the day the repository is archived if still violating (the issue says).
    archive_due: date | None = None
    # fix: the pull request that carries its file fix (app/actions/fix.py).
    fix_pr_number: int | None = None


class IssueIndex(Protocol):
    """The App's issues in a repository by marker: built by one listing, shared by every
    job, and added to as issues are filed."""

    async def lookup(self, repo: str, mark: str) -> int | None: ...

    async def add(self, repo: str, mark: str, number: int) -> None: ...


@dataclass
class ActionContext:
    gh: GitHubAPI
    full_name: str
    html_base: str  # e.g. https://github.com
    bot_login: str
    violation: ViolationView
    policy: PolicyConfig
    # The central repository (full name) issues go to; None: the repository itself.
    issue_repo: str | None = None
    # The repository's page on the dashboard ("" when PUBLIC_URL is not set).
    dashboard_url: str = ""
    # Store these violation columns now (before a write to GitHub that a crash could leave
    # unrecorded); `reconciled` merges into the column, a None value there removes a key.
    checkpoint: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    # The App's issues in central issue repositories, by marker (see create_issue).
    issue_index: IssueIndex | None = None


@dataclass
class Outcome:
    status: str  # success / failed / skipped
    detail: str
    url: str | None = None
    # Columns of the violation to store (e.g. the issue number).
    updates: dict[str, Any] = field(default_factory=dict)
    # False: a failure that trying again cannot fix while nothing changes (issues disabled):
    # the action is held, not retried, until the config or the repository changes.
    retry: bool = True
    # For a held failure: the repository whose change may lift it.
    held_on: str | None = None


class Action(Protocol):
    name: ClassVar[str]
    # Actions run in ascending order: an issue is filed before the repository is archived.
    order: ClassVar[int]

    async def reconcile(self, ctx: ActionContext) -> Outcome: ...


class Describes(Protocol):
    """An action that says what it would do, for dry-run: from the context alone, with no
    request to GitHub. (Without it the reconciler logs a generic "would run <action>".)"""

    def describe(self, ctx: ActionContext) -> str: ...


def marker(policy_name: str, repo_id: int | None = None) -> str:
    """Hidden in issue bodies so an issue is found again even if the database is lost.
    An issue in a central issue repository also names the repository it is about, by
    GitHub id (a rename does not change it)."""
    repo = f" repo={repo_id}" if repo_id is not None else ""
    return f"<!-- policy-enforcer:policy={quote(policy_name, safe='')}{repo} -->"


_MARKER_RE = re.compile(r"<!-- policy-enforcer:policy=([^ ]*)(?: repo=(\d+))? -->")


def parse_marker(body: str) -> tuple[str, int | None] | None:
    """(policy name, repository id or None for the issue's own repository) of the marker
    in one of the App's issue bodies, or None."""
    found = _MARKER_RE.search(body)
    if found is None:
        return None
    return unquote(found.group(1)), int(found.group(2)) if found.group(2) else None


def policy_of_marker(body: str) -> str | None:
    """The policy name hidden in one of the App's issue bodies, or None."""
    parsed = parse_marker(body)
    return parsed[0] if parsed else None


def transition_marker(v: ViolationView, suffix: str = "") -> str:
    """Hidden in the comment made when a violation opens again or resolves, so a retried
    job sees the comment is already there and does not post it twice."""
    extra = f":{quote(suffix, safe=':')}" if suffix else ""
    return f"<!-- policy-enforcer:{v.state}:{quote(v.since, safe='')}{extra} -->"
