"""Operations endpoints: liveness, readiness and the Prometheus exposition.

    GET /healthz   200 {"ok": true} while the process can take webhooks: it answers and its
                   Redis (the job queue) does; else 503 (the check the web process always had)
    GET /readyz    200 when the database answers, Redis answers and the schema is at the
                   code's migration head; else 503 with each check's ok and a short reason
                   (an exception's class name or a fixed word: never a URL, host or driver
                   message)
    GET /metrics   404 unless METRICS_TOKEN is set; 401 without `Authorization: Bearer
                   <METRICS_TOKEN>`; else the exposition (app/metrics.py)
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
from typing import Any

from aiohttp import web
from sqlalchemy import text

from app.db.migrate import current_revision, head_revision
from app.metrics import render_metrics
from app.web.state import STATE, WebState

log = logging.getLogger(__name__)

# Each readiness check gives up after this long.
READY_TIMEOUT_SECONDS = 2.0
_NO_STORE = {"Cache-Control": "no-store"}
_ALIVE_BODY = json.dumps({"ok": True}).encode()
# The last readiness seen by this process: a failing check is logged when it starts failing,
# not on every probe.
_last_failures: dict[str, str] = {}


async def healthz(request: web.Request) -> web.Response:
    """The process is up and can queue webhook jobs (Redis answers a PING)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await request.app[STATE].arq().ping()
    except Exception as exc:
        log.warning("healthz: Redis unavailable (%s)", _reason(exc))
        return web.json_response({"ok": False, "error": "redis unavailable"}, status=503,
                                 headers=_NO_STORE)
    return web.Response(body=_ALIVE_BODY, content_type="application/json", headers=_NO_STORE)


@functools.cache
def _head() -> str | None:
    return head_revision()  # reads the migration scripts: once per process


def _reason(exc: BaseException) -> str:
    """What a failed check says: no message, it may name hosts or carry credentials."""
    return "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__


async def _check_redis(state: WebState) -> dict[str, Any]:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await state.arq().ping()
    except Exception as exc:
        return {"ok": False, "reason": _reason(exc)}
    return {"ok": True}


async def _check_database(state: WebState) -> tuple[dict[str, Any], dict[str, Any]]:
    """(database, migrations)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            state.db()  # the engine, released with the application
            assert state.engine is not None  # noqa: S101 - narrows; state.db() made it
            async with state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return {"ok": False, "reason": _reason(exc)}, {"ok": False, "reason": "no database"}
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            head = _head() if _head.cache_info().currsize else await asyncio.to_thread(_head)
            current = await current_revision(state.database_url)
    except Exception as exc:
        return {"ok": True}, {"ok": False, "reason": _reason(exc)}
    if current != head:
        return {"ok": True}, {"ok": False, "reason": "not at the code's migration head"}
    return {"ok": True}, {"ok": True}


async def readyz(request: web.Request) -> web.Response:
    """Ready for traffic: database, Redis and migrations, checked concurrently."""
    state = request.app[STATE]
    (database, migrations), redis = await asyncio.gather(_check_database(state),
                                                         _check_redis(state))
    checks = {"database": database, "redis": redis, "migrations": migrations}
    failures = {name: str(c.get("reason")) for name, c in checks.items() if not c["ok"]}
    if failures != _last_failures:
        if failures:
            log.warning("readyz: not ready: %s",
                        ", ".join(f"{name} {reason}" for name, reason in failures.items()))
        elif _last_failures:
            log.info("readyz: ready again")
        _last_failures.clear()
        _last_failures.update(failures)
    ok = not failures
    return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503,
                             headers=_NO_STORE)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether `Authorization: Bearer <token>` carries `token`; constant time (the digests
    are compared, so not even the length is told)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(_digest(value.strip()), _digest(token))


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    token = state.settings.METRICS_TOKEN
    if token is None:
        raise web.HTTPNotFound()
    if not bearer_matches(request.headers.get("Authorization"), token.get_secret_value()):
        return web.json_response(
            {"error": "send Authorization: Bearer <METRICS_TOKEN>"}, status=401,
            headers={"WWW-Authenticate": "Bearer", **_NO_STORE})
    try:
        state.db()  # the engine the scrape reads through, released with the application
    except Exception as exc:
        log.warning("metrics: database unusable (%s)", type(exc).__name__)
    body, content_type = await render_metrics(state.redis, state.database_url)
    return web.Response(body=body, headers={"Content-Type": content_type, **_NO_STORE})
