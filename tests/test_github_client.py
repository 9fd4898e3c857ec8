"""The GitHub client's conditional requests: GETs cached per installation with their ETag in
Redis, repeated with If-None-Match, a 304 answered from the cache; bounded; shared by
processes. After the installation token rotates (GitHub's ETags are per token) the cached
Last-Modified is sent as If-Modified-Since where GitHub gives one. Also the fake's side of
it: token-specific ETags, and Last-Modified only where GitHub sends it. Real Redis, the
fake GitHub, no monkeypatching."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from gidgethub import sansio
from gidgethub.apps import get_jwt

from app.github.client import GitHub
from app.github.governor import CacheLimits, Limits, cache_digest
from tests.fakegithub.server import FakeGitHub, http_date


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


# ----------------------------------------------------------------------------- per token
async def rotate_token(fake: FakeGitHub, redis_url: str, installation_id: int) -> None:
    """What an hour does: GitHub's token expires, and so does the app's cached copy."""
    fake.state.expire_tokens(installation_id)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert await redis.delete(f"pe:token:{installation_id}") == 1
    finally:
        await redis.aclose()


async def cache_entry(redis_url: str, installation_id: int, url: str) -> dict[str, Any]:
    """The cached response of a GET of `url` (a full URL) as gidgethub asks for it."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        digest = cache_digest("GET", url, sansio.accept_format())
        raw = await redis.hgetall(f"pe:gh:{{{installation_id}}}:c:{digest}")
    finally:
        await redis.aclose()
    assert raw, f"no cache entry for {url}"
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_after_the_token_rotates_if_modified_since_keeps_the_304s_it_can(
        fake_github: FakeGitHub, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    st = fake_github.state
    inst = st.add_installation("acme", 1)
    repo_url = "/repos/acme/repo-000"  # Last-Modified: the repository's updated_at
    perms_url = "/repos/acme/repo-000/actions/permissions/workflow"  # no Last-Modified
    async with github_client(fake_github, redis_url) as gh:
        api = gh.installation(inst.id)
        repo, perms = await api.getitem(repo_url), await api.getitem(perms_url)
        # Within the token's hour both are free 304s.
        assert await api.getitem(repo_url) == repo and await api.getitem(perms_url) == perms
        assert st.not_modified_responses == 2
        await gh.governor.flush()
        first_token = st.live_tokens(inst.id)[0].token

        await rotate_token(fake_github, redis_url, inst.id)
        api = gh.installation(inst.id)
        spent = st.remaining(inst.id)
        # The new token's If-None-Match would get a 200; If-Modified-Since gets a 304 for
        # the repository (free: the budget stays), the permissions are paid again.
        assert await api.getitem(repo_url) == repo
        assert st.requests[-1] == ("GET", repo_url, 304)
        assert st.remaining(inst.id) == spent
        assert await api.getitem(perms_url) == perms
        assert st.requests[-1] == ("GET", perms_url, 200)
        assert st.remaining(inst.id) == spent - 1
        await gh.governor.flush()

        # The 304 brought the new token's ETag, so the entry is exact again: a change that
        # leaves updated_at (Last-Modified) alone is still seen.
        st.add_issue("acme/repo-000", "counted in open_issues_count, not in updated_at")
        changed = await api.getitem(repo_url)
        assert changed["open_issues_count"] == repo["open_issues_count"] + 1
        assert st.requests[-1] == ("GET", repo_url, 200)

    # Tokens stay out of Redis' cache and keys (only the token store holds one) and logs.
    live = st.live_tokens(inst.id)[0].token
    redis = aioredis.Redis.from_url(redis_url)
    try:
        for key in await redis.keys("*"):
            assert first_token.encode() not in key and live.encode() not in key
            if key.startswith(b"pe:gh:"):
                kind = await redis.type(key)
                values = (await redis.hvals(key) if kind == b"hash"
                          else [m for m, _ in await redis.zrange(key, 0, -1, withscores=True)]
                          if kind == b"zset" else [await redis.get(key) or b""]
                          if kind == b"string" else [])
                for value in values:
                    assert first_token.encode() not in value and live.encode() not in value
    finally:
        await redis.aclose()
    assert first_token not in caplog.text and live not in caplog.text


async def test_a_last_modified_as_fresh_as_the_answer_waits_for_a_later_304(
        fake_github: FakeGitHub, redis_url: str) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [{"name": ".github", "files": {"config.yaml": "a: 1"}}])
    repo = st.repo("acme/.github")
    url = "/repos/acme/.github/contents/config.yaml"
    # A Last-Modified in the answer's own second (here: ahead of it) could hide a change
    # made later in that second, so If-Modified-Since must not rely on it.
    repo.pushed_at = time.time() + 5
    async with github_client(fake_github, redis_url) as gh:
        api = gh.installation(inst.id)
        body = await api.getitem(url)
        await gh.governor.flush()
        entry = await cache_entry(redis_url, inst.id, fake_github.url + url)
        assert "last-modified" not in json.loads(entry["h"])

        # Seconds later the file is still the same: the 304 (If-None-Match) brings a
        # Last-Modified older than its Date, which is kept from then on.
        repo.pushed_at = time.time() - 5
        assert await api.getitem(url) == body and st.not_modified_responses == 1
        await gh.governor.flush()
        kept = json.loads((await cache_entry(redis_url, inst.id, fake_github.url + url))["h"])
        assert kept["last-modified"] == http_date(repo.pushed_at)

        await rotate_token(fake_github, redis_url, inst.id)
        api = gh.installation(inst.id)
        assert await api.getitem(url) == body
        assert st.requests[-1] == ("GET", url, 304)
        # A push moves Last-Modified: a full answer.
        st.set_file("acme/.github", "config.yaml", "a: 2")
        await gh.governor.flush()
        await rotate_token(fake_github, redis_url, inst.id)
        api = gh.installation(inst.id)
        changed = await api.getitem(url)
        assert changed["sha"] != body["sha"] and st.requests[-1] == ("GET", url, 200)


