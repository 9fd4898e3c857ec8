"""The whole app on real parts: web server on a socket, arq worker, Redis, database,
pointed at the fake GitHub server."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from ruamel.yaml import YAML
from sqlalchemy import select

from app.db.models import ActionLog, Installation, Repository, Scan, Violation
from app.db.session import dispose_all, sessionmaker
from app.github.client import GitHub
from app.services.context import Services
from app.settings import Settings
from app.web.app import WebAccessLogger, create_app
from app.web.webhooks import WEBHOOK_PATH, sign
from tasks.worker import create_worker
from tests.dbutil import fresh_database
from tests.fakegithub.server import FakeGitHub

WEBHOOK_SECRET = "e2e-webhook-secret"
SESSION_SECRET = "e2e-session-secret-0123456789-abcdefghij"


class Stack:
    def __init__(self, settings: Settings, redis: ArqRedis, base_url: str,
                 session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.redis = redis
        self.base_url = base_url
        self.http = session
        self.db = sessionmaker(settings.DATABASE_URL)
        self.jobs_run = 0

    async def deliver(self, event: str, payload: dict[str, Any],
                      delivery_id: str | None = None) -> tuple[int, dict[str, Any]]:
        body = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/e2e",
        }
        async with self.http.post(f"{self.base_url}/api/github/webhooks", data=body,
                                  headers=headers) as resp:
            return resp.status, await resp.json()

    async def drain(self, *, startup_sync: bool = False, **overrides: Any) -> int:
        """Run a worker until the queue (deferred jobs included) is empty. Without
        `startup_sync` the worker queues no installation sync as it starts (a test runs
        many workers; the sync's own tests ask for it), and it runs no cron job unless
        `cron_jobs` is given (a drain that crossed a minute mark would run one)."""
        overrides.setdefault("cron_jobs", [])
        worker = create_worker(self.settings, str(self.settings.REDIS_URL), burst=True,
                               poll_delay=0.02, handle_signals=False,
                               startup_sync=startup_sync, **overrides)
        try:
            await worker.main()
        finally:
            await worker.close()
        self.jobs_run += worker.jobs_complete + worker.jobs_failed + worker.jobs_retried
        return int(worker.jobs_complete)

    async def violations(self, state: str | None = None) -> list[Violation]:
        async with self.db() as db:
            query = select(Violation).order_by(Violation.id)
            if state:
                query = query.where(Violation.state == state)
            return list(await db.scalars(query))

    async def scans(self) -> list[Scan]:
        async with self.db() as db:
            return list(await db.scalars(select(Scan).order_by(Scan.id)))

    async def action_log(self) -> list[ActionLog]:
        async with self.db() as db:
            return list(await db.scalars(select(ActionLog).order_by(ActionLog.id)))

    async def installation(self, inst_id: int) -> Installation | None:
        async with self.db() as db:
            return await db.get(Installation, inst_id)

    async def repositories(self) -> list[Repository]:
        async with self.db() as db:
            return list(await db.scalars(select(Repository).order_by(Repository.full_name)))


@asynccontextmanager
async def running_stack(*, github_url: str, app_id: int, private_key: str, redis_url: str,
                        database_url: str, **extra: Any) -> AsyncIterator[Stack]:
    await fresh_database(database_url)
    settings = Settings(
        APP_ID=app_id, PRIVATE_KEY=private_key, WEBHOOK_SECRET=WEBHOOK_SECRET,
        GITHUB_API_URL=github_url, DATABASE_URL=database_url, REDIS_URL=redis_url,
        _env_file=None, **{"SCAN_DEBOUNCE_SECONDS": 0.3, "SESSION_SECRET": SESSION_SECRET,
                           **extra},
    )
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    runner = web.AppRunner(create_app(settings, redis=pool, database_url=database_url),
                           access_log_class=WebAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            yield Stack(settings, pool, f"http://127.0.0.1:{port}", session)
    finally:
        await runner.cleanup()
        await pool.aclose()
        await dispose_all()


@asynccontextmanager
async def dashboard_stack(fake_github: FakeGitHub, redis_url: str, database_url: str,
                          **extra: Any) -> AsyncIterator[Stack]:
    """`running_stack` with sign-in through the fake GitHub (its OAuth client), and the
    fake's html_url values pointing at it."""
    st = fake_github.state
    st.web_url = fake_github.url
    async with running_stack(github_url=fake_github.url, app_id=fake_github.app_id,
                             private_key=fake_github.private_key_pem, redis_url=redis_url,
                             database_url=database_url, GITHUB_URL=fake_github.url,
                             GITHUB_CLIENT_ID=st.client_id,
                             GITHUB_CLIENT_SECRET=st.client_secret, **extra) as s:
        yield s


# The events and permissions the App asks for: an installation made with them gets exactly
# the webhooks GitHub would send it.
MANIFEST: dict[str, Any] = YAML(typ="safe").load(Path(__file__).parents[1] / "app.yml")


@asynccontextmanager
async def hooked_stack(fake_github: FakeGitHub, redis_url: str, database_url: str,
                       **extra: Any) -> AsyncIterator[Stack]:
    """`running_stack` that the fake GitHub delivers its webhooks to (`send`)."""
    async with running_stack(github_url=fake_github.url, app_id=fake_github.app_id,
                             private_key=fake_github.private_key_pem, redis_url=redis_url,
                             database_url=database_url, **extra) as s:
        fake_github.state.hook.url = s.base_url + WEBHOOK_PATH
        fake_github.state.webhook_secret = WEBHOOK_SECRET
        yield s


async def send(stack: Stack, fake: FakeGitHub, event: str, payload: dict[str, Any]) -> None:
    """The fake GitHub delivers `event` (only if the App subscribed to it), then a worker
    runs everything it queued."""
    sent = await fake.send_event(event, payload)
    assert sent is not None, f"{event} is not among the events the App subscribed to"
    assert sent.status_code == 202, sent.response_body
    await stack.drain()


def services_for(stack: Stack) -> Services:
    """Services for calling the app's service functions directly from a test."""
    s = stack.settings
    return Services(settings=s, db=stack.db, redis=stack.redis,
                    github=GitHub(api_url=s.GITHUB_API_URL, redis=stack.redis,
                                  app_id=s.APP_ID, private_key=s.private_key_pem()))
