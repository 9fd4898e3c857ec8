"""Run and check Alembic migrations from code (`python -m app migrate`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from app.db.session import ensure_sqlite_dir, get_engine

MIGRATIONS = Path(__file__).parent / "migrations"


class NotMigrated(RuntimeError):
    """The database schema is behind the code."""


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(url: str) -> None:
    """Migrate to head; safe to repeat and safe for concurrent callers on PostgreSQL."""
    ensure_sqlite_dir(url)
    cfg = alembic_config(url)

    def _do(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            # Two processes migrating at once would race on alembic_version.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

    async with get_engine(url).begin() as conn:
        await conn.run_sync(_do)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(url: str) -> str | None:
    def _cur(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with get_engine(url).connect() as conn:
        return await conn.run_sync(_cur)


async def require_migrated(url: str) -> None:
    head = head_revision()
    current = await current_revision(url)
    if current != head:
        raise NotMigrated(
            f"the database is at migration {current or 'none'} but the code needs {head}; "
            "run `python -m app migrate` (the Procfile's release step) first"
        )
