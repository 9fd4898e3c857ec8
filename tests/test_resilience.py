"""GitHub being slow, failing or rate-limiting means waiting and retrying, never dropping
work; bursts of events coalesce into one scan."""

from __future__ import annotations

import pytest
from arq import create_pool
from arq.connections import RedisSettings

from app.services.queue import (
    enqueue_coalesced,
    finish_coalesced,
    pending_notes,
    start_coalesced,
)
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.stack import Stack
from tests.test_e2e import build_org, install, open_issues

STACK_SETTINGS = {"SCAN_DEBOUNCE_SECONDS": 1.0}


async def assert_complete(stack: Stack, fake_github: FakeGitHub,
                          expected: dict[str, set[str]]) -> None:
    for full_name, fails in expected.items():
        assert set(open_issues(fake_github.state, full_name)) == fails, full_name
        issues = fake_github.state.issues(full_name)
        assert len(issues) == len(fails), f"duplicate issues in {full_name}"
    (full,) = [s for s in await stack.scans() if s.kind == "full"]
    assert (full.status, full.done, full.errored) == ("ok", full.total, 0)


async def test_injected_502s_lose_nothing(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected = build_org(st, n=20)
    st.seed(7)
    st.fail_rate = 0.05
    await install(stack, st, inst)
    assert st.injected_failures > 0
    await assert_complete(stack, fake_github, expected)


async def test_secondary_and_primary_limits_are_waited_out(stack: Stack,
                                                          fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected = build_org(st, n=12)
    st.secondary.enabled = True
    st.secondary.minute_seconds = 1.0
    st.secondary.points_per_minute = 40
    st.secondary.retry_after = 1
    st.rate_limit.installation_limits[inst.id] = 60
    st.rate_limit.reset_after_seconds = 2.0
    await install(stack, st, inst)
    assert st.secondary_limit_responses > 0
    # More requests succeeded than one window's budget allows: the scan waited for resets.
    assert st.rate_limited_requests > 60
    await assert_complete(stack, fake_github, expected)


async def test_revoked_token_is_refreshed(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, _ = build_org(st, n=3)
    await install(stack, st, inst)
    st.revoke_tokens()
    push = hooks.commit_and_push(st, "acme/svc-00", {"AGENTS.md": "# ok\n"})
    await stack.deliver("push", push)
    await stack.drain()
    assert st.unauthorized_responses >= 1
    assert "Require AGENTS.md" not in open_issues(st, "acme/svc-00")


async def test_a_burst_of_pushes_gives_one_scan(stack: Stack, fake_github: FakeGitHub,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    st = fake_github.state
    inst, _ = build_org(st, n=2)
    await install(stack, st, inst)
    monkeypatch.setattr(stack.settings, "SCAN_DEBOUNCE_SECONDS", 2.0)
    repo = st.repo("acme/svc-01")
    for i in range(50):
        push = hooks.commit_and_push(st, repo.full_name, {"notes.txt": f"v{i}"})
        assert (await stack.deliver("push", push))[0] == 202
    await stack.drain()
    repo_scans = [s for s in await stack.scans() if s.kind == "repo"]
    # One scan; or, when handling the 50 deliveries outlasts the debounce (a loaded
    # 2-core machine), the scan starts mid-burst and the pushes after it give exactly one
    # more, as designed: never one per push.
    assert 1 <= len(repo_scans) <= 2, len(repo_scans)
    assert all(s.repository_id == repo.id and s.status == "ok" for s in repo_scans)


async def test_request_during_a_run_queues_exactly_one_more(redis_url: str) -> None:
    redis = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        key = "scan-repo:1:2"
        results = [await enqueue_coalesced(redis, "scan_repo", key, 1, 2, note={"n": i})
                   for i in range(5)]
        assert results == [True, False, False, False, False]
        assert [j.job_id for j in await redis.queued_jobs()] == [f"{key}@0"]
        # The queued run starts: it takes every note so far...
        assert await start_coalesced(redis, key, f"{key}@0") == [{"n": i} for i in range(5)]
        # ...and a request arriving while it runs queues one more run, not more.
        later = [await enqueue_coalesced(redis, "scan_repo", key, 1, 2, note={"n": 9})
                 for _ in range(3)]
        assert later == [True, False, False]
        assert sorted(str(j.job_id) for j in await redis.queued_jobs()) == [f"{key}@0", f"{key}@1"]
        assert await pending_notes(redis, key) == [{"n": 9}]
        # An interrupted run that arq starts again still has its notes, plus new ones.
        again = await start_coalesced(redis, key, f"{key}@0")
        assert again == [{"n": i} for i in range(5)] + [{"n": 9}]
        await finish_coalesced(redis, key, f"{key}@0")
        assert await start_coalesced(redis, key, f"{key}@0") == []
    finally:
        await redis.aclose()


async def test_a_post_that_failed_after_creating_is_not_repeated(
        stack: Stack, fake_github: FakeGitHub) -> None:
    """A 502 after GitHub created the issue: the retry finds the issue, files no second."""
    st = fake_github.state
    inst, expected = build_org(st, n=3)
    st.fail_next(1, 502, path_prefix="/repos/acme/svc-00/issues", method="POST", after=True)
    await install(stack, st, inst)
    assert st.injected_failures == 1
    assert len(st.issues("acme/svc-00")) == len(expected["acme/svc-00"])
    await assert_complete(stack, fake_github, expected)
    failed = [a for a in await stack.action_log() if a.status == "failed"]
    assert len(failed) == 1 and "502" in failed[0].detail


async def test_installation_first_seen_through_a_push(stack: Stack,
                                                      fake_github: FakeGitHub) -> None:
    """Installed before this server was deployed: the first push is enough to enforce."""
    st = fake_github.state
    build_org(st, n=2)
    push = hooks.commit_and_push(st, "acme/svc-00", {"notes.txt": "x"})
    assert (await stack.deliver("push", push))[0] == 202
    await stack.drain()
    assert set(open_issues(st, "acme/svc-00")) == {"Require AGENTS.md",
                                                   "Require catalog-info.yaml",
                                                   "Read-only workflow token"}
    (row,) = [await stack.installation(i) for i in st.installations]
    assert row is not None and (row.account_login, row.config_status) == ("acme", "valid")
