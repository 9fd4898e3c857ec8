"""The installation's repository list, mirrored into the database (the start of a full scan).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import gidgethub
from sqlalchemy import select

from app.db.models import Repository, Violation
from app.services.context import Services
from app.services.snapshot import version_of
from app.services.store import mark_removed, new_repository, update_repository
from app.services.withdrawals import REPO_ARCHIVED, REPO_REMOVED, withdraw

log = logging.getLogger(__name__)

# Listed repositories written per transaction, and the listing fields kept to write them
# (what upsert_repository reads, and the version).
SYNC_CHUNK = 500
# Fields of the organization's repository listing kept (in Redis) for the full scan that
# read it: sources take them from there instead of asking per repository.
ORG_LISTED_FIELDS = ("security_and_analysis",)
# Long enough for a full scan's batches to run; the next full scan lists again.
ORG_LISTED_TTL = 6 * 3600
LISTED_FIELDS = ("id", "full_name", "archived", "fork", "visibility", "private",
                 "default_branch", "pushed_at", "updated_at", "created_at")


async def sync_repositories(svc: Services, installation_id: int) -> int:
    """Mirror the installation's repository list; returns how many it has.

    Memory stays flat whatever the org's size: of each listed repository only the fields
    stored are kept (a listing entry is ~5 KB of JSON), and they are written SYNC_CHUNK at
    a time, each chunk in its own session. Repositories are marked removed only once the
    whole listing has been read."""
    gh = svc.github.installation(installation_id)
    seen: set[int] = set()
    chunk: list[dict[str, Any]] = []
    async for repo in gh.getiter("/installation/repositories?per_page=100",
                                 iterable_key="repositories"):
        rid = int(repo["id"])
        if rid not in seen:  # a repository created mid-listing can shift into two pages
            seen.add(rid)
            chunk.append({key: repo[key] for key in LISTED_FIELDS if key in repo})
        if len(chunk) >= SYNC_CHUNK:
            await _store_listed(svc, installation_id, chunk)
            chunk = []
    await _store_listed(svc, installation_id, chunk)
    async with svc.db() as db, db.begin():
        stored = await db.scalars(select(Repository.id).where(
            Repository.installation_id == installation_id, Repository.present.is_(True)))
        removed = [rid for rid in stored if rid not in seen]
        await mark_removed(db, removed)
        archived = list(await db.scalars(
            select(Violation.repository_id).join(Repository,
                                                 Repository.id == Violation.repository_id)
            .where(Violation.installation_id == installation_id, Violation.state == "open",
                   Repository.archived.is_(True)).distinct()))
    # Violations of repositories that left, or were archived without an event reaching us.
    await withdraw(svc, installation_id, REPO_REMOVED, repo_ids=removed)
    await withdraw(svc, installation_id, REPO_ARCHIVED, repo_ids=archived)
    return len(seen)


def _listed_key(repo_id: int) -> str:
    return f"pe:org-listed:{repo_id}"


async def keep_org_listing(svc: Services, installation_id: int, org: str) -> int:
    """List the organization's repositories (`GET /orgs/{org}/repos`, 100 a page) and keep
    ORG_LISTED_FIELDS of each for this full scan's batches; returns how many were kept.
    A listing GitHub refuses keeps nothing (the sources then ask per repository)."""
    gh = svc.github.installation(installation_id)
    kept = 0
    pending: dict[int, str] = {}
    try:
        async for repo in gh.getiter(f"/orgs/{quote(org, safe='')}/repos?per_page=100"):
            fields = {k: repo[k] for k in ORG_LISTED_FIELDS if repo.get(k) is not None}
            if fields:
                pending[int(repo["id"])] = json.dumps(fields)
            if len(pending) >= SYNC_CHUNK:
                kept += await _keep(svc, pending)
                pending = {}
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) not in (403, 404):
            raise
        log.info("installation %s: organization listing refused (%s); sources ask per "
                 "repository", installation_id, exc.status_code)
    return kept + await _keep(svc, pending)


async def _keep(svc: Services, items: dict[int, str]) -> int:
    if items:
        async with svc.redis.pipeline(transaction=False) as pipe:
            for rid, value in items.items():
                pipe.set(_listed_key(rid), value, ex=ORG_LISTED_TTL)
            await pipe.execute()
    return len(items)


async def org_listed(svc: Services, repo_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """What keep_org_listing kept of these repositories."""
    if not repo_ids:
        return {}
    raw = await svc.redis.mget([_listed_key(rid) for rid in repo_ids])
    return {rid: json.loads(value) for rid, value in zip(repo_ids, raw, strict=True) if value}


async def _store_listed(svc: Services, installation_id: int,
                        listed: Sequence[dict[str, Any]]) -> None:
    if not listed:
        return
    async with svc.db() as db, db.begin():
        # One SELECT for the chunk's rows and one flush for its writes, not one per row.
        rows = {r.id: r for r in await db.scalars(select(Repository).where(
            Repository.id.in_([int(data["id"]) for data in listed])))}
        for data in listed:
            row = rows.get(int(data["id"])) or new_repository(db, installation_id, data)
            update_repository(row, installation_id, data)
            row.listed_version = version_of(data.get("pushed_at"), data.get("updated_at"))
