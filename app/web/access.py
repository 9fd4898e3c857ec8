"""Sign-in state and access control for every route of the web process.

Every route is added through `Routes` with an access level; the middleware looks the level
up for the matched route before the handler runs, and refuses a route that has none, so a
new page cannot forget its check:

- PUBLIC: anyone (the sign-in flow, health, the webhook endpoint, handlers that check a
  credential of their own: /metrics, badges, first-run registration);
- SIGNED_IN: a signed-in user;
- ORG: a signed-in user who may see the installation of the `{org}` in the path (its org
  owners, or members of the config's `authorized_team`), checked with GitHub and cached
  for ACCESS_CACHE_SECONDS; the handler gets it as `org_grant(request)`;
- OPERATOR: the job monitor: logins in ADMIN_LOGINS, or an owner of an installation the
  user may see.

Every POST but the webhook's must carry the session's CSRF token (form field `csrf` or the
`X-CSRF-Token` header). The session is aiohttp-session's encrypted cookie (Fernet, keyed
from SESSION_SECRET): HttpOnly, SameSite=Lax, Secure on https, expiring SESSION_MAX_AGE
after sign-in. It holds the user's id and login, never a GitHub token.
"""

from __future__ import annotations

import base64
import enum
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp_session
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_urldispatcher import AbstractRoute
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import func, select

from app.db.models import Installation
from app.services.access import OWNER, AccessUnavailable, Grant, authorized_team, grant_for
from app.services.config import config_for
from app.web.render import render_html
from app.web.state import STATE, WebState

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE_NAME = "pe_session"
MAX_CANDIDATES = 100
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


class Access(enum.Enum):
    PUBLIC = "public"
    SIGNED_IN = "signed-in"
    ORG = "org"
    OPERATOR = "operator"


@dataclass
class Viewer:
    """The signed-in user, as the session says (identity only; grants are checked live)."""

    user_id: int
    login: str
    # Installations GitHub listed for the user at sign-in: the switcher's candidates.
    candidates: list[int] = field(default_factory=list)


ACCESS_TABLE = web.AppKey("policy_enforcer_route_access", dict)
VIEWER = web.RequestKey("policy_enforcer_viewer", Viewer)
GRANT = web.RequestKey("policy_enforcer_grant", Grant)
INSTALLATION = web.RequestKey("policy_enforcer_installation", Installation)


@dataclass(frozen=True)
class OperatorScope:
    """Whose jobs an operator sees: every installation (ADMIN_LOGINS) or those they own."""

    everything: bool
    installations: frozenset[int]

    def covers(self, installation_id: int | None) -> bool:
        return self.everything or (installation_id is not None
                                   and installation_id in self.installations)


OPERATOR_SCOPE = web.RequestKey("policy_enforcer_operator_scope", OperatorScope)


class Routes:
    """Adds routes with their access level; the middleware enforces it."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.table: dict[AbstractRoute, Access] = {}
        app[ACCESS_TABLE] = self.table

    def get(self, path: str, handler: Handler, access: Access, name: str | None = None) -> None:
        """GET, and HEAD with the same access."""
        resource = self.app.router.add_resource(path, name=name)
        self.table[resource.add_route("HEAD", handler)] = access
        self.table[resource.add_route("GET", handler)] = access

    def post(self, path: str, handler: Handler, access: Access, name: str | None = None) -> None:
        self.table[self.app.router.add_post(path, handler, name=name)] = access


# ----------------------------------------------------------------------------- session
def _fernet(secret: str) -> Fernet:
    """A Fernet key derived from SESSION_SECRET (any length ≥ 32 characters)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"policy-enforcer session cookie").derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


