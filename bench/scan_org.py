"""Scan time of an org against the fake GitHub: installation webhook → every issue filed.

One in-process arq worker, real Redis (REDIS_URL or embedded), SQLite, the fake GitHub
server with injected latency per API call. Prints wall time and API calls per repository.

    .venv/bin/python -m bench.scan_org [--repos 30] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from bench.common import with_redis
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.stack import running_stack
from tests.test_e2e import build_org


async def run(repos: int, latency: float, redis_url: str) -> None:
    tmp = tempfile.mkdtemp()
    async with FakeGitHub() as gh:
        st = gh.state
        inst, expected = build_org(st, n=repos)
        async with running_stack(github_url=gh.url, app_id=gh.app_id,
                                 private_key=gh.private_key_pem, redis_url=redis_url,
                                 database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
                                 LOG_LEVEL="WARNING") as stack:
            await stack.redis.flushdb()
            st.latency = latency
            st.clear_log()
            start = time.perf_counter()
            status, _ = await stack.deliver("installation", hooks.installation(st, inst))
            answered = time.perf_counter() - start
            assert status == 202
            await stack.drain()
            wall = time.perf_counter() - start
            issues = sum(len(st.issues(name)) for name in expected)
            scanned = len(expected)
            first = len(st.requests)
            print(f"{scanned} repositories, latency {latency * 1000:.0f} ms per API call")
            print(f"  webhook answered in {answered * 1000:.1f} ms")
            print(f"  cold scan + {issues} issues filed: {wall:.2f} s wall, "
                  f"{first} API requests ({first / scanned:.1f} per repository)")
            st.clear_log()
            start = time.perf_counter()
            from app.services.scan_requests import request_full_scan
            from tests.stack import services_for

            await request_full_scan(services_for(stack), inst.id, "bench")
            await stack.drain()
            wall = time.perf_counter() - start
            again = len(st.requests)
            paid = sum(1 for _, _, status in st.requests if status != 304)
            print(f"  rescan (nothing changed): {wall:.2f} s wall, {again} API "
                  f"requests ({again / scanned:.1f} per repository), {paid} not 304, "
                  f"{st.count_requests('POST')} writes")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    with_redis(lambda url: run(args.repos, args.latency, url))


if __name__ == "__main__":
    main()
