"""The GitHub client's conditional requests: GETs cached per installation with their ETag in
Redis, repeated with If-None-Match, a 304 answered from the cache; bounded; shared by
processes. Real Redis, the fake GitHub, no monkeypatching."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

from app.github.client import GitHub
from app.github.governor import CacheLimits, Limits
from tests.fakegithub.server import FakeGitHub


@asynccontextmanager
async def github_client(fake: FakeGitHub, redis_url: str, **kwargs: Any
                        ) -> AsyncIterator[GitHub]:
    """A GitHub as one process would hold it: its own Redis connection and HTTP session."""
    redis = aioredis.Redis.from_url(redis_url)
    gh = GitHub(api_url=fake.url, redis=redis, app_id=fake.app_id,
                private_key=fake.private_key_pem, **kwargs)
    try:
        yield gh
    finally:
        await gh.close()
        await redis.aclose()


async def cache_state(redis_url: str, installation_id: int) -> tuple[int, int]:
    """(entries, bytes accounted) of the installation's cache index."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        entries = int(await redis.zcard(f"pe:gh:{{{installation_id}}}:cidx"))
        total = int(await redis.get(f"pe:gh:{{{installation_id}}}:cbytes") or 0)
    finally:
        await redis.aclose()
    return entries, total


async def test_a_repeated_get_is_a_free_304_with_the_same_data(
        fake_github: FakeGitHub, redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 2)
    async with github_client(fake_github, redis_url) as gh:
        api = gh.installation(inst.id)
        first = await api.getitem("/repos/acme/repo-000")
        spent = st.rate_limited_requests
        again = await api.getitem("/repos/acme/repo-000")
        assert again == first
        assert st.not_modified_responses == 1
        assert st.rate_limited_requests == spent  # the 304 cost no budget
        # gidgethub sees the budget as the 304 reported it.
        assert api.rate_limit is not None
        assert api.rate_limit.remaining == st.remaining(inst.id) == 4999
        # A change gives a new ETag: a full answer, and the cache follows it.
        st.archive_repo("acme/repo-000")
        changed = await api.getitem("/repos/acme/repo-000")
        assert changed["archived"] is True and st.not_modified_responses == 1
        assert (await api.getitem("/repos/acme/repo-000"))["archived"] is True
        assert st.not_modified_responses == 2
        # An error is not cached and stays an error.
        for _ in range(2):
            assert await api.getstatus("/repos/acme/no-such-repo") == 404
        assert gh.governor.stats.cache_hits == 3  # entries found (one was out of date)


async def test_pagination_runs_through_cached_pages(fake_github: FakeGitHub,
                                                    redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 1)
    for i in range(5):
        st.add_issue("acme/repo-000", f"issue {i}")
    async with github_client(fake_github, redis_url) as gh:
        api = gh.installation(inst.id)
        url = "/repos/acme/repo-000/issues?per_page=2"
        cold = [i["number"] async for i in api.getiter(url)]
        spent = st.rate_limited_requests
        warm = [i["number"] async for i in api.getiter(url)]
        assert cold == warm and sorted(cold) == [1, 2, 3, 4, 5]
        # Three pages, each a 304 whose cached Link header led to the next one.
        assert st.not_modified_responses == 3
        assert st.rate_limited_requests == spent


async def test_the_cache_is_shared_by_processes_and_per_installation(
        fake_github: FakeGitHub, redis_url: str) -> None:
    st = fake_github.state
    acme = st.add_installation("acme", 1)
    other = st.add_installation("other", 1)
    async with (github_client(fake_github, redis_url) as one,
                github_client(fake_github, redis_url) as two):
        await one.installation(acme.id).getitem("/repos/acme/repo-000")
        await one.governor.flush()  # cache writes are sent in the background
        assert await two.installation(acme.id).getitem("/repos/acme/repo-000")
        assert st.not_modified_responses == 1
        # Another installation has a cache of its own (and another token).
        await two.installation(other.id).getitem("/repos/other/repo-000")
        await two.governor.flush()
        await one.installation(other.id).getitem("/repos/other/repo-000")
        assert st.not_modified_responses == 2
        assert (await cache_state(redis_url, acme.id))[0] == 1
        assert (await cache_state(redis_url, other.id))[0] == 1


async def test_the_cache_is_bounded(fake_github: FakeGitHub, redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 6)
    urls = [f"/repos/acme/repo-{i:03d}" for i in range(6)]

    # At most three entries: the least recently used go first.
    async with github_client(fake_github, redis_url, cache=CacheLimits(max_entries=3)) as gh:
        api = gh.installation(inst.id)
        for url in urls[:5]:
            await api.getitem(url)
        await gh.governor.flush()
        entries, total = await cache_state(redis_url, inst.id)
        assert entries == 3 and total > 0
        await api.getitem(urls[4])  # cached
        await api.getitem(urls[0])  # evicted: a full answer
        assert st.not_modified_responses == 1
        redis = aioredis.Redis.from_url(redis_url)
        try:
            ttl = await redis.ttl(f"pe:gh:{{{inst.id}}}:cidx")
        finally:
            await redis.aclose()
        assert 0 < ttl <= CacheLimits().ttl_seconds

    # A byte budget: the accounted total never exceeds it.
    await cache_reset(redis_url)
    one_entry = total // 3
    limit = int(one_entry * 2.5)
    async with github_client(fake_github, redis_url, cache=CacheLimits(max_bytes=limit)) as gh:
        for url in urls:
            await gh.installation(inst.id).getitem(url)
        await gh.governor.flush()
        entries, total = await cache_state(redis_url, inst.id)
        assert entries == 2 and 0 < total <= limit

    # Bodies over the size limit are not stored at all.
    await cache_reset(redis_url)
    before = st.not_modified_responses
    async with github_client(fake_github, redis_url,
                             cache=CacheLimits(max_body_bytes=100)) as gh:
        for _ in range(2):
            await gh.installation(inst.id).getitem(urls[0])
        assert st.not_modified_responses == before
        assert (await cache_state(redis_url, inst.id)) == (0, 0)


async def cache_reset(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


async def test_graphql_goes_to_the_clients_api_url_through_the_governor(
        fake_github: FakeGitHub, redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 1)
    async with github_client(fake_github, redis_url, limits=Limits()) as gh:
        api = gh.installation(inst.id)
        data = await api.graphql("query { rateLimit { remaining } }")
        assert data["rateLimit"]["remaining"] >= 0
        assert st.graphql_requests == 1
        assert gh.governor.stats.acquired == 2  # the token, then the query