async def raw_get(session: aiohttp.ClientSession, url: str, credential: str,
                  **headers: str) -> tuple[int, dict[str, str], bytes]:
    headers["Authorization"] = credential
    async with session.get(url, headers=headers) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


async def test_the_fakes_etags_are_per_token_like_githubs(fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 1)
    one = f"token {fake_github.installation_token(inst.id)}"
    two = f"token {fake_github.installation_token(inst.id)}"
    url = f"{fake_github.url}/repos/acme/repo-000"
    async with aiohttp.ClientSession() as session:
        status, h1, body1 = await raw_get(session, url, one)
        status2, h2, body2 = await raw_get(session, url, two)
        assert status == status2 == 200 and body1 == body2
        assert h1["etag"] != h2["etag"]
        used = st.rate_limited_requests
        # Another token's ETag: a full answer, paid.
        status, _, body = await raw_get(session, url, two, **{"If-None-Match": h1["etag"]})
        assert status == 200 and body == body1 and st.rate_limited_requests == used + 1
        # Its own: a free 304 that carries the validators.
        status, h, body = await raw_get(session, url, two, **{"If-None-Match": h2["etag"]})
        assert status == 304 and body == b"" and st.rate_limited_requests == used + 1
        assert h["etag"] == h2["etag"] and h["last-modified"] == h2["last-modified"]

        # The App is one credential whatever JWT it signs.
        jwts = [get_jwt(app_id=str(fake_github.app_id), private_key=fake_github.private_key_pem,
                        expiration=600 - i) for i in range(2)]
        assert jwts[0] != jwts[1]
        app_url = f"{fake_github.url}/app"
        _, ha, _ = await raw_get(session, app_url, f"bearer {jwts[0]}")
        status, _, _ = await raw_get(session, app_url, f"bearer {jwts[1]}",
                                     **{"If-None-Match": ha["etag"]})
        assert status == 304
        # A user's token is a credential of its own.
        user = f"token {fake_github.user_token('octocat')}"
        status, hu, _ = await raw_get(session, f"{fake_github.url}/rate_limit", user)
        status2, hu2, _ = await raw_get(session, f"{fake_github.url}/rate_limit", one)
        assert status == status2 == 200 and hu["etag"] != hu2["etag"]


