"""Two web processes and three workers against one Redis and one database split the work:
every repository is scanned once, every issue is filed once.

Real processes (`python -m app web` / `python -m app worker`, as the Procfile runs them),
real Redis, PostgreSQL when TEST_DATABASE_URL is set (SQLite otherwise), and the fake
GitHub on a socket.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from app.db.models import Scan
from app.db.session import dispose_all, sessionmaker
from app.embedded_redis import free_port
from app.settings import async_database_url
from tests.dbutil import fresh_database
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.stack import SESSION_SECRET, WEBHOOK_SECRET
from tests.test_e2e import build_org, open_issues

ROOT = Path(__file__).parents[1]


@pytest.fixture
def shared_database_url(tmp_path: Path) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    return async_database_url(url) if url else f"sqlite+aiosqlite:///{tmp_path}/mp.db"


class Processes:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(self, name: str, command: str, **extra: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", command, cwd=ROOT, env={**self.env, **extra},
            stdout=log, stderr=log)
        self.procs.append((name, proc))

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    async def stop(self) -> None:
        for _, proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for _, proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def cluster(fake_github: FakeGitHub, redis_url: str, shared_database_url: str,
                  tmp_path: Path) -> AsyncIterator[tuple[Processes, list[str]]]:
    await fresh_database(shared_database_url)
    await dispose_all()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "APP_ID": str(fake_github.app_id), "PRIVATE_KEY": fake_github.private_key_pem,
        "WEBHOOK_SECRET": WEBHOOK_SECRET, "GITHUB_API_URL": fake_github.url,
        "SESSION_SECRET": SESSION_SECRET, "DATABASE_URL": shared_database_url,
        "REDIS_URL": redis_url, "LOG_LEVEL": "INFO",
        "SCAN_DEBOUNCE_SECONDS": "0.2", "HOST": "127.0.0.1",
        "GITHUB_RATE_LIMITS": os.environ["GITHUB_RATE_LIMITS"],
    }
    procs = Processes(env, tmp_path)
    ports = [free_port(), free_port()]
    try:
        for i, port in enumerate(ports):
            await procs.start(f"web{i}", "web", PORT=str(port))
        for i in range(3):
            await procs.start(f"worker{i}", "worker")
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        async with aiohttp.ClientSession() as session:
            for url in urls:
                for _ in range(200):
                    try:
                        async with session.get(f"{url}/healthz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                else:
                    pytest.fail(f"web process at {url} did not start: {procs.log('web0')}")
        # Each worker lists the installations when it starts. Wait for those syncs, or one
        # racing the webhook below finds the installation new and starts its own full scan.
        for _ in range(300):
            logs = [procs.log(f"worker{i}") for i in range(3)]
            started = sum(log.count("→ startup-sync") for log in logs)
            if (all("startup: installation sync" in log for log in logs) and started
                    and started == sum(log.count("← startup-sync") for log in logs)):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the workers' startup installation syncs did not finish")
        yield procs, urls
    finally:
        await procs.stop()
        await dispose_all()


async def wait_for_scans(database_url: str, expected: int, limit: float = 90) -> None:
    maker = sessionmaker(database_url)
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        async with maker() as db:
            done = await db.scalar(select(func.count()).select_from(Scan).where(
                Scan.kind == "full", Scan.status != "running"))
        if done == expected:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"{expected} full scans did not finish in {limit} s")


async def test_two_webs_three_workers_split_the_work(
        cluster: tuple[Processes, list[str]], fake_github: FakeGitHub,
        shared_database_url: str) -> None:
    procs, urls = cluster
    st = fake_github.state
    st.latency = 0.01  # so the work overlaps and spreads over the workers
    inst, expected = build_org(st, n=60)
    payload = hooks.installation(st, inst)
    # The same delivery reaches both web processes (a redelivery): one scan results.
    statuses = [await hooks.deliver(f"{url}/api/github/webhooks", "installation", payload,
                                    WEBHOOK_SECRET, delivery_id="same-delivery")
                for url in urls]
    assert sorted(s for s, _ in statuses) == [200, 202]
    await wait_for_scans(shared_database_url, 1)
    # Give the reconcile jobs time to finish after the scan completes.
    for _ in range(300):
        if all(set(open_issues(st, name)) == fails for name, fails in expected.items()):
            break
        await asyncio.sleep(0.1)
    for name, fails in expected.items():
        assert set(open_issues(st, name)) == fails, name
        assert len(st.issues(name)) == len(fails), f"duplicate issue in {name}"

    # Every repository's settings were read exactly once: nothing was scanned twice.
    reads = Counter(path for method, path, _ in st.requests
                    if method == "GET" and path.startswith("/repos/")
                     and path.endswith("/actions/permissions/workflow"))
    assert set(reads.values()) == {1}
    assert len(reads) == len(expected)
    posts = sum(1 for method, path, status in st.requests
                if method == "POST" and re.fullmatch(r"/repos/[^/]+/[^/]+/issues", path))
    assert posts == sum(len(f) for f in expected.values())

    # The work was shared: more than one worker ran jobs.
    busy = [n for n in ("worker0", "worker1", "worker2")
            if re.search(r"scan_repo|scan_batch|reconcile_violation", procs.log(n))]
    assert len(busy) >= 2, {n: procs.log(n)[-2000:] for n in ("worker0", "worker1")}
