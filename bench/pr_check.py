"""Pull request checks: how fast a `pull_request` event is answered with a check run, and
what re-checks of an unchanged head cost.

The web server and a long-running worker (production's settings: poll delay 0.5 s,
20 jobs at once) run in this process against the fake GitHub with `--latency` per API
request (100 ms by default), a real Redis (REDIS_URL or embedded) and SQLite. Phases:

  cold          one new pull request at a time (half add the missing AGENTS.md, half
                delete it): webhook POST → check run on the head commit
  unchanged     for every pull request: the same event delivered again (a new delivery),
                and a `check_suite` rerequested for the unchanged head → requests made
  config        a config change that leaves the pull-request policies alone → requests
                about pull requests (the full scan it starts is counted apart)
  busy          the same as `cold` while the worker has a backlog of bulk work queued
                (a new create-issue policy files one issue per repository)

Targets: p50 ≤ 2 s in `cold` and `busy`; 0 requests in `unchanged` and `config`.

    .venv/bin/python -m bench.pr_check [--prs 20] [--repos 60] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from bench.common import with_redis
from tasks.worker import create_worker
from tests.fakegithub import pull_webhooks as events
from tests.fakegithub import pulls
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation
from tests.stack import Stack, running_stack

MANIFEST = YAML(typ="safe").load(Path(__file__).parents[1] / "app.yml")
CONFIG = """\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: [block-prs, comment-on-prs]
  - name: Read-only workflow token
    type: correct_workflow_permissions
    action: block-prs
  - name: Catalog entry
    type: has_catalog_info_yaml
    action: log-only
"""
# The `busy` phase's backlog: one issue per repository to file.
BACKLOG_POLICY = """\
  - name: Catalog entry, filed
    type: has_catalog_info_yaml
    action: create-issue
