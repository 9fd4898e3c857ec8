"""GitHub misbehaving in the middle of a scan: bursts of 5xx, 429s and secondary limits with
retry-after, a token expiring, the installation suspended or deleted; and GitHub's clock a
minute off the App's. The scan waits, pauses visibly or stops cleanly, then finishes when
GitHub recovers, and nothing is lost or done twice.

The app runs in this process (web on a socket, arq burst workers) against a real Redis, a
database of the test's own (PostgreSQL when TEST_DATABASE_URL is set) and the fake GitHub,
which sends the webhooks itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import jwt
import pytest
from gidgethub.apps import get_jwt
from sqlalchemy import select

from app.db.models import Repository, Scan
from app.web.webhooks import WEBHOOK_PATH
from tests.conftest import RELAXED_LIMITS
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import SECONDARY_DOC, SECONDARY_MESSAGE, FakeGitHub, app_clock
from tests.fakegithub.state import FakeState, Installation
from tests.procs import ISSUES_PATH, private_database
from tests.stack import WEBHOOK_SECRET, Stack, running_stack
from tests.test_e2e import build_org, open_issues

ORG = 30
PERMISSIONS = "/actions/permissions/workflow"


@pytest.fixture
async def gstack(fake_github: FakeGitHub, redis_url: str,
                 tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack on a database of its own; GitHub's webhooks go to its web server."""
    async with (private_database(tmp_path) as database_url,
                running_stack(github_url=fake_github.url, app_id=fake_github.app_id,
                              private_key=fake_github.private_key_pem, redis_url=redis_url,
                              database_url=database_url) as stack):
        fake_github.state.hook.url = stack.base_url + WEBHOOK_PATH
        fake_github.state.webhook_secret = WEBHOOK_SECRET
        yield stack


async def until(ready: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not ready():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.005)


def settings_read(st: FakeState) -> int:
    """Repositories whose Actions settings GitHub has answered (one per repository scan)."""
    return sum(1 for method, path, status in st.requests
               if method == "GET" and path.endswith(PERMISSIONS) and status == 200)


async def scan_until(stack: Stack, fake: FakeGitHub, ready: Callable[[], bool],
                     n: int = ORG) -> tuple[Installation, dict[str, set[str]], asyncio.Task[int]]:
    """Install an org of n repositories (GitHub sends the event) and work the queue in the
    background; returns once `ready()` holds, mid scan."""
    st = fake.state
    st.latency = 0.02  # the scan takes about a second
    inst, expected = build_org(st, n)
    sent = await fake.send_event("installation", hooks.installation(st, inst))
    assert sent is not None and sent.status_code == 202
    drain = asyncio.create_task(stack.drain())
    await until(lambda: ready() or drain.done(), 30, "mid scan")
    assert not drain.done(), "the scan ended before the fault"
    return inst, expected, drain


def mid_scan(st: FakeState) -> Callable[[], bool]:
    return lambda: settings_read(st) >= 5


async def finished(drain: asyncio.Task[int], within: float = 60) -> None:
    await asyncio.wait_for(drain, within)


async def assert_nothing_lost(stack: Stack, fake: FakeGitHub,
                              expected: dict[str, set[str]]) -> None:
    """The last full scan covered every repository, each expected issue exists once and
    was created once, and no repository is left with an error."""
    st = fake.state
    for name, fails in expected.items():
        assert set(open_issues(st, name)) == fails, name
        assert len(st.issues(name)) == len(fails), f"duplicate issue in {name}"
    created = sum(1 for method, path, status in st.requests
                  if method == "POST" and status == 201 and ISSUES_PATH.fullmatch(path))
    assert created == sum(len(f) for f in expected.values())
    full = [s for s in await stack.scans() if s.kind == "full"]
    last = full[-1]
    assert (last.status, last.done, last.errored, last.waiting, last.detail) == \
        ("ok", len(expected), 0, 0, None)
    repos = {r.full_name: r for r in await stack.repositories()}
    for name in expected:
        repo = repos[name]
        assert (repo.last_full_scan_id, repo.last_scan_status, repo.last_scan_error) == \
            (last.id, "ok", None), name


def limited_answers(st: FakeState) -> list[float]:
    """When the org's requests were answered 429 or 403 (faults are answered before
    authentication, so these records name no installation)."""
    return [r.at for r in st.log if r.status in (403, 429) and r.path.startswith("/repos/acme/")]


