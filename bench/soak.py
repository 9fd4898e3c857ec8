"""Soak: the web process and a worker under steady mixed load for 30 minutes; each one's
RSS stays flat within 10% once warmed up.

The same parts as bench/webhook_load.py (real ``python -m app web`` and ``python -m app
worker`` processes, the fake GitHub in a process of its own, Redis, SQLite or a scratch
PostgreSQL database) with one worker and an org of --repos repositories. After the org is
installed and scanned, an open-loop client sends --rate deliveries a second of
webhook_load's mix for --minutes, and every --scan-every seconds a ``push`` to the org's
``.github`` repository (its config) makes the worker reload the config and scan the whole
org, as in production. Each process's VmRSS (/proc/<pid>/status) is sampled every
--sample-every seconds, with the queue's length.

Samples in the first --warmup seconds are left out. Per process it prints the minimum and
maximum after the warm-up, the first and the last minute's medians and the growth from
the one to the other, PASS when it is at most --limit percent; then the deliveries' check
(lost / duplicated, as webhook_load) and the full scans that ran.

    .venv/bin/python -m bench.soak [--minutes 30] [--rate 50] [--repos 500]
        [--scan-every 240] [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.db.models import Scan
from app.db.session import sessionmaker
from app.embedded_redis import free_port
from app.web.webhooks import WEBHOOK_PATH
from bench.common import (
    AppProcesses,
    FakeGitHubProcess,
    app_env,
    bench_database,
    cpu_seconds,
    proc_status_mb,
)
from bench.webhook_ingest import percentile
from bench.webhook_load import (
    ORG,
    QUEUE_KEY,
    WEBHOOK_SECRET,
    Mix,
    Prepared,
    accepted_ids,
    build_fake_org,
    check_deliveries,
    drain,
    install_and_scan,
    machine,
    open_loop,
    prepare,
    print_check,
    print_log_problems,
    redis_server,
    run_loop,
    start_app,
    status_summary,
)
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.state import FakeState, Installation

PROCESSES = ("web", "worker0")


@dataclass
class Sample:
    at: float  # seconds since the load started
    rss: dict[str, float]
    queued: int


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    scans_asked: list[float] = field(default_factory=list)  # seconds since the load started
    scan_answers: list[int] = field(default_factory=list)


async def sample_rss(procs: AppProcesses, redis: aioredis.Redis, soak: Soak, start: float,
                     every: float, stop: asyncio.Event) -> None:
    next_at = start
    last_print = -60.0
    while not stop.is_set():
        procs.check_alive()
        now = time.perf_counter() - start
        rss = {name: proc_status_mb(procs.pid(name)) for name in PROCESSES}
        sample = Sample(now, rss, int(await redis.zcard(QUEUE_KEY)))
        soak.samples.append(sample)
        if now - last_print >= 59:  # a line a minute, to follow a long run
            last_print = now
            print(f"  {now / 60:5.1f} min: " + ", ".join(
                f"{name} {value:.0f} MB" for name, value in rss.items())
                + f", {sample.queued} jobs queued", flush=True)
        next_at += every
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.perf_counter()))


async def ask_full_scans(url: str, config_push: Prepared, soak: Soak, start: float,
                         every: float, stop: asyncio.Event) -> None:
    """A push to the config repository every `every` seconds: the worker reloads the
    config and queues a full scan (the webhook's normal path)."""
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), every)
                return
            except TimeoutError:
                pass
            headers = {**config_push.headers, "X-GitHub-Delivery": f"soak-config-{time.time()}"}
            async with session.post(url, data=config_push.body, headers=headers) as resp:
                await resp.read()
                soak.scan_answers.append(resp.status)
            soak.scans_asked.append(time.perf_counter() - start)


