"""Webhook answer time: signed ~10 KB push deliveries against one web process.

Starts the web server in a child process (real socket, real Redis: REDIS_URL or an
embedded one) and sends deliveries from this process. Prints p50/p99 latency and rate.

    .venv/bin/python -m bench.webhook_latency [--count 2000] [--concurrency 1,8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid

import aiohttp

SECRET = "bench-secret"


def _payload() -> bytes:
    commits = [{"id": uuid.uuid4().hex * 1, "message": "Update service " + "x" * 200,
                "added": [f"src/file_{i}_{j}.py" for j in range(5)], "removed": [],
                "modified": ["README.md"], "author": {"name": "dev", "email": "d@example.com"}}
               for i in range(18)]
    payload = {"ref": "refs/heads/main", "before": "0" * 40, "after": "f" * 40,
               "repository": {"id": 1, "name": "api", "full_name": "acme/api",
                              "default_branch": "main", "private": False,
                              "owner": {"login": "acme"}},
               "installation": {"id": 1}, "commits": commits, "head_commit": commits[-1],
               "sender": {"login": "dev", "type": "User"}}
    return json.dumps(payload).encode()


def _serve(port: int, redis_url: str, db_url: str) -> None:
    from app.__main__ import _serve_web
    from app.settings import Settings

    settings = Settings(WEBHOOK_SECRET=SECRET, REDIS_URL=redis_url, DATABASE_URL=db_url,
                        PORT=port, HOST="127.0.0.1", LOG_LEVEL="WARNING",
                        _env_file=None)
    asyncio.run(_serve_web(settings, redis_url, asyncio.Event()))


async def _run(url: str, count: int, concurrency: int, body: bytes) -> list[float]:
    from app.web.webhooks import sign

    signature = sign(SECRET, body)
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            queue.get_nowait()
            headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
                       "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
            start = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                assert resp.status == 202, resp.status
            latencies.append(time.perf_counter() - start)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,8")
    args = parser.parse_args()

    from app.embedded_redis import EmbeddedRedis, free_port

    embedded = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        embedded = EmbeddedRedis().start()
        redis_url = embedded.url
    tmp = tempfile.mkdtemp()
    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(port, redis_url, f"sqlite+aiosqlite:///{tmp}/b.db"), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}/api/github/webhooks"
    body = _payload()
    try:
        deadline = time.time() + 20
        while True:
            try:
                asyncio.run(_run(url, 1, 1, body))
                break
            except (aiohttp.ClientError, OSError):
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        print(f"payload {len(body)} bytes, {args.count} deliveries per run")
        for conc in [int(c) for c in args.concurrency.split(",")]:
            start = time.perf_counter()
            lat = asyncio.run(_run(url, args.count, conc, body))
            wall = time.perf_counter() - start
            lat.sort()
            p50 = statistics.median(lat) * 1000
            p99 = lat[int(len(lat) * 0.99) - 1] * 1000
            print(f"concurrency {conc:3d}: {len(lat) / wall:7.0f} deliveries/s  "
                  f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {lat[-1] * 1000:6.2f} ms")
    finally:
        proc.terminate()
        proc.join(5)
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
