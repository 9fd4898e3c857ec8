"""A minimal web application with the operations endpoints (app/web/health.py) and the
webhook route, served over a real socket; for the metrics, health and log tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from arq.connections import ArqRedis

from app.embedded_redis import free_port
from app.settings import Settings
from app.web import health
from app.web.state import STATE, WebState
from app.web.webhooks import WEBHOOK_PATH, handle_webhook

SECRET = "ops-webhook-secret"
METRICS_TOKEN = "metrics-token-0123456789abcdef"


def ops_settings(redis_url: str, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url,
                              "DATABASE_URL": database_url, "METRICS_TOKEN": METRICS_TOKEN,
                              "LOG_FORMAT": "text"}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def ops_app(settings: Settings, redis: ArqRedis | None, database_url: str) -> web.Application:
    app = web.Application()
    app[STATE] = WebState(settings=settings, database_url=database_url, redis=redis)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    app.router.add_post(WEBHOOK_PATH, handle_webhook)

    async def close(app: web.Application) -> None:
        await app[STATE].close()

    app.on_cleanup.append(close)
    return app


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[ClientSession]:
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        async with ClientSession(base_url=server.make_url("/")) as session:
            yield session
    finally:
        await server.close()


def signed_delivery(event: str = "push", installation_id: int = 42,
                    delivery_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": "refs/heads/main", "repository": {"id": 7},
                       "installation": {"id": installation_id}}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
                  "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
