"""Real app processes for fault tests: `python -m app web` and `python -m app worker` as the
Procfile runs them, a private redis-server that can be stopped and started again on its
port, and a private database, so a test can kill, signal and starve them.

Every process writes its stdout and stderr to a log file under the test's directory; the
files are listed in PROCESS_LOGS for the session's secret check (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp
import pytest
from arq.connections import ArqRedis
from arq.constants import default_queue_name, in_progress_key_prefix
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.db.models import Repository, Scan, Violation
from app.db.session import dispose_all, sessionmaker
from app.embedded_redis import EmbeddedRedis, free_port
from app.settings import async_database_url
from app.web.webhooks import WEBHOOK_PATH
from tests.dbutil import fresh_database
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState
from tests.fakegithub.webhooks import installation as installation_payload
from tests.stack import SESSION_SECRET, WEBHOOK_SECRET
from tests.test_e2e import build_org, open_issues

ROOT = Path(__file__).parents[1]
# Log files of every process started this session (read by the secret check).
PROCESS_LOGS: list[Path] = []

# arq's job lines: `→ ref(args)` as a job starts, `← ref ●` when it succeeds, `↻ ref` when
# it is retried or cancelled, `! ref failed` when it fails; ref is `{job_id}:{function}`.
_STARTED = re.compile(r" → (\S+?)\(")
_ENDED = re.compile(r" (?:← (\S+) ●|↻ (\S+) |! (\S+) (?:failed|max retries))")
_SUCCEEDED = re.compile(r" ← (\S+) ● ?(.*)$")


def _job_id(ref: str) -> str:
    return ref.rsplit(":", 1)[0]


def app_env(fake: FakeGitHub, *, redis_url: str, database_url: str,
            **extra: str) -> dict[str, str]:
    """The environment of an app process: the fake GitHub's App, this Redis and database."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **fake.env(),
        "WEBHOOK_SECRET": WEBHOOK_SECRET, "SESSION_SECRET": SESSION_SECRET,
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO", "LOG_FORMAT": "text", "SCAN_DEBOUNCE_SECONDS": "0.2",
        "GITHUB_RATE_LIMITS": os.environ.get("GITHUB_RATE_LIMITS", ""),
        **extra,
    }


@dataclass(eq=False)
class AppProcess:
    name: str
    command: str  # web | worker
    proc: asyncio.subprocess.Process
    log_path: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> float:
        """Send `sig`; returns the time it was sent (time.monotonic())."""
        self.proc.send_signal(sig)
        return time.monotonic()

    async def wait_exit(self, within: float) -> float | None:
        """When (time.monotonic()) the process exited, waiting up to `within` seconds;
        None if it still runs."""
        try:
            await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            return None
        return time.monotonic()

    def job_runs(self) -> tuple[Counter[str], Counter[str]]:
        """(starts, ends) of each job id in this worker's log."""
        starts: Counter[str] = Counter()
        ends: Counter[str] = Counter()
        for line in self.log().splitlines():
            if (m := _STARTED.search(line)) is not None:
                starts[_job_id(m.group(1))] += 1
            elif (m := _ENDED.search(line)) is not None:
                ends[_job_id(next(g for g in m.groups() if g))] += 1
        return starts, ends

    def jobs_in_flight(self) -> list[str]:
        """Job ids this worker started and had not ended when its log was read."""
        starts, ends = self.job_runs()
        return sorted(j for j, n in starts.items() if n > ends[j])

    def results(self) -> list[tuple[str, str]]:
        """(job id, result as arq logs it) of each successful run in this worker."""
        found: list[tuple[str, str]] = []
        for line in self.log().splitlines():
            if (m := _SUCCEEDED.search(line)) is not None:
                found.append((_job_id(m.group(1)), m.group(2)))
        return found


