"""`python -m app scan --installation ID [--repo OWNER/NAME] [--dry-run]`: a scan in the
foreground, with a table of what each policy found.

`--dry-run` reads GitHub and judges, and writes nothing: no database change, no action. A
scan without it records its results as a worker's scan would, and queues the actions for
the workers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from app.db.models import Installation, Repository
from app.github.paths import repo_path
from app.services.config import config_for, refresh_config
from app.services.context import Services
from app.services.judging import Judgement, judge, needs_of
from app.services.repositories import sync_repositories
from app.services.scanning import scan_repository
from app.services.snapshot import GRAPHQL_BATCH, Fetched, fetch_snapshots

# Repositories scanned at once without --dry-run (each is its own scan_repository).
CONCURRENCY = 8


class ForegroundError(Exception):
    """The scan cannot run (unknown installation, no valid config, unknown repository)."""


@dataclass(frozen=True)
class Row:
    repository: str
    policy: str
    # pass / FAIL / exempt / not checked / out of scope / skipped
    outcome: str
    message: str


def rows_of(full_name: str, judged: Judgement) -> list[Row]:
    rows = []
    for name, result in judged.results.items():
        exempt = judged.exempt.get(name)
        outcome = ("not checked" if result.unknown else "pass" if result.passed
                   else exempt["text"] if exempt else "FAIL")
        rows.append(Row(full_name, name, outcome, result.message))
    rows += [Row(full_name, name, "out of scope", why)
             for name, why in judged.out_of_scope.items()]
    return rows


def table(rows: Sequence[Row], width: int = 100) -> str:
    """A plain-text table: repository, policy, outcome, the message's first line."""
    head = Row("REPOSITORY", "POLICY", "RESULT", "MESSAGE")
    cols = [max(len(getattr(r, f)) for r in (head, *rows)) for f in
            ("repository", "policy", "outcome")]
    lines = []
    for r in (head, *rows):
        first = r.message.strip().splitlines()[0] if r.message.strip() else ""
        if len(first) > width:
            first = first[:width - 1] + "…"
        lines.append(f"{r.repository:<{cols[0]}}  {r.policy:<{cols[1]}}  "
                     f"{r.outcome:<{cols[2]}}  {first}".rstrip())
    return "\n".join(lines)


async def _installation(svc: Services, installation_id: int) -> Installation:
    async with svc.db() as db:
        inst = await db.get(Installation, installation_id)
    if inst is None or not inst.active:
        raise ForegroundError(f"installation {installation_id} is not an active installation "
                              "this deployment knows (has the App received its events?)")
    return inst


async def scan_dry_run(svc: Services, installation_id: int, repo: str | None = None
                       ) -> list[Row]:
    """Read and judge; write nothing anywhere."""
    await _installation(svc, installation_id)
    gh = svc.github.installation(installation_id)
    async with svc.db() as db:
        # The config as GitHub has it now; the session is rolled back, never committed.
        inst = await db.get(Installation, installation_id)
        assert inst is not None  # noqa: S101 - checked just above
        await refresh_config(gh, inst)
        cfg, status, error = config_for(inst), inst.config_status, inst.config_error
        org = inst.account_login if inst.account_type == "Organization" else None
        await db.rollback()
    if cfg is None or status != "valid":
        raise ForegroundError(f"the config is {status}: {error}")
    if repo is not None:
        data = await gh.getitem(repo_path(repo))
        pairs = [(int(data["id"]), str(data["full_name"]))]
    else:
        pairs = [(int(r["id"]), str(r["full_name"])) async for r in gh.getiter(
            "/installation/repositories?per_page=100", iterable_key="repositories")]
    rows: list[Row] = []
    needs = needs_of(cfg)
    for start in range(0, len(pairs), GRAPHQL_BATCH):
        got = await fetch_snapshots(gh, pairs[start:start + GRAPHQL_BATCH], needs, org=org,
                                    forks=cfg.scans_forks())
        for (_, name), item in zip(pairs[start:start + GRAPHQL_BATCH], got.values(),
                                   strict=True):
            if not isinstance(item, Fetched):
                rows.append(Row(name, "-", "error", item.reason))
            elif item.snapshot.archived or item.meta.get("empty") or (
                    item.snapshot.fork and not cfg.scans_forks()):
                rows.append(Row(name, "-", "skipped", "archived, empty, or a fork"))
            else:
                rows += rows_of(name, judge(cfg, item.snapshot))
    return sorted(rows, key=lambda r: (r.repository.lower(), r.policy))


async def scan_recorded(svc: Services, installation_id: int, repo: str | None = None
                        ) -> list[Row]:
    """Scan and record each repository (actions are queued for the workers)."""
    await _installation(svc, installation_id)
    await sync_repositories(svc, installation_id)
    async with svc.db() as db:
        query = select(Repository).where(Repository.installation_id == installation_id,
                                         Repository.present.is_(True))
        if repo is not None:
            query = query.where(func.lower(Repository.full_name) == repo.lower())
        repos = list(await db.scalars(query))
    if repo is not None and not repos:
        raise ForegroundError(f"{repo} is not among the installation's repositories")
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(r: Repository) -> list[Row]:
        async with limit:
            out = await scan_repository(svc, installation_id, r.id)
        if out.judged is None:
            return [Row(r.full_name, "-", "skipped", out.reason or out.status)]
        return rows_of(r.full_name, out.judged)

    rows = [row for part in await asyncio.gather(*(one(r) for r in repos)) for row in part]
    return sorted(rows, key=lambda r: (r.repository.lower(), r.policy))
