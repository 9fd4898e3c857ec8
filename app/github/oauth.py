"""The GitHub App's OAuth web flow: who is signing in to the dashboard.

The user's token proves who they are and is then dropped: it is never stored, in the
session or anywhere else. What a user may see is checked with the installation's own token
(app/services/access.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
import gidgethub
import gidgethub.aiohttp

USER_AGENT = "policy-enforcer"
TIMEOUT = aiohttp.ClientTimeout(total=15)
# Installations listed at sign-in (the switcher's candidates; they ride in the cookie).
MAX_INSTALLATIONS = 100


class OAuthError(Exception):
    """Sign-in failed; the message is safe to show (it never holds a code or a token)."""


@dataclass(frozen=True)
class GitHubUser:
    id: int
    login: str
    name: str | None
    avatar_url: str | None


def authorize_url(github_url: str, client_id: str, redirect_uri: str, state: str) -> str:
    query = urlencode({"client_id": client_id, "redirect_uri": redirect_uri, "state": state,
                       "allow_signup": "false"})
    return f"{github_url}/login/oauth/authorize?{query}"


async def exchange_code(session: aiohttp.ClientSession, github_url: str, client_id: str,
                        client_secret: str, code: str, redirect_uri: str) -> str:
    """The user's access token for `code`. GitHub answers errors with a 200 and an `error`
    field, so the body decides, not the status."""
    try:
        async with session.post(
            f"{github_url}/login/oauth/access_token",
            data={"client_id": client_id, "client_secret": client_secret, "code": code,
                  "redirect_uri": redirect_uri},
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=TIMEOUT,
        ) as resp:
            if resp.status >= 400:
                raise OAuthError(f"GitHub answered {resp.status} to the sign-in code exchange")
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                raise OAuthError("GitHub's answer to the code exchange was not JSON") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OAuthError(f"GitHub could not be reached ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise OAuthError("GitHub's answer to the code exchange was not an object")
    if data.get("error"):
        hints = {
            "bad_verification_code": "the sign-in code is wrong or expired; sign in again",
            "incorrect_client_credentials": "GITHUB_CLIENT_ID or GITHUB_CLIENT_SECRET is wrong",
            "redirect_uri_mismatch": "the App's callback URL does not match this server "
                                     "(set PUBLIC_URL, and the App's callback URL to "
                                     "PUBLIC_URL/login/callback)",
        }
        error = str(data["error"])[:64]
        raise OAuthError(hints.get(error, f"GitHub refused the sign-in ({error})"))
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise OAuthError("GitHub's answer to the code exchange had no access token")
    return token


def _api(session: aiohttp.ClientSession, api_url: str, token: str) -> gidgethub.aiohttp.GitHubAPI:
    return gidgethub.aiohttp.GitHubAPI(session, USER_AGENT, oauth_token=token, base_url=api_url)


async def fetch_user(session: aiohttp.ClientSession, api_url: str, token: str) -> GitHubUser:
    try:
        data = await _api(session, api_url, token).getitem("/user")
    except gidgethub.HTTPException as exc:
        raise OAuthError(f"GitHub answered {int(exc.status_code)} when asked who signed in"
                         ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OAuthError(f"GitHub could not be reached ({type(exc).__name__})") from None
    return GitHubUser(id=int(data["id"]), login=str(data["login"]),
                      name=data.get("name") if isinstance(data.get("name"), str) else None,
                      avatar_url=str(data.get("avatar_url") or "") or None)


async def fetch_installation_ids(session: aiohttp.ClientSession, api_url: str,
                                 token: str) -> list[int]:
    """The App's installations this user can access: which to offer in the switcher. Not
    an authorisation: every page still checks owner or team membership itself."""
    ids: list[int] = []
    try:
        async for inst in _api(session, api_url, token).getiter(
                "/user/installations?per_page=100", iterable_key="installations"):
            ids.append(int(inst["id"]))
            if len(ids) >= MAX_INSTALLATIONS:
                break
    except (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError):
        return []  # no switcher; the org pages still work by their URL
    return ids
