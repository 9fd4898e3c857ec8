"""archive-repo: archive a repository whose violation is still open on its archive date.

When is decided by app/services/archiving.py (the grace period, the date announced in the
issue, protected and empty repositories); the reconciler runs this action only once that
date has come and a scan on or after it saw the violation still failing.
"""

from __future__ import annotations

from typing import ClassVar

from app.actions.base import ActionContext, Outcome
from app.github.paths import repo_path


class ArchiveRepo:
    name: ClassVar[str] = "archive-repo"
    # Last: an archived repository is read-only, so issues must be filed first.
    order: ClassVar[int] = 100

    def describe(self, ctx: ActionContext) -> str:
        v = ctx.violation
        if v.state != "open":
            return "would leave the repository as it is (the violation resolved)"
        when = f" (still violating on {v.archive_due.isoformat()})" if v.archive_due else ""
        return f"would archive the repository now{when}"

    async def reconcile(self, ctx: ActionContext) -> Outcome:
        url = f"{ctx.html_base}/{ctx.full_name}"
        if ctx.violation.state != "open":
            # Unarchiving is a human decision; resolving never undoes an archive.
            return Outcome("skipped", "violation resolved; the repository is left as it is", url)
        # Read first: a retry after a PATCH whose answer was lost finds it done.
        repo = await ctx.gh.getitem(f"{repo_path(ctx.full_name)}")
        if repo.get("archived"):
            return Outcome("skipped", "already archived", url)
        await ctx.gh.patch(f"{repo_path(ctx.full_name)}", data={"archived": True})
        due = ctx.violation.archive_due
        on = f" on {due.isoformat()}" if due else ""
        return Outcome("success", f"archived: still violating{on}: {ctx.violation.message}",
                       url)


ACTION = ArchiveRepo()
