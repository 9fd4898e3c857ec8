"""Webhook ingest: signed deliveries per second that ONE web process on ONE core verifies,
deduplicates and durably enqueues, side by side with a Probot 14 app doing nothing.

For each implementation, in the same run:

* the server runs pinned to one core (``taskset -c 0``): ours is the real entry point
  ``python -m app web`` (INFO logging: one line per delivery), Probot 14 is ``probot run``
  on a minimal app with an ``onAny`` handler that does nothing (``NODE_ENV=production``,
  ``LOG_LEVEL=info``: one pino JSON line per request). Both log to a file.
  ``--log-level warn`` turns the per-delivery line off in both.
* the load comes from other cores: ``wrk`` (Lua script: constant ~10 KB ``push`` body and
  its valid ``X-Hub-Signature-256``, computed once; a unique ``X-GitHub-Delivery`` per
  request, which is not signed) for the maximum rate, and an open-loop aiohttp client that
  sends 300 deliveries per second on a fixed schedule (wrk2 is not in Debian) for the
  light-load latency.
* Redis: REDIS_URL when set, otherwise an embedded redis-server pinned to a load core.
  Each of our runs checks that every delivery answered 2xx left its dedupe marker.

    .venv/bin/python -m bench.webhook_ingest [--duration 10] [--connections 32]
        [--rate 300] [--rounds 1] [--only ours|probot] [--log-level info|warn]

Needs ``wrk`` (``apt-get install -y wrk``) and Node.js; Probot is installed on first use
with npm into bench/.node/ (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from app.web.webhooks import WEBHOOK_PATH, sign

SECRET = "bench-webhook-secret"
ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / ".node"
PROBOT_SPEC = "probot@14"
PROBOT_BIN = NODE_DIR / "node_modules" / "probot" / "bin" / "probot.js"
SERVER_CORE = 0

PROBOT_APP = """\
// The minimal Probot app: receives every event and does nothing.
export default (app) => {
  app.onAny(async () => {});
};
"""

# wrk: constant body and signature; a unique delivery id per request (not signed).
WRK_SCRIPT = """\
local body_file = io.open("%(body_path)s", "rb")
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-GitHub-Hook-ID"] = "1"
wrk.headers["X-Hub-Signature-256"] = "%(signature)s"