@dataclass(eq=False)
class Cluster:
    """The app's processes of one test; `stop()` ends whatever still runs."""

    env: dict[str, str]
    logs: Path
    procs: list[AppProcess] = field(default_factory=list)
    _runs: Counter[str] = field(default_factory=Counter)

    async def _spawn(self, name: str, command: str, port: int | None) -> AppProcess:
        self._runs[name] += 1
        suffix = f".{self._runs[name]}" if self._runs[name] > 1 else ""
        path = self.logs / f"{name}{suffix}.log"
        PROCESS_LOGS.append(path)
        env = {**self.env, **({"PORT": str(port)} if port is not None else {})}
        with path.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app", command, cwd=ROOT, env=env,
                stdout=out, stderr=subprocess.STDOUT)
        started = AppProcess(name, command, proc, path, port)
        self.procs.append(started)
        return started

    async def start_web(self, name: str = "web", *, port: int | None = None,
                        wait: float = 30) -> AppProcess:
        web = await self._spawn(name, "web", port or free_port())
        await self._until(web, wait, lambda: _healthy(web))
        return web

    async def start_worker(self, name: str, *, wait: float = 30) -> AppProcess:
        worker = await self._spawn(name, "worker", None)

        async def ready() -> bool:
            return "Starting worker for" in worker.log()

        await self._until(worker, wait, ready)
        return worker

    async def _until(self, proc: AppProcess, wait: float,
                     ready: Callable[[], Awaitable[bool]]) -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not proc.running:
                raise RuntimeError(f"{proc.name} exited ({proc.proc.returncode}):\n"
                                   f"{proc.log()[-3000:]}")
            if await ready():
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{proc.name} not ready within {wait} s:\n{proc.log()[-3000:]}")

    def named(self, prefix: str) -> list[AppProcess]:
        return [p for p in self.procs if p.name.startswith(prefix)]

    def workers(self) -> list[AppProcess]:
        return [p for p in self.procs if p.command == "worker"]

    def results(self) -> list[tuple[str, str]]:
        """(job id, result) of every successful run over every worker that ran."""
        return [r for p in self.workers() for r in p.results()]

    def in_flight(self) -> set[str]:
        """Jobs that a running worker has started and not ended."""
        return {j for p in self.workers() if p.running for j in p.jobs_in_flight()}

    async def orphans(self, redis: Redis, killed_at: float, mark_ms: int,
                      own_marks: Mapping[str, int] | None = None) -> dict[str, int]:
        """Jobs that workers which died at `killed_at` (time.time()) left marked in progress:
        arq's in-progress mark (`mark_ms` long from the job's start) outlives its worker and
        keeps every other worker off the job until it runs out. A mark set before the death
        belongs to a dead worker unless a running worker's log shows that job running (a
        cron job's mark, which arq keeps a minute after the run, is not one). Job id -> what
        is left of the mark's life, in ms. `own_marks`: job-id prefix -> mark length, for
        jobs with a timeout of their own."""
        now_ms = time.time() * 1000
        marked: list[str] = []
        async for key in redis.scan_iter(match=f"{in_progress_key_prefix}*"):
            ttl = int(await redis.pttl(key))
            job_id = key.decode().removeprefix(in_progress_key_prefix)
            mark = next((ms for prefix, ms in (own_marks or {}).items()
                         if job_id.startswith(prefix)), mark_ms)
            set_at_ms = now_ms - (mark - ttl)
            started_lately = ttl > mark - 600_000  # within the last 10 minutes
            if started_lately and set_at_ms < killed_at * 1000:
                marked.append(job_id)
        # A running worker logs a job's start a moment after marking it.
        await asyncio.sleep(0.5)
        live = self.in_flight()
        left: dict[str, int] = {}
        for job_id in marked:
            ttl = int(await redis.pttl(f"{in_progress_key_prefix}{job_id}"))
            if ttl > 0 and job_id not in live:
                left[job_id] = ttl
        return left

    def tail(self, lines: int = 40) -> str:
        """The end of every log, for a failure message."""
        return "\n".join(f"--- {p.log_path.name} ({p.proc.returncode})\n"
                         + "\n".join(p.log().splitlines()[-lines:]) for p in self.procs)

    async def stop(self) -> None:
        for p in self.procs:
            if p.running:
                p.proc.terminate()
        for p in self.procs:
            if await p.wait_exit(15) is None:
                p.proc.kill()
                await p.proc.wait()