"""


def build(st: FakeState, repos: int) -> Installation:
    specs: list[dict[str, Any]] = [{"name": ".github", "files": {"config.yaml": CONFIG}}]
    for i in range(repos):
        files = {"README.md": "x\n"} if i % 2 else {"AGENTS.md": "# Agents\n"}
        specs.append({"name": f"svc-{i:03d}", "files": files})
    return st.add_installation("acme", specs, events=MANIFEST["default_events"],
                               permissions=MANIFEST["default_permissions"])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def endpoint(path: str) -> str:
    parts = path.split("/")
    if path.startswith("/repos/") and len(parts) > 4:
        rest = "/".join("{n}" if p.isdigit() or len(p) == 40 else p for p in parts[4:])
        return f"/repos/{{o}}/{{r}}/{rest}"
    return path


async def idle(stack: Stack, worker: Any) -> None:
    """Until the queue is empty and no job runs (the worker keeps polling)."""
    while await stack.redis.zcard("arq:queue") or worker.job_tasks:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def open_and_time(stack: Stack, st: FakeState, repo: str, branch: str
                        ) -> tuple[float, pulls.PullRequest]:
    pulls.create_branch(st, repo, branch)
    index = int(repo.rsplit("-", 1)[1])
    # Even repositories have AGENTS.md: their pull request deletes it (red); odd ones add it.
    pulls.commit(st, repo, branch, {"AGENTS.md": None if index % 2 == 0 else "# Agents\n"})
    pr = pulls.open_pull(st, repo, branch)
    start = time.perf_counter()
    status, _ = await stack.deliver("pull_request", events.pull_request(st, pr, "opened"))
    assert status == 202
    while not pulls.check_runs(st, repo, pr.head_sha, "policy-enforcer"):
        if time.perf_counter() - start > 60:
            raise SystemExit(f"bench: no check run for {repo} after 60 s")
        await asyncio.sleep(0.005)
    return time.perf_counter() - start, pr


def report(label: str, times: list[float]) -> None:
    print(f"  {label}: {len(times)} pull requests, p50 {pct(times, 50):.2f} s, "
          f"p95 {pct(times, 95):.2f} s, max {max(times):.2f} s (target p50 ≤ 2 s)")


async def run(prs: int, repos: int, latency: float, redis_url: str) -> None:
    tmp = tempfile.mkdtemp()
    async with FakeGitHub() as gh:
        st = gh.state
        inst = build(st, repos)
        async with running_stack(github_url=gh.url, app_id=gh.app_id,
                                 private_key=gh.private_key_pem, redis_url=redis_url,
                                 database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
                                 LOG_LEVEL="WARNING",
                                 PUBLIC_URL="https://enforcer.example.com") as stack:
            await stack.redis.flushdb()
            await stack.deliver("installation", hooks.installation(st, inst))
            await stack.drain()
            st.latency = latency
            worker = create_worker(stack.settings, redis_url, handle_signals=False,
                                   startup_sync=False, cron_jobs=[])
            running = asyncio.create_task(worker.async_run())
            try:
                print(f"{prs} pull requests over {repos} repositories, latency "
                      f"{latency * 1000:.0f} ms per API request, worker poll delay "
                      f"{worker.poll_delay_s:g} s")
                # --- cold
                times: list[float] = []
                opened: list[pulls.PullRequest] = []
                per_check: list[int] = []
                paths: Counter[str] = Counter()
                for i in range(prs):
                    await idle(stack, worker)
                    mark = len(st.log)
                    took, pr = await open_and_time(stack, st, f"acme/svc-{i % repos:03d}",
                                                   f"pr-{i}")
                    await idle(stack, worker)  # the comment, after the check run
                    times.append(took)
                    opened.append(pr)
                    per_check.append(len(st.log) - mark)
                    paths.update(endpoint(r.path) for r in st.log[mark:])
                report("cold", times)
                red = sum(1 for p in opened
                          if pulls.check_runs(st, p.base.full_name, p.head_sha,
                                              "policy-enforcer")[0].conclusion == "failure")
                print(f"    {red} red, {len(opened) - red} green; requests per pull request "
                      f"(check runs and comment): {statistics.mean(per_check):.1f} "
                      f"(min {min(per_check)}, max {max(per_check)})")
                for path, n in paths.most_common():
                    print(f"      {n / prs:4.1f}  {path}")

                # --- unchanged
                mark = len(st.log)
                for pr in opened:
                    await stack.deliver("pull_request", events.pull_request(st, pr, "opened"))
                    await stack.deliver("check_suite", events.check_suite(
                        st, pr.base.full_name, pr.head_sha, "rerequested"))
                await asyncio.sleep(0.1)
                await idle(stack, worker)
                print(f"  unchanged: {2 * len(opened)} deliveries (the event again, a "
                      f"check_suite rerequested) → {len(st.log) - mark} requests "
                      "(target 0)")

                # --- config
                mark = len(st.log)
                push = hooks.commit_and_push(st, "acme/.github", {
                    "config.yaml": CONFIG.replace("action: log-only", "action: [log-only]")})
                await stack.deliver("push", push)
                await asyncio.sleep(0.5)
                await idle(stack, worker)
                await asyncio.sleep(0.5)  # the repository scan the push debounces
                await idle(stack, worker)
                about = [r for r in st.log[mark:] if "/pulls" in r.path
                         or "check-runs" in r.path or "/comments" in r.path]
                print(f"  config change without pull-request policy changes: "
                      f"{len(about)} requests about pull requests (target 0); the full "
                      f"scan it started made {len(st.log) - mark - len(about)}")

                # --- busy
                push = hooks.commit_and_push(st, "acme/.github", {
                    "config.yaml": CONFIG + BACKLOG_POLICY})
                await stack.deliver("push", push)
                # The scan fans out (batches, then one filing per repository): wait for
                # the backlog to build.
                deadline = time.perf_counter() + 30
                while await stack.redis.zcard("arq:queue") < repos // 2 \
                        and time.perf_counter() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                backlog = await stack.redis.zcard("arq:queue")
                times = []
                for i in range(prs):
                    took, _ = await open_and_time(stack, st, f"acme/svc-{i % repos:03d}",
                                                  f"busy-{i}")
                    times.append(took)
                left = await stack.redis.zcard("arq:queue")
                report(f"busy (backlog of {backlog} jobs when it began, {left} left after)",
                       times)
                print("    each: " + " ".join(f"{t:.2f}" for t in times))
                await idle(stack, worker)
            finally:
                await worker.close()
                running.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prs", type=int, default=20)
    parser.add_argument("--repos", type=int, default=60)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    with_redis(lambda url: run(args.prs, args.repos, args.latency, url))


if __name__ == "__main__":
    main()
