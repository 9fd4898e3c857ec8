"""A worker killed (SIGKILL) during the first full scan of a 120-repository org, with a
second worker running all along and the killed one started again: every repository is
scanned and every expected issue filed exactly once.

Real processes (`python -m app web` / `python -m app worker`), a Redis and a database of
the test's own (PostgreSQL when TEST_DATABASE_URL is set), the fake GitHub on a socket.

What bounds the recovery: arq marks a started job in progress (`arq:in-progress:<id>`) for
the longest job timeout of the worker plus 10 s, and no worker starts a job so marked. The
longest timeout is tasks/monitor.JOB_TIMEOUT_SECONDS (570 s), so the jobs a killed worker
was running wait under 10 minutes for another worker (and the locks they held, 600 s, go
with them). Each test checks how long the marks it left still had to live, then lets
them run out (expire_orphans) rather than wait that long.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.models import Repository
from app.services.scan_requests import batch_job_id
from app.services.scanning import BATCH_SIZE
from tasks.monitor import JOB_TIMEOUT_SECONDS
from tasks.worker import NOTIFY_DUE_TIMEOUT
from tests.procs import AppProcess, Rig, expire_orphans, rig

__all__ = ["rig"]  # the fixture

ORG = 120
# arq's in-progress mark: the longest job timeout plus 10 s (arq.worker.Worker).
IN_PROGRESS_MS = (JOB_TIMEOUT_SECONDS + 10) * 1000
# The per-minute notify_due cron has a timeout of its own.
OWN_MARKS = {"notify_due:": (NOTIFY_DUE_TIMEOUT + 10) * 1000}
RECOVERY_LIMIT = 30.0  # seconds, once the marks have run out (it takes a few)


def running(rig: Rig, prefix: str, at_least: int = 1) -> AppProcess | None:
    """A worker running at least `at_least` jobs whose ids start with `prefix`."""
    for worker in rig.cluster.workers():
        if worker.running and sum(j.startswith(prefix)
                                  for j in worker.jobs_in_flight()) >= at_least:
            return worker
    return None


async def kill_and_restart(rig: Rig, victim: AppProcess) -> dict[str, int]:
    """SIGKILL `victim`, start it again; returns the in-progress marks it left (ms left)."""
    victim.signal(signal.SIGKILL)
    assert await victim.wait_exit(10) is not None
    killed_at = time.time()  # every mark of the victim's was set before
    await rig.cluster.start_worker(victim.name)
    return await rig.cluster.orphans(rig.redis, killed_at, IN_PROGRESS_MS, OWN_MARKS)


async def recover(rig: Rig, orphans: dict[str, int], expected: dict[str, set[str]]) -> float:
    """The marks are as long as arq makes them; let them run out and wait for the rest."""
    assert orphans, "the killed worker left no job in progress"
    for job_id, left in orphans.items():
        # Set a few seconds ago: (nearly) the whole mark still ahead.
        own = next((ms for p, ms in OWN_MARKS.items() if job_id.startswith(p)), None)
        if own is not None:  # a minute-long mark: anywhere in its minute
            assert 0 < left <= own, (job_id, left)
        else:
            assert IN_PROGRESS_MS - 60_000 < left <= IN_PROGRESS_MS, (job_id, left)
    await expire_orphans(rig.redis, list(orphans))
    return await rig.wait_settled(expected, RECOVERY_LIMIT)


async def test_worker_killed_mid_full_scan(rig: Rig) -> None:
    await rig.start()
    rig.st.latency = 0.05  # a batch of 100 repositories takes about a second
    expected = await rig.install(ORG)
    await rig.until(lambda: running(rig, "scan-batch:") is not None, 30, "a batch running")
    victim = running(rig, "scan-batch:")
    assert victim is not None
    await asyncio.sleep(0.3)  # well into the batch
    orphans = await kill_and_restart(rig, victim)
    assert any(j.startswith("scan-batch:") for j in orphans), orphans
    rig.st.latency = 0.0

    await recover(rig, orphans, expected)
    await rig.assert_nothing_lost(expected)


async def test_worker_killed_while_filing_issues(rig: Rig) -> None:
    await rig.start()
    rig.st.latency = 0.05  # issues are being created when the worker dies
    expected = await rig.install(ORG)
    await rig.until(lambda: running(rig, "reconcile:", at_least=5) is not None, 30,
                    "issues being filed")
    victim = running(rig, "reconcile:", at_least=5)
    assert victim is not None
    orphans = await kill_and_restart(rig, victim)
    assert sum(j.startswith("reconcile:") for j in orphans) >= 5, orphans
    rig.st.latency = 0.0

    await recover(rig, orphans, expected)
    await rig.assert_nothing_lost(expected)


async def test_worker_killed_right_after_a_batch_is_recorded(rig: Rig) -> None:
    """The worst moment: a batch has recorded its repositories (one transaction) and not
    yet queued the reconciliation of their violations. The test holds the database's
    writes while the batches read GitHub, pauses Redis' writes, lets the batches commit,
    and kills the worker of the first batch while it waits for Redis: inside that window,
    every time."""
    await rig.start()
    rig.st.latency = 0.02
    expected = await rig.install(ORG)
    await rig.until(lambda: running(rig, "scan-batch:") is not None, 30, "a batch running")
    async with writes_held(rig.database_url):
        reads = -1
        while reads != settings_read(rig):  # GitHub is done with; the batches wait to write
            reads = settings_read(rig)
            await asyncio.sleep(0.5)
        await rig.redis.client_pause(20_000, all=False)  # writes only
    try:
        db = rig.db()
        scan_id = 0
        deadline = time.monotonic() + 10
        while scan_id == 0:
            assert time.monotonic() < deadline, "the first batch did not record"
            async with db() as session:
                recorded = list(await session.scalars(select(Repository.last_full_scan_id)
                                                      .where(Repository.last_full_scan_id
                                                             .is_not(None))))
            scan_id = recorded[0] or 0 if len(recorded) >= BATCH_SIZE else 0
        batch = batch_job_id(scan_id, 0)
        victim = next((w for w in rig.cluster.workers() if batch in w.jobs_in_flight()), None)
        assert victim is not None, f"{batch} is not running"
        victim.signal(signal.SIGKILL)
        assert await victim.wait_exit(10) is not None
        killed_at = time.time()
    finally:
        await rig.redis.client_unpause()
    await rig.cluster.start_worker(victim.name)
    orphans = await rig.cluster.orphans(rig.redis, killed_at, IN_PROGRESS_MS, OWN_MARKS)
    assert batch in orphans, orphans
    rig.st.latency = 0.0

    await recover(rig, orphans, expected)
    await rig.assert_nothing_lost(expected)


def settings_read(rig: Rig) -> int:
    return rig.st.count_requests("GET", "/repos/acme/")


@asynccontextmanager
async def writes_held(database_url: str) -> AsyncIterator[None]:
    """Hold the database's writes: SQLite's write lock, or on PostgreSQL an exclusive lock
    on the scans table, which a batch's recording transaction updates last."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        lite = sqlite3.connect(str(url.database), timeout=30, isolation_level=None,
                               check_same_thread=False)
        await asyncio.to_thread(lite.execute, "BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lite.execute("ROLLBACK")
            lite.close()
        return
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("LOCK TABLE scans IN EXCLUSIVE MODE"))
            try:
                yield
            finally:
                await conn.rollback()
    finally:
        await engine.dispose()
