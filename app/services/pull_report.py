"""The words of pull request reports: check run outputs (`block-prs`) and the sticky
comment (`comment-on-prs`). Pure functions of the evaluation; no I/O."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.config import PolicyConfig
from app.policies import Result

# The check run every `block-prs` policy without its own `status_check_name` reports in.
CHECK_NAME = "policy-enforcer"
# Hidden in the sticky comment, so it is found again even if the database is lost.
COMMENT_MARKER = "<!-- policy-enforcer:pull-request -->"
# GitHub's limit on a check run's output.summary (and on a comment body).
MAX_SUMMARY = 65535
_TRUNCATED = "\n\n… (cut at GitHub's limit; the dashboard has every result)"
# Policies word their messages for the default branch; a pull request is judged on its head.
_DEFAULT_BRANCH = re.compile(r"\b(?:its|the) default branch \(`[^`]*`\)")


@dataclass(frozen=True)
class Judged:
    """One policy's result on a pull request's head."""

    policy: PolicyConfig
    result: Result


@dataclass(frozen=True)
class CheckOutput:
    conclusion: str  # success / failure
    title: str
    summary: str
    # Check run annotations (GitHub's shape: path, start_line, end_line, annotation_level,
    # message); at most 50 per request.
    annotations: tuple[dict[str, Any], ...] = ()


def on_head(message: str) -> str:
    """A policy message, reworded for a pull request's head instead of the default branch."""
    return _DEFAULT_BRANCH.sub("this pull request's head", message)


def _fit(text: str) -> str:
    if len(text) <= MAX_SUMMARY:
        return text
    return text[:MAX_SUMMARY - len(_TRUNCATED)] + _TRUNCATED


def _line(j: Judged) -> str:
    if j.result.passed:
        return f"- ✅ **{j.policy.name}**: passes."
    return f"- ❌ **{j.policy.name}**: {on_head(j.result.message)}"


def failing_title(failing: int) -> str:
    if not failing:
        return "All policies pass"
    return "1 policy fails" if failing == 1 else f"{failing} policies fail"


def check_output(judged: Sequence[Judged], head_sha: str, dashboard_url: str | None
                 ) -> CheckOutput:
    """The check run for these policies (those reporting in one check run)."""
    failing = [j for j in judged if not j.result.passed]
    parts = [f"Policies of the organization, judged on the head commit `{head_sha[:7]}` of "
             "this pull request (files as they are in this commit; settings as the repository "
             "has them):", "\n".join(_line(j) for j in (*failing, *(j for j in judged
                                                                  if j.result.passed)))]
    if failing:
        parts.append("Fix what each line says and push: the check runs again on the new "
                     "commit.")
    if dashboard_url:
        parts.append(f"[The repository on the policy-enforcer dashboard]({dashboard_url})")
    return CheckOutput("failure" if failing else "success", failing_title(len(failing)),
                       _fit("\n\n".join(parts)))


def comment_body(judged: Sequence[Judged]) -> str:
    """The sticky comment. It names no commit, so a push that changes nothing the policies
    see leaves it as it is."""
    failing = [j for j in judged if not j.result.passed]
    if not failing:
        return (f"{COMMENT_MARKER}\n✅ **policy-enforcer: all clear.** Every policy passes "
                "on this pull request's latest commit.")
    heads: list[str] = []
    for j in failing:
        d = j.policy.pr_comment_details
        if d is not None and d.message.strip() not in heads:
            heads.append(d.message.strip())
    parts = [COMMENT_MARKER, *heads,
             f"**policy-enforcer: {failing_title(len(failing))} on this pull request's latest "
             "commit.**",
             "\n".join(_line(j) for j in failing),
             "This comment is updated as the pull request changes."]
    return _fit("\n\n".join(parts))
