"""Peak memory of one arq worker process, on its own, during a cold full scan of a large org.

The fake GitHub (with the org, GitHub's secondary limits on and injected latency per API
call, as in bench/scan_scale.py), the web app that takes the installation webhook, Redis
and the database stay in (or are started by) this process; the worker is one real
`python -m app worker` subprocess, as the Procfile runs it. Its /proc/<pid>/status is
sampled every half second: VmRSS over time and VmHWM (the kernel's peak RSS) at the end.

Prints the worker's RSS at idle, during the scan (by progress), at the end of the scan and
once the queue is empty, its peak, and the scan record's duration and counts.

    .venv/bin/python -m bench.worker_memory [--repos 10000] [--latency 0.1]
        [--database-url postgresql://127.0.0.1:5432/test] [--tracemalloc FRAMES]

--tracemalloc runs the worker with tracemalloc on (slower, and the tracing costs memory
of its own) and prints the allocation sites that hold the most when the traced memory is
at its largest; use it to find where the memory goes, not for the peak figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.db.models import Scan
from app.db.session import dispose_all, sessionmaker
from app.settings import Settings, async_database_url
from app.web.app import create_app
from app.web.webhooks import sign
from bench.common import with_redis
from bench.scan_scale import LOG_ONLY
from tests.dbutil import fresh_database
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.test_e2e import build_org

ROOT = Path(__file__).parents[1]
WEBHOOK_SECRET = "bench-webhook-secret"
SESSION_SECRET = "bench-session-secret-0123456789abcdefgh"
SAMPLE_SECONDS = 0.5
HEALTH_CHECK_KEY = "arq:queue:health-check"  # arq writes it once the worker polls
QUEUE_KEY = "arq:queue"

# The worker under tracemalloc: the same `app worker` command in the same process (no
# wrapper), plus a thread that, each time the traced memory has grown by 10 MB over the
# last report, writes the allocation sites that hold the most to BENCH_TRACE_FILE (so the
# file ends up describing the largest traced memory). Taking a snapshot stops the worker
# for a while: its jobs may log database-lock retries in this mode.
TRACED_WORKER = """
import os, sys, threading, time, tracemalloc
OUT = os.environ["BENCH_TRACE_FILE"]
ROOT = os.getcwd() + "/"

def short(name):
    return name.replace(ROOT, "").split("site-packages/")[-1]

def report(current, peak):
    snap = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),
         tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")))
    out = [f"traced {current / 2**20:.1f} MB (peak so far {peak / 2**20:.1f} MB) "
           f"at {time.strftime('%H:%M:%S')}, RSS {rss():.0f} MB", "  top 20 lines:"]
    for st in snap.statistics("lineno")[:20]:
        fr = st.traceback[0]
        out.append(f"    {st.size / 2**20:7.2f} MB {st.count:8d} blocks  "
                   f"{short(fr.filename)}:{fr.lineno}")
    out.append("  top 8 tracebacks (innermost last):")
    for st in snap.statistics("traceback")[:8]:
        out.append(f"    {st.size / 2**20:7.2f} MB {st.count:8d} blocks")
        out.extend("      " + short(t) for t in st.traceback.format())
    del snap
    with open(OUT + ".tmp", "w") as f:
        f.write("\\n".join(out) + "\\n")
    os.replace(OUT + ".tmp", OUT)

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

def watch():
    best = tracemalloc.get_traced_memory()[0]
    report(best, best)
    while True:
        time.sleep(1)
        current, peak = tracemalloc.get_traced_memory()
        if current >= best + 10 * 2**20:
            best = current
            report(current, peak)