async def test_the_fake_honours_if_modified_since_only_where_github_sends_last_modified(
        fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [{"name": "repo-000", "files": {"README.md": "hi"}}])
    issue = st.add_issue("acme/repo-000", "an issue")
    one = f"token {fake_github.installation_token(inst.id)}"
    two = f"token {fake_github.installation_token(inst.id)}"
    base = f"{fake_github.url}/repos/acme/repo-000"
    later = http_date(time.time() + 3600)
    async with aiohttp.ClientSession() as session:
        # The repository, a file (JSON and raw) and an issue send Last-Modified; another
        # token's If-Modified-Since gets a free 304 while it holds.
        for url, accept, modified in (
                (base, "application/json", st.repo("acme/repo-000").updated_at),
                (f"{base}/contents/README.md", "application/json",
                 st.repo("acme/repo-000").pushed_at),
                (f"{base}/contents/README.md", "application/vnd.github.raw+json",
                 st.repo("acme/repo-000").pushed_at),
                (f"{base}/issues/{issue.number}", "application/json", issue.updated_at)):
            status, h, _ = await raw_get(session, url, one, Accept=accept)
            assert status == 200 and h["last-modified"] == http_date(modified), url
            used = st.rate_limited_requests
            status, h304, _ = await raw_get(session, url, two, Accept=accept,
                                            **{"If-Modified-Since": h["last-modified"]})
            assert status == 304 and st.rate_limited_requests == used, url
            assert h304["etag"] != h["etag"]  # the validators of the token that asked
            # Every validator sent must hold: with another token's ETag it is a 200.
            status, _, _ = await raw_get(session, url, two, Accept=accept,
                                         **{"If-Modified-Since": h["last-modified"],
                                            "If-None-Match": h["etag"]})
            assert status == 200, url
            # A date before the modification, or not a date: a full answer.
            for since in (http_date(modified - 1), "yesterday"):
                status, _, _ = await raw_get(session, url, two, Accept=accept,
                                             **{"If-Modified-Since": since})
                assert status == 200, (url, since)

        # A change moves Last-Modified: a push for a file, a settings change for the
        # repository (each a later second than the last, whatever the clock says).
        status, h, _ = await raw_get(session, f"{base}/contents/README.md", one)
        st.set_file("acme/repo-000", "README.md", "changed")
        st.repo("acme/repo-000").pushed_at += 1
        status, _, body = await raw_get(session, f"{base}/contents/README.md", two,
                                        **{"If-Modified-Since": h["last-modified"]})
        assert status == 200 and json.loads(body)["size"] == len("changed")
        status, h, _ = await raw_get(session, base, one)
        st.archive_repo("acme/repo-000")
        st.repo("acme/repo-000").updated_at += 1
        status, h2, body = await raw_get(session, base, two,
                                         **{"If-Modified-Since": h["last-modified"]})
        assert status == 200 and json.loads(body)["archived"] is True
        assert h2["last-modified"] != h["last-modified"]

        # Lists and settings send no Last-Modified, and If-Modified-Since gets nothing there.
        for url in (f"{fake_github.url}/installation/repositories",
                    f"{base}/actions/permissions/workflow", f"{base}/issues",
                    f"{base}/contents"):
            status, h, _ = await raw_get(session, url, one)
            assert status == 200 and "last-modified" not in h, url
            status, _, _ = await raw_get(session, url, two, **{"If-Modified-Since": later})
            assert status == 200, url
