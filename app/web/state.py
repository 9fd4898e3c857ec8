"""Per-application state shared by the handlers (typed through an aiohttp AppKey)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.session import get_engine, sessionmaker
from app.github.client import GitHub
from app.services.context import Services
from app.settings import Settings
from app.web.enqueue import DeliveryQueue


@dataclass
class WebState:
    settings: Settings
    database_url: str
    # Set by create_app (caller-owned) or on startup (then closed on cleanup).
    redis: ArqRedis | None = None
    # Where first-run registration writes the App's credentials.
    env_path: Path = field(default_factory=lambda: Path(".env"))
    # First-run registration wrote credentials to env_path: offered no more until restart.
    registered: bool = False
    # The "WEBHOOK_SECRET is not configured" explanation is logged once per application.
    missing_secret_logged: bool = False
    # The engine the pages opened, released on cleanup.
    engine: AsyncEngine | None = None
    # The dedupe + enqueue script, bound to `redis` (rebuilt if the pool changes).
    _deliveries: DeliveryQueue | None = None
    # GitHub, for sign-in and the access check only (the pages read the database).
    _github: GitHub | None = None
    # For sign-in's own calls (the OAuth code exchange, who signed in).
    _http: aiohttp.ClientSession | None = None

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

    def db(self) -> async_sessionmaker[AsyncSession]:
        """Sessions on the database; may raise (SQLAlchemyError, OSError) when unusable."""
        self.engine = get_engine(self.database_url)
        return sessionmaker(self.database_url)

    def github(self) -> GitHub:
        if self._github is None or self._github.redis is not self.arq():
            s = self.settings
            self._github = GitHub(api_url=s.GITHUB_API_URL, redis=self.arq(), app_id=s.APP_ID,
                                  private_key=s.private_key_pem() if s.PRIVATE_KEY else None,
                                  limits=s.rate_limits())
        return self._github

    def services(self) -> Services:
        """What the services the pages call (Scan Now, Retry) need."""
        return Services(settings=self.settings, db=self.db(), github=self.github(),
                        redis=self.arq())

    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self) -> None:
        if self._github is not None:
            await self._github.close()
            self._github = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None


STATE = web.AppKey("policy_enforcer_web_state", WebState)
