"""Shared fixtures: a real Redis (private unless REDIS_URL is set) and a real database."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from app.embedded_redis import EmbeddedRedis
from app.settings import async_database_url
from tests.fakegithub.server import FakeGitHub
from tests.stack import Stack, running_stack

pytest_plugins = ["tests.fakegithub.fixtures"]

# The fake GitHub enforces secondary limits only where a test switches them on; the app's
# governor is relaxed to match, so large test orgs are not paced at GitHub's 80 issues a
# minute. Tests of the governor set their own limits.
RELAXED_LIMITS = "points_per_minute=1000000,content_per_minute=1000000,content_per_hour=1000000"
os.environ.setdefault("GITHUB_RATE_LIMITS", RELAXED_LIMITS)


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """REDIS_URL when set, otherwise a private redis-server for the whole session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
async def redis_url(redis_server_url: str) -> AsyncIterator[str]:
    """A clean Redis database for one test (flushed before and after)."""
    client = aioredis.Redis.from_url(redis_server_url)
    await client.flushdb()
    yield redis_server_url
    await client.flushdb()
    await client.aclose()


# PostgreSQL joins the parameters only when it is configured, so nothing is skipped.
_BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(params=_BACKENDS)
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Storage tests run on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL too."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/test.db"
    return async_database_url(os.environ["TEST_DATABASE_URL"])


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for one test."""
    return f"sqlite+aiosqlite:///{tmp_path}/test.db"


@pytest.fixture
async def stack(request: pytest.FixtureRequest, fake_github: FakeGitHub, redis_url: str,
                database_url: str) -> AsyncIterator[Stack]:
    """The whole app against the fake GitHub; a test module may set STACK_SETTINGS."""
    async with running_stack(github_url=fake_github.url, app_id=fake_github.app_id,
                             private_key=fake_github.private_key_pem, redis_url=redis_url,
                             database_url=database_url,
                             **getattr(request.module, "STACK_SETTINGS", {})) as s:
        yield s
