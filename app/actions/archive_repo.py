"""archive-repo: archive a repository that violates the policy."""

from __future__ import annotations

from typing import ClassVar

from app.actions.base import ActionContext, Outcome
from app.github.paths import repo_path


class ArchiveRepo:
    name: ClassVar[str] = "archive-repo"
    # Last: an archived repository is read-only, so issues must be filed first.
    order: ClassVar[int] = 100

    async def reconcile(self, ctx: ActionContext) -> Outcome:
        url = f"{ctx.html_base}/{ctx.full_name}"
        if ctx.violation.state != "open":
            # Unarchiving is a human decision; resolving never undoes an archive.
            return Outcome("skipped", "violation resolved; the repository is left as it is", url)
        repo = await ctx.gh.getitem(f"{repo_path(ctx.full_name)}")
        if repo.get("archived"):
            return Outcome("skipped", "already archived", url)
        await ctx.gh.patch(f"{repo_path(ctx.full_name)}", data={"archived": True})
        return Outcome("success", f"archived: {ctx.violation.message}", url)


ACTION = ArchiveRepo()
