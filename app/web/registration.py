"""First run: register the GitHub App from app.yml with GitHub's manifest flow.

Offered only while the App is unregistered (no APP_ID), and only to a browser on this
machine (a loopback peer, not through a proxy) unless SETUP_ALLOWED=1. GitHub sends the
browser back to /setup/callback with a code; exchanging it gives the App's id, key, webhook
secret and OAuth credentials, which are written to `.env` (mode 0600) and never shown.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp_session
from aiohttp import web
from ruamel.yaml import YAML

from app.envfile import set_env_values
from app.web.access import page
from app.web.state import STATE
from app.web.webhooks import WEBHOOK_PATH

log = logging.getLogger(__name__)

APP_YML = Path(__file__).resolve().parents[2] / "app.yml"
SETUP_STATE = "setup_state"
_ORG_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?")
ENV_KEYS = ("APP_ID", "PRIVATE_KEY", "WEBHOOK_SECRET", "GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET")


# Headers a proxy may add; any of them means the browser is not on this machine.
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host", "Via")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def setup_allowed(request: web.Request) -> bool:
    """Unregistered, and the browser is on this machine: a loopback peer that asked for a
    loopback host, through no proxy (a same-host proxy that adds no header still sends the
    public Host). Or SETUP_ALLOWED=1."""
    state = request.app[STATE]
    if state.settings.APP_ID is not None or state.registered:
        return False
    if state.settings.SETUP_ALLOWED:
        return True
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    host = (request.host or "").lower()
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if hostname not in LOOPBACK_HOSTS and not hostname.startswith("127."):
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _origin(request: web.Request) -> str:
    return request.app[STATE].settings.PUBLIC_URL or f"{request.scheme}://{request.host}"


def build_manifest(origin: str, app_name: str) -> dict[str, Any]:
    """GitHub's app manifest: app.yml's events and permissions, with this deployment's
    URLs."""
    data = YAML(typ="safe").load(APP_YML.read_text(encoding="utf-8")) or {}
    return {
        "name": app_name,
        "url": data.get("url") or origin,
        "description": data.get("description", ""),
        "public": bool(data.get("public", False)),
        "hook_attributes": {"url": f"{origin}{WEBHOOK_PATH}", "active": True},
        "redirect_url": f"{origin}/setup/callback",
        "callback_urls": [f"{origin}/login/callback"],
        "request_oauth_on_install": False,
        "default_events": list(data.get("default_events") or []),
        "default_permissions": dict(data.get("default_permissions") or {}),
    }


async def registration_page(request: web.Request) -> web.StreamResponse:
    """The home page while the App is unregistered."""
    state = request.app[STATE]
    settings = state.settings
    allowed = setup_allowed(request)
    context: dict[str, Any] = {"allowed": allowed, "webhook_url": _origin(request) + WEBHOOK_PATH,
                               "new_app_url": f"{settings.GITHUB_URL}/settings/apps/new",
                               "has_app_id": settings.APP_ID is not None,
                               "has_private_key": settings.PRIVATE_KEY is not None,
                               "has_webhook_secret": bool(settings.webhook_secret())}
    if allowed:
        session = await aiohttp_session.get_session(request)
        token = session.get(SETUP_STATE)
        if not isinstance(token, str):
            token = session[SETUP_STATE] = secrets.token_urlsafe(24)
        org = request.query.get("org", "").strip()
        context.update(
            manifest=json.dumps(build_manifest(_origin(request), settings.APP_NAME)),
            user_action=f"{settings.GITHUB_URL}/settings/apps/new?state={token}",
            org=org if _ORG_RE.fullmatch(org) else "",
            org_action=f"{settings.GITHUB_URL}/organizations/{org}/settings/apps/new"
                       f"?state={token}" if _ORG_RE.fullmatch(org) else "")
    return await page(request, "register.html", **context)


async def setup_callback(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    settings = state.settings
    if not setup_allowed(request):
        raise web.HTTPNotFound()
    session = await aiohttp_session.get_session(request)
    expected = session.pop(SETUP_STATE, None)
    sent = request.query.get("state", "")
    code = request.query.get("code", "")
    if not isinstance(expected, str) or not sent or \
            not secrets.compare_digest(sent.encode(), expected.encode()) or not code:
        return await page(request, "registered.html", status=400,
                          error="This registration link does not belong to this browser's "
                                "session or was used already. Start again from the home page.")
    url = f"{settings.GITHUB_API_URL}/app-manifests/{code}/conversions"
    try:
        async with state.http().post(url, headers={"Accept": "application/vnd.github+json",
                                                   "User-Agent": "policy-enforcer"},
                                     timeout=aiohttp.ClientTimeout(total=20)) as resp:
            data = await resp.json(content_type=None) if resp.status == 201 else None
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("app registration: the code exchange failed (%s)", type(exc).__name__)
        data, status = None, 0
    if not isinstance(data, dict) or "id" not in data or "pem" not in data:
        return await page(request, "registered.html", status=502,
                          error=f"GitHub did not complete the registration (answer "
                                f"{status or 'none'}); the code may have expired. Start again.")
    values = {"APP_ID": str(data["id"]), "PRIVATE_KEY": str(data["pem"]),
              "WEBHOOK_SECRET": str(data.get("webhook_secret") or ""),
              "GITHUB_CLIENT_ID": str(data.get("client_id") or ""),
              "GITHUB_CLIENT_SECRET": str(data.get("client_secret") or "")}
    set_env_values(state.env_path, values)
    state.registered = True  # one registration per start: no second App can overwrite it
    log.info("app registration: App %s (%s) registered; credentials written to %s",
             data["id"], data.get("slug"), state.env_path)
    return await page(request, "registered.html", slug=str(data.get("slug") or ""),
                      html_url=str(data.get("html_url") or ""), env_path=str(state.env_path),
                      error=None)