local threads = {}
local prefix = "%(prefix)s"
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = prefix .. "-" .. tostring(tid)
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. "-" .. counter
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, ' ..
    '"timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def push_payload() -> bytes:
    """A realistic ``push`` delivery of about 10 KB (the shape GitHub sends)."""
    owner = {
        "name": "acme", "email": None, "login": "acme", "id": 1_234_567,
        "node_id": "MDEyOk9yZ2FuaXphdGlvbjEyMzQ1Njc=",
        "avatar_url": "https://avatars.githubusercontent.com/u/1234567?v=4",
        "gravatar_id": "", "url": "https://api.github.com/users/acme",
        "html_url": "https://github.com/acme",
        "followers_url": "https://api.github.com/users/acme/followers",
        "following_url": "https://api.github.com/users/acme/following{/other_user}",
        "gists_url": "https://api.github.com/users/acme/gists{/gist_id}",
        "starred_url": "https://api.github.com/users/acme/starred{/owner}{/repo}",
        "subscriptions_url": "https://api.github.com/users/acme/subscriptions",
        "organizations_url": "https://api.github.com/users/acme/orgs",
        "repos_url": "https://api.github.com/users/acme/repos",
        "events_url": "https://api.github.com/users/acme/events{/privacy}",
        "received_events_url": "https://api.github.com/users/acme/received_events",
        "type": "Organization", "user_view_type": "public", "site_admin": False,
    }
    api = "https://api.github.com/repos/acme/payments-service"
    repository = {
        "id": 987_654_321, "node_id": "R_kgDOOrx7sQ", "name": "payments-service",
        "full_name": "acme/payments-service", "private": True, "owner": owner,
        "html_url": "https://github.com/acme/payments-service",
        "description": "Payment orchestration service", "fork": False, "url": api,
        **{f"{name}_url": f"{api}/{name}{suffix}" for name, suffix in [
            ("forks", ""), ("keys", "{/key_id}"), ("collaborators", "{/collaborator}"),
            ("teams", ""), ("hooks", ""), ("issue_events", "{/number}"), ("events", ""),
            ("assignees", "{/user}"), ("branches", "{/branch}"), ("tags", ""),
            ("blobs", "{/sha}"), ("git_tags", "{/sha}"), ("git_refs", "{/sha}"),
            ("trees", "{/sha}"), ("statuses", "{/sha}"), ("languages", ""),
            ("stargazers", ""), ("contributors", ""), ("subscribers", ""),
            ("subscription", ""), ("commits", "{/sha}"), ("git_commits", "{/sha}"),
            ("comments", "{/number}"), ("issue_comment", "{/number}"),
            ("contents", "{+path}"), ("compare", "/{base}...{head}"), ("merges", ""),
            ("archive", "/{archive_format}{/ref}"), ("downloads", ""),
            ("issues", "{/number}"), ("pulls", "{/number}"), ("milestones", "{/number}"),
            ("notifications", "{?since,all,participating}"), ("labels", "{/name}"),
            ("releases", "{/id}"), ("deployments", "")]},
        "created_at": 1_700_000_000, "updated_at": "2025-01-14T09:12:44Z",
        "pushed_at": 1_736_845_964, "git_url": "git://github.com/acme/payments-service.git",
        "ssh_url": "git@github.com:acme/payments-service.git",
        "clone_url": "https://github.com/acme/payments-service.git",
        "svn_url": "https://github.com/acme/payments-service", "homepage": None,
        "size": 48_213, "stargazers_count": 0, "watchers_count": 0, "language": "Python",
        "has_issues": True, "has_projects": False, "has_downloads": True, "has_wiki": False,
        "has_pages": False, "has_discussions": False, "forks_count": 0, "mirror_url": None,
        "archived": False, "disabled": False, "open_issues_count": 3, "license": None,
        "allow_forking": False, "is_template": False, "web_commit_signoff_required": False,
        "topics": ["payments", "python"], "visibility": "private", "forks": 0,
        "open_issues": 3, "watchers": 0, "default_branch": "main", "stargazers": 0,
        "master_branch": "main", "organization": "acme", "custom_properties": {},
    }
    person = {"name": "Dana Developer", "email": "dana@acme.example", "username": "dana"}
    commits = []
    for i in range(4):
        sha = f"{i:x}" * 40
        commits.append({
            "id": sha, "tree_id": f"{i + 4:x}" * 40, "distinct": True,
            "message": f"Refactor settlement batching, part {i}\n\n" + "Details. " * 20,
            "timestamp": "2025-01-14T10:12:44+01:00",
            "url": f"https://github.com/acme/payments-service/commit/{sha}",
            "author": person, "committer": person,
            "added": [f"src/payments/settlement/batch_{i}_{j}.py" for j in range(3)],
            "removed": [], "modified": ["src/payments/settlement/__init__.py", "README.md"],
        })
    sender = {**owner, "login": "dana", "id": 7_654_321, "type": "User",
              "url": "https://api.github.com/users/dana", "html_url": "https://github.com/dana"}
    payload = {
        "ref": "refs/heads/main", "before": "a" * 40, "after": commits[-1]["id"],
        "repository": repository, "pusher": {"name": "dana", "email": "dana@acme.example"},
        "organization": {"login": "acme", "id": 1_234_567, "url": owner["url"],
                         "description": "Acme Corp"},
        "sender": sender, "installation": {"id": 55_512_345, "node_id": "MDIzOkludGVncmF0"},
        "created": False, "deleted": False, "forced": False, "base_ref": None,
        "compare": "https://github.com/acme/payments-service/compare/aaaaaaa...3333333",
        "commits": commits, "head_commit": commits[-1],
    }
    return json.dumps(payload, indent=None).encode()


@dataclass
class Result:
    impl: str
    load: str
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int
    note: str = ""


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)


# --- machine and tools --------------------------------------------------------------------


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def load_cores() -> list[int]:
    rest = [c for c in cores() if c != SERVER_CORE]
    return rest or [SERVER_CORE]


