"""create-issue: at most one issue per (repository, policy), opened, updated and closed.

The issue is tracked by number in the database and by a hidden marker in its body, so it
is found again even if the database is lost. Running this twice changes nothing.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any, ClassVar
from urllib.parse import quote

import gidgethub

from app.actions.base import ActionContext, Outcome, marker, transition_marker
from app.github.paths import repo_path

DEFAULT_LABELS = ("policy-enforcer",)
LABEL_COLOR = "d93f0b"


def _title(ctx: ActionContext) -> str:
    d = ctx.policy.issue_details
    if d is not None and d.title:
        return d.title
    return f"Policy violation: {ctx.violation.policy}"


def _labels(ctx: ActionContext) -> list[str]:
    d = ctx.policy.issue_details
    return list(d.labels) if d is not None and d.labels else list(DEFAULT_LABELS)


def _body(ctx: ActionContext) -> str:
    v = ctx.violation
    d = ctx.policy.issue_details
    parts = []
    if d is not None and d.body:
        parts.append(d.body.strip())
    parts.append(f"**What is wrong:** {v.message}")
    parts.append(
        f"---\nPolicy **{v.policy}** (`{v.policy_type}`: {v.policy_title}). "
        "This issue is managed by policy-enforcer: it closes by itself once the repository "
        "complies. Comment `/policy rescan` to check again now."
    )
    parts.append(marker(v.policy))
    return "\n\n".join(parts)


async def _find_by_marker(ctx: ActionContext) -> dict[str, Any] | None:
    mark = marker(ctx.violation.policy)
    creator = quote(ctx.bot_login, safe="")
    async for issue in ctx.gh.getiter(
        f"{repo_path(ctx.full_name)}/issues?state=all&creator={creator}&per_page=100"
    ):
        if "pull_request" not in issue and mark in (issue.get("body") or ""):
            return dict(issue)
    return None


async def _get_issue(ctx: ActionContext, number: int) -> dict[str, Any] | None:
    try:
        issue: dict[str, Any] = await ctx.gh.getitem(f"{repo_path(ctx.full_name)}/issues/{number}")
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) in (404, 410):  # deleted or transferred away
            return None
        raise
    return issue


async def _ensure_labels(ctx: ActionContext, labels: list[str]) -> None:
    for name in labels:
        # "." and ".." cannot be a path segment (URL resolution removes them, quoted or
        # not): such a label is only ever created, "already exists" being as good.
        if name not in (".", ".."):
            try:
                await ctx.gh.getitem(f"{repo_path(ctx.full_name)}/labels/{quote(name, safe='')}")
                continue
            except gidgethub.BadRequest as exc:
                if int(exc.status_code) != 404:
                    raise
        # 422 already_exists: another run created it meanwhile.
        with suppress(gidgethub.InvalidField):
            await ctx.gh.post(f"{repo_path(ctx.full_name)}/labels",
                              data={"name": name, "color": LABEL_COLOR})


async def _comment_once(ctx: ActionContext, number: int, text: str, suffix: str = "") -> None:
    """Post the transition comment unless an earlier try of this job already did."""
    mark = transition_marker(ctx.violation, suffix)
    url = f"{repo_path(ctx.full_name)}/issues/{number}/comments"
    async for comment in ctx.gh.getiter(f"{url}?per_page=100"):
        if mark in (comment.get("body") or ""):
            return
    await ctx.gh.post(url, data={"body": f"{text}\n\n{mark}"})


class CreateIssue:
    name: ClassVar[str] = "create-issue"
    order: ClassVar[int] = 10

    async def _locate(self, ctx: ActionContext) -> dict[str, Any] | None:
        issue = None
        if ctx.violation.issue_number is not None:
            issue = await _get_issue(ctx, ctx.violation.issue_number)
        if issue is None:
            issue = await _find_by_marker(ctx)
        return issue

    async def reconcile(self, ctx: ActionContext) -> Outcome:
        issue = await self._locate(ctx)
        if ctx.violation.state == "open":
            return await self._open(ctx, issue)
        return await self._resolve(ctx, issue)

    async def _open(self, ctx: ActionContext, issue: dict[str, Any] | None) -> Outcome:
        base = f"{repo_path(ctx.full_name)}/issues"
        body = _body(ctx)
        if issue is None:
            labels = _labels(ctx)
            await _ensure_labels(ctx, labels)
            created = await ctx.gh.post(base, data={"title": _title(ctx), "body": body,
                                                    "labels": labels})
            return Outcome("success", f"opened issue #{created['number']}",
                           created.get("html_url"), {"issue_number": created["number"]})
        number = int(issue["number"])
        updates = {"issue_number": number}
        if issue.get("state") == "closed":
            # Comment first: a retry after a failed PATCH then finds the comment and
            # only reopens, rather than posting it twice.
            closed_by = ctx.violation.closed_by
            if closed_by is not None:
                await _comment_once(
                    ctx, number,
                    f"@{closed_by.get('login')} closed this issue, but the repository still "
                    f"violates **{ctx.violation.policy}**: {ctx.violation.message}\n\n"
                    "Reopening. To keep issues that people close closed, set "
                    "`respect_manual_close: true` on the policy.",
                    suffix=f"closed:{closed_by.get('at')}")
            else:
                await _comment_once(ctx, number, f"The policy **{ctx.violation.policy}** "
                                                 f"fails again: {ctx.violation.message}")
            await ctx.gh.patch(f"{base}/{number}", data={"state": "open", "body": body})
            return Outcome("success", f"reopened issue #{number}", issue.get("html_url"), updates)
        if (issue.get("body") or "") != body:
            await ctx.gh.patch(f"{base}/{number}", data={"body": body})
            return Outcome("success", f"updated issue #{number}", issue.get("html_url"), updates)
        return Outcome("skipped", f"issue #{number} is already open", issue.get("html_url"),
                       updates)

    async def _resolve(self, ctx: ActionContext, issue: dict[str, Any] | None) -> Outcome:
        if issue is None:
            return Outcome("skipped", "no issue to close")
        number = int(issue["number"])
        updates = {"issue_number": number}
        if issue.get("state") == "closed":
            return Outcome("skipped", f"issue #{number} is already closed",
                           issue.get("html_url"), updates)
        base = f"{repo_path(ctx.full_name)}/issues/{number}"
        reason = ctx.violation.closed_reason
        await _comment_once(ctx, number,
                            f"{reason} Closing this issue about **{ctx.violation.policy}**."
                            if reason else f"The repository now complies with "
                                           f"**{ctx.violation.policy}**. Closing.")
        await ctx.gh.patch(base, data={"state": "closed", "state_reason": "completed"})
        return Outcome("success", f"closed issue #{number}", issue.get("html_url"), updates)


ACTION = CreateIssue()
