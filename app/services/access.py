"""Who may see an installation's data: its org's owners, and members of the config's
`access_control.authorized_team` in that org. Asked of GitHub with the installation's own
token (it needs the App's "Organization members: read" permission), never taken from the
browser, and remembered in Redis for a short while.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import gidgethub
from redis.asyncio import Redis

from app.config import OrgConfig
from app.db.models import Installation
from app.github.client import GitHub
from app.github.errors import NotConfigured, RateLimited

log = logging.getLogger(__name__)

OWNER = "owner"
TEAM = "team"


class AccessUnavailable(Exception):
    """GitHub could not say whether the user may see the installation: refuse, and say why
    (the message is safe to show)."""


@dataclass(frozen=True)
class Grant:
    """A user's standing in one installation: role is "owner", "team" or None (refused)."""

    installation_id: int
    org: str
    role: str | None
    # The team that grants access ("org/slug"), when the config names one of this org.
    team: str | None

    @property
    def allowed(self) -> bool:
        return self.role is not None

    @property
    def owner(self) -> bool:
        return self.role == OWNER


def authorized_team(inst: Installation, cfg: OrgConfig | None) -> str | None:
    """The config's team, when it belongs to this installation's org (a team of another org
    cannot be checked with this installation's token, and is ignored)."""
    if cfg is None or cfg.access_control is None:
        return None
    team = cfg.access_control.authorized_team
    if cfg.access_control.org.lower() != inst.account_login.lower():
        return None
    return team


def _cache_key(installation_id: int, login: str, team: str | None) -> str:
    return f"pe:access:{installation_id}:{login.lower()}:{(team or '-').lower()}"


async def grant_for(github: GitHub, redis: Redis, inst: Installation, cfg: OrgConfig | None,
                    login: str, ttl: int) -> Grant:
    """The user's grant on `inst`, from Redis when asked within `ttl` seconds."""
    team = authorized_team(inst, cfg)
    if inst.account_type != "Organization":
        # A personal account's installation: only that account's own user.
        role = OWNER if login.lower() == inst.account_login.lower() else None
        return Grant(inst.id, inst.account_login, role, None)
    key = _cache_key(inst.id, login, team)
    cached = await redis.get(key) if ttl > 0 else None
    if cached is not None:
        role = json.loads(cached)
        return Grant(inst.id, inst.account_login, role if isinstance(role, str) else None, team)
    role = await _ask_github(github, inst, team, login)
    if ttl > 0:
        await redis.set(key, json.dumps(role), ex=ttl)
    return Grant(inst.id, inst.account_login, role, team)


async def _ask_github(github: GitHub, inst: Installation, team: str | None,
                      login: str) -> str | None:
    # Each name is one path segment, whatever it holds ("?", "#", "%", "/" included).
    org, user = quote(inst.account_login, safe=""), quote(login, safe="")
    try:
        gh = github.installation(inst.id)
        membership = await _get_or_none(gh, f"/orgs/{org}/memberships/{user}")
        if membership is None or membership.get("state") != "active":
            return None
        if membership.get("role") == "admin":
            return OWNER
        if team is None:
            return None
        slug = quote(team.split("/", 1)[1], safe="")
        in_team = await _get_or_none(gh, f"/orgs/{org}/teams/{slug}/memberships/{user}")
        return TEAM if in_team is not None and in_team.get("state") == "active" else None
    except gidgethub.HTTPException as exc:
        status = int(exc.status_code)
        log.warning("access check for %s on installation %s: GitHub answered %s",
                    login, inst.id, status)
        if status == 403:
            raise AccessUnavailable(
                "The App cannot read this organization's members: grant it the "
                "\"Organization members: read\" permission (app.yml lists it), then accept "
                "the new permission on the installation.") from None
        raise AccessUnavailable(f"GitHub answered {status} to the access check; "
                                "try again in a minute.") from None
    except (RateLimited, NotConfigured, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("access check for %s on installation %s failed: %s",
                    login, inst.id, type(exc).__name__)
        raise AccessUnavailable("GitHub could not be asked who may see this organization; "
                                "try again in a minute.") from None


async def _get_or_none(gh: gidgethub.abc.GitHubAPI, url: str) -> dict[str, object] | None:
    try:
        data = await gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) == 404:
            return None
        raise
    return data if isinstance(data, dict) else None