def need_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        sys.exit("bench: wrk is not installed; install it with "
                 "`apt-get update && apt-get install -y wrk` (Debian package `wrk`)")
    return path


def need_probot() -> Path:
    node = shutil.which("node")
    if node is None:
        sys.exit("bench: Node.js (`node`) is not installed; Probot 14 needs Node >= 20.18")
    if not PROBOT_BIN.exists():
        npm = shutil.which("npm")
        if npm is None:
            sys.exit("bench: npm is not installed; it is needed once to install Probot")
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        package = NODE_DIR / "package.json"
        if not package.exists():
            package.write_text('{"private": true}\n')
        print(f"bench: installing {PROBOT_SPEC} into {NODE_DIR} ...", file=sys.stderr)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
                        PROBOT_SPEC], cwd=NODE_DIR, check=True)
    return PROBOT_BIN


def probot_version() -> str:
    data = json.loads((PROBOT_BIN.parent.parent / "package.json").read_text())
    return str(data["version"])


def throwaway_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def free_port() -> int:
    from app.embedded_redis import free_port as pick

    return pick()


# --- servers ------------------------------------------------------------------------------


def _pinned(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CORE), *cmd]


def start_ours(tmp: Path, redis_url: str, log_level: str = "info") -> Server:
    port = free_port()
    env = {**_base_env(), "WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url,
           "SESSION_SECRET": "bench-session-secret-0123456789abcdefgh",
           "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db", "PORT": str(port),
           "HOST": "127.0.0.1", "LOG_LEVEL": "INFO" if log_level == "info" else "WARNING"}
    python = sys.executable
    subprocess.run([python, "-m", "app", "migrate"], cwd=tmp, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_path = tmp / "ours.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(_pinned([python, "-m", "app", "web"]), cwd=tmp, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    return Server("ours (aiohttp)", f"http://127.0.0.1:{port}{WEBHOOK_PATH}", proc, log_path)


def start_probot(tmp: Path, log_level: str = "info") -> Server:
    probot = need_probot()
    port = free_port()
    app_dir = tmp / "probot-app"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "package.json").write_text('{"private": true, "type": "module"}\n')
    (app_dir / "index.js").write_text(PROBOT_APP)
    env = {**_base_env(), "APP_ID": "12345", "PRIVATE_KEY": throwaway_private_key(),
           "WEBHOOK_SECRET": SECRET, "PORT": str(port), "HOST": "127.0.0.1",
           "NODE_ENV": "production", "LOG_LEVEL": log_level, "LOG_FORMAT": "json"}
    log_path = tmp / "probot.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(_pinned(["node", str(probot), "run", "./index.js"]),
                                cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Server(f"Probot {probot_version()}", f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
                  proc, log_path)


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "SYSTEMROOT", "PYTHONPATH")
    return {k: v for k, v in os.environ.items() if k in keep}


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, signature: str,
                delivery: str) -> int:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push",
               "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": signature,
               "User-Agent": "GitHub-Hookshot/bench"}
    async with session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


