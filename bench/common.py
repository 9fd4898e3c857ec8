"""Shared by the benchmarks: a Redis to run against."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.session import dispose_all
from app.embedded_redis import EmbeddedRedis, free_port
from app.settings import async_database_url
from tests.dbutil import fresh_database
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState

# As the tests run the app: GitHub's secondary limits are not what the benchmarks measure,
# so the app's governor does not pace content creation at GitHub's 80 a minute.
RELAXED_LIMITS = "points_per_minute=1000000,content_per_minute=1000000,content_per_hour=1000000"


def with_redis(main: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """Run `main(redis_url)` on REDIS_URL, or on a private redis-server when it is unset."""
    url = os.environ.get("REDIS_URL")
    if url:
        asyncio.run(main(url))
        return
    with EmbeddedRedis() as server:
        asyncio.run(main(server.url))


# --- processes ----------------------------------------------------------------------------


def proc_status_mb(pid: int, field: str = "VmRSS") -> float:
    """A /proc/<pid>/status memory field (VmRSS, VmHWM, ...) in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise LookupError(f"{field} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces: count from the closing parenthesis.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks[:8]) - idle) / hz, sum(ticks[:8]) / hz


class AppProcesses:
    """`python -m app <command>` subprocesses as the Procfile runs them, each logging to
    <workdir>/<name>.log. The interpreter is exec'd directly, so a pid is the process that
    runs the app (its /proc entries are the app's)."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(self, name: str, command: str, **extra: str) -> int:
        log = (self.workdir / f"{name}.log").open("wb")
        self._logs.append(log)
        proc = subprocess.Popen([sys.executable, "-m", "app", command], cwd=self.workdir,
                                env={**self.env, **extra}, stdout=log, stderr=log)
        self.procs[name] = proc
        return proc.pid

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"bench: {name} exited with {proc.returncode}; its log ends:\n"
                                 f"{self.log(name)[-4000:]}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()


def app_env(state: FakeState, *, database_url: str, redis_url: str, webhook_secret: str,
            **extra: str) -> dict[str, str]:
    """The environment of the app's processes, pointed at a fake GitHub serving `state`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "APP_ID": str(state.app_id), "PRIVATE_KEY": state.private_key_pem,
        "WEBHOOK_SECRET": webhook_secret, "GITHUB_API_URL": state.api_url,
        "SESSION_SECRET": "bench-session-secret-0123456789abcdefgh",
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "HOST": "127.0.0.1",
        "GITHUB_RATE_LIMITS": RELAXED_LIMITS, **extra,
    }


# --- the fake GitHub in a process of its own ----------------------------------------------


def _serve_fake_github(state: FakeState, port: int, ready: Any,
                       forget_requests_every: float | None) -> None:
    async def serve() -> None:
        gh = await FakeGitHub(state, port=port).start()
        ready.set()
        while True:
            await asyncio.sleep(forget_requests_every or 3600)
            if forget_requests_every:
                gh.state.clear_log()

    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())


class FakeGitHubProcess:
    """The fake GitHub serving `state` from a forked process, so its work under load does
    not share the event loop (or the GIL) of the load generator. Build what the payloads
    need into the state after creating this (its URL is known) and before start(): the
    forked server has its own copy of the state from then on.

    forget_requests_every: clear the fake's request log that often (a long run would
    otherwise grow it without bound)."""

    def __init__(self, state: FakeState, *, forget_requests_every: float | None = None) -> None:
        self.state = state
        self.port = free_port()
        state.api_url = self.url
        self.forget_requests_every = forget_requests_every
        self.proc: multiprocessing.process.BaseProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGitHubProcess:
        # fork: the state (keys, repositories, issues) is copied, not pickled. Start it
        # before any event loop runs in this process.
        ctx = multiprocessing.get_context("fork")
        ready = ctx.Event()
        self.proc = ctx.Process(target=_serve_fake_github, name="fake-github", daemon=True,
                                args=(self.state, self.port, ready,
                                      self.forget_requests_every))
        self.proc.start()
        if not ready.wait(60):
            self.stop()
            raise SystemExit("bench: the fake GitHub did not start within 60 s")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None and self.proc.pid is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.proc = None

    def __enter__(self) -> FakeGitHubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the database -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_database(server_url: str | None, tmp: Path) -> AsyncIterator[str]:
    """A freshly migrated database for one run: a SQLite file in `tmp`, or, given a
    PostgreSQL URL, a scratch database created on that server and dropped afterwards (the
    database named in the URL is only connected to, so tests using it are not disturbed)."""
    if server_url is None:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await fresh_database(url)
        await dispose_all()
        yield url
        await dispose_all()
        return
    admin_url = async_database_url(server_url)
    if make_url(admin_url).get_backend_name() != "postgresql":
        raise SystemExit("bench: --database-url must be a PostgreSQL URL")
    name = f"pe_bench_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        await fresh_database(url)
        await dispose_all()
        yield url
    finally:
        await dispose_all()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
