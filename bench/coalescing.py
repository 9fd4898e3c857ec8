"""Coalescing: 200 `push` deliveries for one repository within 2 seconds → how many scans?

The web server and a worker run side by side (the worker consumes while the deliveries
arrive), against the fake GitHub. Target: at most 2 scans.

    .venv/bin/python -m bench.coalescing [--deliveries 200] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from bench.common import with_redis
from tasks.worker import create_worker
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.stack import running_stack
from tests.test_e2e import build_org


async def run(deliveries: int, seconds: float, redis_url: str) -> None:
    tmp = tempfile.mkdtemp()
    async with FakeGitHub() as gh:
        st = gh.state
        inst, _ = build_org(st, n=3)
        async with running_stack(github_url=gh.url, app_id=gh.app_id,
                                 private_key=gh.private_key_pem, redis_url=redis_url,
                                 database_url=f"sqlite+aiosqlite:///{tmp}/c.db",
                                 LOG_LEVEL="WARNING", SCAN_DEBOUNCE_SECONDS=2.0) as stack:
            await stack.redis.flushdb()
            await stack.deliver("installation", hooks.installation(st, inst))
            await stack.drain()
            before = len([s for s in await stack.scans() if s.kind == "repo"])
            st.latency = 0.05
            # A long-running worker consumes while the deliveries arrive, as in production.
            worker = create_worker(stack.settings, redis_url, poll_delay=0.05,
                                   handle_signals=False)
            running = asyncio.create_task(worker.async_run())
            start = time.perf_counter()
            for i in range(deliveries):
                push = hooks.commit_and_push(st, "acme/svc-01", {"notes.txt": f"v{i}"})
                status, _ = await stack.deliver("push", push)
                assert status == 202
                await asyncio.sleep(max(0.0, start + seconds * (i + 1) / deliveries
                                        - time.perf_counter()))
            sent = time.perf_counter() - start
            while await stack.redis.zcard("arq:queue") or worker.job_tasks:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            await worker.close()
            running.cancel()
            scans = [s for s in await stack.scans() if s.kind == "repo"][before:]
            print(f"{deliveries} push deliveries for one repository in {sent:.2f} s "
                  f"→ {len(scans)} scan(s) (target ≤ 2), debounce 2.0 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with_redis(lambda url: run(args.deliveries, args.seconds, url))


if __name__ == "__main__":
    main()
