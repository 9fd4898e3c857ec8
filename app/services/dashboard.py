"""What the dashboard shows, read from the database. Every filter, sort and page is done in
SQL: an installation has 10,000 repositories and the pages answer in milliseconds.

A repository's state, in this order of precedence:
- `exempt`: archived or a fork; such repositories are not enforced;
- `empty`: no commit yet; not evaluated (nothing filed or archived) until the first push;
- `errored`: its last scan failed;
- `not-scanned`: never scanned yet;
- `violating`: at least one open violation;
- `compliant`: scanned, nothing open.
Compliance is compliant ÷ evaluated, where evaluated is violating + compliant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config.scope import EXEMPT
from app.db.models import ActionLog, ComplianceDay, Repository, Scan, Violation, utcnow
from app.services.paging import EXPORT_LIMIT, MAX_PER_PAGE, PER_PAGE, like_pattern, positive_number

REPO_STATES = ("violating", "compliant", "exempt", "empty", "errored", "not-scanned")
REPO_SORTS = ("name", "state", "violations", "scanned")


def _open_counts() -> Any:
    """Per repository: how many violations are open, and which policies."""
    return (
        select(Violation.repository_id.label("repository_id"),
               func.count().label("open_count"),
               func.aggregate_strings(Violation.policy, "\n").label("open_policies"))
        .where(Violation.state == "open")
        .group_by(Violation.repository_id)
        .subquery("open_v")
    )


def _state_expr(open_count: ColumnElement[Any]) -> ColumnElement[str]:
    return case(
        (or_(Repository.archived.is_(True), Repository.fork.is_(True)), literal("exempt")),
        (Repository.empty.is_(True), literal("empty")),
        (Repository.last_scan_status == "errored", literal("errored")),
        (Repository.last_scanned_at.is_(None), literal("not-scanned")),
        (open_count > 0, literal("violating")),
        else_=literal("compliant"),
    )


# ----------------------------------------------------------------------------- overview
@dataclass
class Totals:
    repositories: int = 0
    violating: int = 0
    compliant: int = 0
    exempt: int = 0
    empty: int = 0
    errored: int = 0
    not_scanned: int = 0
    open_violations: int = 0

    @property
    def evaluated(self) -> int:
        return self.violating + self.compliant

    @property
    def percent(self) -> float | None:
        """Compliant ÷ evaluated, in percent; None before anything was evaluated."""
        return None if not self.evaluated else 100.0 * self.compliant / self.evaluated


async def totals(db: AsyncSession, installation_id: int) -> Totals:
    counts = _open_counts()
    open_count = func.coalesce(counts.c.open_count, 0)
    state = _state_expr(open_count).label("state")
    rows = (await db.execute(
        select(state, func.count(), func.sum(open_count))
        .select_from(Repository)
        .outerjoin(counts, counts.c.repository_id == Repository.id)
        .where(Repository.installation_id == installation_id, Repository.present.is_(True))
        .group_by(state)
    )).all()
    out = Totals()
    for name, count, opened in rows:
        out.repositories += int(count)
        setattr(out, str(name).replace("-", "_"), int(count))
        # Every open violation of a present repository, as the per-policy totals count them
        # (an errored or archived repository may still hold some).
        out.open_violations += int(opened or 0)
    return out


@dataclass
class PolicyCount:
    policy: str
    policy_type: str
    open: int


async def open_by_policy(db: AsyncSession, installation_id: int) -> list[PolicyCount]:
    rows = (await db.execute(
        select(Violation.policy, func.max(Violation.policy_type), func.count())
        .join(Repository, Repository.id == Violation.repository_id)
        .where(Violation.installation_id == installation_id, Violation.state == "open",
               Repository.present.is_(True))
        .group_by(Violation.policy)
        .order_by(func.count().desc(), Violation.policy)
    )).all()
    return [PolicyCount(str(p), str(t), int(n)) for p, t, n in rows]


async def policy_names(db: AsyncSession, installation_id: int) -> list[str]:
    """Every policy that has ever had a violation here (the filter's choices)."""
    rows = await db.scalars(select(Violation.policy).distinct()
                            .where(Violation.installation_id == installation_id)
                            .order_by(Violation.policy))
    return [str(p) for p in rows]


async def trend(db: AsyncSession, installation_id: int, days: int) -> list[ComplianceDay]:
    since = (utcnow() - timedelta(days=days)).strftime("%Y-%m-%d")
    return list(await db.scalars(
        select(ComplianceDay)
        .where(ComplianceDay.installation_id == installation_id, ComplianceDay.day > since)
        .order_by(ComplianceDay.day)))


async def record_compliance_day(db: AsyncSession, installation_id: int) -> None:
    """Store today's point of the trend (the last full scan of a day wins)."""
    t = await totals(db, installation_id)
    day = utcnow().strftime("%Y-%m-%d")
    row = await db.scalar(select(ComplianceDay).where(
        ComplianceDay.installation_id == installation_id, ComplianceDay.day == day))
    if row is None:
        row = ComplianceDay(installation_id=installation_id, day=day)
        db.add(row)
    row.evaluated, row.compliant, row.open_violations = t.evaluated, t.compliant, \
        t.open_violations
    row.at = utcnow()


async def latest_full_scan(db: AsyncSession, installation_id: int,
                           statuses: Sequence[str] | None = None) -> Scan | None:
    query = select(Scan).where(Scan.installation_id == installation_id, Scan.kind == "full")
    if statuses is not None:
        query = query.where(Scan.status.in_(list(statuses)))
    return await db.scalar(query.order_by(Scan.id.desc()).limit(1))


# ----------------------------------------------------------------------------- repositories
@dataclass
class RepoQuery:
    q: str = ""
    policy: str = ""
    state: str = ""
    sort: str = "name"
    desc: bool = False
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def parse(cls, params: Any) -> RepoQuery:
        """From query-string parameters; anything unknown falls back to the default."""
        state = str(params.get("state", ""))
        sort = str(params.get("sort", "name"))
        return cls(
            q=str(params.get("q", "")).strip()[:200],
            policy=str(params.get("policy", "")).strip()[:255],
            state=state if state in REPO_STATES else "",
            sort=sort if sort in REPO_SORTS else "name",
            desc=str(params.get("order", "")) == "desc",
            page=positive_number(params.get("page"), 1),
            per_page=min(positive_number(params.get("per_page"), PER_PAGE), MAX_PER_PAGE),
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string of this query with `changes` (defaults left out)."""
        values = {"q": self.q, "policy": self.policy, "state": self.state, "sort": self.sort,
                  "order": "desc" if self.desc else "", "page": str(self.page)}
        values.update({k: str(v) for k, v in changes.items()})
        defaults = {"sort": "name", "page": "1", "order": ""}
        return {k: v for k, v in values.items() if v and defaults.get(k) != v}


@dataclass
class RepoRow:
    id: int
    full_name: str
    visibility: str
    state: str
    open_count: int
    open_policies: list[str]
    last_scanned_at: datetime | None
    last_scan_error: str | None

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[-1]


@dataclass
class RepoPage:
    rows: list[RepoRow] = field(default_factory=list)
    total: int = 0
    query: RepoQuery = field(default_factory=RepoQuery)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


def _repo_select(installation_id: int, query: RepoQuery) -> tuple[Select[Any], Any]:
    counts = _open_counts()
    open_count = func.coalesce(counts.c.open_count, 0)
    state = _state_expr(open_count)
    stmt = (
        select(Repository.id, Repository.full_name, Repository.visibility, state.label("state"),
               open_count.label("open_count"), counts.c.open_policies,
               Repository.last_scanned_at, Repository.last_scan_error)
        .outerjoin(counts, counts.c.repository_id == Repository.id)
        .where(Repository.installation_id == installation_id, Repository.present.is_(True))
    )
    if query.q:
        stmt = stmt.where(Repository.full_name.ilike(like_pattern(query.q), escape="\\"))
    if query.policy:
        stmt = stmt.where(select(Violation.id).where(
            Violation.repository_id == Repository.id, Violation.policy == query.policy,
            Violation.state == "open").exists())
    if query.state:
        stmt = stmt.where(state == query.state)
    order: dict[str, Any] = {
        "name": Repository.full_name,
        "state": state,
        "violations": open_count,
        "scanned": Repository.last_scanned_at,
    }
    key = order[query.sort]
    keys = [key.desc() if query.desc else key.asc()]
    if query.sort != "name":
        keys.append(Repository.full_name.asc())
    return stmt.order_by(*keys), state


def _repo_row(row: Any) -> RepoRow:
    return RepoRow(
        id=int(row.id), full_name=str(row.full_name), visibility=str(row.visibility),
        state=str(row.state), open_count=int(row.open_count),
        open_policies=sorted(str(row.open_policies).split("\n")) if row.open_policies else [],
        last_scanned_at=row.last_scanned_at, last_scan_error=row.last_scan_error)


async def repositories(db: AsyncSession, installation_id: int, query: RepoQuery) -> RepoPage:
    stmt, _ = _repo_select(installation_id, query)
    total = int(await db.scalar(select(func.count()).select_from(stmt.order_by(None)
                                                                  .subquery())) or 0)
    rows = (await db.execute(stmt.limit(query.per_page)
                             .offset((query.page - 1) * query.per_page))).all()
    return RepoPage([_repo_row(r) for r in rows], total, query)


async def all_repositories(db: AsyncSession, installation_id: int,
                           query: RepoQuery) -> list[RepoRow]:
    """Every row the query matches, for an export."""
    stmt, _ = _repo_select(installation_id, query)
    return [_repo_row(r) for r in (await db.execute(stmt.limit(EXPORT_LIMIT))).all()]


# ----------------------------------------------------------------------------- one repository
@dataclass
class RepoDetail:
    repo: Repository
    state: str
    violations: list[Violation]
    actions: list[ActionLog]
    scans: list[Scan]


async def repository_detail(db: AsyncSession, installation_id: int, full_name: str,
                            history: int = 50) -> RepoDetail | None:
    repo = await db.scalar(select(Repository).where(
        Repository.installation_id == installation_id,
        func.lower(Repository.full_name) == full_name.lower()))
    if repo is None:
        return None
    violations = list(await db.scalars(
        select(Violation).where(Violation.repository_id == repo.id)
        .order_by(case((Violation.state == "open", 0), (Violation.state == EXEMPT, 1),
                       else_=2), Violation.policy)))
    actions = list(await db.scalars(
        select(ActionLog).where(ActionLog.installation_id == installation_id,
                                ActionLog.repository_id == repo.id)
        .order_by(ActionLog.id.desc()).limit(history)))
    scans = list(await db.scalars(
        select(Scan).where(Scan.installation_id == installation_id,
                           Scan.repository_id == repo.id)
        .order_by(Scan.id.desc()).limit(10)))
    open_count = sum(1 for v in violations if v.state == "open")
    if repo.archived or repo.fork:
        state = "exempt"
    elif repo.empty:
        state = "empty"
    elif repo.last_scan_status == "errored":
        state = "errored"
    elif repo.last_scanned_at is None:
        state = "not-scanned"
    else:
        state = "violating" if open_count else "compliant"
    return RepoDetail(repo, state, violations, actions, scans)


