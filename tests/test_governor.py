"""The rate governor: every process behaves like one careful client of an installation.

Real Redis and the fake GitHub with its secondary limits switched on and windows shrunk to
fractions of a second; each "process" is a GitHub with its own Redis connection and HTTP
session. The fake is the judge: zero secondary-limit answers, and times close to the
theoretical minimum the limits allow.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from app.github.client import GitHub
from app.github.errors import RateLimited
from app.github.governor import Governor, Limits, limits_from_env
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState
from tests.test_github_client import github_client, rotate_token


def secondary_on(st: FakeState, **settings: float) -> None:
    st.secondary.enabled = True
    st.secondary.retry_after = 1
    for name, value in settings.items():
        setattr(st.secondary, name, value)


async def warm(*clients: GitHub, installation_id: int) -> None:
    """Fetch the installation token once (shared through Redis) outside the measurement."""
    for gh in clients:
        await gh.installation(installation_id)._tokens.get(installation_id)


async def test_a_burst_goes_as_fast_as_the_points_limit_allows_and_never_trips_it(
        fake_github: FakeGitHub, redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 200)
    span, points = 0.5, 40
    secondary_on(st, minute_seconds=span, points_per_minute=points)
    limits = Limits(points_per_minute=points, minute_seconds=span)
    async with (github_client(fake_github, redis_url, limits=limits) as a,
                github_client(fake_github, redis_url, limits=limits) as b,
                github_client(fake_github, redis_url, limits=limits) as c):
        await warm(a, b, c, installation_id=inst.id)
        apis = [gh.installation(inst.id) for gh in (a, b, c)]
        started = time.monotonic()
        results = await asyncio.gather(*(
            apis[i % 3].getitem(f"/repos/acme/repo-{i:03d}") for i in range(200)))
        elapsed = time.monotonic() - started
    assert [r["name"] for r in results] == [f"repo-{i:03d}" for i in range(200)]
    assert st.secondary_limit_responses == 0
    # Request k cannot start before (k // points) spans: the last one at 4 spans.
    floor = (199 // points) * span
    assert floor <= elapsed < floor * 1.25, elapsed


async def test_content_creation_limits_are_respected(fake_github: FakeGitHub,
                                                     redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 1)
    span = 0.5
    secondary_on(st, minute_seconds=span, content_per_minute=5, content_per_hour=12)
    limits = Limits(minute_seconds=span, content_per_minute=5, content_per_hour=12)
    async with (github_client(fake_github, redis_url, limits=limits) as a,
                github_client(fake_github, redis_url, limits=limits) as b):
        await warm(a, b, installation_id=inst.id)
        apis = [gh.installation(inst.id) for gh in (a, b)]
        started = time.monotonic()
        await asyncio.gather(*(
            apis[i % 2].post("/repos/acme/repo-000/issues", data={"title": f"t{i}"})
            for i in range(12)))
        elapsed = time.monotonic() - started
        # Edits are not content-creating: they pass straight through.
        patched = time.monotonic()
        await apis[0].patch("/repos/acme/repo-000/issues/1", data={"title": "edited"})
        assert time.monotonic() - patched < span / 2
        # The hour's content budget is spent: the next POST is deferred, not sent.
        sent = st.total_requests
        with pytest.raises(RateLimited) as raised:
            await apis[1].post("/repos/acme/repo-000/issues", data={"title": "one more"})
        assert st.total_requests == sent
        assert raised.value.until > time.time() + 3000
        waiting = await a.waiting_until(inst.id)
        assert waiting is not None and abs(waiting - raised.value.until) < 5
    assert len(st.issues("acme/repo-000")) == 12
    assert st.secondary_limit_responses == 0
    floor = (11 // 5) * span
    assert floor <= elapsed < floor + 0.5, elapsed


async def test_bulk_filing_leaves_interactive_work_its_share(fake_github: FakeGitHub,
                                                             redis_url: str) -> None:
    """Bulk requests stop at 75% of each content window and are deferred, not slept on;
    an interactive request then still goes through at once, with no secondary limit."""
    st = fake_github.state
    inst = st.add_installation("acme", 1)
    secondary_on(st, minute_seconds=30, content_per_minute=8, content_per_hour=40)
    limits = Limits(minute_seconds=30, content_per_minute=8, content_per_hour=40)
    async with github_client(fake_github, redis_url, limits=limits) as gh:
        await warm(gh, installation_id=inst.id)
        bulk = gh.installation(inst.id, bulk=True)
        for i in range(6):  # 75% of 8
            await bulk.post("/repos/acme/repo-000/issues", data={"title": f"bulk {i}"})
        started = time.monotonic()
        with pytest.raises(RateLimited) as raised:
            await bulk.post("/repos/acme/repo-000/issues", data={"title": "bulk 6"})
        # Deferred at once (the window frees in ~30 s), not waited out in the process.
        assert time.monotonic() - started < 1
        assert raised.value.until > time.time() + 20
        interactive = gh.installation(inst.id)
        started = time.monotonic()
        for i in range(2):
            await interactive.post("/repos/acme/repo-000/issues/1/comments",
                                   data={"body": f"check {i}"})
        assert time.monotonic() - started < 1
    assert len(st.issues("acme/repo-000")) == 6
    assert st.secondary_limit_responses == 0


async def test_concurrency_never_exceeds_the_limit(fake_github: FakeGitHub,
                                                   redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 40)
    secondary_on(st, max_concurrent=5)
    st.latency = 0.05
    limits = Limits(max_concurrent=5, poll_seconds=0.01)
    async with (github_client(fake_github, redis_url, limits=limits) as a,
                github_client(fake_github, redis_url, limits=limits) as b):
        await warm(a, b, installation_id=inst.id)
        st.max_in_flight = 0
        apis = [gh.installation(inst.id) for gh in (a, b)]
        started = time.monotonic()
        await asyncio.gather(*(apis[i % 2].getitem(f"/repos/acme/repo-{i:03d}")
                               for i in range(40)))
        elapsed = time.monotonic() - started
    assert st.max_in_flight == 5
    assert st.secondary_limit_responses == 0
    floor = 40 / 5 * st.latency
    assert floor <= elapsed < floor * 2, elapsed


async def test_a_spent_primary_budget_is_known_to_every_process(
        fake_github: FakeGitHub, redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 5)
    st.rate_limit.installation_limits[inst.id] = 4
    st.rate_limit.reset_after_seconds = 1.0
    limits = Limits(primary_margin_seconds=0.05)
    async with (github_client(fake_github, redis_url, limits=limits) as a,
                github_client(fake_github, redis_url, limits=limits) as b):
        await warm(a, b, installation_id=inst.id)
        for i in range(4):
            await a.installation(inst.id).getitem(f"/repos/acme/repo-{i:03d}")
        await a.governor.flush()
        reset_at = st.bucket(f"installation:{inst.id}").reset_at
        assert st.remaining(inst.id) == 0
        # B waits for the reset without asking GitHub, then goes.
        sent = st.total_requests
        data = await b.installation(inst.id).getitem("/repos/acme/repo-004")
        assert data["name"] == "repo-004"
        assert st.total_requests == sent + 1 and st.primary_limit_responses == 0
        assert st.log[-1].at >= reset_at

        # A budget that comes back only in an hour: B defers instead of sleeping.
        st.rate_limit.reset_after_seconds = 3600.0
        st.reset_rate_limits()
        for i in range(4):
            await a.installation(inst.id).getitem(f"/repos/acme/repo-{i:03d}?fresh=1")
        await a.governor.flush()
        sent = st.total_requests
        with pytest.raises(RateLimited) as raised:
            await b.installation(inst.id).getitem("/repos/acme/repo-004?fresh=1")
        assert st.total_requests == sent
        assert raised.value.until > time.time() + 3000
        waiting = await b.waiting_until(inst.id)
        assert waiting is not None and abs(waiting - raised.value.until) < 2
    assert st.primary_limit_responses == 0


async def test_retry_after_holds_back_every_process(fake_github: FakeGitHub,
                                                    redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 6)
    # GitHub's limit is lower than the governor believes: an answer says "wait 1 s".
    secondary_on(st, minute_seconds=0.5, points_per_minute=3)
    async with (github_client(fake_github, redis_url) as a,
                github_client(fake_github, redis_url) as b):
        await warm(a, b, installation_id=inst.id)
        for i in range(3):
            await a.installation(inst.id).getitem(f"/repos/acme/repo-{i:03d}")
        told = asyncio.create_task(a.installation(inst.id).getitem("/repos/acme/repo-003"))
        for _ in range(400):  # until GitHub has said "wait"
            if st.secondary_limit_responses:
                break
            await asyncio.sleep(0.005)
        blocked_at = time.time()
        # The other process holds back too, instead of asking and being told as well.
        other = await b.installation(inst.id).getitem("/repos/acme/repo-004")
        assert time.time() - blocked_at >= 0.9
        assert (await told)["name"] == "repo-003" and other["name"] == "repo-004"
    assert st.secondary_limit_responses == 1


async def test_a_crashed_process_gives_its_slots_back(redis_url: str) -> None:
    limits = Limits(max_concurrent=2, lease_seconds=0.3, poll_seconds=0.02)
    url = "https://api.github.com/repos/acme/x"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        crashed, alive = Governor(redis, limits), Governor(redis, limits)
        for _ in range(2):  # taken and never released
            await crashed.acquire("42", "GET", url)
        started = time.monotonic()
        ticket = await alive.acquire("42", "GET", url)
        assert 0.3 <= time.monotonic() - started < 0.5
        alive.release(ticket, 200)
        await alive.flush()
    finally:
        await redis.aclose()


async def test_one_redis_round_trip_per_request(fake_github: FakeGitHub,
                                                redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 1)
    async with github_client(fake_github, redis_url) as gh:
        await warm(gh, installation_id=inst.id)
        api = gh.installation(inst.id)
        stats = gh.governor.stats
        before = (stats.acquire_round_trips, stats.release_round_trips, stats.acquired)
        for _ in range(20):
            await api.getitem("/repos/acme/repo-000")
        await asyncio.gather(*(api.getitem("/repos/acme/repo-000") for _ in range(20)))
        await gh.governor.flush()
        acquires = stats.acquire_round_trips - before[0]
        releases = stats.release_round_trips - before[1]
        assert stats.acquired - before[2] == 40
        # One awaited round trip per request (the cache read included); releases ride
        # along with the next acquire or go in background batches.
        assert acquires == 40
        assert releases <= 20, releases
    assert st.not_modified_responses == 39


async def test_graphql_is_retried_after_a_502(fake_github: FakeGitHub, redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 1)
    st.fail_next(1, 502, path_prefix="/graphql")
    async with github_client(fake_github, redis_url) as gh:
        data = await gh.installation(inst.id).graphql("query { rateLimit { remaining } }")
    assert "rateLimit" in data and st.injected_failures == 1 and st.graphql_requests == 1


def test_limits_can_be_overridden_from_the_environment() -> None:
    limits = limits_from_env({"GITHUB_RATE_LIMITS": "content_per_minute=1000, minute_seconds=2"})
    assert (limits.content_per_minute, limits.minute_seconds) == (1000, 2.0)
    assert limits.points_per_minute == 900
    assert limits_from_env({}) == Limits()
    with pytest.raises(ValueError, match="GITHUB_RATE_LIMITS"):
        limits_from_env({"GITHUB_RATE_LIMITS": "content_per_minutes=1"})


async def test_a_304_is_free_in_the_governors_books_too(fake_github: FakeGitHub,
                                                        redis_url: str) -> None:
    """The primary budget the governor admits against is the one GitHub reports: a 304, by
    If-None-Match or (another token) If-Modified-Since, leaves it where it was."""
    st = fake_github.state
    inst = st.add_installation("acme", 1)
    async with github_client(fake_github, redis_url) as gh:
        await gh.installation(inst.id).getitem("/repos/acme/repo-000")
        paid = st.remaining(inst.id)
        await gh.installation(inst.id).getitem("/repos/acme/repo-000")
        await rotate_token(fake_github, redis_url, inst.id)
        await gh.installation(inst.id)._tokens.get(inst.id)  # the new token, up front
        await gh.installation(inst.id).getitem("/repos/acme/repo-000")
        await gh.governor.flush()
        assert st.not_modified_responses == 2 and st.remaining(inst.id) == paid
        redis = aioredis.Redis.from_url(redis_url)
        try:
            books = await redis.hgetall(f"pe:gh:{{{inst.id}}}:st")
        finally:
            await redis.aclose()
        assert int(books[b"core:rem"]) == paid and int(books[b"core:pend"]) == 0
