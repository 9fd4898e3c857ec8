"""GET / : how to register the App (no credentials yet) or installations and recent scans."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app.db.models import Installation, Repository, Scan
from app.db.session import get_engine, sessionmaker
from app.web.state import STATE, WebState
from app.web.webhooks import WEBHOOK_PATH

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
DB_TIMEOUT_SECONDS = 5.0
RECENT_SCANS = 20
MAX_INSTALLATIONS = 500


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = _when


@dataclass
class InstallationRow:
    id: int
    account_login: str
    account_type: str
    active: bool
    suspended: bool
    config_status: str
    config_error: str | None
    config_notes: str | None
    last_scan_at: datetime | None
    last_scan_status: str | None


@dataclass
class ScanRow:
    id: int
    account_login: str
    repository: str | None
    kind: str
    trigger: str
    status: str
    total: int
    done: int
    errored: int
    violations_opened: int
    violations_resolved: int
    detail: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass
class Overview:
    installations: list[InstallationRow] = field(default_factory=list)
    scans: list[ScanRow] = field(default_factory=list)
    # A message for the page when the database could not be read; never the raw error.
    error: str | None = None


def _describe_db_error(exc: BaseException) -> str:
    text = str(exc).lower()
    if "no such table" in text or "does not exist" in text or "undefinedtable" in text:
        return ("The database has not been migrated yet. Run `python -m app migrate` "
                "(the release step does this) and reload.")
    if isinstance(exc, TimeoutError):
        return "The database did not answer in time. Check DATABASE_URL and the database server."
    return ("The database is not reachable. Check DATABASE_URL and that the database "
            f"server is running ({type(exc).__name__}).")


async def load_overview(state: WebState) -> Overview:
    try:
        # get_engine may fail (it creates a SQLite file's directory); remember the engine so
        # cleanup can release its connections.
        state.engine = get_engine(state.database_url)
        async with asyncio.timeout(DB_TIMEOUT_SECONDS):
            return await _query(state.database_url)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        # The class name only: a driver message can quote connection details.
        log.warning("home page: cannot read the database (%s)", type(exc).__name__)
        return Overview(error=_describe_db_error(exc))


async def _query(database_url: str) -> Overview:
    latest = (
        select(Scan.installation_id, func.max(Scan.id).label("scan_id"))
        .group_by(Scan.installation_id)
        .subquery()
    )
    installations_stmt = (
        select(Installation, Scan.started_at, Scan.status)
        .outerjoin(latest, latest.c.installation_id == Installation.id)
        .outerjoin(Scan, Scan.id == latest.c.scan_id)
        .order_by(Installation.active.desc(), Installation.account_login)
        .limit(MAX_INSTALLATIONS)
    )
    scans_stmt = (
        select(Scan, Installation.account_login, Repository.full_name)
        .join(Installation, Installation.id == Scan.installation_id)
        .outerjoin(Repository, Repository.id == Scan.repository_id)
        .order_by(Scan.id.desc())
        .limit(RECENT_SCANS)
    )
    async with sessionmaker(database_url)() as session:
        overview = Overview()
        for inst, scan_at, scan_status in (await session.execute(installations_stmt)).all():
            overview.installations.append(InstallationRow(
                id=inst.id, account_login=inst.account_login, account_type=inst.account_type,
                active=inst.active, suspended=inst.suspended, config_status=inst.config_status,
                config_error=inst.config_error, config_notes=inst.config_notes,
                last_scan_at=scan_at, last_scan_status=scan_status,
            ))
        for scan, login, repo in (await session.execute(scans_stmt)).all():
            overview.scans.append(ScanRow(
                id=scan.id, account_login=login, repository=repo, kind=scan.kind,
                trigger=scan.trigger, status=scan.status, total=scan.total, done=scan.done,
                errored=scan.errored, violations_opened=scan.violations_opened,
                violations_resolved=scan.violations_resolved, detail=scan.detail,
                started_at=scan.started_at, finished_at=scan.finished_at,
            ))
        return overview


def _base_url(request: web.Request) -> str:
    """This server's public origin, for display only (never used to build redirects)."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    scheme = proto if proto in {"http", "https"} else request.scheme
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    return f"{scheme}://{host or 'localhost'}"


async def home(request: web.Request) -> web.Response:
    state = request.app[STATE]
    settings = state.settings
    overview: Overview | None = None
    if settings.has_app_credentials:
        overview = await load_overview(state)
    html = templates.get_template("home.html").render(
        app_name=settings.APP_NAME,
        has_credentials=settings.has_app_credentials,
        has_app_id=settings.APP_ID is not None,
        has_private_key=settings.PRIVATE_KEY is not None,
        has_webhook_secret=bool(settings.webhook_secret()),
        webhook_url=_base_url(request) + WEBHOOK_PATH,
        new_app_url=f"{settings.GITHUB_URL}/settings/apps/new",
        overview=overview,
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8")