def report_rss(soak: Soak, warmup: float, limit: float, hwm: dict[str, float]) -> bool:
    after = [s for s in soak.samples if s.at >= warmup]
    if len(after) < 2:
        print(f"RSS: too few samples after the {warmup:g} s warm-up to judge")
        return False
    first_min = [s for s in after if s.at < after[0].at + 60]
    last_min = [s for s in after if s.at > after[-1].at - 60]
    print(f"RSS after the {warmup / 60:g}-minute warm-up ({len(after)} samples, "
          f"{after[0].at / 60:.1f} to {after[-1].at / 60:.1f} min); first / last = the "
          f"median of the first / last minute's samples; growth = last vs first:")
    print(f"  {'process':<10} {'min MB':>8} {'max MB':>8} {'first MB':>9} {'last MB':>8} "
          f"{'growth':>8} {'peak (VmHWM)':>13}  verdict (limit {limit:g}%)")
    ok = True
    for name in PROCESSES:
        values = [s.rss[name] for s in after]
        first = statistics.median(s.rss[name] for s in first_min)
        last = statistics.median(s.rss[name] for s in last_min)
        growth = (last - first) / first * 100
        passed = growth <= limit
        ok = ok and passed
        print(f"  {name:<10} {min(values):>8.1f} {max(values):>8.1f} {first:>9.1f} "
              f"{last:>8.1f} {growth:>+7.1f}% {hwm[name]:>10.1f} MB  "
              f"{'PASS' if passed else 'FAIL'}")
    marks: list[Sample] = []
    for s in soak.samples:  # the first sample at or after each 5-minute mark
        if not marks or s.at >= (len(marks)) * 300:
            marks.append(s)
    print("  timeline, every 5 minutes: " + "; ".join(
        f"{s.at / 60:.0f} min " + "/".join(f"{s.rss[n]:.0f}" for n in PROCESSES)
        for s in marks) + f" MB ({'/'.join(PROCESSES)}), jobs queued "
        + "/".join(str(s.queued) for s in marks))
    return ok


async def scans_report(database_url: str, start_wall: float) -> str:
    async with sessionmaker(database_url)() as db:
        scans = list(await db.scalars(select(Scan).where(Scan.kind == "full")
                                      .order_by(Scan.id)))
    during = [s for s in scans if s.started_at.timestamp() >= start_wall - 1]
    finished = [s for s in during if s.finished_at is not None]
    took = [(s.finished_at - s.started_at).total_seconds() for s in finished
            if s.finished_at is not None]
    statuses = ", ".join(sorted({s.status for s in during}))
    return (f"full scans during the load: {len(during)} ({statuses or '-'}), "
            f"{len(finished)} finished, "
            + (f"{min(took):.0f} to {max(took):.0f} s each" if took else "none timed"))