class SessionStorage(EncryptedCookieStorage):
    """aiohttp-session's encrypted cookie, Secure whenever the page was served over https
    (always, when PUBLIC_URL is https)."""

    def __init__(self, secret: str, max_age: int, always_secure: bool) -> None:
        super().__init__(_fernet(secret), cookie_name=COOKIE_NAME, max_age=max_age,
                         httponly=True, samesite="Lax", secure=always_secure)
        self._always_secure = always_secure

    async def save_session(self, request: web.Request, response: web.StreamResponse,
                           session: aiohttp_session.Session) -> None:
        # No await between setting the flag and writing the cookie: no other request's
        # save can interleave.
        self._cookie_params["secure"] = self._always_secure or request.secure
        await super().save_session(request, response, session)


def session_middleware(settings_secret: str, max_age: int, always_secure: bool) -> Middleware:
    return aiohttp_session.session_middleware(
        SessionStorage(settings_secret, max_age, always_secure))


async def viewer_of(request: web.Request) -> Viewer | None:
    if VIEWER in request:
        return request[VIEWER]
    session = await aiohttp_session.get_session(request)
    uid, login, at = session.get("uid"), session.get("login"), session.get("at")
    if not isinstance(uid, int) or not isinstance(login, str) or not isinstance(at, int):
        return None
    # Absolute expiry from sign-in: the cookie is re-issued whenever the session changes
    # (a visit to /login, say), which must not extend it.
    if time.time() - at > request.app[STATE].settings.SESSION_MAX_AGE:
        session.invalidate()
        return None
    raw = session.get("insts")
    candidates = [int(i) for i in raw if isinstance(i, int)] if isinstance(raw, list) else []
    viewer = Viewer(uid, login, candidates)
    request[VIEWER] = viewer
    return viewer


async def current_viewer(request: web.Request) -> Viewer:
    """The signed-in user of a route that is not PUBLIC (the middleware made sure)."""
    viewer = await viewer_of(request)
    if viewer is None:
        raise web.HTTPSeeOther("/login")
    return viewer


async def csrf_token(request: web.Request) -> str:
    """The session's CSRF token, made on first use (a new session is saved with it)."""
    session = await aiohttp_session.get_session(request)
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


async def sign_in(request: web.Request, user_id: int, login: str, candidates: list[int]) -> None:
    """A fresh session for the user (a new session id: no fixation from before sign-in)."""
    session = await aiohttp_session.new_session(request)
    session["uid"], session["login"] = user_id, login
    session["at"] = int(time.time())
    # The switcher's candidates ride in the cookie, which browsers cap at 4 KB.
    session["insts"] = candidates[:MAX_CANDIDATES]
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


async def sign_out(request: web.Request) -> None:
    session = await aiohttp_session.get_session(request)
    session.invalidate()


async def _csrf_ok(request: web.Request) -> bool:
    session = await aiohttp_session.get_session(request)
    expected = session.get(CSRF_FIELD)
    if not isinstance(expected, str) or not expected:
        return False
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                 "multipart/form-data"):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent is not None and secrets.compare_digest(sent.encode(), expected.encode())


# ----------------------------------------------------------------------------- grants
async def find_installation(state: WebState, org: str) -> Installation | None:
    async with state.db()() as db:
        return await db.scalar(
            select(Installation)
            .where(func.lower(Installation.account_login) == org.lower(),
                   Installation.active.is_(True))
            .order_by(Installation.id.desc()).limit(1))


async def grant_on(state: WebState, inst: Installation, viewer: Viewer) -> Grant:
    return await grant_for(state.github(), state.arq(), inst, config_for(inst), viewer.login,
                           state.settings.ACCESS_CACHE_SECONDS)


async def visible_installations(state: WebState, viewer: Viewer) -> list[tuple[Installation,
                                                                                Grant]]:
    """Of the installations GitHub listed for the viewer at sign-in, those they may see
    (each checked; GitHub trouble counts as no). Never every installation: an outsider's
    page views must not spend the budgets of orgs they have nothing to do with."""
    if not viewer.candidates:
        return []
    async with state.db()() as db:
        installations = list(await db.scalars(
            select(Installation).where(Installation.active.is_(True),
                                       Installation.id.in_(viewer.candidates))
            .order_by(Installation.account_login)))
    out: list[tuple[Installation, Grant]] = []
    for inst in installations:
        try:
            grant = await grant_on(state, inst, viewer)
        except AccessUnavailable:
            continue
        if grant.allowed:
            out.append((inst, grant))
    return out


