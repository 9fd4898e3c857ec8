"""Database helpers shared by the services: upserts of installations and repositories."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Installation, Repository, Scan, Violation, utcnow
from app.metrics import observe_scan
from app.services.dashboard import record_compliance_day


async def ensure_installation(db: AsyncSession, installation_id: int,
                              account: Mapping[str, Any] | None = None, *,
                              authoritative: bool = True) -> Installation:
    """The installation row, created if missing. `account` comes from the payload; only an
    `installation` event's account is authoritative, others just fill in a missing one."""
    inst = await db.get(Installation, installation_id)
    if inst is None:
        inst = Installation(id=installation_id, account_login=str((account or {}).get("login", "")),
                            account_type=str((account or {}).get("type", "Organization")))
        db.add(inst)
        await db.flush()
    elif account and (authoritative or not inst.account_login):
        inst.account_login = str(account.get("login", inst.account_login))
        inst.account_type = str(account.get("type", inst.account_type))
    return inst


def _visibility(data: Mapping[str, Any]) -> str:
    vis = data.get("visibility")
    if isinstance(vis, str):
        return vis
    return "private" if data.get("private") else "public"


async def upsert_repository(db: AsyncSession, installation_id: int,
                            data: Mapping[str, Any], *, flush: bool = True) -> Repository:
    """Create or update a repository from a REST or webhook repository object.
    `flush=False` for many in a row: the caller flushes once (one multi-row INSERT)."""
    repo = await db.get(Repository, int(data["id"]))
    if repo is None:
        repo = new_repository(db, installation_id, data)
    update_repository(repo, installation_id, data)
    if flush:
        await db.flush()
    return repo


def new_repository(db: AsyncSession, installation_id: int,
                   data: Mapping[str, Any]) -> Repository:
    repo = Repository(id=int(data["id"]), installation_id=installation_id,
                      full_name=str(data["full_name"]))
    db.add(repo)
    return repo


def update_repository(repo: Repository, installation_id: int, data: Mapping[str, Any]) -> None:
    repo.installation_id = installation_id
    repo.full_name = str(data["full_name"])
    repo.present = True
    if "archived" in data:
        repo.archived = bool(data["archived"])
    if "fork" in data:
        repo.fork = bool(data["fork"])
    if "visibility" in data or "private" in data:
        repo.visibility = _visibility(data)
    if data.get("default_branch"):
        repo.default_branch = str(data["default_branch"])
    created = github_time(data.get("created_at"))
    if created is not None:
        repo.created_on_github = created
    if "empty" in data:  # only the snapshot knows (GraphQL's isEmpty)
        repo.empty = bool(data["empty"])


def github_time(value: Any) -> datetime | None:
    """A time as GitHub writes it: ISO 8601, or epoch seconds (push payloads)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


async def mark_removed(db: AsyncSession, repo_ids: Iterable[int]) -> None:
    ids = list(repo_ids)
    if ids:
        await db.execute(update(Repository).where(Repository.id.in_(ids)).values(present=False))


async def scannable_repository_ids(db: AsyncSession, installation_id: int, *,
                                   forks: bool = False) -> list[int]:
    """The repositories a full scan looks at (forks only when a policy opts them in)."""
    query = select(Repository.id).where(
        Repository.installation_id == installation_id,
        Repository.present.is_(True),
        Repository.archived.is_(False),
    )
    if not forks:
        query = query.where(Repository.fork.is_(False))
    return list(await db.scalars(query.order_by(Repository.full_name)))


async def fork_ids_held(db: AsyncSession, installation_id: int) -> list[int]:
    """Forks that still hold violations (from a config that opted forks in)."""
    rows = await db.scalars(select(Violation.repository_id).join(
        Repository, Repository.id == Violation.repository_id).where(
        Violation.installation_id == installation_id, Repository.fork.is_(True),
        Violation.state.in_(("open", "exempt"))).distinct())
    return list(rows)


async def bump_scan(db: AsyncSession, scan_id: int, *, ok: bool, opened: int = 0,
                    resolved: int = 0) -> None:
    """Count one finished repository in a scan; close the scan when all are counted."""
    await count_scan(db, scan_id, done=1 if ok else 0, errored=0 if ok else 1, opened=opened,
                     resolved=resolved)


async def count_scan(db: AsyncSession, scan_id: int, *, done: int = 0, errored: int = 0,
                     opened: int = 0, resolved: int = 0) -> None:
    """Count finished repositories in a scan; close the scan when all are counted."""
    if not (done or errored or opened or resolved):
        return
    await db.execute(
        update(Scan).where(Scan.id == scan_id).values(
            done=Scan.done + done, errored=Scan.errored + errored,
            violations_opened=Scan.violations_opened + opened,
            violations_resolved=Scan.violations_resolved + resolved,
        )
    )
    scan = await db.get(Scan, scan_id, populate_existing=True)
    if scan is not None and scan.status == "running" and scan.done + scan.errored >= scan.total:
        scan.status = "errored" if scan.errored else "ok"
        scan.finished_at = utcnow()
        observe_scan(scan.kind, (scan.finished_at - scan.started_at).total_seconds())
        if scan.detail and scan.detail.startswith("waiting"):
            scan.detail = None
        if scan.kind == "full":
            await record_compliance_day(db, scan.installation_id)
