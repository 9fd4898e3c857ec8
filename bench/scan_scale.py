"""Full-scan cost and wall time of a generated org on the fake GitHub.

One in-process arq worker, GitHub's secondary limits switched on in the fake (900 REST
points a minute, 100 concurrent requests, 80 content-creating requests a minute), the
app's governor at GitHub's defaults, and injected latency per API call. The org's policies
are the four built-in ones with `log-only`, so the figures are the scan's own (issue filing
is paced by GitHub's 80-a-minute content limit, whatever the tool).

Prints, for a cold scan, a warm rescan of the unchanged org and a rescan after 1% of the
repositories changed: wall time, rate-limited requests (REST not 304 + GraphQL points) per
repository, secondary-limit responses, and the process's peak RSS.

    .venv/bin/python -m bench.scan_scale [--repos 1000] [--latency 0.1] [--org-default read]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from sqlalchemy import select

from app.db.models import Scan
from app.services.scan_requests import request_full_scan
from bench.common import with_redis
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.stack import running_stack, services_for
from tests.test_e2e import CONFIG, build_org

LOG_ONLY = CONFIG.replace("action: create-issue", "action: log-only") \
    .replace("action: create_issue", "action: log-only") \
    .replace("action: [create-issue]", "action: [log-only]") \
    .replace("action: [create-issue, log-only]", "action: [log-only]")


def rss_mb() -> float:
    """Peak resident set size of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def run(repos: int, latency: float, redis_url: str, cold_only: bool = False,
              org_default: str = "write") -> None:
    tmp = tempfile.mkdtemp()
    async with FakeGitHub() as gh:
        st = gh.state
        inst, expected = build_org(st, n=repos)
        st.set_file("acme/.github", "config.yaml", LOG_ONLY)
        st.set_org_workflow_permissions("acme", org_default)
        st.rate_limit.limit = st.rate_limit.graphql_limit = 10**7  # primary limit: not measured
        st.secondary.enabled = True
        async with running_stack(github_url=gh.url, app_id=gh.app_id,
                                 private_key=gh.private_key_pem, redis_url=redis_url,
                                 database_url=f"sqlite+aiosqlite:///{tmp}/scale.db",
                                 LOG_LEVEL="WARNING") as stack:
            await stack.redis.flushdb()
            st.latency = latency
            n = len(expected)
            # The fake GitHub shares this process; what it holds is not the worker's.
            print(f"RSS with the fake org built and the app started, before scanning: "
                  f"{current_rss_mb():.0f} MB")
            print(f"{n} repositories, {latency * 1000:.0f} ms latency per API call, "
                  f"secondary limits on, organization's default workflow permissions "
                  f"{org_default!r}")
            labels = ("cold",) if cold_only else (
                "cold", "warm (unchanged)", "warm again", "warm (1% pushed)")
            for label in labels:
                if label.startswith("warm (1%"):
                    for i in range(0, repos, 100):
                        st.set_file(f"acme/svc-{i:02d}", "notes.txt", str(time.time()))
                rest0, pts0, sec0 = (st.rate_limited_requests, st.graphql_points,
                                     st.secondary_limit_responses)
                start = time.perf_counter()
                if label == "cold":
                    await stack.deliver("installation", hooks.installation(st, inst))
                else:
                    await request_full_scan(services_for(stack), inst.id, "bench")
                await stack.drain()
                wall = time.perf_counter() - start
                async with stack.db() as db:
                    scan = (await db.scalars(select(Scan).where(Scan.kind == "full")
                                             .order_by(Scan.id.desc()))).first()
                assert scan is not None and scan.done == scan.total, "scan incomplete"
                assert scan.finished_at is not None
                # The scan itself, without the action jobs (log-only here) that follow it.
                scan_s = (scan.finished_at - scan.started_at).total_seconds()
                spent = (st.rate_limited_requests - rest0) + (st.graphql_points - pts0)
                rest = st.rate_limited_requests - rest0
                # The floor: REST calls ÷ 900 a minute (no wait below one window).
                floor = rest / 900 * 60 if rest > 900 else 0.0
                print(f"  {label:18s} scan {scan_s:6.1f} s (all jobs {wall:6.1f} s)  "
                      f"{spent / n:6.3f} per repo "
                      f"({rest} REST, {st.graphql_points - pts0} GraphQL points)  "
                      f"secondary-limit responses {st.secondary_limit_responses - sec0}  "
                      f"floor {floor:6.1f} s  peak RSS {rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--cold-only", action="store_true", help="skip the rescans")
    parser.add_argument("--org-default", choices=("write", "read"), default="write",
                        help="the organization's default workflow permissions; with 'read' "
                             "no repository's own setting needs reading")
    args = parser.parse_args()
    with_redis(lambda url: run(args.repos, args.latency, url, args.cold_only,
                               args.org_default))


if __name__ == "__main__":
    main()
