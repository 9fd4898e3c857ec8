"""Storage on SQLite and (with TEST_DATABASE_URL) PostgreSQL: migrations and helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.db.migrate import NotMigrated, current_revision, head_revision, require_migrated, upgrade
from app.db.models import Repository, Scan, Violation, WebhookDelivery
from app.db.session import dispose_all, sessionmaker
from app.services.store import (
    bump_scan,
    ensure_installation,
    mark_removed,
    scannable_repository_ids,
    upsert_repository,
)
from tests.dbutil import fresh_database


@pytest.fixture
async def db_url(any_database_url: str) -> AsyncIterator[str]:
    yield await fresh_database(any_database_url)
    await dispose_all()


async def test_migrate_is_repeatable_and_checked(db_url: str) -> None:
    assert await current_revision(db_url) == head_revision()
    await upgrade(db_url)  # a second run changes nothing
    await require_migrated(db_url)


async def test_migrations_match_the_models(db_url: str) -> None:
    """The migrated schema is the models' schema: no table, column or index is missing."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.engine import Connection

    from app.db.models import Base
    from app.db.session import get_engine

    def diff(conn: Connection) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        return list(compare_metadata(ctx, Base.metadata))

    async with get_engine(db_url).connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_unmigrated_database_is_refused(tmp_path: object) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/empty.db"
    with pytest.raises(NotMigrated, match="python -m app migrate"):
        await require_migrated(url)
    await dispose_all()


async def test_repositories_and_scans(db_url: str) -> None:
    maker = sessionmaker(db_url)
    async with maker() as db, db.begin():
        await ensure_installation(db, 7, {"login": "acme", "type": "Organization"})
        for i, (archived, fork) in enumerate([(False, False), (True, False), (False, True)]):
            await upsert_repository(db, 7, {"id": 100 + i, "full_name": f"acme/r{i}",
                                            "archived": archived, "fork": fork,
                                            "private": True, "default_branch": "trunk"})
        await upsert_repository(db, 7, {"id": 103, "full_name": "acme/gone"})
        await mark_removed(db, [103])
    async with maker() as db:
        assert await scannable_repository_ids(db, 7) == [100]
        repo = await db.get(Repository, 100)
        assert repo is not None
        assert repo.visibility == "private" and repo.default_branch == "trunk"
    async with maker() as db, db.begin():
        scan = Scan(installation_id=7, kind="full", trigger="cron", total=2)
        db.add(scan)
        await db.flush()
        await bump_scan(db, scan.id, ok=True, opened=2)
        assert scan.status == "running"
        await bump_scan(db, scan.id, ok=False)
        assert (scan.status, scan.done, scan.errored, scan.violations_opened) == \
            ("errored", 1, 1, 2)
        assert scan.finished_at is not None


async def test_one_violation_per_repository_and_policy(db_url: str) -> None:
    maker = sessionmaker(db_url)
    async with maker() as db, db.begin():
        await ensure_installation(db, 1, {"login": "o"})
        await upsert_repository(db, 1, {"id": 5, "full_name": "o/r"})
        db.add(Violation(installation_id=1, repository_id=5, policy="p", policy_type="t",
                         state="open", reconciled={"create-issue": "open"}))
    with pytest.raises(IntegrityError):
        async with maker() as db, db.begin():
            db.add(Violation(installation_id=1, repository_id=5, policy="p", policy_type="t",
                             state="open"))
    async with maker() as db:
        v = (await db.scalars(select(Violation))).one()
        assert v.reconciled == {"create-issue": "open"}
        assert v.first_seen_at.tzinfo is not None


async def test_delivery_ids_are_unique(db_url: str) -> None:
    maker = sessionmaker(db_url)
    async with maker() as db, db.begin():
        db.add(WebhookDelivery(delivery_id="d-1", event="push"))
    with pytest.raises(IntegrityError):
        async with maker() as db, db.begin():
            db.add(WebhookDelivery(delivery_id="d-1", event="push"))
