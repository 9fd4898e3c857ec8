"""Fetch, once per repository, everything the enabled policies need."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import gidgethub
from gidgethub.abc import GitHubAPI

from app.policies import Needs, RepoSnapshot


def _is_404(exc: gidgethub.HTTPException) -> bool:
    return int(exc.status_code) == 404


async def fetch_file(gh: GitHubAPI, full_name: str, path: str, ref: str) -> str | None:
    """The file's text on `ref`, or None when it does not exist (or is not a file)."""
    url = f"/repos/{full_name}/contents/{quote(path)}?ref={quote(ref, safe='')}"
    try:
        data: Any = await gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if _is_404(exc):
            return None
        raise
    if not isinstance(data, dict) or data.get("type") != "file":
        return None
    if data.get("encoding") == "base64" and data.get("content") is not None:
        return base64.b64decode(data["content"]).decode("utf-8", errors="replace")
    # Files over 1 MB come without content; ask for the raw media type instead.
    raw = await gh.getitem(url, accept="application/vnd.github.raw+json")
    return raw if isinstance(raw, str) else bytes(raw).decode("utf-8", errors="replace")


async def fetch_workflow_permissions(gh: GitHubAPI, full_name: str) -> str | None:
    try:
        data = await gh.getitem(f"/repos/{full_name}/actions/permissions/workflow")
    except gidgethub.BadRequest as exc:
        if _is_404(exc):  # Actions disabled for the repository
            return None
        raise
    return str(data.get("default_workflow_permissions"))


async def fetch_snapshot(
    gh: GitHubAPI, full_name: str, needs: Needs
) -> tuple[RepoSnapshot, dict[str, Any]]:
    """The snapshot, and the repository's REST object (to refresh the stored copy)."""
    meta: dict[str, Any] = await gh.getitem(f"/repos/{full_name}")
    branch = str(meta.get("default_branch") or "main")
    files = {path: await fetch_file(gh, full_name, path, branch) for path in sorted(needs.files)}
    perms = await fetch_workflow_permissions(gh, full_name) if needs.workflow_permissions else None
    return RepoSnapshot(
        id=int(meta["id"]),
        full_name=str(meta["full_name"]),
        default_branch=branch,
        archived=bool(meta.get("archived")),
        fork=bool(meta.get("fork")),
        visibility=str(meta.get("visibility") or ("private" if meta.get("private") else "public")),
        files=files,
        workflow_permissions=perms,
    ), meta
