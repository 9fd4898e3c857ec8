"""Signing in with GitHub (the App's OAuth web flow), signing out, and the home page."""

from __future__ import annotations

import logging
import secrets
from urllib.parse import urlsplit

import aiohttp_session
from aiohttp import web

from app.github.oauth import (
    OAuthError,
    authorize_url,
    exchange_code,
    fetch_installation_ids,
    fetch_user,
)
from app.web.access import page, sign_in, sign_out, viewer_of, visible_installations
from app.web.state import STATE

log = logging.getLogger(__name__)

STATE_KEY = "oauth_state"
NEXT_KEY = "next"


def public_origin(request: web.Request) -> str:
    """PUBLIC_URL, or this request's own origin when it is unset (development)."""
    configured = request.app[STATE].settings.PUBLIC_URL
    return configured or f"{request.scheme}://{request.host}"


def _local_path(target: str | None) -> str:
    """`target` when it is a path on this site, else "/" (no open redirects)."""
    if not target or not target.startswith("/") or "\\" in target \
            or any(c.isspace() or not c.isprintable() for c in target):
        return "/"  # browsers and yarl drop tabs and newlines: "/\t/evil" would be "//evil"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
        return "/"
    return target


async def home(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    settings = state.settings
    if not settings.has_app_credentials:
        from app.web.registration import registration_page

        return await registration_page(request)
    viewer = await viewer_of(request)
    if viewer is None:
        return await page(request, "signin.html", oauth_ready=settings.has_oauth)
    chosen = request.query.get("org", "").strip()
    if chosen and "/" not in chosen:  # the switcher without JavaScript
        raise web.HTTPSeeOther(f"/orgs/{chosen}")
    visible = await visible_installations(state, viewer)
    if len(visible) == 1:
        raise web.HTTPSeeOther(f"/orgs/{visible[0][0].account_login}")
    return await page(request, "choose_org.html",
                      installations=[inst for inst, _ in visible])


async def login(request: web.Request) -> web.StreamResponse:
    settings = request.app[STATE].settings
    if not settings.has_oauth:
        return await page(request, "signin.html", status=503, oauth_ready=False)
    session = await aiohttp_session.get_session(request)
    state = secrets.token_urlsafe(32)
    session[STATE_KEY] = state
    session[NEXT_KEY] = _local_path(request.query.get("next"))
    assert settings.GITHUB_CLIENT_ID is not None  # noqa: S101 - narrows; has_oauth held
    raise web.HTTPSeeOther(authorize_url(settings.GITHUB_URL, settings.GITHUB_CLIENT_ID,
                                         f"{public_origin(request)}/login/callback", state))


async def login_callback(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    settings = state.settings
    session = await aiohttp_session.get_session(request)
    expected = session.pop(STATE_KEY, None)
    target = _local_path(session.pop(NEXT_KEY, None))
    sent = request.query.get("state", "")
    if not isinstance(expected, str) or not sent or \
            not secrets.compare_digest(sent.encode(), expected.encode()):
        log.warning("sign-in refused: the state parameter does not match this browser's")
        return await page(request, "signin.html", status=400, oauth_ready=settings.has_oauth,
                          error="This sign-in link is not from this browser's session or has "
                                "been used already. Sign in again.")
    if "error" in request.query:
        reason = request.query.get("error_description") or request.query["error"]
        return await page(request, "signin.html", status=400, oauth_ready=settings.has_oauth,
                          error=f"GitHub did not sign you in: {reason[:200]}")
    code = request.query.get("code", "")
    if not code or not settings.has_oauth:
        return await page(request, "signin.html", status=400, oauth_ready=settings.has_oauth,
                          error="GitHub sent no sign-in code. Sign in again.")
    # has_oauth held above; this narrows the types.
    assert settings.GITHUB_CLIENT_ID is not None and settings.GITHUB_CLIENT_SECRET is not None  # noqa: S101
    try:
        token = await exchange_code(
            state.http(), settings.GITHUB_URL, settings.GITHUB_CLIENT_ID,
            settings.GITHUB_CLIENT_SECRET.get_secret_value(), code,
            f"{public_origin(request)}/login/callback")
        user = await fetch_user(state.http(), settings.GITHUB_API_URL, token)
        candidates = await fetch_installation_ids(state.http(), settings.GITHUB_API_URL, token)
    except OAuthError as exc:
        log.warning("sign-in failed: %s", exc)
        return await page(request, "signin.html", status=502, oauth_ready=True,
                          error=f"Sign-in failed: {exc}")
    del token  # identity established; the token is not kept anywhere
    await sign_in(request, user.id, user.login, candidates)
    log.info("signed in: %s (id %s)", user.login, user.id)
    raise web.HTTPSeeOther(target)


async def logout(request: web.Request) -> web.StreamResponse:
    """POST signs out; GET (a link, another site's navigation) only asks to confirm."""
    if request.method == "POST":
        await sign_out(request)
        raise web.HTTPSeeOther("/")
    if await viewer_of(request) is None:
        raise web.HTTPSeeOther("/")
    return await page(request, "signout.html")
