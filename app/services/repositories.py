"""The installation's repository list, mirrored into the database (the start of a full scan).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from app.db.models import Repository, Violation
from app.services.context import Services
from app.services.snapshot import version_of
from app.services.store import mark_removed, new_repository, update_repository
from app.services.withdrawals import REPO_ARCHIVED, REPO_REMOVED, withdraw

# Listed repositories written per transaction, and the listing fields kept to write them
# (what upsert_repository reads, and the version).
SYNC_CHUNK = 500
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
