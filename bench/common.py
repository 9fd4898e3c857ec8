"""Shared by the benchmarks: a Redis to run against."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

from app.embedded_redis import EmbeddedRedis


def with_redis(main: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """Run `main(redis_url)` on REDIS_URL, or on a private redis-server when it is unset."""
    url = os.environ.get("REDIS_URL")
    if url:
        asyncio.run(main(url))
        return
    with EmbeddedRedis() as server:
        asyncio.run(main(server.url))
