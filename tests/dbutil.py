"""Database set-up for tests: a freshly migrated schema on SQLite or PostgreSQL."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from app.db.migrate import upgrade
from app.db.session import dispose_all, get_engine


async def fresh_database(url: str) -> str:
    """Drop everything at `url` (PostgreSQL) and migrate to head; returns the url."""
    if make_url(url).get_backend_name() == "postgresql":
        async with get_engine(url).begin() as conn:
            await conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            await conn.exec_driver_sql("CREATE SCHEMA public")
        await dispose_all()
    await upgrade(url)
    return url