def org_grant(request: web.Request) -> tuple[Installation, Grant]:
    """The installation and grant of an ORG route (set by the middleware)."""
    return request[INSTALLATION], request[GRANT]


# ----------------------------------------------------------------------------- middleware
def _sign_in_redirect(request: web.Request) -> web.StreamResponse:
    accept = request.headers.get("Accept", "")
    if request.method in ("GET", "HEAD") and "application/json" not in accept \
            and "text/event-stream" not in accept and request.query.get("format") is None:
        target = request.rel_url.path_qs
        raise web.HTTPSeeOther(f"/login?{_next_param(target)}")
    return web.json_response({"error": "sign in first"}, status=401)


def _next_param(target: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"next": target})


async def page(request: web.Request, template: str, *, status: int = 200,
               **context: Any) -> web.Response:
    """A dashboard page with what every page shows: who is signed in, the organizations
    they may switch between, the current one, and the CSRF token for its forms."""
    state = request.app[STATE]
    viewer = await viewer_of(request)
    orgs: list[str] = []
    if viewer is not None:
        orgs = [inst.account_login for inst, _ in await visible_installations(state, viewer)]
    grant = request.get(GRANT)
    context.setdefault("org", grant.org if grant is not None else None)
    context.setdefault("page_id", "")
    return render_html(
        template, status=status, app_name=state.settings.APP_NAME, viewer=viewer,
        csrf=await csrf_token(request) if viewer is not None else "", nav_orgs=orgs,
        is_owner=grant.owner if grant is not None else False, **context)


async def forbidden(request: web.Request, message: str, *, team: str | None = None,
                    org: str | None = None, status: int = 403) -> web.Response:
    return await page(request, "forbidden.html", status=status, message=message, team=team,
                      forbidden_org=org, org=None)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None:  # 404 / 405: nothing to protect
        return await handler(request)
    access = request.app[ACCESS_TABLE].get(match.route)
    if access is None:
        log.error("route %s has no access level; refused", request.path)
        return web.Response(status=403, text="forbidden")
    if access is Access.PUBLIC:
        return await handler(request)
    if request.method == "POST" and not await _csrf_ok(request):
        return await forbidden(request, "This form has expired or did not come from this site. "
                                  "Go back, reload the page and try again.")
    viewer = await viewer_of(request)
    if viewer is None:
        return _sign_in_redirect(request)
    state = request.app[STATE]
    if access is Access.ORG:
        inst = await find_installation(state, match["org"])
        if inst is None:
            return await forbidden(request, f"No installation of this App for “{match['org']}”, "
                                      "or you may not see it.", status=404)
        try:
            grant = await grant_on(state, inst, viewer)
        except AccessUnavailable as exc:
            return await forbidden(request, str(exc), status=503)
        if not grant.allowed:
            log.info("access refused: %s on installation %s", viewer.login, inst.id)
            return await forbidden(request, "", team=authorized_team(inst, config_for(inst)),
                             org=inst.account_login)
        request[INSTALLATION], request[GRANT] = inst, grant
    elif access is Access.OPERATOR:
        scope = await operator_scope(state, viewer)
        if scope is None:
            return await forbidden(request, "The job monitor is for operators: logins listed in "
                                      "ADMIN_LOGINS, and owners of an organization that uses "
                                      "this App.")
        request[OPERATOR_SCOPE] = scope
    return await handler(request)


async def operator_scope(state: WebState, viewer: Viewer) -> OperatorScope | None:
    if viewer.login.lower() in state.settings.admin_logins():
        return OperatorScope(True, frozenset())
    owned = frozenset(inst.id for inst, grant in await visible_installations(state, viewer)
                      if grant.role == OWNER)
    return OperatorScope(False, owned) if owned else None
