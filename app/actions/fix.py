"""fix: apply the policy's remedy (app/policies/base.py `remedy`).

- A setting (workflow permissions → read) is set with the REST API.
- A missing file is proposed in one pull request per repository, from the branch
  FIX_BRANCH: its content is the template in the org's `.github` repository
  (`templates/<file name>`, or `fix_details.template`). A later fix adds its file to the
  open pull request instead of opening another. A fix pull request a person closed is
  respected: app/services/fixes.py holds the fix when the close is seen, until the
  policy's config changes.
- A policy without a remedy (the catalog owner is a person's choice) is skipped.

GitHub refusing the fix (a missing permission, a ruleset on the branch) is a failure that
retrying cannot cure: it is held (not retried) until the config changes, and unlike a
failed issue it does not stop the policy's other actions (`blocking = False`).
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar
from urllib.parse import quote

import gidgethub

from app.actions.base import ActionContext, Outcome
from app.github.errors import describe_error
from app.github.paths import repo_path
from app.policies import REGISTRY as POLICIES
from app.policies.base import FileRemedy, Remedy, SettingRemedy, remedy_of

# The one branch (and so the one pull request) per repository that carries every file fix.
FIX_BRANCH = "policy-enforcer/fix"
# Hidden in the fix pull request's body; the listed files follow it, one a line.
PR_MARKER = "<!-- policy-enforcer:fix -->"
PR_TITLE = "Add the files the organization's policies require"
# Setting name -> (endpoint under /repos/{o}/{r}/, the permission the App needs).
SETTINGS: dict[str, tuple[str, str]] = {
    "default_workflow_permissions": ("actions/permissions/workflow", "administration: write"),
}
FILE_PERMISSIONS = "contents: write and pull_requests: write"


class Refused(Exception):
    """GitHub refused the fix, or it cannot be made: retrying will not help."""


def remedy_for(policy_type: str) -> Remedy | None:
    return remedy_of(POLICIES.get(policy_type))


def template_path(ctx: ActionContext, remedy: FileRemedy) -> str:
    details = ctx.policy.fix_details
    if details is not None and details.template:
        return details.template
    return f"templates/{remedy.path.rsplit('/', 1)[-1]}"


def org_of(full_name: str) -> str:
    return full_name.partition("/")[0]


def _status(exc: gidgethub.HTTPException) -> int:
    return int(exc.status_code)


def _refusal(exc: gidgethub.BadRequest, what: str, needs: str) -> Refused | None:
    """A 403 (missing permission, ruleset) or 422 (ruleset, validation) is a refusal."""
    status = _status(exc)
    if status == 403:
        return Refused(f"could not {what}: GitHub refused ({describe_error(exc)}); the App "
                       f"needs {needs}, and no ruleset may block it")
    if status == 422:
        return Refused(f"could not {what}: GitHub refused ({describe_error(exc)})")
    return None


class Fix:
    name: ClassVar[str] = "fix"
    # After the issue (which may tell the team a fix is proposed), before any archive.
    order: ClassVar[int] = 50
    # A refused fix leaves the policy's other actions to run.
    blocking: ClassVar[bool] = False

    def describe(self, ctx: ActionContext) -> str:
        v = ctx.violation
        if v.state != "open":
            return "would do nothing (the violation resolved)"
        remedy = remedy_for(v.policy_type)
        if isinstance(remedy, SettingRemedy):
            return (f"would fix: set {remedy.name} to {remedy.value!r} "
                    f"(PUT {repo_path(ctx.full_name)}/{SETTINGS[remedy.name][0]})"
                    if remedy.name in SETTINGS else f"would not fix: no way to set {remedy.name}")
        if isinstance(remedy, FileRemedy):
            return (f"would fix: add `{remedy.path}` from "
                    f"{org_of(ctx.full_name)}/.github:{template_path(ctx, remedy)} in the "
                    f"pull request from branch {FIX_BRANCH} (one per repository)")
        return f"would not fix: {v.policy_type} has no automatic fix"

    async def reconcile(self, ctx: ActionContext) -> Outcome:
        v = ctx.violation
        if v.state != "open":
            return Outcome("skipped", "violation resolved; nothing to fix")
        remedy = remedy_for(v.policy_type)
        try:
            if isinstance(remedy, SettingRemedy):
                return await _fix_setting(ctx, remedy)
            if isinstance(remedy, FileRemedy):
                return await _fix_file(ctx, remedy)
        except Refused as exc:
            return Outcome("failed", str(exc), retry=False)
        return Outcome("skipped", f"no automatic fix for {v.policy_type}: a person must "
                                  "fix it (see the violation's message)")


# ----------------------------------------------------------------------------- settings
async def _fix_setting(ctx: ActionContext, remedy: SettingRemedy) -> Outcome:
    known = SETTINGS.get(remedy.name)
    if known is None:
        return Outcome("skipped", f"no way to set {remedy.name} automatically")
    endpoint, needs = known
    url = f"{repo_path(ctx.full_name)}/{endpoint}"
    html = f"{ctx.html_base}/{ctx.full_name}/settings/actions"
    try:
        # Read first: a retry after a PUT whose answer was lost finds it done.
        current = await ctx.gh.getitem(url)
        was = current.get(remedy.name) if isinstance(current, dict) else None
        if was == remedy.value:
            return Outcome("success", f"{remedy.name} is already {remedy.value!r}", html)
        await ctx.gh.put(url, data={remedy.name: remedy.value})
    except gidgethub.BadRequest as exc:
        if _status(exc) == 404:
            return Outcome("skipped", f"{remedy.name} cannot be set: GitHub Actions is "
                                      "disabled for the repository", html)
        refused = _refusal(exc, f"set {remedy.name} to {remedy.value!r}", needs)
        if refused is None:
            raise
        raise refused from exc
    return Outcome("success", f"set {remedy.name} to {remedy.value!r} (was {was!r})", html)


# ----------------------------------------------------------------------------- files
async def read_template(ctx: ActionContext, path: str) -> str:
    """The template's text from the org's `.github` repository; Refused when missing."""
    repo = f"{org_of(ctx.full_name)}/.github"
    url = f"{repo_path(repo)}/contents/{quote(path)}"
    try:
        data: Any = await ctx.gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if _status(exc) in (403, 404):
            raise Refused(f"the fix template `{path}` is missing from {repo} (or the App "
                          "cannot read that repository): add it there, or point "
                          "`fix_details.template` at another file") from exc
        raise
    if not isinstance(data, dict) or data.get("type") != "file" \
            or data.get("encoding") != "base64" or data.get("content") is None:
        raise Refused(f"the fix template `{path}` in {repo} is not a file of at most 1 MB")
    return base64.b64decode(data["content"]).decode("utf-8", errors="replace")


def _listed(body: str | None) -> list[str]:
    """The files a fix pull request's body lists (after PR_MARKER)."""
    if not body or PR_MARKER not in body:
        return []
    tail = body.split(PR_MARKER, 1)[1]
    return [line[3:].split("`", 1)[0] for line in tail.splitlines() if line.startswith("- `")]