async def run(args: argparse.Namespace, st: FakeState, inst: Installation, mix: Mix,
              config_push: Prepared, fake: FakeGitHubProcess, web_port: int, redis_url: str,
              redis_note: str, tmp: Path) -> None:
    url = f"http://127.0.0.1:{web_port}{WEBHOOK_PATH}"
    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushdb()
    soak = Soak()
    async with bench_database(args.database_url, tmp) as database_url:
        backend = make_url(database_url).get_backend_name()
        env = app_env(st, database_url=database_url, redis_url=redis_url,
                      webhook_secret=WEBHOOK_SECRET, LOG_LEVEL="INFO")
        procs = AppProcesses(env, tmp)
        try:
            await start_app(procs, web_port, 1, redis)
            scan_s = await install_and_scan(url, st, inst, database_url, redis, procs)
            print(f"setup: {len(inst.repos)} repositories installed and fully scanned in "
                  f"{scan_s:.1f} s; database {backend}; {redis_note}; web pid "
                  f"{procs.pid('web')}, worker pid {procs.pid('worker0')}", flush=True)
            print(f"load: {args.rate:g} deliveries/s for {args.minutes:g} min, a full scan "
                  f"asked every {args.scan_every:g} s; RSS every {args.sample_every:g} s",
                  flush=True)
            cpu_before = {n: cpu_seconds(procs.pid(n)) for n in PROCESSES}
            start, start_wall = time.perf_counter(), time.time()
            stop = asyncio.Event()
            side = [asyncio.create_task(sample_rss(procs, redis, soak, start,
                                                   args.sample_every, stop)),
                    asyncio.create_task(ask_full_scans(url, config_push, soak, start,
                                                       args.scan_every, stop))]
            try:
                result = await open_loop(url, mix, args.rate, args.minutes * 60,
                                         random.Random(args.seed))
            finally:
                stop.set()
                await asyncio.gather(*side)
            cpu = {n: (cpu_seconds(procs.pid(n)) - cpu_before[n]) / result.wall
                   for n in PROCESSES}
            hwm = {n: proc_status_mb(procs.pid(n), "VmHWM") for n in PROCESSES}
            ids = accepted_ids(result.sent) | accepted_ids(result.warm)
            processed_s, idle_s = await drain(database_url, redis, ids,
                                              args.drain_timeout, procs)
            check = await check_deliveries(database_url, ids, [procs.log("worker0")])
            scans = await scans_report(database_url, start_wall)
            print_log_problems(procs)
        finally:
            procs.stop()
            await redis.aclose()

    print()
    sent = result.sent
    lat = sorted(s.latency for s in sent if s.status)
    print(f"load: {len(sent)} deliveries sent in {result.sending / 60:.1f} min "
          f"({len(sent) / result.sending:.1f}/s); answers: {status_summary(sent)}; p50 "
          f"{percentile(lat, 50) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms, "
          f"max {lat[-1] * 1000 if lat else float('nan'):.1f} ms")
    print(f"full scans asked: {len(soak.scans_asked)} (answers "
          f"{sorted(set(soak.scan_answers))}); {scans}")
    queued = [s.queued for s in soak.samples]
    print(f"queue length over the run: max {max(queued, default=0)}, at the end "
          f"{queued[-1] if queued else 0}")
    print("CPU over the run (share of one core): " + ", ".join(
        f"{n} {c * 100:.0f}%" for n, c in cpu.items()))
    print("after the load: all answered deliveries processed in "
          + (f"{processed_s:.1f} s" if processed_s is not None else "(not in time)")
          + "; queue idle after " + (f"{idle_s:.1f} s" if idle_s is not None else
                                     "(not reached)"))
    print_check(check, [s for s in sent if s.redelivery], processed_s is not None)
    print()
    ok = report_rss(soak, args.warmup, args.limit, hwm)
    print(f"RSS flat within {args.limit:g}%: {'PASS' if ok else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="length of the load")
    parser.add_argument("--rate", type=float, default=50, help="deliveries a second")
    parser.add_argument("--repos", type=int, default=500, help="repositories in the org")
    parser.add_argument("--scan-every", type=float, default=240,
                        help="seconds between config pushes (each one a full scan)")
    parser.add_argument("--warmup", type=float, default=180,
                        help="seconds of samples left out at the start")
    parser.add_argument("--sample-every", type=float, default=10, help="seconds")
    parser.add_argument("--limit", type=float, default=10, help="allowed RSS growth, %%")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server to create a scratch database on; "
                             "default: a temporary SQLite file")
    parser.add_argument("--drain-timeout", type=float, default=1800,
                        help="seconds to wait for the queue after the load")
    parser.add_argument("--seed", type=int, default=1, help="of the mix's random draws")
    parser.add_argument("--logs", type=Path, default=None,
                        help="keep the processes' logs (and the SQLite file) in this directory")
    args = parser.parse_args()

    print(f"machine: {machine()}", flush=True)
    st = FakeState()
    inst = build_fake_org(st, args.repos)
    fake = FakeGitHubProcess(st, forget_requests_every=60)
    web_port = free_port()
    mix = Mix(st, inst, f"http://127.0.0.1:{web_port}{WEBHOOK_PATH}", rescan_comments=200)
    config_push = prepare("config push", "push", hooks.push(
        st, st.repo(f"{ORG}/.github"), modified=["config.yaml"], message="Tune policies"),
        st.app_id)
    with tempfile.TemporaryDirectory(prefix="pe-soak-") as tmp_name, fake, \
            redis_server() as (redis_url, redis_note):
        tmp = Path(tmp_name)
        if args.logs is not None:
            tmp = args.logs
            tmp.mkdir(parents=True, exist_ok=True)

        def go() -> Any:
            return run(args, st, inst, mix, config_push, fake, web_port, redis_url,
                       redis_note, tmp)

        run_loop(go)


if __name__ == "__main__":
    main()
