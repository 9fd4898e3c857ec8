"""/healthz and /readyz over a real socket: real Redis (or a dead address), real SQLite
(migrated or not), an unreachable PostgreSQL whose URL carries a password."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from app.db.session import dispose_all
from app.embedded_redis import free_port
from tests.dbutil import fresh_database
from tests.ops import ops_app, ops_settings, serve

REDIS_PASSWORD = "redis-password-DEADBEEF"
DB_PASSWORD = "db-password-CAFEBABE"


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    yield pool
    await pool.aclose()


@pytest.fixture
def dead_port() -> int:
    return free_port()


@pytest.fixture
def dead_url(dead_port: int) -> str:
    """An address where nothing listens, with a password."""
    return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{dead_port}/0"


@pytest.fixture
async def dead_redis(dead_url: str) -> AsyncIterator[ArqRedis]:
    redis = ArqRedis.from_url(dead_url, socket_connect_timeout=1)
    yield redis
    await redis.aclose()


@pytest.fixture(autouse=True)
async def _release_engines() -> AsyncIterator[None]:
    yield
    await dispose_all()


async def get(app: Any, path: str) -> tuple[int, dict[str, Any], str]:
    async with serve(app) as session, session.get(path) as resp:
        text = await resp.text()
        return resp.status, await resp.json(), text


async def test_ready_on_a_migrated_database_and_live_redis(
        pool: ArqRedis, redis_url: str, database_url: str) -> None:
    await fresh_database(database_url)
    app = ops_app(ops_settings(redis_url, database_url), pool, database_url)
    status, body, _ = await get(app, "/readyz")
    assert status == 200
    assert body == {"ok": True, "checks": {"database": {"ok": True}, "redis": {"ok": True},
                                           "migrations": {"ok": True}}}


async def test_not_ready_on_an_unmigrated_database(
        pool: ArqRedis, redis_url: str, database_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.web.health")
    app = ops_app(ops_settings(redis_url, database_url), pool, database_url)
    status, body, _ = await get(app, "/readyz")
    assert status == 503
    assert body["ok"] is False
    checks = body["checks"]
    assert checks["database"] == {"ok": True} and checks["redis"] == {"ok": True}
    assert checks["migrations"]["ok"] is False and checks["migrations"]["reason"]
    # Then migrated: ready, and the change is logged once each way.
    await fresh_database(database_url)
    app = ops_app(ops_settings(redis_url, database_url), pool, database_url)
    assert (await get(app, "/readyz"))[0] == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "app.web.health"]
    assert any("not ready" in line and "migrations" in line for line in lines)
    assert any("ready again" in line for line in lines)


async def test_not_ready_on_a_dead_redis_without_telling_its_url(
        dead_redis: ArqRedis, dead_url: str, dead_port: int, database_url: str) -> None:
    await fresh_database(database_url)
    app = ops_app(ops_settings(dead_url, database_url), dead_redis, database_url)
    status, body, text = await get(app, "/readyz")
    assert status == 503
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["reason"].isidentifier()  # a class name, e.g. ConnectionError
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["migrations"] == {"ok": True}
    for leak in (REDIS_PASSWORD, "127.0.0.1", str(dead_port), "redis://", "Error", "connect"):
        assert leak not in text.replace("ConnectionError", ""), leak


async def test_not_ready_on_an_unreachable_database_without_telling_its_url(
        pool: ArqRedis, redis_url: str) -> None:
    port = free_port()
    url = f"postgresql+asyncpg://enforcer:{DB_PASSWORD}@127.0.0.1:{port}/enforcer"
    app = ops_app(ops_settings(redis_url, url), pool, url)
    status, body, text = await get(app, "/readyz")
    assert status == 503
    checks = body["checks"]
    assert checks["database"]["ok"] is False and checks["database"]["reason"].isidentifier()
    assert checks["migrations"] == {"ok": False, "reason": "no database"}
    assert checks["redis"] == {"ok": True}
    for leak in (DB_PASSWORD, "enforcer", "127.0.0.1", str(port), "postgresql"):
        assert leak not in text, leak


async def test_healthz(pool: ArqRedis, dead_redis: ArqRedis, redis_url: str,
                       database_url: str) -> None:
    # The database plays no part: it is not even migrated.
    app = ops_app(ops_settings(redis_url, database_url), pool, database_url)
    assert (await get(app, "/healthz"))[:2] == (200, {"ok": True})
    app = ops_app(ops_settings(redis_url, database_url), dead_redis, database_url)
    status, body, text = await get(app, "/healthz")
    assert status == 503 and body["ok"] is False
    assert REDIS_PASSWORD not in text and "127.0.0.1" not in text
