"""The aiohttp application of the web process.

The request path never calls GitHub: a webhook is verified, deduplicated and handed to an
arq job, and the answer goes back in milliseconds.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_log import AccessLogger
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app.settings import Settings, SettingsError
from app.web import (
    badge,
    fix_pages,
    health,
    job_pages,
    org_pages,
    registration,
    scan_pages,
    signin,
)
from app.web.access import Access, Handler, Routes, access_middleware, session_middleware
from app.web.render import render_html
from app.web.state import STATE, WebState
from app.web.webhooks import MAX_BODY_BYTES, WEBHOOK_PATH, handle_webhook

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    settings: Settings,
    *,
    redis: ArqRedis | None = None,
    database_url: str | None = None,
    env_path: Path | None = None,
) -> web.Application:
    """Build the web application.

    `redis`: an arq pool owned by the caller (left open on cleanup). Without it, a pool is
    created from settings.REDIS_URL on startup and closed on cleanup.
    `database_url`: read by the pages; defaults to settings.DATABASE_URL.
    `env_path`: where first-run registration writes the App's credentials (`.env`).
    Raises SettingsError when SESSION_SECRET or REDIS_URL is missing.
    """
    if redis is None and not settings.REDIS_URL:
        raise SettingsError("REDIS_URL: not set (the web process queues webhook jobs in Redis)")
    secret = settings.require_session_secret()
    secure = (settings.PUBLIC_URL or "").startswith("https://")
    # client_max_size admits exactly GitHub's 25 MB cap; a bigger body is answered 413.
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[dashboard_middleware(
            session_middleware(secret, settings.SESSION_MAX_AGE, secure))])
    app[STATE] = WebState(settings=settings, database_url=database_url or settings.DATABASE_URL,
                          redis=redis, env_path=env_path or Path(".env"))
    add_routes(Routes(app))
    app.cleanup_ctx.append(_redis_pool)
    app.on_cleanup.append(_release)
    return app


def add_routes(r: Routes) -> None:
    """Every route, with who may use it (app/web/access.py enforces it)."""
    public, signed_in, org, operator = (Access.PUBLIC, Access.SIGNED_IN, Access.ORG,
                                        Access.OPERATOR)
    r.post(WEBHOOK_PATH, handle_webhook, public)
    r.get("/", signin.home, public)
    r.get("/login", signin.login, public)
    r.get("/login/callback", signin.login_callback, public)
    r.get("/logout", signin.logout, public)
    r.post("/logout", signin.logout, signed_in)
    r.get("/setup/callback", registration.setup_callback, public)  # checks its own rules
    r.get("/healthz", health.healthz, public)
    r.get("/readyz", health.readyz, public)
    r.get("/metrics", health.metrics, public)  # Bearer METRICS_TOKEN, checked by the handler
    r.get("/badge/{org}/{name}.svg", badge.badge, public)  # public_badges + public repo only
    r.get("/static/{file}", _static, public)
    r.get("/orgs/{org}", org_pages.overview, org)
    r.get("/orgs/{org}/repos", org_pages.repositories, org)
    r.get("/orgs/{org}/repos/{name}", org_pages.repository, org)
    r.post("/orgs/{org}/repos/{name}/scans", org_pages.rescan_repository, org)
    r.post("/orgs/{org}/repos/{name}/fix", fix_pages.fix_now, org)
    r.get("/orgs/{org}/scans", scan_pages.scans, org)
    r.post("/orgs/{org}/scans", scan_pages.scan_now, org)
    r.get("/orgs/{org}/scans/{scan_id}", scan_pages.scan_detail, org)
    r.get("/orgs/{org}/scans/{scan_id}/events", scan_pages.scan_events, org)
    r.get("/orgs/{org}/actions", org_pages.action_log, org)
    r.get("/orgs/{org}/config", org_pages.config, org)
    r.post("/orgs/{org}/config/check", org_pages.check_config_again, org)
    r.get("/jobs", job_pages.jobs, operator)
    r.post("/jobs/failed/{failure_id}/retry", job_pages.retry_job, operator)


def _describe_storage_error(exc: BaseException) -> str:
    text = str(exc).lower()
    if "no such table" in text or "does not exist" in text or "undefinedtable" in text:
        return ("The database has not been migrated yet. Run `python -m app migrate` "
                "(the release step does this) and reload.")
    if isinstance(exc, TimeoutError):
        return "The database did not answer in time. Check DATABASE_URL and the database server."
    return ("The database or Redis is not reachable. Check DATABASE_URL, REDIS_URL and that "
            f"the servers are running ({type(exc).__name__}).")


def dashboard_middleware(sessions: Middleware) -> Middleware:
    """Storage errors → sessions → access, for every route but the webhook endpoint: a
    delivery is authenticated by its signature, and the hot path pays one comparison."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == WEBHOOK_PATH:
            return await handler(request)

        async def checked(req: web.Request) -> web.StreamResponse:
            return await access_middleware(req, handler)

        async def in_session(req: web.Request) -> web.StreamResponse:
            return await sessions(req, checked)

        return await storage_errors(request, in_session)

    return middleware


@web.middleware
async def storage_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A page whose database or Redis fails says so (503), without the driver's message,
    which can quote connection details."""
    try:
        return await handler(request)
    except (SQLAlchemyError, RedisError, OSError, TimeoutError) as exc:
        log.warning("%s %s: storage unavailable (%s)", request.method, request.path,
                    type(exc).__name__)
        return render_html("unavailable.html", status=503,
                           app_name=request.app[STATE].settings.APP_NAME, viewer=None,
                           nav_orgs=[], org=None, csrf="", page_id="",
                           message=_describe_storage_error(exc))


STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers={
        "Content-Type": STATIC_FILES[name], "Cache-Control": "public, max-age=300"})


# Their query strings carry one-time credentials (OAuth and manifest codes): not logged.
QUERY_NOT_LOGGED = frozenset({"/login/callback", "/setup/callback"})


class WebAccessLogger(AccessLogger):
    """aiohttp's access log, less the webhook path: each delivery already gets one line
    from the handler (event, action, installation, outcome, time), and a second, poorer
    line per delivery would cost the hot path as much again. The sign-in and registration
    callbacks are logged without their query string (codes, state)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path == WEBHOOK_PATH:
            return
        if request.path in QUERY_NOT_LOGGED and request.query_string:
            request = request.clone(rel_url=request.rel_url.with_query(None))
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
    assert url is not None  # noqa: S101 - narrows the type; checked by create_app
    pool = await create_pool(RedisSettings.from_dsn(url))
    state.redis = pool
    try:
        yield
    finally:
        state.redis = None
        await pool.aclose()


async def _release(app: web.Application) -> None:
    await app[STATE].close()
