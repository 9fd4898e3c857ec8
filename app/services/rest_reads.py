"""The snapshot layer's REST reads: a file through the contents API (what GraphQL cuts),
the default workflow token permissions (GraphQL has no field for them), and the `Reader`
the sources' REST reads go through."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import gidgethub
from gidgethub.abc import GitHubAPI

from app.github.paths import repo_path, segment
from app.policies.base import MAX_FILE_BYTES
from app.sources import Reply

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TooLarge:
    """A file over MAX_FILE_BYTES, not downloaded."""

    size: int


def _is_404(exc: gidgethub.HTTPException) -> bool:
    return int(exc.status_code) == 404


async def fetch_file(gh: GitHubAPI, full_name: str, path: str, ref: str
                     ) -> str | TooLarge | None:
    """The file's text on `ref`, None when it does not exist (or is not a file), or
    TooLarge when it is over MAX_FILE_BYTES."""
    url = f"{repo_path(full_name)}/contents/{quote(path)}?ref={quote(ref, safe='')}"
    try:
        data: Any = await gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if _is_404(exc):
            return None
        raise
    if not isinstance(data, dict) or data.get("type") != "file":
        return None
    size = data.get("size")
    if isinstance(size, int) and size > MAX_FILE_BYTES:
        return TooLarge(size)
    if data.get("encoding") == "base64" and data.get("content") is not None:
        return base64.b64decode(data["content"]).decode("utf-8", errors="replace")
    # Content left out (GitHub inlines up to 1 MB, so only near the limit): ask for the
    # raw media type instead.
    raw = await gh.getitem(url, accept="application/vnd.github.raw+json")
    return raw if isinstance(raw, str) else bytes(raw).decode("utf-8", errors="replace")


async def fetch_workflow_permissions(gh: GitHubAPI, full_name: str) -> str | None:
    try:
        data = await gh.getitem(f"{repo_path(full_name)}/actions/permissions/workflow")
    except gidgethub.BadRequest as exc:
        if _is_404(exc):  # Actions disabled for the repository
            return None
        raise
    return str(data.get("default_workflow_permissions"))


async def fetch_org_workflow_permissions(gh: GitHubAPI, org: str) -> str | None:
    """The organization's default workflow permissions, or None when they cannot be read:
    the App was not granted "Organization administration: read" (403), or `org` is not an
    organization (404). Any failure only means falling back to per-repository reads."""
    try:
        data = await gh.getitem(f"/orgs/{segment(org)}/actions/permissions/workflow")
    except gidgethub.HTTPException as exc:
        log.debug("organization %s: default workflow permissions unreadable (%s)",
                  org, exc.status_code)
        return None
    value = data.get("default_workflow_permissions") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


async def fetch_workflow_permissions_probing(gh: GitHubAPI, full_name: str) -> str | None:
    """For a repository that had Actions disabled: ask whether it still has (a 200 that
    comes back as a free 304 while nothing changes, where the disabled workflow endpoint is
    a 404 paid every time), and read the setting only if Actions is now enabled."""
    data = await gh.getitem(f"{repo_path(full_name)}/actions/permissions")
    if not data.get("enabled"):
        return None
    return await fetch_workflow_permissions(gh, full_name)


class GitHubReader:
    """`app.sources.Reader` over the GitHub client, bound to one repository."""

    def __init__(self, gh: GitHubAPI, full_name: str) -> None:
        self.gh = gh
        self.base = repo_path(full_name)

    def _url(self, path: str) -> str:
        if path.startswith("/"):
            return path
        return f"{self.base}/{path}" if path else self.base

    async def get(self, path: str, *, expect: tuple[int, ...] = (404,)) -> Reply:
        try:
            return Reply(200, await self.gh.getitem(self._url(path)))
        except gidgethub.HTTPException as exc:
            if int(exc.status_code) in expect:
                return Reply(int(exc.status_code))
            raise

    async def get_all(self, path: str, *, expect: tuple[int, ...] = (404,)
                      ) -> tuple[int, list[Any]]:
        try:
            return 200, [item async for item in self.gh.getiter(self._url(path))]
        except gidgethub.HTTPException as exc:
            if int(exc.status_code) in expect:
                return int(exc.status_code), []
            raise