# ----------------------------------------------------------------------------- 5xx, limits
async def test_bursts_of_errors_and_limits_mid_scan_lose_nothing(
        gstack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    st.fail_next(2, 502, path_prefix="/graphql")  # the batch's query, twice
    inst, expected, drain = await scan_until(gstack, fake_github, mid_scan(st))
    secondary = {"message": SECONDARY_MESSAGE.format(rid="0000:1111:2222:3333:4444"),
                 "documentation_url": SECONDARY_DOC}
    rules = [
        st.fail_next(3, 502, path_prefix="/repos/acme/"),
        st.fail_next(2, 503, path_prefix="/repos/acme/"),
        st.fail_next(2, 429, path_prefix="/repos/acme/", headers={"retry-after": "1"}),
        st.fail_next(2, 403, path_prefix="/repos/acme/", body=secondary,
                     headers={"retry-after": "1"}),
    ]
    await finished(drain)

    assert [r.remaining for r in rules] == [0, 0, 0, 0] and st.injected_failures == 11
    await assert_nothing_lost(gstack, fake_github, expected)
    # Each limit was waited out: nothing of the installation was answered from a moment
    # after the limit reached the app (requests already on the way aside) until retry-after.
    limited = limited_answers(st)
    assert len(limited) == 4
    for at in limited:
        early = [r for r in st.log if r.installation_id == inst.id
                 and at + 0.25 < r.at < at + 0.95]
        assert early == [], f"{len(early)} requests within the retry-after"


async def test_a_long_limit_pauses_the_scan_visibly_and_it_resumes(
        gstack: Stack, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait longer than the app sleeps in a job (max_inline_wait) defers the work: the
    scan shows what it waits for, then finishes by itself."""
    # The workers `scan_until` starts read their limits from the settings.
    monkeypatch.setattr(gstack.settings, "GITHUB_RATE_LIMITS",
                        RELAXED_LIMITS + ",max_inline_wait=1")
    st = fake_github.state
    _, expected, drain = await scan_until(gstack, fake_github, mid_scan(st))
    st.secondary.enabled, st.secondary.status, st.secondary.retry_after = True, 429, 3
    st.secondary.max_concurrent = 0  # the next request trips it; then 3 s of refusals
    shown: list[tuple[str, int]] = []
    while not drain.done() and not shown:
        (scan,) = [s for s in await gstack.scans() if s.kind == "full"]
        if scan.detail and scan.detail.startswith("waiting for rate limit"):
            shown.append((scan.detail, scan.waiting))
            st.secondary.enabled = False
        await asyncio.sleep(0.02)
    st.secondary.enabled = False
    await finished(drain)

    assert shown, "the scan never showed that it waits"
    detail, waiting = shown[0]
    assert waiting > 0 and detail.endswith("UTC"), shown
    assert st.secondary_limit_responses >= 1
    await assert_nothing_lost(gstack, fake_github, expected)


# ----------------------------------------------------------------------------- tokens
async def test_a_token_expiring_mid_scan_is_replaced(gstack: Stack,
                                                     fake_github: FakeGitHub) -> None:
    st = fake_github.state
    _, expected, drain = await scan_until(gstack, fake_github, mid_scan(st))
    (first,) = st.live_tokens()
    st.expire_tokens()
    await finished(drain)

    assert st.unauthorized_responses >= 1
    assert first.token not in {t.token for t in st.live_tokens()}
    await assert_nothing_lost(gstack, fake_github, expected)


# ----------------------------------------------------------------------------- installation
async def test_suspended_mid_scan_then_unsuspended_finishes(
        gstack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected, drain = await scan_until(gstack, fake_github, mid_scan(st))
    st.suspend_installation(inst.id)
    sent = await fake_github.send_event("installation", hooks.installation(st, inst, "suspend"))
    assert sent is not None and sent.status_code == 202
    await finished(drain)

    (scan,) = [s for s in await gstack.scans() if s.kind == "full"]
    assert scan.status != "running"  # stopped, not left hanging
    row = await gstack.installation(inst.id)
    assert row is not None and (row.active, row.suspended) == (False, True)
    writes = st.count_requests("POST") + st.count_requests("PATCH")

    # GitHub recovers: the App is unsuspended, and says so.
    st.unsuspend_installation(inst.id)
    sent = await fake_github.send_event("installation",
                                        hooks.installation(st, inst, "unsuspend"))
    assert sent is not None and sent.status_code == 202
    await finished(asyncio.create_task(gstack.drain()))
    assert st.count_requests("POST") + st.count_requests("PATCH") > writes
    await assert_nothing_lost(gstack, fake_github, expected)


@pytest.mark.parametrize("fault", ["suspend", "deleted"])
async def test_a_scan_cut_short_by_the_installation_says_why(
        gstack: Stack, fake_github: FakeGitHub, fault: str) -> None:
    """Suspended or uninstalled mid scan: the scan's record and the repositories it did not
    get to say so, rather than a finished scan that looks complete."""
    st = fake_github.state
    inst, _, drain = await scan_until(gstack, fake_github, mid_scan(st))
    payload = hooks.installation(st, inst, fault)
    if fault == "suspend":
        st.suspend_installation(inst.id)
    else:
        st.remove_installation(inst.id)
    sent = await fake_github.send_event("installation", payload, installation=inst.id)
    assert sent is not None and sent.status_code in (200, 202)
    await finished(drain)

    async with gstack.db() as db:
        (scan,) = await db.scalars(select(Scan).where(Scan.kind == "full"))
        repos = list(await db.scalars(select(Repository).where(
            Repository.archived.is_(False), Repository.fork.is_(False))))
    words = ("suspended",) if fault == "suspend" else ("uninstalled", "removed", "deleted")

    def says_why(text: str | None) -> bool:
        return any(word in (text or "").lower() for word in words)

    unscanned = [r for r in repos if r.last_scan_status != "ok"]
    assert unscanned, "the fault came after the scan had done everything"
    assert scan.status != "running"
    assert scan.status == "errored" or says_why(scan.detail), \
        (scan.status, scan.done, scan.total, scan.detail)
    for repo in unscanned:
        if repo.last_scan_status == "errored":
            assert says_why(repo.last_scan_error), (repo.full_name, repo.last_scan_error)


# ----------------------------------------------------------------------------- clock skew
@pytest.mark.parametrize("offset", [-60, 60])
async def test_the_app_works_with_githubs_clock_a_minute_off(
        gstack: Stack, fake_github: FakeGitHub, offset: int) -> None:
    """gidgethub backdates `iat` by 60 s and ends the JWT 9 minutes after it, refreshing
    it after 7: GitHub's clock may be a minute off either way."""
    st = fake_github.state
    app_clock(st).offset = offset
    _, expected, drain = await scan_until(gstack, fake_github, mid_scan(st))
    st.expire_tokens()  # a new token, on the JWT the app holds by now
    if offset > 0:
        # GitHub's clock moves on to the end of that JWT's use: gidgethub replaces it after
        # 420 s; a second short of that for its whole-second `iat`.
        first = min(r.at for r in st.log if r.path.endswith("/access_tokens"))
        app_clock(st).offset = offset + 419 - 1 - (time.time() - first)
    await finished(drain)

    tokens = [status for method, path, status in st.requests
              if method == "POST" and path.endswith("/access_tokens")]
    assert len(tokens) >= 2 and set(tokens) == {201}, tokens
    await assert_nothing_lost(gstack, fake_github, expected)


async def test_the_fake_checks_app_jwts_as_github_does(fake_github: FakeGitHub) -> None:
    st = fake_github.state
    key, app_id = fake_github.private_key_pem, str(fake_github.app_id)

    async def answer(token: str) -> tuple[int, str]:
        async with (aiohttp.ClientSession() as http,
                    http.get(f"{fake_github.url}/app",
                             headers={"Authorization": f"Bearer {token}",
                                      "Accept": "application/vnd.github+json"}) as resp):
            return resp.status, str((await resp.json()).get("message"))

    iat_message = ("'Issued at' claim ('iat') must be an Integer representing the time that "
                   "the assertion was issued")
    exp_message = ("'Expiration time' claim ('exp') must be a numeric value representing the "
                   "future time at which the assertion expires")
    for offset in (-60, 0, 60):
        app_clock(st).offset = offset
        assert (await answer(get_jwt(app_id=app_id, private_key=key)))[0] == 200, offset
    # GitHub behind by more (a second more for the whole-second `iat`): `iat` in its future.
    app_clock(st).offset = -62
    assert await answer(get_jwt(app_id=app_id, private_key=key)) == (401, iat_message)
    app_clock(st).offset = 0
    now = int(time.time())

    def signed(**claims: object) -> str:
        return jwt.encode({"iss": app_id, **claims}, key, algorithm="RS256")

    assert await answer(signed(iat=now + 2, exp=now + 300)) == (401, iat_message)
    assert await answer(signed(iat=now - 600, exp=now - 1)) == (401, exp_message)
    assert await answer(signed(iat=now, exp=now + 605)) == \
        (401, "'Expiration time' claim ('exp') is too far in the future")
    assert (await answer(signed(iat=now - 60, exp=now + 600)))[0] == 200
    # GitHub takes the App's client id as the issuer too.
    assert (await answer(jwt.encode({"iss": st.client_id, "iat": now, "exp": now + 60}, key,
                                    algorithm="RS256")))[0] == 200

