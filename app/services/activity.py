"""What happened in an installation, for the dashboard: scan history and the action log,
filtered and paged in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ActionLog, Repository, Scan
from app.services.paging import EXPORT_LIMIT, MAX_PER_PAGE, PER_PAGE, like_pattern, positive_number


async def scans(db: AsyncSession, installation_id: int, page: int = 1,
                per_page: int = PER_PAGE) -> tuple[list[tuple[Scan, str | None]], int]:
    total = int(await db.scalar(select(func.count()).select_from(Scan)
                                .where(Scan.installation_id == installation_id)) or 0)
    rows = (await db.execute(
        select(Scan, Repository.full_name)
        .outerjoin(Repository, Repository.id == Scan.repository_id)
        .where(Scan.installation_id == installation_id)
        .order_by(Scan.id.desc()).limit(per_page).offset((page - 1) * per_page))).all()
    return [(s, n) for s, n in rows], total


async def scan(db: AsyncSession, installation_id: int, scan_id: int) -> Scan | None:
    row = await db.get(Scan, scan_id, populate_existing=True)
    return row if row is not None and row.installation_id == installation_id else None


# ----------------------------------------------------------------------------- action log
# dry-run: what a policy in dry-run would have done (nothing was written to GitHub); a
# status of its own so that a trial of a config can be read, and filtered, on its own.
ACTION_STATUSES = ("success", "failed", "skipped", "dry-run")


@dataclass
class ActionQuery:
    policy: str = ""
    action: str = ""
    status: str = ""
    repository: str = ""
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def parse(cls, params: Any) -> ActionQuery:
        status = str(params.get("status", ""))
        return cls(
            policy=str(params.get("policy", "")).strip()[:255],
            action=str(params.get("action", "")).strip()[:64],
            status=status if status in ACTION_STATUSES else "",
            repository=str(params.get("repository", "")).strip()[:255],
            page=positive_number(params.get("page"), 1),
            per_page=min(positive_number(params.get("per_page"), PER_PAGE), MAX_PER_PAGE),
        )

    def params(self, **changes: Any) -> dict[str, str]:
        values = {"policy": self.policy, "action": self.action, "status": self.status,
                  "repository": self.repository, "page": str(self.page)}
        values.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v and not (k == "page" and v == "1")}


def _action_select(installation_id: int, query: ActionQuery) -> Select[Any]:
    conditions = [ActionLog.installation_id == installation_id]
    if query.policy:
        conditions.append(ActionLog.policy == query.policy)
    if query.action:
        conditions.append(ActionLog.action == query.action)
    if query.status:
        conditions.append(ActionLog.status == query.status)
    if query.repository:
        conditions.append(ActionLog.repository.ilike(like_pattern(query.repository), escape="\\"))
    return select(ActionLog).where(and_(*conditions))


async def action_log(db: AsyncSession, installation_id: int,
                     query: ActionQuery) -> tuple[list[ActionLog], int]:
    stmt = _action_select(installation_id, query)
    total = int(await db.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = await db.scalars(stmt.order_by(ActionLog.id.desc()).limit(query.per_page)
                            .offset((query.page - 1) * query.per_page))
    return list(rows), total


async def all_actions(db: AsyncSession, installation_id: int,
                      query: ActionQuery) -> list[ActionLog]:
    stmt = _action_select(installation_id, query)
    return list(await db.scalars(stmt.order_by(ActionLog.id.desc()).limit(EXPORT_LIMIT)))


async def action_choices(db: AsyncSession, installation_id: int
                         ) -> tuple[list[str], list[str]]:
    """The policies and actions the log holds (the filters' choices), in one pass over the
    log (which is never pruned: each pass costs in proportion to its size)."""
    pairs = (await db.execute(select(ActionLog.policy, ActionLog.action).distinct().where(
        ActionLog.installation_id == installation_id))).all()
    return (sorted({str(p) for p, _ in pairs if p is not None}),
            sorted({str(a) for _, a in pairs}))