def wait_ready(server: Server, body: bytes, signature: str, timeout: float = 30) -> None:
    async def probe() -> int:
        async with aiohttp.ClientSession() as session:
            return await _post(session, server.url, body, signature, f"ready-{uuid.uuid4()}")

    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            sys.exit(f"bench: {server.name} exited with {server.proc.returncode}; "
                     f"log:\n{server.log_path.read_text()[-3000:]}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            status = asyncio.run(probe())
            if 200 <= status < 300:
                return
            sys.exit(f"bench: {server.name} answered {status} to a signed delivery; "
                     f"log:\n{server.log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            sys.exit(f"bench: {server.name} did not start; log:\n"
                     f"{server.log_path.read_text()[-3000:]}")
        time.sleep(0.2)


# --- load ---------------------------------------------------------------------------------


def run_wrk(wrk: str, server: Server, script: Path, duration: float, connections: int,
            threads: int = 1) -> dict[str, int]:
    cmd = ["taskset", "-c", ",".join(map(str, load_cores())), wrk, f"-t{threads}",
           f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s", "-s", str(script),
           server.url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    match = re.search(r"^RESULT (\{.*\})$", out, re.M)
    if match is None:
        raise RuntimeError(f"no RESULT line in wrk output:\n{out}")
    return dict(json.loads(match.group(1)))


def write_wrk_script(tmp: Path, body_path: Path, signature: str, prefix: str) -> Path:
    path = tmp / f"wrk-{prefix}.lua"
    path.write_text(WRK_SCRIPT % {"body_path": body_path, "signature": signature,
                                  "prefix": prefix})
    return path


async def paced(url: str, body: bytes, signature: str, rate: float, duration: float,
                prefix: str) -> tuple[list[float], int, float]:
    """Open loop: request i is sent at start + i/rate whatever the answers do (no
    coordinated omission). Latency: from the scheduled send time to the end of the answer.
    Returns latencies (s), errors and the worst lateness of the sender itself (s)."""
    total = int(rate * duration)
    latencies: list[float] = []
    errors = 0
    worst_late = 0.0
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
            try:
                status = await _post(session, url, body, signature, f"{prefix}-{i}")
            except (aiohttp.ClientError, OSError):
                errors += 1
                return
            if not 200 <= status < 300:
                errors += 1
            latencies.append(time.perf_counter() - scheduled)

        # Warm the keep-alive pool with a few connections before the clock starts.
        await asyncio.gather(*(one(-(k + 1), time.perf_counter()) for k in range(8)))
        latencies.clear()
        tasks = []
        start = time.perf_counter() + 0.05
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            worst_late = max(worst_late, time.perf_counter() - scheduled)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
    return latencies, errors, worst_late


def run_paced(server: Server, body: bytes, signature: str, rate: float, duration: float,
              prefix: str) -> tuple[list[float], int, float]:
    # The load generator keeps off the server's core.
    os.sched_setaffinity(0, set(load_cores()))
    try:
        return asyncio.run(paced(server.url, body, signature, rate, duration, prefix))
    finally:
        os.sched_setaffinity(0, set(cores()))


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


# --- Redis --------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_for_bench() -> Iterator[tuple[str, str]]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url, "REDIS_URL (not pinned)"
        return
    from app.embedded_redis import EmbeddedRedis

    with EmbeddedRedis() as server:
        assert server._proc is not None
        os.sched_setaffinity(server._proc.pid, set(load_cores()))
        yield server.url, f"embedded redis-server on cores {load_cores()}"


def count_markers(redis_url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for _ in client.scan_iter(match=f"pe:delivery:{prefix}*", count=5000))
    finally:
        client.close()


def cleanup_redis(redis_url: str, prefix: str) -> None:
    """Remove what the bench's deliveries left: markers, jobs and queue entries."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for pattern in (f"pe:delivery:{prefix}*", f"arq:job:webhook:{prefix}*"):
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)
        members = [m for m, _ in client.zscan_iter("arq:queue", match=f"webhook:{prefix}*",
                                                    count=5000)]
        for i in range(0, len(members), 5000):
            client.zrem("arq:queue", *members[i:i + 5000])
    finally:
        client.close()


# --- the run ------------------------------------------------------------------------------


def measure(server: Server, *, wrk: str, tmp: Path, body: bytes, body_path: Path,
            signature: str, redis_url: str | None, args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    wait_ready(server, body, signature)

    warm = uuid.uuid4().hex[:12]
    run_wrk(wrk, server, write_wrk_script(tmp, body_path, signature, warm), 3,
            args.connections)
    if redis_url is not None:  # nobody consumes the jobs: keep Redis from filling up
        cleanup_redis(redis_url, warm)

    prefix = uuid.uuid4().hex[:12]
    stats = run_wrk(wrk, server, write_wrk_script(tmp, body_path, signature, prefix),
                    args.duration, args.connections)
    errors = sum(stats[k] for k in ("connect", "read", "write", "status", "timeout"))
    note = ""
    if redis_url is not None:
        markers = count_markers(redis_url, prefix)
        # wrk counts the answers it read; up to `connections` more were in flight at the end.
        ok = stats["requests"] - stats["status"] <= markers <= stats["requests"] + \
            args.connections
        note = f"{markers} jobs enqueued" + ("" if ok else " (MISMATCH)")
        cleanup_redis(redis_url, prefix)
    results.append(Result(
        server.name, f"max (wrk -t1 -c{args.connections} -d{args.duration:g}s)",
        stats["requests"] / (stats["duration_us"] / 1e6), stats["p50_us"] / 1000,
        stats["p99_us"] / 1000, stats["max_us"] / 1000, stats["requests"], errors, note))

    time.sleep(1)
    prefix_light = uuid.uuid4().hex[:12]
    latencies, errors, late = run_paced(server, body, signature, args.rate, args.duration,
                                        prefix_light)
    latencies.sort()
    wall = args.duration
    note = f"sender at most {late * 1000:.1f} ms late"
    if redis_url is not None:
        note += f"; {count_markers(redis_url, prefix_light)} jobs enqueued"
    results.append(Result(
        server.name, f"light ({args.rate:g}/s open loop, {args.duration:g}s)",
        len(latencies) / wall, percentile(latencies, 50) * 1000,
        percentile(latencies, 99) * 1000, latencies[-1] * 1000 if latencies else float("nan"),
        len(latencies), errors, note))

    if redis_url is not None:
        cleanup_redis(redis_url, prefix_light)
    return results


def print_table(results: list[Result]) -> None:
    header = (f"{'impl':<16} {'load':<34} {'deliveries/s':>12} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'max ms':>8} {'errors':>6}  note")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.impl:<16} {r.load:<34} {r.rate:>12.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
              f"{r.max_ms:>8.2f} {r.errors:>6}  {r.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per load level")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rate", type=float, default=300, help="light load, deliveries/s")
    parser.add_argument("--rounds", type=int, default=1, help="repeat both implementations")
    parser.add_argument("--only", choices=["ours", "probot"], help="measure one of them")
    parser.add_argument("--log-level", choices=["info", "warn"], default="info",
                        help="both servers: info = one line per delivery (the default of "
                             "both), warn = no line per delivery")
    args = parser.parse_args()

    wrk = need_wrk()
    if args.only != "ours":
        need_probot()
    if len(cores()) < 2:
        print("bench: WARNING: one CPU only; the load generator shares the server's core",
              file=sys.stderr)

    body = push_payload()
    signature = sign(SECRET, body)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="pe-ingest-") as tmp_name, \
            redis_for_bench() as (redis_url, redis_note):
        tmp = Path(tmp_name)
        body_path = tmp / "push.json"
        body_path.write_bytes(body)
        print(f"machine: {platform.processor() or platform.machine()}, {_cpu_model()}, "
              f"{len(cores())} cores; server pinned to core {SERVER_CORE}, "
              f"load (wrk / paced client) on cores {load_cores()}")
        print(f"python {platform.python_version()}, node {_node_version()}, "
              f"redis: {redis_note}")
        print(f"payload: push, {len(body)} bytes, signed once; unique X-GitHub-Delivery "
              f"per request; log level {args.log_level} for both")
        print(flush=True)
        for _ in range(args.rounds):
            if args.only != "probot":
                server = start_ours(tmp, redis_url, args.log_level)
                try:
                    results += measure(server, wrk=wrk, tmp=tmp, body=body, body_path=body_path,
                                       signature=signature, redis_url=redis_url, args=args)
                finally:
                    stop(server)
            if args.only != "ours":
                server = start_probot(tmp, args.log_level)
                try:
                    results += measure(server, wrk=wrk, tmp=tmp, body=body, body_path=body_path,
                                       signature=signature, redis_url=None, args=args)
                finally:
                    stop(server)
    print_table(results)
    if args.rounds > 1:
        print()
        for impl in dict.fromkeys(r.impl for r in results):
            for load in dict.fromkeys(r.load for r in results):
                mine = [r for r in results if r.impl == impl and r.load == load]
                print(f"median of {len(mine)}: {impl:<16} {load:<34} "
                      f"{statistics.median(r.rate for r in mine):>8.0f}/s  p50 "
                      f"{statistics.median(r.p50_ms for r in mine):.2f} ms  p99 "
                      f"{statistics.median(r.p99_ms for r in mine):.2f} ms")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "absent"


if __name__ == "__main__":
    main()
