"""gidgethub clients with shared tokens, a shared rate governor, an ETag cache and retries.

Every request, REST or GraphQL, goes through `RateLimitedAPI._request`, which asks the
installation's rate governor (app/github/governor.py, shared through Redis by every process)
for admission, and for an installation's GETs sends the cached validator: `If-None-Match`
with the ETag while the token is the one it was issued to (GitHub's ETags are per token),
else `If-Modified-Since` with the cached Last-Modified where GitHub sent one. A 304 (free of
GitHub's primary budget) is answered to gidgethub as a 200 with the cached body and
headers, so getitem/getiter work unchanged. `handle_rate_limit_error` decides what is retried
(secondary limits, spent budget, 5xx of retry-safe requests, a refreshed token on 401);
the waiting itself happens in the governor. Nothing is dropped because GitHub said "slow down".
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Mapping
from typing import Any

import aiohttp
import gidgethub
import gidgethub.aiohttp
from redis.asyncio import Redis

from app.github.errors import NotConfigured, RateLimited
from app.github.governor import (
    CachedResponse,
    CacheLimits,
    Governor,
    Limits,
    Ticket,
    credential_tag,
    limits_from_env,
)
from app.github.tokens import TokenStore
from app.metrics import observe_github_response

__all__ = ["MAX_INLINE_WAIT", "AppAPI", "CacheLimits", "GitHub", "Governor", "InstallationAPI",
           "Limits", "RateLimited", "retry_safe"]

log = logging.getLogger(__name__)

USER_AGENT = "policy-enforcer"
# Waits longer than this are not slept in-process: the job is deferred instead.
MAX_INLINE_WAIT = Limits.max_inline_wait
MAX_SERVER_ERROR_ATTEMPTS = 6
MAX_NETWORK_ATTEMPTS = 5
MAX_LIMIT_ATTEMPTS = 20
# GitHub: without retry-after, wait at least a minute after a secondary-limit answer.
DEFAULT_SECONDARY_WAIT = 60.0


def graphql_endpoint(api_url: str) -> str:
    """GitHub's GraphQL endpoint for a REST API root (GHES: /api/v3 → /api/graphql).

    gidgethub's graphql() does not derive it from `base_url`, so every call needs it.
    """
    api = api_url.rstrip("/")
    if api.endswith("/api/v3"):
        return api.removesuffix("/v3") + "/graphql"
    return f"{api}/graphql"


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


def conditional_headers(cached: CachedResponse, owner: str) -> dict[str, str]:
    """The validator to send for a cached response, `owner` tagging this request's token.

    GitHub's ETags are specific to the token that asked: another token's ETag only gets a
    200. Last-Modified does not depend on the token, but GitHub answers 304 only when every
    validator sent holds, so If-Modified-Since goes alone, and only when the ETag cannot
    match: while it can, If-None-Match is the exact one (Last-Modified misses changes that
    leave it alone, such as a push for the repository's updated_at).
    """
    last_modified = cached.headers.get("last-modified")
    if last_modified and cached.owner != owner:
        return {"if-modified-since": last_modified}
    return {"if-none-match": cached.etag}


def _secondary_wait(status: int, headers: Mapping[str, str], body: bytes) -> float | None:
    """Seconds GitHub asks us to wait when this answer is a secondary limit, else None."""
    if status not in (403, 429) or _header(headers, "x-ratelimit-remaining") == "0":
        return None  # not a limit, or the primary budget (the headers say until when)
    retry_after = _header(headers, "retry-after")
    text = body[:2000].lower()
    if status == 429 or retry_after or b"secondary rate limit" in text or b"abuse" in text:
        try:
            return max(0.0, float(retry_after)) if retry_after else DEFAULT_SECONDARY_WAIT
        except ValueError:
            return DEFAULT_SECONDARY_WAIT
    return None


class RateLimitedAPI(gidgethub.aiohttp.GitHubAPI):
    """Shared behaviour: the rate governor, the ETag cache, retries with backoff and jitter."""

    installation_id: int | None = None
    # Whether GETs are cached with their ETag (per installation; not for the App's JWT).
    use_cache = False
    # Bulk work (filing after a scan) gives way to interactive work in the governor.
    bulk = False

    def __init__(self, session: aiohttp.ClientSession, redis: Redis,
                 governor: Governor | None = None, **kwargs: Any) -> None:
        super().__init__(session, USER_AGENT, **kwargs)
        self.redis = redis
        self.governor = governor if governor is not None else Governor(redis)

    @property
    def scope(self) -> str:
        return Governor.scope_of(self.installation_id)

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
            # The governor recorded the spent budget from this answer's headers; the retry
            # waits for the reset there (or raises RateLimited if that is far off).
            log.info("rate limit: primary budget of %s spent", self.scope)
            return attempt < MAX_LIMIT_ATTEMPTS
        if status == 429 or (status == 403 and (
                retry_after or "secondary rate limit" in message or "abuse" in message)):
            # Blocked already for retry-after (or a minute); without retry-after back off
            # longer on every repeat, as GitHub asks.
            if not retry_after and attempt > 1:
                await self.governor.block(self.scope, DEFAULT_SECONDARY_WAIT * min(attempt, 5),
                                          "secondary rate limit, again")
            return attempt < MAX_LIMIT_ATTEMPTS
        if (isinstance(exception, gidgethub.GitHubBroken) and attempt < MAX_SERVER_ERROR_ATTEMPTS
                and retry_safe(method, url)):
            delay = min(30.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311 - jitter
            log.warning("GitHub answered %s for %s %s; retry %d in %.2f s",
                        status, method, url, attempt, delay)
            await self.sleep(delay)
            return True
        return False

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        cacheable = (self.use_cache and method == "GET" and "if-none-match" not in headers
                     and "if-modified-since" not in headers)
        owner = credential_tag(headers.get("authorization", "")) if cacheable else ""
        for attempt in range(1, MAX_NETWORK_ATTEMPTS + 1):
            ticket = await self.governor.acquire(
                self.scope, method, url, body, accept=headers.get("accept", ""),
                cacheable=cacheable, owner=owner, bulk=self.bulk)
            sent = headers
            if ticket.cached is not None:
                sent = {**headers, **conditional_headers(ticket.cached, owner)}
            try:
                status, resp_headers, data = await super()._request(method, url, sent, body)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                self.governor.release(ticket)
                observe_github_response(None)
                # A refused connection never reached GitHub; anything else may have.
                reached = not isinstance(exc, aiohttp.ClientConnectorError)
                if attempt == MAX_NETWORK_ATTEMPTS or (reached and not retry_safe(method, url)):
                    raise
                delay = min(10.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311 - jitter
                log.warning("network error on %s %s (%s); retry in %.2f s",
                            method, url, type(exc).__name__, delay)
                await self.sleep(delay)
                continue
            except BaseException:
                self.governor.release(ticket)
                raise
            return await self._settle(ticket, status, resp_headers, data)
        raise AssertionError("unreachable")

    async def _settle(self, ticket: Ticket, status: int, headers: Mapping[str, str],
                      data: bytes) -> tuple[int, Mapping[str, str], bytes]:
        """Record the answer with the governor; turn a 304 into the cached 200."""
        observe_github_response(status)
        if status == 304 and ticket.cached is not None:
            self.governor.release(ticket, status, headers)
            merged = {k.lower(): v for k, v in headers.items()}
            merged.pop("content-length", None)
            merged.update(ticket.cached.headers)
            return 200, merged, ticket.cached.body
        if status in (403, 429):
            # Rare, and the retry must already see the spent budget or the block.
            await self.governor.release_now(ticket, status, headers,
                                            _secondary_wait(status, headers, data) or 0.0)
        else:
            self.governor.release(ticket, status, headers, data)
        return status, headers, data

    async def graphql(self, query: str, *, endpoint: str | None = None,
                      **variables: Any) -> Any:
        """gidgethub's graphql, against this client's API URL, with the REST retries:
        limits waited out, 5xx of queries retried, the token refreshed on 401."""
        url = endpoint or graphql_endpoint(self.base_url)
        mutation = query.lstrip().startswith("mutation")
        attempt = 0
        while True:
            attempt += 1
            try:
                return await super().graphql(query, endpoint=url, **variables)
            except gidgethub.GitHubBroken as exc:
                if mutation or attempt >= MAX_SERVER_ERROR_ATTEMPTS:
                    raise
                delay = min(30.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311 - jitter
                log.warning("GitHub answered %s for GraphQL; retry %d in %.2f s",
                            exc.status_code, attempt, delay)
                await self.sleep(delay)
            except gidgethub.GraphQLAuthorizationFailure:
                if not await self._unauthorized(attempt):
                    raise
            except gidgethub.BadGraphQLRequest as exc:
                limited = int(exc.status_code) in (403, 429) and "rate limit" in json.dumps(
                    exc.response).lower()
                if not limited or attempt >= MAX_LIMIT_ATTEMPTS:
                    raise
            except gidgethub.QueryError as exc:
                errors = exc.response.get("errors") or []
                limited = any(isinstance(e, dict) and e.get("type") == "RATE_LIMITED"
                              for e in errors)
                if not limited or attempt >= MAX_LIMIT_ATTEMPTS:
                    raise

    async def _unauthorized(self, attempt: int) -> bool:
        """Whether a 401 is worth a retry (an installation refreshes its token)."""
        return False


class AppAPI(RateLimitedAPI):
    """Authenticates as the App itself (JWT): /app endpoints and token creation."""


class InstallationAPI(RateLimitedAPI):
    """Authenticates as one installation with a token shared through Redis."""

    use_cache = True

    def __init__(self, session: aiohttp.ClientSession, redis: Redis, tokens: TokenStore,
                 installation_id: int, *, bulk: bool = False, **kwargs: Any) -> None:
        super().__init__(session, redis, **kwargs)
        self.installation_id = installation_id
        self.bulk = bulk
        self._tokens = tokens
        self._token: str | None = None

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        assert self.installation_id is not None  # noqa: S101 - narrows; set in __init__
        if self._token is None:
            self._token = await self._tokens.get(self.installation_id)
        # The token is set here rather than by gidgethub so a refresh applies to retries.
        headers = {**headers, "authorization": f"token {self._token}"}
        return await super()._request(method, url, headers, body)

    async def _unauthorized(self, attempt: int) -> bool:
        if attempt > 2 or self._token is None:
            return False
        assert self.installation_id is not None  # noqa: S101 - narrows; set in __init__
        await self._tokens.invalidate(self.installation_id, self._token)
        self._token = None
        return True

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: gidgethub.HTTPException, attempt: int
    ) -> bool:
        if int(exception.status_code) == 401 and await self._unauthorized(attempt):
            return True
        return await super().handle_rate_limit_error(
            method=method, url=url, exception=exception, attempt=attempt
        )


class GitHub:
    """One per process: the HTTP session and the factories for App and installation APIs."""

    def __init__(self, *, api_url: str, redis: Redis, app_id: int | None,
                 private_key: str | None, limits: Limits | None = None,
                 cache: CacheLimits | None = None) -> None:
        """`limits` defaults to GitHub's limits with the overrides of the GITHUB_RATE_LIMITS
        environment variable ("content_per_minute=1000,..."; see governor.Limits), `cache`
        to the documented cache bounds; tests and benches pass smaller windows."""
        self.api_url = api_url
        self.redis = redis
        # One per process: requests of every installation are admitted through it.
        self.governor = Governor(redis, limits or limits_from_env(), cache)
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
        return AppAPI(self.session, self.redis, self.governor, app_id=str(self.app_id),
                      private_key=self.private_key, base_url=self.api_url)

    async def forget_token(self, installation_id: int) -> None:
        """The installation's permissions changed: the next request gets a new token."""
        if self._tokens is None:
            self._tokens = TokenStore(self.redis, self.app())
        await self._tokens.forget(installation_id)

    def installation(self, installation_id: int, *, bulk: bool = False) -> InstallationAPI:
        """A client for the installation; `bulk` for work that may wait (issue filing)."""
        if self._tokens is None:
            self._tokens = TokenStore(self.redis, self.app())
        return InstallationAPI(self.session, self.redis, self._tokens, installation_id,
                               bulk=bulk, governor=self.governor, base_url=self.api_url)

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

    async def waiting_until(self, installation_id: int) -> float | None:
        """Epoch seconds until which the installation waits on a rate limit, or None."""
        return await self.governor.waiting_until(installation_id)

    async def close(self) -> None:
        await self.governor.flush()
        if self._session is not None:
            await self._session.close()
            self._session = None


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