async def _healthy(web: AppProcess) -> bool:
    try:
        async with (aiohttp.ClientSession() as http,
                    http.get(f"{web.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r):
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@asynccontextmanager
async def cluster(env: dict[str, str], logs: Path) -> AsyncIterator[Cluster]:
    c = Cluster(env, logs)
    try:
        yield c
    finally:
        await c.stop()


class PrivateRedis(EmbeddedRedis):
    """A redis-server of one test on a fixed port, with an append-only file: stopped (or
    killed) and started again, it comes back on the same URL with what it held, as a
    Redis with persistence does."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(persist_dir=workdir)
        self.workdir = workdir

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: a clean shutdown; SIGKILL: a crash)."""
        if sig != signal.SIGTERM and self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
            self._proc.wait()
        super().stop()

    def close(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@asynccontextmanager
async def private_database(tmp: Path) -> AsyncIterator[str]:
    """A migrated database of one test: a database of its own on TEST_DATABASE_URL's
    PostgreSQL server (so its connections can be terminated without touching anyone
    else's), else a SQLite file."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        url = f"sqlite+aiosqlite:///{tmp}/faults.db"
        await fresh_database(url)
        await dispose_all()
        yield url
        await dispose_all()
        return
    server = make_url(async_database_url(base))
    name = f"pe_faults_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = server.set(database=name).render_as_string(hide_password=False)
        await fresh_database(url)
        await dispose_all()
        try:
            yield url
        finally:
            await dispose_all()
            async with admin.connect() as conn:
                await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


async def expire_orphans(redis: Redis, job_ids: list[str]) -> None:
    """What the passing of arq's in-progress timeout does to a dead worker's jobs: their
    in-progress marks run out, and so do the locks their dead runs held (held for LOCK_HOLD,
    app/services/queue.py); nothing else in Redis is touched. A job id `key@gen` ran under
    the lock of `key`; a scan batch's locks hold its job id."""
    for job_id in job_ids:
        await redis.delete(f"{in_progress_key_prefix}{job_id}")
        if "@" in job_id:
            await redis.delete(f"{LOCK_PREFIX}{job_id.rsplit('@', 1)[0]}")
    async for key in redis.scan_iter(match=f"{LOCK_PREFIX}*"):
        held = await redis.get(key)
        if held is not None and held.decode(errors="replace") in job_ids:
            await redis.delete(key)


LOCK_PREFIX = "pe:lock:"
ISSUES_PATH = re.compile(r"/repos/[^/]+/[^/]+/issues")


@dataclass(eq=False)
class Rig:
    """One test's app: the fake GitHub, a private Redis and database, the processes."""

    fake: FakeGitHub
    redis_server: PrivateRedis
    database_url: str
    cluster: Cluster
    redis: Redis

    @property
    def st(self) -> FakeState:
        return self.fake.state

    def db(self) -> async_sessionmaker[AsyncSession]:
        return sessionmaker(self.database_url)

    async def start(self, *, webs: int = 1, workers: int = 2) -> None:
        """Start the processes; GitHub's webhook goes to the first web process. Returns
        once every worker's start-up installation sync has run, so it cannot race the
        installation event of the test."""
        for i in range(webs):
            await self.cluster.start_web(f"web{i}")
        for i in range(workers):
            await self.cluster.start_worker(f"worker{i}")
        self.hook_to(self.cluster.named("web")[0])
        await self.until(lambda: all("← startup-sync" in w.log()
                                     for w in self.cluster.workers()), 20,
                         "the workers' start-up syncs")

    def hook_to(self, web: AppProcess) -> None:
        self.st.hook.url = web.url + WEBHOOK_PATH
        self.st.webhook_secret = WEBHOOK_SECRET

    async def install(self, n: int) -> dict[str, set[str]]:
        """An org of n repositories (tests.test_e2e.build_org) installed through the
        installation event GitHub sends; returns the policies each repository fails."""
        inst, expected = build_org(self.st, n)
        sent = await self.fake.send_event("installation", installation_payload(self.st, inst))
        assert sent is not None and sent.status_code == 202, sent
        return expected

    async def until(self, ready: Callable[[], bool], within: float, what: str) -> float:
        """Wait until `ready()`; returns the seconds it took, fails naming `what`."""
        started = time.monotonic()
        while not ready():
            if time.monotonic() - started > within:
                raise AssertionError(f"{what}: not within {within} s\n{self.cluster.tail()}")
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    async def settled(self, expected: dict[str, set[str]]) -> bool:
        """Nothing queued, no full scan running, every expected issue open."""
        if await self.redis.zcard(default_queue_name):
            return False
        async with self.db()() as db:
            running = await db.scalar(select(func.count()).select_from(Scan).where(
                Scan.kind == "full", Scan.status.in_(("queued", "running"))))
        if running:
            return False
        return all(set(open_issues(self.st, name)) >= fails for name, fails in expected.items())

    async def wait_settled(self, expected: dict[str, set[str]], within: float) -> float:
        """Seconds until settled; fails with what is missing after `within`."""
        started = time.monotonic()
        while not await self.settled(expected):
            if time.monotonic() - started > within:
                missing = {name: sorted(fails - set(open_issues(self.st, name)))
                           for name, fails in expected.items()
                           if fails - set(open_issues(self.st, name))}
                queued = [j.job_id for j in await ArqRedis(
                    connection_pool=self.redis.connection_pool).queued_jobs()]
                raise AssertionError(
                    f"not settled within {within} s: {len(missing)} repositories miss "
                    f"issues {dict(list(missing.items())[:10])}; queued {queued[:20]}; "
                    f"scans {await self.scan_rows()}\n{self.cluster.tail()}")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def scan_rows(self) -> list[tuple[int, str, str, int, int, int, str | None]]:
        async with self.db()() as db:
            return [(s.id, s.kind, s.status, s.total, s.done, s.errored, s.detail)
                    for s in await db.scalars(select(Scan).order_by(Scan.id))]

    async def assert_nothing_lost(self, expected: dict[str, set[str]]) -> None:
        """Every repository scanned by the last full scan, every expected issue filed
        exactly once (one issue, one POST creating it, no comment twice), the records
        consistent with GitHub."""
        st = self.st
        for name, fails in expected.items():
            assert set(open_issues(st, name)) == fails, name
            issues = st.issues(name)
            assert len(issues) == len(fails), f"duplicate issue in {name}"
            for issue in issues:
                bodies = [c.body for c in st.comments(name, issue.number)]
                assert len(bodies) == len(set(bodies)), f"a comment twice on {name}#{issue.number}"
        created = Counter(path for method, path, status in st.requests
                          if method == "POST" and status == 201 and ISSUES_PATH.fullmatch(path))
        want = Counter({f"/repos/{name}/issues": len(f) for name, f in expected.items() if f})
        assert created == want, "an issue was created more than once (or not at all)"

        async with self.db()() as db:
            scans = list(await db.scalars(select(Scan).where(Scan.kind == "full")
                                          .order_by(Scan.id)))
            repos = {r.full_name: r for r in await db.scalars(select(Repository))}
            violations = list(await db.scalars(select(Violation)))
        assert scans, "no full scan"
        for scan in scans:
            assert (scan.status, scan.done + scan.errored) == ("ok", scan.total), \
                (scan.id, scan.status, scan.total, scan.done, scan.errored, scan.detail)
        last = scans[-1]
        assert last.total == len(expected)
        for name in expected:
            repo = repos[name]
            assert (repo.last_full_scan_id, repo.last_scan_status) == (last.id, "ok"), name
        by_id = {r.id: r for r in repos.values()}
        open_ones = [v for v in violations if v.state == "open"]
        assert all(v.repository_id in by_id for v in violations), "a violation without repo"
        assert sorted((by_id[v.repository_id].full_name, v.policy) for v in open_ones) == \
            sorted((name, p) for name, fails in expected.items() for p in fails)
        for v in open_ones:
            issue = open_issues(st, by_id[v.repository_id].full_name)[v.policy]
            assert v.issue_number == issue.number, (v.policy, v.repository_id)


@pytest.fixture
async def rig(fake_github: FakeGitHub, tmp_path: Path) -> AsyncIterator[Rig]:
    """The app as processes against its own Redis (stoppable) and database."""
    with PrivateRedis(tmp_path / "redis") as server:
        async with private_database(tmp_path) as database_url:
            env = app_env(fake_github, redis_url=server.url, database_url=database_url)
            client = Redis.from_url(server.url)
            try:
                async with cluster(env, tmp_path) as procs:
                    yield Rig(fake_github, server, database_url, procs, client)
            finally:
                await client.aclose()
