"""/metrics over a real socket: the token gate, every metric family, values that follow
webhooks, GitHub answers, scans, the governor's Redis state and the violations table, and
the multiprocess aggregation of several processes' files. Real Redis, real SQLite."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import ClientSession
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.db.models import Installation, Repository, Scan, Violation, utcnow
from app.db.session import dispose_all, sessionmaker
from app.github.client import GitHub
from app.services.store import count_scan
from app.web.webhooks import WEBHOOK_PATH
from tests.dbutil import fresh_database
from tests.fakegithub.server import FakeGitHub
from tests.ops import METRICS_TOKEN, ops_app, ops_settings, serve, signed_delivery

ROOT = Path(__file__).parents[1]
AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}
FAMILIES = (
    "policy_enforcer_webhooks_received_total",
    "policy_enforcer_github_requests_total",
    "policy_enforcer_job_duration_seconds",
    "policy_enforcer_job_failures_total",
    "policy_enforcer_scan_duration_seconds",
    "policy_enforcer_github_rate_limit_remaining",
    "policy_enforcer_open_violations",
    "policy_enforcer_scrape_collector_success",
)


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    metrics.clear_cache()


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    yield pool
    await pool.aclose()


@pytest.fixture
async def migrated(database_url: str) -> AsyncIterator[str]:
    await fresh_database(database_url)
    yield database_url
    await dispose_all()


def samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(body: str, name: str, **labels: str) -> float:
    return samples(body).get((name, frozenset(labels.items())), 0.0)


async def scrape(session: ClientSession) -> str:
    async with session.get("/metrics", headers=AUTH) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text()


# --- the token gate -----------------------------------------------------------------------


async def test_metrics_off_without_a_token(pool: ArqRedis, redis_url: str,
                                           database_url: str) -> None:
    settings = ops_settings(redis_url, database_url, METRICS_TOKEN=None)
    async with serve(ops_app(settings, pool, database_url)) as session:
        for headers in ({}, AUTH):
            async with session.get("/metrics", headers=headers) as resp:
                assert resp.status == 404


async def test_metrics_needs_the_bearer_token(pool: ArqRedis, redis_url: str,
                                              database_url: str) -> None:
    settings = ops_settings(redis_url, database_url)
    async with serve(ops_app(settings, pool, database_url)) as session:
        for authorization in (None, "Bearer wrong-token-0123456789abcdef",
                              f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x", "Bearer",
                              f"Bearer {METRICS_TOKEN[:-1]}", "Bearer caf\u00e9"):
            headers = {} if authorization is None else {"Authorization": authorization}
            async with session.get("/metrics", headers=headers) as resp:
                assert resp.status == 401, authorization
                assert resp.headers["WWW-Authenticate"] == "Bearer"
                assert METRICS_TOKEN not in await resp.text()
        async with session.get("/metrics", headers={
                "Authorization": f"bearer  {METRICS_TOKEN} "}) as resp:
            assert resp.status == 200


async def test_exposition_has_every_family(pool: ArqRedis, redis_url: str,
                                           migrated: str) -> None:
    app = ops_app(ops_settings(redis_url, migrated), pool, migrated)
    async with serve(app) as session, session.get("/metrics", headers=AUTH) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert resp.headers["Cache-Control"] == "no-store"
        body = await resp.text()
    typed = {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE ")}
    for family in FAMILIES:
        assert family in typed, family
    assert value(body, "policy_enforcer_scrape_collector_success", collector="rate_limits") == 1
    assert value(body, "policy_enforcer_scrape_collector_success",
                 collector="open_violations") == 1
    assert "process_cpu_seconds_total" in body or sys.platform != "linux"


# --- values -------------------------------------------------------------------------------


async def test_webhooks_counter_follows_deliveries(pool: ArqRedis, redis_url: str,
                                                   migrated: str) -> None:
    async with serve(ops_app(ops_settings(redis_url, migrated), pool, migrated)) as session:
        before = await scrape(session)
        body, headers = signed_delivery("push")
        for _ in range(2):  # the second is a duplicate
            async with session.post(WEBHOOK_PATH, data=body, headers=headers) as resp:
                assert resp.status in (200, 202)
        # Unauthenticated: the made-up event name must not become a label value.
        forged = {**headers, "X-GitHub-Event": "made-up-event-name",
                  "X-Hub-Signature-256": "sha256=" + "0" * 64}
        async with session.post(WEBHOOK_PATH, data=body, headers=forged) as resp:
            assert resp.status == 401
        after = await scrape(session)
    name = "policy_enforcer_webhooks_received_total"
    for event, outcome in (("push", "queued"), ("push", "duplicate"),
                           ("-", "rejected:bad-signature")):
        assert (value(after, name, event=event, outcome=outcome)
                - value(before, name, event=event, outcome=outcome)) == 1, (event, outcome)
    assert "made-up-event-name" not in after


async def test_open_violations_gauge_reads_the_database(pool: ArqRedis, redis_url: str,
                                                        migrated: str) -> None:
    db = sessionmaker(migrated)
    async with db() as s, s.begin():
        s.add_all([Installation(id=1, account_login="acme"),
                   Installation(id=2, account_login="globex"),
                   Installation(id=3, account_login="gone", active=False)])
        await s.flush()
        s.add_all([Repository(id=100 + i, installation_id=1 if i < 3 else 2 if i < 4 else 3,
                              full_name=f"org/repo-{i}") for i in range(5)])
        await s.flush()

        def violation(repo: int, inst: int, policy: str, state: str = "open") -> Violation:
            return Violation(installation_id=inst, repository_id=repo, policy=policy,
                             policy_type="has_agents_md", state=state)

        s.add_all([violation(100, 1, "Require AGENTS.md"),
                   violation(101, 1, "Require AGENTS.md"),
                   violation(102, 1, "Require AGENTS.md", "resolved"),
                   violation(100, 1, "Read-only token"),
                   violation(103, 2, "Require AGENTS.md"),
                   violation(104, 3, "Require AGENTS.md")])  # uninstalled
    name = "policy_enforcer_open_violations"
    async with serve(ops_app(ops_settings(redis_url, migrated), pool, migrated)) as session:
        body = await scrape(session)
        assert value(body, name, account="acme", policy="Require AGENTS.md") == 2
        assert value(body, name, account="acme", policy="Read-only token") == 1
        assert value(body, name, account="globex", policy="Require AGENTS.md") == 1
        assert 'account="gone"' not in body
        async with db() as s, s.begin():
            s.add(violation(101, 1, "Read-only token"))
        # Cached for a while: frequent scrapes cost no query...
        body = await scrape(session)
        assert value(body, name, account="acme", policy="Read-only token") == 1
        # ...and the next query sees the new row.
        metrics.clear_cache()
        body = await scrape(session)
        assert value(body, name, account="acme", policy="Read-only token") == 2


async def test_rate_limit_gauge_reads_the_governor_state(pool: ArqRedis, redis_url: str,
                                                         migrated: str) -> None:
    seconds, micros = await pool.time()
    now_ms = seconds * 1000 + micros // 1000
    await pool.hset("pe:gh:{777}:st", mapping={  # type: ignore[misc]
        "core:rem": 4321, "core:rst": now_ms + 3_600_000, "core:pend": 3,
        "graphql:rem": 4990, "graphql:rst": now_ms + 600_000,
        "search:rem": 3, "search:rst": now_ms - 1000,  # that window has reset: unknown now
        "sum:pts": 12, "blk": 0, "why": "x"})
    await pool.hset("pe:gh:{app}:st",  # type: ignore[misc]
                    mapping={"core:rem": 4999, "core:rst": now_ms + 60_000})
    # Other keys, so finding the state hashes takes several SCAN round trips.
    async with pool.pipeline(transaction=False) as pipe:
        for i in range(2500):
            pipe.set(f"pe:gh:{{777}}:c:{i:040x}", b"x")
        await pipe.execute()
    name = "policy_enforcer_github_rate_limit_remaining"
    async with serve(ops_app(ops_settings(redis_url, migrated), pool, migrated)) as session:
        body = await scrape(session)
    assert value(body, name, installation="777", resource="core") == 4321
    assert value(body, name, installation="777", resource="graphql") == 4990
    assert value(body, name, installation="app", resource="core") == 4999
    assert 'resource="search"' not in body


async def test_github_answers_are_counted_by_status(fake_github: FakeGitHub,
                                                    redis_url: str) -> None:
    inst = fake_github.state.add_installation("acme", 1)
    redis = aioredis.Redis.from_url(redis_url)
    gh = GitHub(api_url=fake_github.url, redis=redis, app_id=fake_github.app_id,
                private_key=fake_github.private_key_pem)
    before, _ = await metrics.render_metrics(None, None)
    try:
        api = gh.installation(inst.id)
        await api.getitem("/repos/acme/repo-000")
        await api.getitem("/repos/acme/repo-000")  # 304: counted as GitHub answered it
        assert await api.getstatus("/repos/acme/no-such-repo") == 404
    finally:
        await gh.close()
        await redis.aclose()
    after, _ = await metrics.render_metrics(None, None)
    name = "policy_enforcer_github_requests_total"

    def delta(status: str) -> float:
        return (value(after.decode(), name, status=status)
                - value(before.decode(), name, status=status))

    assert delta("201") == 1  # the installation token
    assert delta("200") == 1 and delta("304") == 1 and delta("404") == 1
    assert metrics.status_label(418) == "4xx" and metrics.status_label(599) == "5xx"


async def test_jobs_and_scans(migrated: str) -> None:
    before, _ = await metrics.render_metrics(None, None)
    metrics.observe_job("scan_repo", 0.3, "success")
    metrics.observe_job("scan_repo", 2.0, "retry")
    metrics.observe_job("scan_repo", 1.0, "failed")
    metrics.observe_job("scan_repo", 1.0, "something else")
    db = sessionmaker(migrated)
    async with db() as session, session.begin():
        session.add(Installation(id=5, account_login="acme"))
        await session.flush()
        scan = Scan(installation_id=5, kind="repo", trigger="test", total=2,
                    started_at=utcnow() - timedelta(seconds=3))
        session.add(scan)
    async with db() as session, session.begin():
        await count_scan(session, scan.id, done=1)  # not closed yet
    async with db() as session, session.begin():
        await count_scan(session, scan.id, errored=1)  # closed
    after, _ = await metrics.render_metrics(None, None)
    a, b = after.decode(), before.decode()

    def delta(name: str, **labels: str) -> float:
        return value(a, name, **labels) - value(b, name, **labels)

    assert delta("policy_enforcer_job_duration_seconds_count", function="scan_repo") == 4
    assert delta("policy_enforcer_job_duration_seconds_sum",
                 function="scan_repo") == pytest.approx(4.3)
    assert delta("policy_enforcer_job_failures_total", function="scan_repo",
                 outcome="retry") == 1
    assert delta("policy_enforcer_job_failures_total", function="scan_repo",
                 outcome="failed") == 2
    assert delta("policy_enforcer_scan_duration_seconds_count", kind="repo") == 1
    assert 3 <= delta("policy_enforcer_scan_duration_seconds_sum", kind="repo") < 60
    assert delta("policy_enforcer_scan_duration_seconds_bucket", kind="repo", le="2.5") == 0
    assert delta("policy_enforcer_scan_duration_seconds_bucket", kind="repo", le="5.0") == 1


async def test_failed_reads_leave_their_gauges_out(tmp_path: Path) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    try:
        body, _ = await metrics.render_metrics(dead, f"sqlite+aiosqlite:///{tmp_path}/none.db")
    finally:
        await dead.aclose()
        await dispose_all()
    text = body.decode()
    assert value(text, "policy_enforcer_scrape_collector_success", collector="rate_limits") == 0
    # No such table: the query fails, the scrape still answers.
    assert value(text, "policy_enforcer_scrape_collector_success",
                 collector="open_violations") == 0
    assert "# TYPE policy_enforcer_open_violations gauge" in text


# --- multiprocess mode --------------------------------------------------------------------

WORKER_SCRIPT = """
import sys
from app import metrics
metrics.observe_job("scan_batch", float(sys.argv[1]), "success")
metrics.observe_job("scan_batch", 0.5, "retry")
metrics.observe_webhook("push", "queued")
metrics.observe_github_response(200)
metrics.observe_scan("full", 42.0)
"""


async def test_multiprocess_mode_adds_up_the_processes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "prometheus"  # created by the processes themselves
    env = {**os.environ, metrics.MULTIPROC_ENV: str(directory)}
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", WORKER_SCRIPT, seconds,
                                                  cwd=ROOT, env=env)
             for seconds in ("1.0", "2.0")]
    assert [await p.wait() for p in procs] == [0, 0]
    # This process counted in its own memory (single-process mode): not in the files.
    metrics.observe_webhook("push", "queued")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(directory))
    body, content_type = await metrics.render_metrics(None, None)
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert value(text, "policy_enforcer_job_duration_seconds_count", function="scan_batch") == 4
    assert value(text, "policy_enforcer_job_duration_seconds_sum",
                 function="scan_batch") == pytest.approx(4.0)
    assert value(text, "policy_enforcer_job_failures_total", function="scan_batch",
                 outcome="retry") == 2
    assert value(text, "policy_enforcer_webhooks_received_total", event="push",
                 outcome="queued") == 2
    assert value(text, "policy_enforcer_github_requests_total", status="200") == 2
    assert value(text, "policy_enforcer_scan_duration_seconds_count", kind="full") == 2
    assert "# TYPE policy_enforcer_open_violations gauge" in text
