"""What an action is: an idempotent reconciler from a violation's state to GitHub's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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


@dataclass
class ActionContext:
    gh: GitHubAPI
    full_name: str
    html_base: str  # e.g. https://github.com
    bot_login: str
    violation: ViolationView
    policy: PolicyConfig


@dataclass
class Outcome:
    status: str  # success / failed / skipped
    detail: str
    url: str | None = None
    # Columns of the violation to store (e.g. the issue number).
    updates: dict[str, Any] = field(default_factory=dict)


class Action(Protocol):
    name: ClassVar[str]
    # Actions run in ascending order: an issue is filed before the repository is archived.
    order: ClassVar[int]

    async def reconcile(self, ctx: ActionContext) -> Outcome: ...


def marker(policy_name: str) -> str:
    """Hidden in issue bodies so an issue is found again even if the database is lost."""
    return f"<!-- policy-enforcer:policy={quote(policy_name, safe='')} -->"


_MARKER_RE = re.compile(r"<!-- policy-enforcer:policy=([^ ]*) -->")


def policy_of_marker(body: str) -> str | None:
    """The policy name hidden in one of the App's issue bodies, or None."""
    found = _MARKER_RE.search(body)
    return unquote(found.group(1)) if found else None


def transition_marker(v: ViolationView, suffix: str = "") -> str:
    """Hidden in the comment made when a violation opens again or resolves, so a retried
    job sees the comment is already there and does not post it twice."""
    extra = f":{quote(suffix, safe=':')}" if suffix else ""
    return f"<!-- policy-enforcer:{v.state}:{quote(v.since, safe='')}{extra} -->"
