"""Webhook load: 300 mixed, signed deliveries a second for 60 s into one web process and
two workers; every delivery answered 2xx is recorded once and processed.

Real processes throughout: ``python -m app web`` and ``python -m app worker`` (x2, as the
Procfile runs them, INFO logging), the fake GitHub (tests/fakegithub) in a process of its
own serving an org of --repos repositories with a config (its policies log only), Redis
(REDIS_URL, flushed, or an embedded redis-server) and the database (a SQLite file, or a
scratch database created on the PostgreSQL server of --database-url and dropped after).

The org is installed first (``installation`` ``created``) and its full scan awaited. Then
an open-loop client sends --rate deliveries a second on a fixed schedule for --duration
seconds, whatever the answers do (request i leaves at start + i/rate; latency runs from
that scheduled time to the end of the answer, so a slow server cannot slow the load). The
mix (MIX) is mostly ``push``, on the default branch and not, then ``issue_comment`` with
and without ``/policy rescan``, ``repository`` ``edited``, ``issues`` ``closed``,
``installation_repositories``, ``ping`` and events the App does not handle; the bodies
are built by tests/fakegithub/webhooks.py from the fake's state, so they are
GitHub-shaped and match what the fake API serves. A few (REDELIVERY_SHARE) repeat an
earlier delivery's GUID and body, as GitHub's redeliveries do; they must be answered as
duplicates. Like GitHub, the client gives up on an answer after 10 s.

After the last answer it waits until every delivery answered 2xx is processed in the
database and no job is due, then checks ``webhook_deliveries``: every such delivery has
exactly one row with an outcome other than "received" / "failed..." (else it is lost),
and the workers' logs show each delivery's job completing once (else it is duplicated).

    .venv/bin/python -m bench.webhook_load [--rate 300] [--duration 60] [--repos 200]
        [--workers 2] [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.actions.base import marker
from app.db.models import Scan, WebhookDelivery
from app.db.session import sessionmaker
from app.embedded_redis import EmbeddedRedis, free_port
from app.services.deliveries import processed
from app.web.webhooks import WEBHOOK_PATH
from bench.common import (
    AppProcesses,
    FakeGitHubProcess,
    app_env,
    bench_database,
    cpu_seconds,
    machine_cpu_seconds,
)
from bench.scan_scale import LOG_ONLY
from bench.webhook_ingest import percentile
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.state import FakeState, Installation, Issue, Repo, iso
from tests.test_e2e import build_org

WEBHOOK_SECRET = "bench-webhook-secret"
ORG = "acme"
COMMENTER = "dana"  # a person with write permission on every repository
FEATURE_REF = "refs/heads/feature/load"
# GitHub waits 10 s for an answer, then records the delivery as failed.
GITHUB_TIMEOUT_SECONDS = 10.0
QUEUE_KEY = "arq:queue"

# Shares of the deliveries, by kind (weights). Mostly pushes, as for an org's App.
MIX: tuple[tuple[str, float], ...] = (
    ("push default branch", 45),
    ("push other branch", 20),
    ("issue_comment", 8),
    ("issue_comment /policy rescan", 1),
    ("repository edited", 5),
    ("issues closed", 4),
    ("installation_repositories", 1),
    ("ping", 1),
    ("not handled", 15),  # star, watch, create, delete: recorded as ignored
)
# Deliveries that repeat an earlier one's GUID and body (a redelivery).
REDELIVERY_SHARE = 0.005


@dataclass(frozen=True)
class Prepared:
    """A delivery ready to send: body and signed headers, all but X-GitHub-Delivery."""

    kind: str
    event: str
    body: bytes
    headers: Mapping[str, str]


def prepare(kind: str, event: str, payload: Mapping[str, Any], app_id: int) -> Prepared:
    body = hooks.encode(payload)
    headers = hooks.headers_for(event, body, WEBHOOK_SECRET, app_id=app_id)
    del headers["X-GitHub-Delivery"]
    return Prepared(kind, event, body, headers)


def build_fake_org(st: FakeState, repos: int) -> Installation:
    """The org (build_org's: a .github config repository, `repos` repositories that pass
    and fail policies, an archived one and a fork) with its policies logging only."""
    inst, _ = build_org(st, n=repos)
    st.set_file(f"{ORG}/.github", "config.yaml", LOG_ONLY)
    st.rate_limit.limit = st.rate_limit.graphql_limit = 10**9  # not what is measured
    return inst


def _unhandled(st: FakeState, repo: Repo) -> list[tuple[str, dict[str, Any]]]:
    """Events the App does not handle, with GitHub's top-level shape: the repository,
    organization, installation and sender keys as in every repository event."""
    ctx = hooks.repository(st, repo, "edited", changes={})
    del ctx["action"], ctx["changes"]
    return [
        ("star", {"action": "created", "starred_at": iso(time.time()), **ctx}),
        ("watch", {"action": "started", **ctx}),
        ("create", {"ref": FEATURE_REF.removeprefix("refs/heads/"), "ref_type": "branch",
                    "master_branch": repo.default_branch, "description": None,
                    "pusher_type": "user", **ctx}),
        ("delete", {"ref": FEATURE_REF.removeprefix("refs/heads/"), "ref_type": "branch",
                    "pusher_type": "user", **ctx}),
    ]


class Mix:
    """Pools of prepared deliveries by kind, built from (and into) the fake's state; pick()
    draws a kind by MIX's weights and a delivery of that kind in turn.

    The state gains what the payloads refer to: an issue of the commenter's and a
    closed issue of the App's in each repository, the comments, the commenter's write
    permission. Build it before the fake GitHub process starts."""

    def __init__(self, st: FakeState, inst: Installation, webhook_url: str, *,
                 rescan_comments: int) -> None:
        repos = [r for r in inst.repos if r.name != ".github"]  # config pushes: full scans
        app_id = st.app_id
        self.pools: dict[str, list[Prepared]] = defaultdict(list)
        human_issue: dict[int, Issue] = {}
        for repo in repos:
            st.set_permission(repo.full_name, COMMENTER, "write")
            self.pools["push default branch"].append(prepare(
                "push default branch", "push",
                hooks.push(st, repo, modified=["README.md"], message="Update README",
                           sender=COMMENTER), app_id))
            self.pools["push other branch"].append(prepare(
                "push other branch", "push",
                hooks.push(st, repo, ref=FEATURE_REF, modified=["src/app.py"],
                           sender=COMMENTER), app_id))
            issue = st.add_issue(repo.full_name, "Flaky integration test",
                                 "It fails about once a day.", user_login=COMMENTER)
            human_issue[repo.id] = issue
            comment = st.add_issue_comment(repo.full_name, issue.number, COMMENTER,
                                           "Seen it again on main today.")
            self.pools["issue_comment"].append(prepare(
                "issue_comment", "issue_comment", hooks.issue_comment(st, comment), app_id))
            self.pools["repository edited"].append(prepare(
                "repository edited", "repository",
                hooks.repository(st, repo, "edited",
                                 changes={"description": {"from": "Old description"}}),
                app_id))
            # One of the App's issues, closed by a person.
            app_issue = st.add_issue(repo.full_name, "Add an AGENTS.md",
                                     f"This repository has no AGENTS.md.\n\n"
                                     f"{marker('Require AGENTS.md')}")
            st.close_issue(repo.full_name, app_issue.number, by=COMMENTER)
            self.pools["issues closed"].append(prepare(
                "issues closed", "issues", hooks.issues(st, app_issue, "closed"), app_id))
            for event, payload in _unhandled(st, repo):
                self.pools["not handled"].append(prepare("not handled", event, payload,
                                                         app_id))
        # Each command is a comment of its own (its job id is the comment's).
        for i in range(rescan_comments):
            repo = repos[i % len(repos)]
            comment = st.add_issue_comment(repo.full_name, human_issue[repo.id].number,
                                           COMMENTER, "/policy rescan")
            self.pools["issue_comment /policy rescan"].append(prepare(
                "issue_comment /policy rescan", "issue_comment",
                hooks.issue_comment(st, comment), app_id))
        # Repositories leave and rejoin the installation (the App's repository selection).
        for repo in repos[:10]:
            for action in ("removed", "added"):
                self.pools["installation_repositories"].append(prepare(
                    "installation_repositories", "installation_repositories",
                    hooks.installation_repositories(st, inst, action, [repo]), app_id))
        self.pools["ping"].append(prepare("ping", "ping", hooks.ping(st, url=webhook_url),
                                          app_id))
        self.kinds = [kind for kind, _ in MIX]
        self.weights = [weight for _, weight in MIX]
        self._next: Counter[str] = Counter()

    def pick(self, rng: random.Random) -> Prepared:
        kind = rng.choices(self.kinds, self.weights)[0]
        pool = self.pools[kind]
        i = self._next[kind]
        self._next[kind] += 1
        return pool[i % len(pool)]


# --- the load -----------------------------------------------------------------------------


@dataclass
class Sent:
    delivery_id: str
    prepared: Prepared
    redelivery: bool
    status: int = 0  # 0: no answer (connection error or GitHub's timeout)
    latency: float = 0.0  # from the scheduled send to the end of the answer
    late: float = 0.0  # how late the sender itself was (a busy client, not the server)
    error: str = ""


@dataclass
class LoadResult:
    sent: list[Sent]
    sending: float  # seconds from the first scheduled send to the last send
    wall: float  # ... to the last answer
    warm: list[Sent] = field(default_factory=list)  # before the clock: not in the figures
    cpu: dict[str, float] = field(default_factory=dict)  # share of one core, by process


async def open_loop(url: str, mix: Mix, rate: float, duration: float, rng: random.Random
                    ) -> LoadResult:
    """Send rate x duration deliveries, request i at start + i/rate (no coordinated
    omission)."""
    total = int(rate * duration)
    sent: list[Sent] = []
    timeout = aiohttp.ClientTimeout(total=GITHUB_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(s: Sent, scheduled: float) -> None:
            headers = {**s.prepared.headers, "X-GitHub-Delivery": s.delivery_id}
            try:
                async with session.post(url, data=s.prepared.body, headers=headers) as resp:
                    await resp.read()
                    s.status = resp.status
            except TimeoutError:
                s.error = "timeout"
            except (aiohttp.ClientError, OSError) as exc:
                s.error = type(exc).__name__
            s.latency = time.perf_counter() - scheduled

        # Open a few keep-alive connections before the clock starts (pings, checked too).
        ping = mix.pools["ping"][0]
        warm = [Sent(str(uuid.uuid4()), ping, False) for _ in range(8)]
        await asyncio.gather(*(one(s, time.perf_counter()) for s in warm))
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.05
        prune_at = 4096
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            late = time.perf_counter() - scheduled
            earliest = i - int(rate)  # a redelivery repeats one sent a second ago or more
            if earliest > 0 and rng.random() < REDELIVERY_SHARE:
                first = sent[rng.randrange(earliest)]
                s = Sent(first.delivery_id, first.prepared, True)
            else:
                s = Sent(str(uuid.uuid4()), mix.pick(rng), False)
            s.late = late
            sent.append(s)
            tasks.append(asyncio.create_task(one(s, scheduled)))
            if len(tasks) >= prune_at:  # finished tasks need not be kept on long runs
                tasks = [t for t in tasks if not t.done()]
                prune_at = max(4096, 2 * len(tasks))
        sending = time.perf_counter() - start
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return LoadResult(sent, sending, wall, warm)


# --- after the load -----------------------------------------------------------------------


def accepted_ids(sent: Sequence[Sent]) -> set[str]:
    """Delivery ids answered 2xx (the first time: redeliveries are answered 200)."""
    return {s.delivery_id for s in sent if not s.redelivery and 200 <= s.status < 300}


async def processed_ids(database_url: str) -> set[str]:
    async with sessionmaker(database_url)() as db:
        return set(await db.scalars(select(WebhookDelivery.delivery_id).where(
            WebhookDelivery.outcome != "received",
            ~WebhookDelivery.outcome.startswith("failed"))))


async def queue_idle(redis: aioredis.Redis) -> bool:
    """No job is due (jobs deferred into the future, the debounced scans, do not count)
    and none is running."""
    now_ms = int(time.time() * 1000)
    if await redis.zcount(QUEUE_KEY, "-inf", now_ms):
        return False
    async for _ in redis.scan_iter(match="arq:in-progress:*", count=1000):
        return False
    return True


async def drain(database_url: str, redis: aioredis.Redis, ids: set[str], limit: float,
                procs: AppProcesses) -> tuple[float | None, float | None]:
    """Seconds until the deliveries `ids` are processed, and until the queue is idle as
    well (None: not within `limit`)."""
    start = time.perf_counter()
    all_processed: float | None = None
    while time.perf_counter() - start < limit:
        procs.check_alive()
        if all_processed is None and not ids - await processed_ids(database_url):
            all_processed = time.perf_counter() - start
        if all_processed is not None and await queue_idle(redis):
            return all_processed, time.perf_counter() - start
        await asyncio.sleep(1)
    return all_processed, None


# arq's line for a job that finished: "<s>s ← webhook:<delivery id>:handle_webhook ● <result>"
_JOB_DONE = re.compile(r"← webhook:(\S+?):handle_webhook ●")


@dataclass
class Check:
    accepted: int
    recorded: int
    processed: int
    lost: list[str]
    duplicated_rows: int
    ran_twice: int
    completions: int  # of the deliveries' jobs, seen in the workers' logs
    outcomes: Counter[str]
    failed: int


async def check_deliveries(database_url: str, ids: set[str], worker_logs: Sequence[str]
                           ) -> Check:
    rows: dict[str, list[str]] = defaultdict(list)
    async with sessionmaker(database_url)() as db:
        for delivery_id, outcome in await db.execute(
                select(WebhookDelivery.delivery_id, WebhookDelivery.outcome)):
            rows[delivery_id].append(outcome)
    lost = [i for i in ids if len(rows.get(i, ())) != 1 or not processed(rows[i][0])]
    duplicated_rows = sum(len(rows.get(i, ())) - 1 for i in ids if len(rows.get(i, ())) > 1)
    done = Counter(m.group(1) for log in worker_logs for m in _JOB_DONE.finditer(log))
    ran_twice = sum(1 for i in ids if done[i] > 1)
    outcomes: Counter[str] = Counter()
    for i in ids:
        for outcome in rows.get(i, ()):
            outcomes[re.sub(r"\d+", "N", outcome)[:60]] += 1
    return Check(len(ids), sum(1 for i in ids if i in rows),
                 sum(1 for i in ids if i in rows and processed(rows[i][0])), lost,
                 duplicated_rows, ran_twice, sum(done[i] for i in ids), outcomes,
                 sum(1 for i in ids for o in rows.get(i, ()) if o.startswith("failed")))


_WEB_MS = re.compile(r"webhook delivery=(\S+) .* status=(\d+) ms=([\d.]+)")


def web_timings(web_log: str, ids: set[str]) -> list[float]:
    """The web process's own time per delivery (its log line's ms=), for `ids`."""
    return sorted(float(m.group(3)) for m in _WEB_MS.finditer(web_log) if m.group(1) in ids)


# --- reporting ----------------------------------------------------------------------------


def ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(list(values), q) * 1000:.1f}" if values else "-"


def print_latency_table(result: LoadResult) -> None:
    answered = [s for s in result.sent if s.status]
    rows: list[tuple[str, list[float], int]] = []
    by_kind: dict[str, list[Sent]] = defaultdict(list)
    for s in result.sent:
        by_kind["redelivery" if s.redelivery else s.prepared.kind].append(s)
    rows.append(("all", sorted(s.latency for s in answered), len(result.sent)))
    for kind in [k for k, _ in MIX] + ["redelivery"]:
        mine = by_kind.get(kind, [])
        rows.append((kind, sorted(s.latency for s in mine if s.status), len(mine)))
    print(f"{'client-side latency':<30} {'sent':>6} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p99 ms':>8} {'max ms':>8}")
    for name, lat, n in rows:
        print(f"  {name:<28} {n:>6} {ms(lat, 50):>8} {ms(lat, 95):>8} {ms(lat, 99):>8} "
              f"{(f'{lat[-1] * 1000:.1f}' if lat else '-'):>8}")


def status_summary(sent: Sequence[Sent]) -> str:
    counts = Counter(str(s.status) if s.status else f"no answer ({s.error})" for s in sent)
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def print_check(check: Check, redeliveries: Sequence[Sent], drained: bool) -> None:
    print(f"deliveries answered 2xx: {check.accepted}; recorded: {check.recorded}; "
          f"processed: {check.processed}; failed for good: {check.failed}")
    print(f"lost: {len(check.lost)}" + ("" if drained or not check.lost else
          " (the queue had not drained: some of them may still be waiting for a worker)"))
    print(f"duplicated: {check.duplicated_rows + check.ran_twice} "
          f"(extra rows: {check.duplicated_rows}; jobs completed twice: {check.ran_twice}, "
          f"of {check.completions} completions in the workers' logs)")
    dup_answers = sum(1 for s in redeliveries if s.status == 200)
    print(f"redeliveries (a GUID sent again): {len(redeliveries)}, answered 200 duplicate: "
          f"{dup_answers}")
    if check.lost:
        print(f"  lost, first ones: {check.lost[:5]}")
    print("outcomes recorded:")
    for outcome, n in check.outcomes.most_common(12):
        print(f"  {n:>7}  {outcome}")


def print_log_problems(procs: AppProcesses) -> None:
    """How many ERROR / WARNING lines each process logged, and the first error."""
    for name in procs.procs:
        lines = procs.log(name).splitlines()
        errors = [line for line in lines if " ERROR " in line]
        warnings = sum(1 for line in lines if " WARNING " in line)
        print(f"{name} log: {len(lines)} lines, {len(errors)} ERROR, {warnings} WARNING"
              + (f"; first error: {errors[0][:240]}" if errors else ""))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{model}, {len(os.sched_getaffinity(0))} cores, load average {load} before "
            f"the run; python {platform.python_version()}")


@contextmanager
def redis_server() -> Iterator[tuple[str, str]]:
    """REDIS_URL (flushed by the run) or a private redis-server."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url, "REDIS_URL (flushed)"
        return
    with EmbeddedRedis() as server:
        yield server.url, "embedded redis-server"


