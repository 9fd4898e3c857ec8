"""Redis, PostgreSQL or GitHub going away under the app's real processes, and the processes
being stopped (SIGTERM) in the middle of their work: every delivery GitHub sent is
processed exactly once, every repository scanned, every issue filed once.

Real processes (`python -m app web` / `python -m app worker`), a Redis of the test's own
(stopped and started again on its port, with its append-only file), a database of the
test's own (PostgreSQL when TEST_DATABASE_URL is set), the fake GitHub on a socket, which
sends the webhooks itself and keeps the delivery log the recovery job reads.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.models import WebhookDelivery
from app.db.session import sessionmaker
from app.github.client import GitHub
from app.services import deliveries
from app.services.context import Services
from app.settings import Settings
from tasks.monitor import JOB_TIMEOUT_SECONDS
from tasks.worker import NOTIFY_DUE_TIMEOUT
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.hooks import HookDelivery
from tests.procs import AppProcess, Rig, expire_orphans, rig
from tests.stack import WEBHOOK_SECRET

__all__ = ["rig"]  # the fixture

IN_PROGRESS_MS = (JOB_TIMEOUT_SECONDS + 10) * 1000  # arq's in-progress mark


@asynccontextmanager
async def services(rig: Rig) -> AsyncIterator[Services]:
    """The app's services in this process, for running the recovery job directly."""
    fake = rig.fake
    settings = Settings(_env_file=None, APP_ID=fake.app_id, PRIVATE_KEY=fake.private_key_pem,
                        WEBHOOK_SECRET=WEBHOOK_SECRET, GITHUB_API_URL=fake.url,
                        DATABASE_URL=rig.database_url, REDIS_URL=rig.redis_server.url)
    pool = await create_pool(RedisSettings.from_dsn(rig.redis_server.url))
    github = GitHub(api_url=fake.url, redis=pool, app_id=fake.app_id,
                    private_key=fake.private_key_pem)
    try:
        yield Services(settings=settings, db=sessionmaker(rig.database_url), github=github,
                       redis=pool)
    finally:
        await github.close()
        await pool.aclose()


async def supervise(rig: Rig, *, stopped: str | None = None) -> list[tuple[str, int | None]]:
    """What a process manager does: start again every worker that exited, but the one
    `stopped` on purpose. Returns the names and exit codes of those that had exited."""
    names = {w.name for w in rig.cluster.workers()} - {stopped}
    exited = [(n, [w for w in rig.cluster.workers() if w.name == n][-1]) for n in sorted(names)]
    restarted = [(n, w.proc.returncode) for n, w in exited if not w.running]
    for name, _ in restarted:
        await rig.cluster.start_worker(name)
    return restarted


async def outcomes(rig: Rig) -> dict[str, str]:
    async with rig.db()() as db:
        return {d.delivery_id: d.outcome for d in await db.scalars(select(WebhookDelivery))}


async def let_orphans_expire(rig: Rig, since: float) -> dict[str, int]:
    """Jobs left marked in progress by workers that had died (or lost Redis) by `since`
    (time.time()): the marks still had (nearly) the whole job timeout to live; let them
    run out."""
    # The per-minute notify_due cron has a timeout of its own.
    own = {"notify_due:": (NOTIFY_DUE_TIMEOUT + 10) * 1000}
    orphans = await rig.cluster.orphans(rig.redis, since, IN_PROGRESS_MS, own)
    for job_id, left in orphans.items():
        mark_ms = own["notify_due:"] if job_id.startswith("notify_due:") else IN_PROGRESS_MS
        assert left > mark_ms - (time.time() - since + 60) * 1000, (job_id, left)
    await expire_orphans(rig.redis, list(orphans))
    return orphans


# ----------------------------------------------------------------------------- Redis
async def test_redis_outage_during_webhook_load_loses_no_delivery(rig: Rig) -> None:
    await rig.start()
    expected = await rig.install(10)
    await rig.wait_settled(expected, 30)
    st = rig.st
    sent: list[HookDelivery] = []
    stop_load = asyncio.Event()

    async def load() -> None:
        i = 0
        while not stop_load.is_set():
            name = f"acme/svc-{i % 10:02d}"
            delivery = await rig.fake.send_event(
                "push", hooks.commit_and_push(st, name, {"notes.txt": f"v{i}"}))
            assert delivery is not None
            sent.append(delivery)
            i += 1
            await asyncio.sleep(0.02)

    task = asyncio.create_task(load())
    await asyncio.sleep(0.5)
    down_at = time.time()
    rig.redis_server.stop()
    gone_at = time.time()  # every in-progress mark was set before
    await asyncio.sleep(2)
    during = len(sent)
    rig.redis_server.start()
    up_at = time.time()
    await asyncio.sleep(0.5)
    stop_load.set()
    await task

    # While Redis was away the web process refused every delivery with a 503 (GitHub logs
    # a failure, the recovery asks for it again); nothing was accepted and then dropped.
    statuses = Counter(d.status_code for d in sent)
    assert set(statuses) <= {202, 503}, statuses
    refused = [d for d in sent if d.status_code == 503]
    assert refused and during > 10, statuses
    for d in refused:
        assert down_at - 0.1 <= d.delivered_at <= up_at + 0.5, "a 503 while Redis was up"
        assert (d.response_headers or {}).get("Retry-After") == "60"

    # The workers: those that went down with Redis are started again (by the test here, as
    # a process manager would); what they were running waits for arq's in-progress marks.
    await supervise(rig)
    await let_orphans_expire(rig, gone_at)
    async with services(rig) as svc:
        await deliveries.recover_deliveries(svc)
    await rig.fake.hooks_idle()
    # GitHub was asked once for refused deliveries (by this run, or by the workers' own
    # recovery job if its schedule came round), and for nothing accepted. (A delivery that
    # got its 503 as Redis went down may have been queued all the same, and be processed
    # by now: it needs no redelivery, and one would be answered "duplicate".)
    asked = st.hook.redelivery_requests
    assert asked and set(asked.values()) == {1}, asked
    assert set(asked) <= {d.guid for d in refused}

    guids = {d.guid for d in st.hook.log()}
    deadline = time.monotonic() + 60
    while True:
        done = await outcomes(rig)
        if all(deliveries.processed(done.get(g)) for g in guids) and \
                not await rig.redis.zcard("arq:queue"):
            break
        assert time.monotonic() < deadline, (
            f"deliveries not processed: "
            f"{[(g, done.get(g)) for g in guids if not deliveries.processed(done.get(g))]}"
            f"\n{rig.cluster.tail()}")
        await asyncio.sleep(0.1)
    # Exactly once: every delivery is recorded as processed (above), and no two runs of its
    # job did the work (a run that finds it done says "duplicate"). A run may do it and be
    # cancelled before it returns, as its worker goes down: then no run reports it.
    worked = Counter(job for job, result in rig.cluster.results()
                     if job.startswith("webhook:") and result != "'duplicate'")
    assert {job: n for job, n in worked.items() if n > 1} == {}
    await rig.wait_settled(expected, 30)


