"""create-issue: at most one issue per (repository, policy), opened, updated and closed.

The issue is filed in the repository itself, or in a central issue repository when the
config names one (`issue_repo`); then its title and body name the repository it is about,
and its hidden marker names it too (by GitHub id). It is tracked in the database (number,
and the repository when central) and by the marker, so it is found again if the database
is lost. Running this twice changes nothing.

Finding an issue by its marker means listing the App's issues in a repository. That is
cheap in a repository's own issues (done whenever the database does not know the issue),
and expensive in a central repository with thousands, so there:
- the App's issues are indexed by marker (app/services/issue_index.py): one listing per
  repository, kept in Redis and added to with every issue filed, so a new violation costs
  one Redis read, and a database that was lost finds its issues without a listing each;
- before filing, the violation records that a filing is in progress (`filing`); a retry
  that finds that record (the job died after GitHub created the issue, before anything
  recorded it) lists only the issues updated since it was written.

When the issue repository changes, an open issue moves: the issue is filed (or found) in
the new place first, then the old one gets a comment that links it and is closed.
"""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import gidgethub

from app.actions.base import ActionContext, Outcome, marker, transition_marker
from app.config.scope import EXEMPT
from app.github.paths import repo_path
from app.issue_text import TemplateProblem, render_template

DEFAULT_LABELS = ("policy-enforcer",)
LABEL_COLOR = "d93f0b"
MAX_TITLE = 256
# GitHub refuses bodies over 65536 characters; the message and footer are kept whole.
MAX_BODY = 65536
# A filing's record is written just before the POST; GitHub's clocks and ours may differ.
CLOCK_SLACK = timedelta(minutes=5)


class IssuesDisabled(Exception):
    """GitHub answered 410 "Issues are disabled for this repo"."""

    def __init__(self, repo: str) -> None:
        super().__init__(repo)
        self.repo = repo


def _check_disabled(exc: gidgethub.BadRequest, repo: str) -> None:
    if int(exc.status_code) == 410 and "disabled" in str(exc).lower():
        raise IssuesDisabled(repo) from exc


# ----------------------------------------------------------------------------- text
def _target(ctx: ActionContext) -> str:
    """The repository the violation's issue belongs in."""
    return ctx.issue_repo or ctx.full_name


def _central(ctx: ActionContext, repo: str | None = None) -> bool:
    return (repo or _target(ctx)).lower() != ctx.full_name.lower()


def _marker(ctx: ActionContext, repo: str) -> str:
    v = ctx.violation
    return marker(v.policy, v.repository_id) if _central(ctx, repo) else marker(v.policy)


def _details_text(details: dict[str, Any]) -> str:
    lines = []
    for key, value in details.items():
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        lines.append(f"- {key}: {shown}")
    return "\n".join(lines)


def _values(ctx: ActionContext) -> dict[str, str]:
    v = ctx.violation
    return {"repo": ctx.full_name, "policy": v.policy, "message": v.message,
            "details": _details_text(v.details), "dashboard_url": ctx.dashboard_url}


def _render(template: str, ctx: ActionContext, what: str, problems: list[str]) -> str | None:
    try:
        return render_template(template, _values(ctx))
    except TemplateProblem as exc:  # validated at parse time; reported, never fatal
        problems.append(f"the configured issue {what} could not be rendered ({exc})")
        return None


def _title(ctx: ActionContext, problems: list[str]) -> str:
    d = ctx.policy.issue_details
    title = _render(d.title, ctx, "title", problems) if d is not None and d.title else None
    title = " ".join((title or f"Policy violation: {ctx.violation.policy}").split())
    if _central(ctx) and ctx.full_name.lower() not in title.lower():
        title = f"[{ctx.full_name}] {title}"
    return title[:MAX_TITLE] or f"Policy violation: {ctx.violation.policy}"[:MAX_TITLE]


def _labels(ctx: ActionContext) -> list[str]:
    d = ctx.policy.issue_details
    return list(d.labels) if d is not None and d.labels else list(DEFAULT_LABELS)


