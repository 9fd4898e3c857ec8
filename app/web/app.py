"""The aiohttp application of the web process.

The request path never calls GitHub: a webhook is verified, deduplicated and handed to an
arq job, and the answer goes back in milliseconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.web_log import AccessLogger
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from app.settings import Settings, SettingsError
from app.web.home import home
from app.web.state import STATE, WebState
from app.web.webhooks import MAX_BODY_BYTES, REDIS_ERRORS, WEBHOOK_PATH, handle_webhook

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 2.0


def create_app(
    settings: Settings,
    *,
    redis: ArqRedis | None = None,
    database_url: str | None = None,
) -> web.Application:
    """Build the web application.

    `redis`: an arq pool owned by the caller (left open on cleanup). Without it, a pool is
    created from settings.REDIS_URL on startup and closed on cleanup.
    `database_url`: read by the home page; defaults to settings.DATABASE_URL.
    """
    if redis is None and not settings.REDIS_URL:
        raise SettingsError("REDIS_URL: not set (the web process queues webhook jobs in Redis)")
    # client_max_size admits exactly GitHub's 25 MB cap; a bigger body is answered 413.
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE] = WebState(
        settings=settings, database_url=database_url or settings.DATABASE_URL, redis=redis
    )
    app.router.add_post(WEBHOOK_PATH, handle_webhook)
    app.router.add_get("/", home)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(_redis_pool)
    app.on_cleanup.append(_release_database)
    return app


class WebAccessLogger(AccessLogger):
    """aiohttp's access log, less the webhook path: each delivery already gets one line
    from the handler (event, action, installation, outcome, time), and a second, poorer
    line per delivery would cost the hot path as much again."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path != WEBHOOK_PATH:
            super().log(request, response, time)


def create_runner(app: web.Application) -> web.AppRunner:
    """The runner that serves `app` in its own process (see WebAccessLogger)."""
    app.on_startup.append(_freeze_startup_objects)
    return web.AppRunner(app, access_log_class=WebAccessLogger)


async def _freeze_startup_objects(app: web.Application) -> None:
    """What is loaded by now (modules, settings, pools) lives as long as the process: keep
    it out of the cyclic collector's way. Without it, each full collection walks those
    ~120,000 objects and stalls every request in flight for tens of milliseconds."""
    gc.collect()
    gc.freeze()


async def _redis_pool(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    if state.redis is not None:  # the caller's pool: not ours to close
        yield
        return
    url = state.settings.REDIS_URL
    assert url is not None  # checked by create_app
    pool = await create_pool(RedisSettings.from_dsn(url))
    state.redis = pool
    try:
        yield
    finally:
        state.redis = None
        await pool.aclose()


async def _release_database(app: web.Application) -> None:
    state = app[STATE]
    if state.engine is not None:
        await state.engine.dispose()
        state.engine = None


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            await state.arq().ping()
    except REDIS_ERRORS as exc:
        log.warning("healthz: Redis unavailable (%s)", type(exc).__name__)
        return web.json_response({"ok": False, "error": "redis unavailable"}, status=503)
    return web.json_response({"ok": True})