def pull_body(files: dict[str, str]) -> str:
    """The body of the fix pull request: what it adds, and for which policy."""
    lines = [f"- `{path}` (policy **{policy}**)" for path, policy in files.items()]
    return ("policy-enforcer proposes the files this repository's policies require, from "
            "the organization's templates. Review them, adjust them, and merge; closing this "
            "pull request stops these proposals until the policy's config changes.\n\n"
            + PR_MARKER + "\n" + "\n".join(lines) + "\n")


async def _find_open_pull(ctx: ActionContext) -> dict[str, Any] | None:
    owner = org_of(ctx.full_name)
    url = (f"{repo_path(ctx.full_name)}/pulls?state=open&per_page=100"
           f"&head={quote(owner + ':' + FIX_BRANCH, safe='')}")
    async for pr in ctx.gh.getiter(url):
        if isinstance(pr, dict) and pr.get("head", {}).get("ref") == FIX_BRANCH:
            return pr
    return None


async def _blob_sha(ctx: ActionContext, path: str, ref: str) -> str | None:
    """The blob sha of the file at `path` on `ref`, None when there is none."""
    url = f"{repo_path(ctx.full_name)}/contents/{quote(path)}?ref={quote(ref, safe='')}"
    try:
        data: Any = await ctx.gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if _status(exc) == 404:
            return None
        raise
    return str(data["sha"]) if isinstance(data, dict) and data.get("sha") else None


async def _put_file(ctx: ActionContext, path: str, text: str, sha: str | None = None) -> None:
    data = {"message": f"Add {path} (policy: {ctx.violation.policy})",
            "content": base64.b64encode(text.encode()).decode(), "branch": FIX_BRANCH}
    if sha is not None:
        data["sha"] = sha  # replacing the branch's older copy (see _add_to_pull)
    await ctx.gh.put(f"{repo_path(ctx.full_name)}/contents/{quote(path)}", data=data)


async def _ref_sha(ctx: ActionContext, branch: str) -> str | None:
    url = f"{repo_path(ctx.full_name)}/git/ref/heads/{quote(branch)}"
    try:
        ref: Any = await ctx.gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if _status(exc) == 404:
            return None
        raise
    return str(ref["object"]["sha"])