def _body(ctx: ActionContext, repo: str, problems: list[str] | None = None) -> str:
    """The issue body, in parts: extend it by adding a part where it belongs."""
    v = ctx.violation
    d = ctx.policy.issue_details
    problems = [] if problems is None else problems
    custom = _render(d.body, ctx, "body", problems) if d is not None and d.body else None
    central = _central(ctx, repo)
    parts: list[str] = []
    if central:
        parts.append(f"**Repository:** [{ctx.full_name}]({ctx.html_base}/{ctx.full_name})")
    custom_at = len(parts)
    parts.append(f"**What is wrong:** {v.message}")
    if v.archive_due is not None and v.state == "open":
        parts.append(f"⚠️ **This repository will be archived on {v.archive_due.isoformat()}** "
                     "unless it complies with this policy by then.")
    if ctx.dashboard_url:
        parts.append(f"[{ctx.full_name} on the policy dashboard]({ctx.dashboard_url})")
    parts.extend(f"_Note: {problem}; the default text is used._" for problem in problems)
    rescan = "" if central else " Comment `/policy rescan` to check again now."
    parts.append(
        f"---\nPolicy **{v.policy}** (`{v.policy_type}`: {v.policy_title}). "
        "This issue is managed by policy-enforcer: it closes by itself once the repository "
        f"complies.{rescan}"
    )
    parts.append(_marker(ctx, repo))
    if custom and custom.strip():
        # Only the configured text is cut to GitHub's limit: the rest stays whole.
        room = MAX_BODY - len("\n\n".join(parts)) - 10
        text = custom.strip()
        parts.insert(custom_at, text if len(text) <= room else text[:max(0, room)] + "\n\n…")
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- GitHub
async def _get_issue(ctx: ActionContext, repo: str, number: int) -> dict[str, Any] | None:
    try:
        issue: dict[str, Any] = await ctx.gh.getitem(f"{repo_path(repo)}/issues/{number}")
    except gidgethub.BadRequest as exc:
        _check_disabled(exc, repo)
        if int(exc.status_code) in (404, 410):  # deleted or transferred away
            return None
        raise
    return issue


async def _find_by_marker(ctx: ActionContext, repo: str, since: str | None = None
                          ) -> dict[str, Any] | None:
    mark = _marker(ctx, repo)
    creator = quote(ctx.bot_login, safe="")
    url = f"{repo_path(repo)}/issues?state=all&creator={creator}&per_page=100"
    if since is not None:
        url += f"&since={quote(since, safe='')}"
    try:
        async for issue in ctx.gh.getiter(url):
            if "pull_request" not in issue and mark in (issue.get("body") or ""):
                return dict(issue)
    except gidgethub.BadRequest as exc:
        _check_disabled(exc, repo)
        raise
    return None


async def _ensure_labels(ctx: ActionContext, repo: str, labels: list[str]) -> None:
    for name in labels:
        # "." and ".." cannot be a path segment (URL resolution removes them, quoted or
        # not): such a label is only ever created, "already exists" being as good.
        if name not in (".", ".."):
            try:
                await ctx.gh.getitem(f"{repo_path(repo)}/labels/{quote(name, safe='')}")
                continue
            except gidgethub.BadRequest as exc:
                if int(exc.status_code) != 404:
                    raise
        # 422 already_exists: another run created it meanwhile.
        with suppress(gidgethub.InvalidField):
            await ctx.gh.post(f"{repo_path(repo)}/labels",
                              data={"name": name, "color": LABEL_COLOR})


async def _comment_once(ctx: ActionContext, repo: str, number: int, text: str,
                        suffix: str = "") -> None:
    """Post the transition comment unless an earlier try of this job already did."""
    mark = transition_marker(ctx.violation, suffix)
    url = f"{repo_path(repo)}/issues/{number}/comments"
    try:
        async for comment in ctx.gh.getiter(f"{url}?per_page=100"):
            if mark in (comment.get("body") or ""):
                return
        await ctx.gh.post(url, data={"body": f"{text}\n\n{mark}"})
    except gidgethub.BadRequest as exc:
        _check_disabled(exc, repo)
        raise


async def _patch(ctx: ActionContext, repo: str, number: int, data: dict[str, Any]) -> None:
    try:
        await ctx.gh.patch(f"{repo_path(repo)}/issues/{number}", data=data)
    except gidgethub.BadRequest as exc:
        _check_disabled(exc, repo)
        raise