threading.Thread(target=watch, daemon=True).start()
from app.__main__ import main
sys.exit(main(["worker"]))
"""


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, ... of a process, in MB."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Vm") and line.rstrip().endswith("kB"):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) / 1024
    return out


def executable_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/exe")


@dataclass
class Sample:
    at: float  # seconds since the scan was requested
    done: int
    total: int
    rss: float


class Worker:
    """One `python -m app worker` subprocess; stdout and stderr go to a log file."""

    def __init__(self, env: dict[str, str], log: Path, trace_file: Path | None) -> None:
        self.env = env
        self.log_path = log
        self.trace_file = trace_file
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        env = dict(self.env)
        if self.trace_file is not None:
            args = ["-c", TRACED_WORKER]
            env["BENCH_TRACE_FILE"] = str(self.trace_file)
        else:
            args = ["-m", "app", "worker"]
        with self.log_path.open("wb") as log:
            # exec, not a shell: the pid is the Python interpreter that runs the worker.
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, *args, cwd=ROOT, env=env, stdout=log, stderr=log)
        exe = executable_of(self.pid)
        assert Path(exe).name.startswith("python"), f"pid {self.pid} runs {exe}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def deliver(http: aiohttp.ClientSession, url: str, event: str,
                  payload: dict[str, object]) -> int:
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
    }
    async with http.post(f"{url}/api/github/webhooks", data=body, headers=headers) as resp:
        return resp.status


async def queue_empty(redis: ArqRedis) -> bool:
    if await redis.zcard(QUEUE_KEY):
        return False
    async for _ in redis.scan_iter(match="arq:in-progress:*"):
        return False
    return True


def revision() -> str:
    """The checkout the worker runs (the code may change under a long run)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def run(repos: int, latency: float, redis_url: str, database_url: str | None,
              trace_frames: int, rev: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="worker-memory-"))
    db_url = async_database_url(database_url or f"sqlite+aiosqlite:///{tmp}/worker.db")
    await fresh_database(db_url)
    await dispose_all()
    async with FakeGitHub() as gh:
        st = gh.state
        inst, expected = build_org(st, n=repos)
        st.set_file("acme/.github", "config.yaml", LOG_ONLY)
        st.rate_limit.limit = st.rate_limit.graphql_limit = 10**7  # primary limit: not measured
        st.secondary.enabled = True
        payload = hooks.installation(st, inst)
        settings = Settings(  # the web app's; the worker reads the same from its environment
            APP_ID=gh.app_id, PRIVATE_KEY=gh.private_key_pem, WEBHOOK_SECRET=WEBHOOK_SECRET,
            GITHUB_API_URL=gh.url, DATABASE_URL=db_url, REDIS_URL=redis_url,
            LOG_LEVEL="WARNING", SCAN_DEBOUNCE_SECONDS=0.3, SESSION_SECRET=SESSION_SECRET,
            _env_file=None)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "APP_ID": str(gh.app_id), "PRIVATE_KEY": gh.private_key_pem,
            "WEBHOOK_SECRET": WEBHOOK_SECRET, "GITHUB_API_URL": gh.url,
            "DATABASE_URL": db_url, "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING",
            "SCAN_DEBOUNCE_SECONDS": "0.3",
        }
        if trace_frames:
            env["PYTHONTRACEMALLOC"] = str(trace_frames)
        trace_file = tmp / "worker.trace" if trace_frames else None
        redis = await create_pool(RedisSettings.from_dsn(redis_url))
        await redis.flushdb()
        runner = web.AppRunner(create_app(settings, redis=redis, database_url=db_url))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        worker = Worker(env, tmp / "worker.log", trace_file)
        maker = sessionmaker(db_url)
        try:
            await worker.start()
            for _ in range(600):
                if await redis.exists(HEALTH_CHECK_KEY) or not worker.alive():
                    break
                await asyncio.sleep(0.1)
            assert worker.alive() and await redis.exists(HEALTH_CHECK_KEY), \
                f"worker did not start:\n{worker.log()}"
            await asyncio.sleep(2)  # let it settle
            idle = proc_status(worker.pid)

            print(f"{len(expected)} repositories, {latency * 1000:.0f} ms latency per API "
                  f"call, secondary limits on, database "
                  f"{make_url(db_url).get_backend_name()}, worker pid {worker.pid}, code {rev}"
                  + (f", tracemalloc {trace_frames} frames" if trace_frames else ""))
            print(f"  worker idle before the scan: RSS {idle['VmRSS']:.0f} MB "
                  f"(peak so far {idle['VmHWM']:.0f} MB)")

            st.latency = latency
            start = time.perf_counter()
            async with aiohttp.ClientSession() as http:
                status = await deliver(http, f"http://127.0.0.1:{port}", "installation",
                                       payload)
            assert status == 202, status
            samples: list[Sample] = []
            scan: Scan | None = None
            while True:
                assert worker.alive(), f"worker exited:\n{worker.log()[-4000:]}"
                async with maker() as db:
                    scan = (await db.scalars(select(Scan).where(Scan.kind == "full")
                                             .order_by(Scan.id.desc()))).first()
                now = time.perf_counter() - start
                samples.append(Sample(now, scan.done if scan else 0,
                                      scan.total if scan else 0,
                                      proc_status(worker.pid)["VmRSS"]))
                if scan is not None and scan.finished_at is not None:
                    break
                await asyncio.sleep(SAMPLE_SECONDS)
            at_end = proc_status(worker.pid)
            wall = time.perf_counter() - start
            drained = None
            for _ in range(1200):  # the reconcile jobs (log-only) that follow the scan
                if await queue_empty(redis):
                    drained = time.perf_counter() - start
                    break
                await asyncio.sleep(SAMPLE_SECONDS)
            await asyncio.sleep(1)
            final = proc_status(worker.pid)
        finally:
            await worker.stop()
            await runner.cleanup()
            await redis.aclose()
            await dispose_all()

        assert scan is not None and scan.finished_at is not None
        scan_s = (scan.finished_at - scan.started_at).total_seconds()
        print(f"  scan {scan.id}: status {scan.status}, total {scan.total}, done {scan.done}, "
              f"errored {scan.errored}, waiting {scan.waiting}, violations opened "
              f"{scan.violations_opened}")
        print(f"  scan duration (its record) {scan_s:.1f} s; webhook → scan finished "
              f"{wall:.1f} s; queue empty after "
              + (f"{drained:.1f} s" if drained is not None else "(not within 10 min)"))
        print("  worker RSS during the scan, by progress:")
        marks = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
        for mark in marks:
            hit = next((s for s in samples if s.total and s.done >= mark * s.total), None)
            if hit is not None:
                print(f"    {mark * 100:3.0f}% ({hit.done:6d}/{hit.total}) at {hit.at:7.1f} s: "
                      f"RSS {hit.rss:6.1f} MB")
        top = max(samples, key=lambda s: s.rss)
        print(f"    largest sampled RSS {top.rss:.1f} MB at {top.at:.1f} s "
              f"({top.done}/{top.total} done), {len(samples)} samples")
        print(f"  worker RSS at the end of the scan {at_end['VmRSS']:.0f} MB, once the queue "
              f"is empty {final['VmRSS']:.0f} MB")
        print(f"  worker peak RSS (VmHWM) {final['VmHWM']:.0f} MB "
              f"(at the end of the scan {at_end['VmHWM']:.0f} MB); target <= 200 MB: "
              + ("met" if final["VmHWM"] <= 200 else "NOT met"))
        errors = [line for line in worker.log().splitlines() if "ERROR" in line]
        if errors:
            print(f"  worker log: {len(errors)} ERROR lines, first: {errors[0][:200]}")
        if trace_file is not None and trace_file.exists():
            print("tracemalloc in the worker, at its largest traced memory:")
            print(trace_file.read_text(), end="")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=10000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--database-url", default=None,
                        help="e.g. postgresql://127.0.0.1:5432/test (wiped); default: a "
                             "temporary SQLite file")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="trace the worker's allocations with this many frames")
    args = parser.parse_args()
    rev = revision()
    with_redis(lambda url: run(args.repos, args.latency, url, args.database_url,
                               args.tracemalloc, rev))


if __name__ == "__main__":
    main()