async def _fresh_branch(ctx: ActionContext, base: str) -> None:
    """FIX_BRANCH at the head of `base`: created, or reset when it is left over (from a
    closed pull request, or a run that died before opening one)."""
    head = await _ref_sha(ctx, base)
    if head is None:
        raise Refused(f"the default branch {base} has no commit to branch from")
    current = await _ref_sha(ctx, FIX_BRANCH)
    if current == head:
        return
    if current is None:
        try:
            await ctx.gh.post(f"{repo_path(ctx.full_name)}/git/refs",
                              data={"ref": f"refs/heads/{FIX_BRANCH}", "sha": head})
            return
        except gidgethub.BadRequest as exc:
            # "Reference already exists": another run made it a moment ago; reset it.
            if _status(exc) != 422 or "already exists" not in str(exc):
                raise
    await ctx.gh.patch(f"{repo_path(ctx.full_name)}/git/refs/heads/{quote(FIX_BRANCH)}",
                       data={"sha": head, "force": True})


async def _fix_file(ctx: ActionContext, remedy: FileRemedy) -> Outcome:
    v = ctx.violation
    template = template_path(ctx, remedy)
    try:
        text = await read_template(ctx, template)
        repo: Any = await ctx.gh.getitem(repo_path(ctx.full_name))
        base = str(repo["default_branch"])
        if await _blob_sha(ctx, remedy.path, base) is not None:
            # Added since the scan (a merged fix pull request, a person's push).
            return Outcome("skipped", f"`{remedy.path}` is on {base} already; the next scan "
                                      "resolves the violation")
        pr: dict[str, Any] | None = None
        if v.fix_pr_number is not None:
            try:
                pr = await ctx.gh.getitem(f"{repo_path(ctx.full_name)}/pulls/"
                                          f"{v.fix_pr_number}")
            except gidgethub.BadRequest as exc:
                if _status(exc) != 404:
                    raise
            if pr is not None and pr.get("state") != "open":
                # Merged, and the file deleted again since; or closed by a person, and the
                # fix was held until the config changed: either way a new attempt.
                pr = None
        if pr is None:
            pr = await _find_open_pull(ctx)
        if pr is not None:
            return await _add_to_pull(ctx, pr, remedy.path, text)
        await _fresh_branch(ctx, base)
        await _put_file(ctx, remedy.path, text)
        try:
            opened: Any = await ctx.gh.post(f"{repo_path(ctx.full_name)}/pulls", data={
                "title": PR_TITLE, "head": FIX_BRANCH, "base": base,
                "body": pull_body({remedy.path: v.policy})})
        except gidgethub.BadRequest as exc:
            # "A pull request already exists": another run opened it; add to that one.
            found = await _find_open_pull(ctx) if _status(exc) == 422 else None
            if found is None:
                raise
            return await _add_to_pull(ctx, found, remedy.path, text)
    except gidgethub.BadRequest as exc:
        refused = _refusal(exc, f"propose `{remedy.path}` in a pull request",
                           FILE_PERMISSIONS)
        if refused is None:
            raise
        raise refused from exc
    return Outcome("success", f"opened pull request #{opened['number']} adding "
                              f"`{remedy.path}` (from {org_of(ctx.full_name)}/.github:"
                              f"{template})",
                   opened.get("html_url"), updates={"fix_pr_number": int(opened["number"])})


async def _add_to_pull(ctx: ActionContext, pr: dict[str, Any], path: str,
                       text: str) -> Outcome:
    """The open fix pull request carries `path` (added once) and lists it in its body. A
    file it lists is left as it is (a person may have edited it in the pull request); one
    it does not list but has is the default branch's copy from when the branch was made
    (since deleted there), so it is replaced by the template."""
    number = int(pr["number"])
    body = pr.get("body") or ""
    listed = _listed(body)
    sha = await _blob_sha(ctx, path, FIX_BRANCH)
    added = sha is None or path not in listed
    if added:
        await _put_file(ctx, path, text, sha)
    if path not in listed:
        policies = {p: body.split(f"- `{p}` (policy **", 1)[-1].split("**", 1)[0]
                    for p in listed}
        files = {**policies, path: ctx.violation.policy}
        await ctx.gh.patch(f"{repo_path(ctx.full_name)}/pulls/{number}",
                           data={"body": pull_body(files)})
    what = "added" if added else "already carries"
    return Outcome("success", f"pull request #{number} {what} `{path}`", pr.get("html_url"),
                   updates={"fix_pr_number": number})


ACTION = Fix()