def _where(ctx: ActionContext, repo: str) -> str | None:
    """violations.issue_repository for an issue in `repo`: None for the repository itself
    while no issue repository is configured (the issue repository's own issues name it, so
    the reconciler sees they are where the config wants them)."""
    return None if repo.lower() == ctx.full_name.lower() and ctx.issue_repo is None else repo


class CreateIssue:
    name: ClassVar[str] = "create-issue"
    order: ClassVar[int] = 10

    def describe(self, ctx: ActionContext) -> str:
        """Dry-run: what reconcile() would do, as far as the database knows."""
        v = ctx.violation
        if v.state != "open":
            return f"would close issue #{v.issue_number}" if v.issue_number \
                else "no issue to close"
        warn = f", warning that the repository will be archived on " \
               f"{v.archive_due.isoformat()}" if v.archive_due else ""
        return (f"would update or reopen issue #{v.issue_number}{warn}" if v.issue_number
                else f"would open an issue{warn}")

    async def reconcile(self, ctx: ActionContext) -> Outcome:
        try:
            if ctx.violation.state == "open":
                return await self._open(ctx)
            return await self._resolve(ctx)
        except IssuesDisabled as exc:
            hint = ("" if _central(ctx, exc.repo) else
                    " Enable issues in the repository's settings, or set `issue_repo` in "
                    "the config to file its issues in another repository.")
            return Outcome("failed", f"Issues are disabled for {exc.repo} (GitHub answered "
                                     f"410): no issue can be filed or changed there.{hint} "
                                     "Not retried until the repository or the config "
                                     "changes.", f"{ctx.html_base}/{exc.repo}",
                           retry=False, held_on=exc.repo)

    async def _find(self, ctx: ActionContext, repo: str) -> dict[str, Any] | None:
        """The violation's issue in `repo` when the database does not know it."""
        mark = _marker(ctx, repo)
        filing = ctx.violation.filing
        if filing and str(filing.get("repo", "")).lower() == repo.lower():
            # An earlier try was filing it here and may have got as far as GitHub: only
            # the issues updated since then are listed.
            try:
                since = (datetime.fromisoformat(str(filing.get("at"))) - CLOCK_SLACK) \
                    .astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            except ValueError:
                since = None
            found = await _find_by_marker(ctx, repo, since)
            if found is not None:
                if _central(ctx, repo) and ctx.issue_index is not None:
                    await ctx.issue_index.add(repo, mark, int(found["number"]))
                return found
        if not _central(ctx, repo):
            return await _find_by_marker(ctx, repo)  # a repository's own issues are few
        if ctx.issue_index is None:
            return None
        try:
            number = await ctx.issue_index.lookup(repo, mark)
        except gidgethub.BadRequest as exc:
            _check_disabled(exc, repo)
            raise
        return await _get_issue(ctx, repo, number) if number is not None else None

    async def _file(self, ctx: ActionContext, repo: str) -> dict[str, Any]:
        problems: list[str] = []
        title = _title(ctx, problems)
        body = _body(ctx, repo, problems)
        labels = _labels(ctx)
        await _ensure_labels(ctx, repo, labels)
        central = _central(ctx, repo)
        if central and ctx.checkpoint is not None:
            await ctx.checkpoint({"reconciled": {"filing": {
                "repo": repo, "at": datetime.now(UTC).isoformat()}}})
        try:
            created: dict[str, Any] = await ctx.gh.post(
                f"{repo_path(repo)}/issues", data={"title": title, "body": body,
                                                   "labels": labels})
        except gidgethub.BadRequest as exc:
            _check_disabled(exc, repo)
            raise
        if central and ctx.issue_index is not None:
            await ctx.issue_index.add(repo, _marker(ctx, repo), int(created["number"]))
        return created

    async def _open(self, ctx: ActionContext) -> Outcome:
        v = ctx.violation
        target = _target(ctx)
        tracked_in = v.issue_repository or ctx.full_name
        issue: dict[str, Any] | None = None
        moving: dict[str, Any] | None = None
        if v.issue_number is not None:
            found = await _get_issue(ctx, tracked_in, v.issue_number)
            if found is not None and tracked_in.lower() == target.lower():
                issue = found
            elif found is not None and found.get("state") == "open":
                moving = found  # closed once the issue is open in its new place
        if issue is None:
            issue = await self._find(ctx, target)
        if issue is None:
            created = await self._file(ctx, target)
            number, url, what = int(created["number"]), created.get("html_url"), "opened"
        else:
            number, url = int(issue["number"]), issue.get("html_url")
            what = await self._keep_open(ctx, target, issue)
        updates = {"issue_number": number, "issue_repository": _where(ctx, target)}
        if moving is not None:
            await _comment_once(ctx, tracked_in, int(moving["number"]),
                                f"Moved to {target}#{number}: the policy's issues are now "
                                f"filed in {target}.", suffix=f"moved:{target}")
            await _patch(ctx, tracked_in, int(moving["number"]),
                         {"state": "closed", "state_reason": "not_planned"})
        detail = f"{what} issue {_ref(ctx, target, number)}"
        if moving is not None:
            detail = (f"issue {_ref(ctx, target, number)} opened in place of "
                      f"{tracked_in}#{moving['number']}, which was closed (issue_repo changed)")
        elif what == "skipped":
            return Outcome("skipped", f"issue {_ref(ctx, target, number)} is already open", url,
                           updates)
        return Outcome("success", detail, url, updates)

    async def _keep_open(self, ctx: ActionContext, repo: str, issue: dict[str, Any]) -> str:
        """Reopen or update the issue; returns what was done ("skipped": nothing)."""
        number = int(issue["number"])
        body = _body(ctx, repo)
        if issue.get("state") == "closed":
            # Comment first: a retry after a failed PATCH then finds the comment and
            # only reopens, rather than posting it twice.
            closed_by = ctx.violation.closed_by
            if closed_by is not None:
                await _comment_once(
                    ctx, repo, number,
                    f"@{closed_by.get('login')} closed this issue, but the repository still "
                    f"violates **{ctx.violation.policy}**: {ctx.violation.message}\n\n"
                    "Reopening. To keep issues that people close closed, set "
                    "`respect_manual_close: true` on the policy.",
                    suffix=f"closed:{closed_by.get('at')}")
            else:
                await _comment_once(ctx, repo, number, f"The policy **{ctx.violation.policy}** "
                                                       f"fails again: {ctx.violation.message}")
            await _patch(ctx, repo, number, {"state": "open", "body": body})
            return "reopened"
        if (issue.get("body") or "") != body:
            await _patch(ctx, repo, number, {"body": body})
            return "updated"
        return "skipped"

    async def _resolve(self, ctx: ActionContext) -> Outcome:
        v = ctx.violation
        repo = v.issue_repository or ctx.full_name
        issue = None
        if v.issue_number is not None:
            issue = await _get_issue(ctx, repo, v.issue_number)
        if issue is None:
            issue = await self._find(ctx, repo)
        if issue is None and v.filing and v.filing.get("repo"):
            repo = str(v.filing["repo"])
            issue = await self._find(ctx, repo)
        if issue is None:
            return Outcome("skipped", "no issue to close")
        number = int(issue["number"])
        updates = {"issue_number": number, "issue_repository": _where(ctx, repo)}
        if issue.get("state") == "closed":
            return Outcome("skipped", f"issue {_ref(ctx, repo, number)} is already closed",
                           issue.get("html_url"), updates)
        reason = v.closed_reason
        await _comment_once(ctx, repo, number,
                            f"{reason} Closing this issue about **{v.policy}**."
                            if reason else f"The repository now complies with "
                                           f"**{v.policy}**. Closing.")
        # Exempt: closed as "not planned" (the failure stands; it is accepted for a while).
        await _patch(ctx, repo, number, {"state": "closed", "state_reason":
                                         "not_planned" if v.state == EXEMPT else "completed"})
        return Outcome("success", f"closed issue {_ref(ctx, repo, number)}",
                       issue.get("html_url"), updates)


def _ref(ctx: ActionContext, repo: str, number: int) -> str:
    return f"{repo}#{number}" if _central(ctx, repo) else f"#{number}"


ACTION = CreateIssue()
