"""Alembic environment: runs migrations on the async engine for DATABASE_URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from app.db.models import Base
from app.db.session import get_engine

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main(url: str) -> None:
    async with get_engine(url).connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url  # noqa: S101 - app/db/migrate.py always sets it
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_main(url))


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `python -m app migrate`")
run_migrations_online()
