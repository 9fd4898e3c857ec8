"""gidgethub clients with shared tokens, rate-limit waits and bounded retries.

Every call goes through `manage_rate_limit` (wait while the installation's budget is
spent) and `handle_rate_limit_error` (wait as GitHub tells us, back off on 5xx, refresh
the token on 401). Nothing is dropped because GitHub said "slow down".
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import gidgethub
import gidgethub.aiohttp
from redis.asyncio import Redis

from app.github.errors import NotConfigured, RateLimited
from app.github.tokens import TokenStore

log = logging.getLogger(__name__)

USER_AGENT = "policy-enforcer"
# Waits longer than this are not slept in-process: the job is deferred instead.
MAX_INLINE_WAIT = 60.0
MAX_SERVER_ERROR_ATTEMPTS = 6
MAX_NETWORK_ATTEMPTS = 5
MAX_LIMIT_ATTEMPTS = 20


def _wait_key(installation_id: int | None) -> str:
    return f"pe:ratelimit:{installation_id or 'app'}:until"


def retry_safe(method: str, url: str) -> bool:
    """Whether repeating a request that may have reached GitHub cannot duplicate anything.

    A POST that timed out or got a 502 may still have created its issue or comment; it is
    not repeated here. The job fails instead, and its retry first looks for what exists.
    """
    if method != "POST":
        return True
    path = url.split("?", 1)[0]
    return path.endswith(("/access_tokens", "/reactions", "/graphql"))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


class RateLimitedAPI(gidgethub.aiohttp.GitHubAPI):
    """Shared behaviour: rate-limit waits, retries with backoff and jitter."""

    installation_id: int | None = None

    def __init__(self, session: aiohttp.ClientSession, redis: Redis, **kwargs: Any) -> None:
        super().__init__(session, USER_AGENT, **kwargs)
        self.redis = redis

    async def _pause(self, until: float, reason: str) -> None:
        now = time.time()
        key = _wait_key(self.installation_id)
        current = await self.redis.get(key)
        # Only ever extend the shared wait; another process may know of a longer one.
        if current is not None and float(current) > until:
            until = float(current)
        else:
            await self.redis.set(key, str(until), ex=max(1, int(until - now) + 1))
        if until - now > MAX_INLINE_WAIT:
            raise RateLimited(until, reason)
        log.info("rate limit: %s; waiting %.1f s", reason, until - now)
        await self.sleep(max(0.0, until - now))

    async def manage_rate_limit(self, *, method: str, url: str) -> None:
        raw = await self.redis.get(_wait_key(self.installation_id))
        if raw is not None:
            until = float(raw)
            if until > time.time():
                await self._pause(until, "another request hit GitHub's rate limit")
        rl = self.rate_limit
        # gidgethub counts this request down before calling us: below zero means spent.
        if rl is not None and rl.remaining < 0:
            reset = rl.reset_datetime.timestamp()
            if reset > time.time():
                await self._pause(reset + 1, "primary rate limit spent")

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: gidgethub.HTTPException, attempt: int
    ) -> bool:
        status = int(exception.status_code)
        headers = exception.headers or {}
        message = str(exception).lower()
        retry_after = _header(headers, "retry-after")
        if isinstance(exception, gidgethub.RateLimitExceeded) or (
            status in (403, 429) and _header(headers, "x-ratelimit-remaining") == "0"
        ):
            reset = float(_header(headers, "x-ratelimit-reset") or time.time() + 60)
            await self._pause(max(reset, time.time()) + 1, "primary rate limit spent")
            return attempt < MAX_LIMIT_ATTEMPTS
        if status == 429 or (status == 403 and (
                retry_after or "secondary rate limit" in message or "abuse" in message)):
            # GitHub: honour retry-after; without it wait at least a minute, then longer.
            wait = float(retry_after) if retry_after else 60.0 * min(attempt, 5)
            await self._pause(time.time() + wait, "secondary rate limit")
            return attempt < MAX_LIMIT_ATTEMPTS
        if (isinstance(exception, gidgethub.GitHubBroken) and attempt < MAX_SERVER_ERROR_ATTEMPTS
                and retry_safe(method, url)):
            delay = min(30.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random())
            log.warning("GitHub answered %s for %s %s; retry %d in %.2f s",
                        status, method, url, attempt, delay)
            await self.sleep(delay)
            return True
        return False

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        for attempt in range(1, MAX_NETWORK_ATTEMPTS + 1):
            try:
                return await super()._request(method, url, headers, body)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                # A refused connection never reached GitHub; anything else may have.
                sent = not isinstance(exc, aiohttp.ClientConnectorError)
                if attempt == MAX_NETWORK_ATTEMPTS or (sent and not retry_safe(method, url)):
                    raise
                delay = min(10.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random())
                log.warning("network error on %s %s (%s); retry in %.2f s",
                            method, url, type(exc).__name__, delay)
                await self.sleep(delay)
        raise AssertionError("unreachable")


class AppAPI(RateLimitedAPI):
    """Authenticates as the App itself (JWT): /app endpoints and token creation."""


class InstallationAPI(RateLimitedAPI):
    """Authenticates as one installation with a token shared through Redis."""

    def __init__(self, session: aiohttp.ClientSession, redis: Redis, tokens: TokenStore,
                 installation_id: int, **kwargs: Any) -> None:
        super().__init__(session, redis, **kwargs)
        self.installation_id = installation_id
        self._tokens = tokens
        self._token: str | None = None

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        assert self.installation_id is not None
        if self._token is None:
            self._token = await self._tokens.get(self.installation_id)
        # The token is set here rather than by gidgethub so a refresh applies to retries.
        headers = {**headers, "authorization": f"token {self._token}"}
        return await super()._request(method, url, headers, body)

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: gidgethub.HTTPException, attempt: int
    ) -> bool:
        if int(exception.status_code) == 401 and attempt <= 2 and self._token is not None:
            assert self.installation_id is not None
            await self._tokens.invalidate(self.installation_id, self._token)
            self._token = None
            return True
        return await super().handle_rate_limit_error(
            method=method, url=url, exception=exception, attempt=attempt
        )


class GitHub:
    """One per process: the HTTP session and the factories for App and installation APIs."""

    def __init__(self, *, api_url: str, redis: Redis, app_id: int | None,
                 private_key: str | None) -> None:
        self.api_url = api_url
        self.redis = redis
        self.app_id = app_id
        self.private_key = private_key
        self._session: aiohttp.ClientSession | None = None
        self._tokens: TokenStore | None = None
        self._app_slug: str | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=60, connect=10),
                connector=aiohttp.TCPConnector(limit=100),
            )
        return self._session

    def app(self) -> AppAPI:
        if self.app_id is None or self.private_key is None:
            raise NotConfigured("APP_ID and PRIVATE_KEY must be set to call GitHub")
        return AppAPI(self.session, self.redis, app_id=str(self.app_id),
                      private_key=self.private_key, base_url=self.api_url)

    def installation(self, installation_id: int) -> InstallationAPI:
        if self._tokens is None:
            self._tokens = TokenStore(self.redis, self.app())
        return InstallationAPI(self.session, self.redis, self._tokens, installation_id,
                               base_url=self.api_url)

    async def app_slug(self) -> str:
        """The App's slug; its bot user is `<slug>[bot]`."""
        if self._app_slug is None:
            cached = await self.redis.get("pe:app:slug")
            if cached is None:
                data = await self.app().getitem("/app")
                cached = str(data["slug"]).encode()
                await self.redis.set("pe:app:slug", cached, ex=3600)
            self._app_slug = cached.decode() if isinstance(cached, bytes) else str(cached)
        return self._app_slug

    async def bot_login(self) -> str:
        return f"{await self.app_slug()}[bot]"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
