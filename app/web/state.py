"""Per-application state shared by the handlers (typed through an aiohttp AppKey)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import Settings
from app.web.enqueue import DeliveryQueue


@dataclass
class WebState:
    settings: Settings
    database_url: str
    # Set by create_app (caller-owned) or on startup (then closed on cleanup).
    redis: ArqRedis | None = None
    # The "WEBHOOK_SECRET is not configured" explanation is logged once per application.
    missing_secret_logged: bool = False
    # The engine the home page opened, released on cleanup.
    engine: AsyncEngine | None = None
    # The dedupe + enqueue script, bound to `redis` (rebuilt if the pool changes).
    _deliveries: DeliveryQueue | None = None

    def arq(self) -> ArqRedis:
        if self.redis is None:
            raise RuntimeError("the Redis pool is not open: the application has not started")
        return self.redis

    def delivery_queue(self) -> DeliveryQueue:
        redis = self.arq()
        queue = self._deliveries
        if queue is None or queue.redis is not redis:
            queue = self._deliveries = DeliveryQueue(redis)
        return queue


STATE = web.AppKey("policy_enforcer_web_state", WebState)