def run_loop(main: Callable[[], Any]) -> Any:
    """Run a coroutine function on uvloop when it is installed: the load generator spends
    less CPU per request there, and the machine's cores are shared with the app."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def start_app(procs: AppProcesses, web_port: int, workers: int,
                    redis: aioredis.Redis) -> None:
    procs.start("web", "web", PORT=str(web_port))
    for i in range(workers):
        procs.start(f"worker{i}", "worker")
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            procs.check_alive()
            try:
                async with session.get(f"http://127.0.0.1:{web_port}/healthz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: the web process did not start:\n{procs.log('web')}")
            await asyncio.sleep(0.1)
    while not all("Starting worker" in procs.log(f"worker{i}") for i in range(workers)):
        procs.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: a worker did not start:\n{procs.log('worker0')}")
        await asyncio.sleep(0.1)


async def install_and_scan(url: str, st: FakeState, inst: Installation, database_url: str,
                           redis: aioredis.Redis, procs: AppProcesses,
                           limit: float = 900) -> float:
    """Deliver `installation` `created` and wait for its full scan; returns seconds."""
    start = time.perf_counter()
    status, text = await hooks.deliver(url, "installation", hooks.installation(st, inst),
                                       WEBHOOK_SECRET, app_id=st.app_id)
    if status != 202:
        raise SystemExit(f"bench: installation delivery answered {status}: {text}")
    maker = sessionmaker(database_url)
    while time.perf_counter() - start < limit:
        procs.check_alive()
        async with maker() as db:
            done = await db.scalar(select(func.count()).select_from(Scan).where(
                Scan.kind == "full", Scan.finished_at.is_not(None)))
        if done and await queue_idle(redis):
            return time.perf_counter() - start
        await asyncio.sleep(0.5)
    raise SystemExit(f"bench: the first full scan did not finish within {limit:g} s")


# --- the run ------------------------------------------------------------------------------


async def run(args: argparse.Namespace, st: FakeState, inst: Installation, mix: Mix,
              fake: FakeGitHubProcess, web_port: int, redis_url: str, redis_note: str,
              tmp: Path) -> None:
    url = f"http://127.0.0.1:{web_port}{WEBHOOK_PATH}"
    rng = random.Random(args.seed)
    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushdb()
    async with bench_database(args.database_url, tmp) as database_url:
        backend = make_url(database_url).get_backend_name()
        env = app_env(st, database_url=database_url, redis_url=redis_url,
                      webhook_secret=WEBHOOK_SECRET, LOG_LEVEL="INFO")
        procs = AppProcesses(env, tmp)
        try:
            await start_app(procs, web_port, args.workers, redis)
            scan_s = await install_and_scan(url, st, inst, database_url, redis, procs)
            print(f"setup: {len(inst.repos)} repositories installed and fully scanned in "
                  f"{scan_s:.1f} s; database {backend}; {redis_note}; 1 web process, "
                  f"{args.workers} workers", flush=True)

            pids = {"web": procs.pid("web"), "fake GitHub": fake.pid,
                    **{f"worker{i}": procs.pid(f"worker{i}") for i in range(args.workers)}}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            machine_before = machine_cpu_seconds()
            result = await open_loop(url, mix, args.rate, args.duration, rng)
            result.cpu = {name: (cpu_seconds(pid) - before[name]) / result.wall
                          for name, pid in pids.items()}
            busy, total = (b - a for a, b in zip(machine_before, machine_cpu_seconds(),
                                                 strict=True))
            cores = os.cpu_count() or 1
            result.cpu[f"whole machine (of {cores * 100}%)"] = busy / total * cores
            procs.check_alive()
            ids = accepted_ids(result.sent) | accepted_ids(result.warm)
            processed_s, idle_s = await drain(database_url, redis, ids,
                                              args.drain_timeout, procs)
            check = await check_deliveries(
                database_url, ids, [procs.log(f"worker{i}") for i in range(args.workers)])
            web_ms = web_timings(procs.log("web"), ids)
            print_log_problems(procs)
        finally:
            procs.stop()
            await redis.aclose()

    sent = result.sent
    redeliveries = [s for s in sent if s.redelivery]
    print()
    late = sorted(s.late for s in sent)
    print(f"load: {len(sent)} deliveries sent in {result.sending:.1f} s "
          f"({len(sent) / result.sending:.0f}/s; asked {args.rate:g}/s for {args.duration:g} s, "
          f"open loop), the last answer after {result.wall:.1f} s; the sender's own "
          f"lateness p99 {percentile(late, 99) * 1000:.1f} ms, max {late[-1] * 1000:.1f} ms")
    print(f"answers: {status_summary(sent)}")
    print_latency_table(result)
    net = sorted(s.latency - s.late for s in sent if s.status)
    print(f"  {'all, from the actual send':<28} {len(sent):>6} {ms(net, 50):>8} "
          f"{ms(net, 95):>8} {ms(net, 99):>8} {net[-1] * 1000 if net else 0:>8.1f}")
    print(f"web process's own time per delivery (its log's ms=): p50 "
          f"{percentile(web_ms, 50):.1f} ms, p99 {percentile(web_ms, 99):.1f} ms, "
          f"max {web_ms[-1] if web_ms else float('nan'):.1f} ms")
    print("CPU during the load (share of one core): " + ", ".join(
        f"{name} {share * 100:.0f}%" for name, share in result.cpu.items()))
    print("after the load: all answered deliveries processed in "
          + (f"{processed_s:.1f} s" if processed_s is not None else
             f"(not within {args.drain_timeout:g} s)")
          + "; queue idle (no job due or running) after "
          + (f"{idle_s:.1f} s" if idle_s is not None else "(not reached)"))
    print_check(check, redeliveries, processed_s is not None)
    all_lat = sorted(s.latency for s in sent if s.status)
    p99 = percentile(all_lat, 99) * 1000 if all_lat else float("inf")
    ok = not check.lost and not check.duplicated_rows and not check.ran_twice \
        and all(200 <= s.status < 300 for s in sent) and p99 < 50
    print(f"target (0 lost, 0 duplicated, every answer 2xx, p99 < 50 ms): "
          f"{'met' if ok else 'NOT met'} (p99 {p99:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300, help="deliveries a second")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--repos", type=int, default=200, help="repositories in the org")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server to create a scratch database on, e.g. "
                             "postgresql+asyncpg://postgres@127.0.0.1:5432/test; default: a "
                             "temporary SQLite file")
    parser.add_argument("--drain-timeout", type=float, default=600,
                        help="seconds to wait for the queue after the load")
    parser.add_argument("--seed", type=int, default=1, help="of the mix's random draws")
    parser.add_argument("--logs", type=Path, default=None,
                        help="keep the processes' logs (and the SQLite file) in this directory")
    args = parser.parse_args()

    print(f"machine: {machine()}", flush=True)
    st = FakeState()
    inst = build_fake_org(st, args.repos)
    fake = FakeGitHubProcess(st)
    web_port = free_port()
    rescans = int(args.rate * args.duration * dict(MIX)["issue_comment /policy rescan"]
                  / sum(w for _, w in MIX) * 1.5) + 10
    mix = Mix(st, inst, f"http://127.0.0.1:{web_port}{WEBHOOK_PATH}",
              rescan_comments=min(rescans, 2000))
    with tempfile.TemporaryDirectory(prefix="pe-load-") as tmp_name, fake, \
            redis_server() as (redis_url, redis_note):
        tmp = Path(tmp_name)
        if args.logs is not None:
            tmp = args.logs
            tmp.mkdir(parents=True, exist_ok=True)
        run_loop(lambda: run(args, st, inst, mix, fake, web_port, redis_url, redis_note, tmp))


if __name__ == "__main__":
    main()