async def test_workers_ride_out_a_redis_outage(rig: Rig) -> None:
    """A worker whose Redis goes away for a few seconds reconnects by itself when it is
    back, rather than exiting and leaving the work to a process manager."""
    await rig.start()
    rig.redis_server.stop()
    await asyncio.sleep(3)
    rig.redis_server.start()
    await asyncio.sleep(2)
    exited = [(w.name, w.proc.returncode) for w in rig.cluster.workers() if not w.running]
    assert exited == [], f"workers exited with Redis away: {exited}\n{rig.cluster.tail(8)}"
    expected = await rig.install(5)
    await rig.wait_settled(expected, 30)
    await rig.assert_nothing_lost(expected)


# ----------------------------------------------------------------------------- PostgreSQL
def dropped_under_a_job(rig: Rig) -> bool:
    """A worker retried a job because its database connection died under it."""
    return any("retry in" in line and "sqlalche.me" in line
               for w in rig.cluster.workers() for line in w.log().splitlines())


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"),
                    reason="needs PostgreSQL (TEST_DATABASE_URL); CI sets it")
async def test_postgresql_connections_dropped_mid_scan(rig: Rig) -> None:
    """The server restarting, as the app sees it: every connection of the app's database
    terminated, again and again, while a scan runs. Jobs retry; nothing is half-written."""
    await rig.start()
    rig.st.latency = 0.02
    expected = await rig.install(60)
    killer = create_async_engine(rig.database_url, isolation_level="AUTOCOMMIT")
    terminated = 0
    try:
        await rig.until(lambda: rig.st.count_requests("GET", "/repos/acme/svc-") > 5, 30,
                        "the scan under way")
        # For 3 s (the scan, then the issues being filed), and on until a job has been
        # retried because its connection died (30 s at most): a retried job waits seconds
        # with no connection open, so how many die in a fixed time varies.
        started = time.monotonic()
        while time.monotonic() - started < 3 or (not dropped_under_a_job(rig)
                                                 and time.monotonic() - started < 30):
            async with killer.connect() as conn:
                terminated += int(await conn.scalar(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")) or 0)
            await asyncio.sleep(0.12)
    finally:
        await killer.dispose()
    rig.st.latency = 0.0
    assert terminated >= 3, rig.cluster.tail()
    await rig.wait_settled(expected, 60)
    await rig.assert_nothing_lost(expected)
    # Connections died under running jobs, which were retried (not merely idle ones that
    # the pool's pre-ping replaced).
    assert dropped_under_a_job(rig), rig.cluster.tail()


# ----------------------------------------------------------------------------- SIGTERM
@pytest.mark.parametrize("outage", ["none", "redis", "github"])
async def test_sigterm_mid_scan_stops_in_time_and_the_work_is_finished(
        rig: Rig, outage: str) -> None:
    """A worker stops within 30 s and a web process within 10 s of SIGTERM, also with
    Redis or GitHub unreachable at that moment; another worker finishes the scan."""
    await rig.start()
    rig.st.latency = 0.05
    expected = await rig.install(120)

    def scanning() -> AppProcess | None:
        return next((w for w in rig.cluster.workers()
                     if any(j.startswith("scan-batch:") for j in w.jobs_in_flight())), None)

    await rig.until(lambda: scanning() is not None, 30, "a batch running")
    victim, web = scanning(), rig.cluster.named("web")[0]
    assert victim is not None
    await asyncio.sleep(0.3)
    if outage == "redis":
        rig.redis_server.stop()
    elif outage == "github":
        await rig.fake.close()
    sent = victim.signal(signal.SIGTERM)
    web.signal(signal.SIGTERM)
    worker_exit, web_exit = await asyncio.gather(victim.wait_exit(60), web.wait_exit(60))
    since = time.time()
    assert worker_exit is not None and worker_exit - sent < 30, worker_exit
    assert web_exit is not None and web_exit - sent < 10, web_exit

    if outage == "redis":
        await asyncio.sleep(1)  # long enough for every worker to meet the outage
        rig.redis_server.start()
    elif outage == "github":
        await rig.fake.start()
    rig.st.latency = 0.0
    await supervise(rig, stopped=victim.name)  # (workers that went down with Redis)
    orphans = await let_orphans_expire(rig, since)
    if outage != "redis":
        # Stopped cleanly, the worker handed its jobs back at once.
        assert orphans == {}, orphans
    await rig.wait_settled(expected, 30)
    await rig.assert_nothing_lost(expected)
