"""An aiohttp server that answers like api.github.com, backed by a FakeState.

One middleware does what GitHub does around every endpoint, in GitHub's order: injected
faults, authentication, the primary (hourly) rate limit, secondary limits, the handler, then
ETag/304 and the x-ratelimit-* headers. Handlers only deal with resources (and set
Last-Modified where GitHub sends it). ETags are per credential, as GitHub's are.

The same host also serves the few github.com pages an App's users go through (Route auth
"web"): the sign-in form, the OAuth web flow and the manifest flow. Those get faults and the
request log, but no API authentication, budget or headers.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import math
import re
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import jwt
from aiohttp import web
from yarl import URL

from tests.fakegithub import graphql as gql
from tests.fakegithub import hooks, render
from tests.fakegithub.state import (
    PERMISSION_LEVELS,
    REACTION_CONTENTS,
    REPO_SETTINGS,
    Comment,
    FailRule,
    FakeState,
    Installation,
    Issue,
    ManifestDraft,
    RateBucket,
    Reaction,
    Repo,
    RequestRecord,
    Token,
    User,
    UserToken,
    iso,
)

log = logging.getLogger(__name__)

STATE = web.AppKey("fakegithub_state", FakeState)
DOC_REST = "https://docs.github.com/rest"
RATE_DOC = "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"
SECONDARY_DOC = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/"
    "rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID {rid}."
)
JWT_MAX_LIFETIME = 600  # GitHub: `exp` no more than ten minutes into the future
JSON_TYPE = "application/json"
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GitHubError(Exception):
    """Raised by handlers; rendered as GitHub's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        doc: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.doc = doc
        self.headers = headers or {}


def not_found() -> GitHubError:
    return GitHubError(404, "Not Found")


def validation_failed(resource: str, field: str, code: str) -> GitHubError:
    return GitHubError(
        422, "Validation Failed", errors=[{"resource": resource, "code": code, "field": field}]
    )


def not_supplied(field: str) -> GitHubError:
    return GitHubError(422, f'Invalid request.\n\n"{field}" wasn\'t supplied.')


def archived_error() -> GitHubError:
    return GitHubError(403, "Repository was archived so is read-only.")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    doc: str
    # "app" (JWT) | "installation" (token) | "any" (either, or a user token) | "user" (a user
    # access token; an installation token is refused with 403) | "none" (API without auth:
    # the anonymous budget, or the caller's when it sends credentials) | "web" (a github.com
    # page: no API authentication, rate limits or API headers)
    auth: str = "installation"
    counted: bool = True  # False: costs no rate-limit budget (GET /rate_limit)
    creates_content: bool = False  # counts toward the secondary content-creation limits


ROUTES: list[Route] = []
_ROUTE_OF: dict[Handler, Route] = {}


def route(
    method: str,
    *paths: str,
    doc: str,
    auth: str = "installation",
    counted: bool = True,
    creates_content: bool = False,
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for path in paths:
            r = Route(method, path, handler, doc, auth, counted, creates_content)
            ROUTES.append(r)
            _ROUTE_OF[handler] = r
        return handler

    return register


@dataclass
class Caller:
    kind: str  # "app" | "installation" | "user" | "anonymous"
    installation: Installation | None = None
    token: Token | None = None
    user: User | None = None
    user_token: UserToken | None = None

    @property
    def bucket_key(self) -> str:
        if self.installation is not None:
            return f"installation:{self.installation.id}"
        if self.user is not None:
            return f"user:{self.user.id}"
        return "anonymous" if self.kind == "anonymous" else "app"


CALLER = web.RequestKey("fakegithub_caller", Caller)
GRAPHQL_COST = web.RequestKey("fakegithub_graphql_cost", int)


# ----------------------------------------------------------------------------- responses
def _request_id() -> str:
    return ":".join(secrets.token_hex(n).upper() for n in (2, 3, 3, 4, 4))


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        content_type=JSON_TYPE,
        charset="utf-8",
        headers=headers,
    )


def error_response(
    status: int, message: str, doc: str, errors: list[dict[str, Any]] | None = None
) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if errors is not None:
        body["errors"] = errors
    body["documentation_url"] = doc
    body["status"] = str(status)
    return json_response(body, status)


def no_content() -> web.Response:
    return web.Response(status=204)


def rate_headers(bucket: RateBucket, resource: str) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(bucket.limit),
        "x-ratelimit-remaining": str(bucket.remaining),
        "x-ratelimit-reset": str(math.ceil(bucket.reset_at)),
        "x-ratelimit-used": str(min(bucket.used, bucket.limit)),
        "x-ratelimit-resource": resource,
    }


def anonymous_rate_headers() -> dict[str, str]:
    # GitHub's unauthenticated budget; failed authentication does not spend the caller's.
    return rate_headers(RateBucket(60, 0, time.time() + 3600), "core")


def fault_response(rule: FailRule) -> web.Response:
    if rule.body is not None:
        if isinstance(rule.body, str | bytes):
            resp = web.Response(body=rule.body, status=rule.status, content_type="text/html")
        else:
            resp = json_response(rule.body, rule.status)
    elif rule.status >= 500:
        message = {
            503: "Service Unavailable",
            504: "We couldn't respond to your request in time. Sorry about that. Please try "
            "resubmitting your request and contact us if the problem persists.",
        }.get(rule.status, "Server Error")
        resp = json_response({"message": message}, rule.status)
    else:
        try:
            phrase = HTTPStatus(rule.status).phrase
        except ValueError:
            phrase = "Error"
        resp = error_response(rule.status, phrase, DOC_REST)
    resp.headers.update(rule.headers)
    return resp


def weak_etag(body: bytes, credential: str) -> str:
    # GitHub's ETags are specific to the credential that asked (GitHub support, 2024): the
    # same body fetched with another token has another ETag. So is the fake's.
    digest = hashlib.sha256(credential.encode() + b"\0" + body).hexdigest()
    return f'W/"{digest[:32]}"'


def credential_of(st: FakeState, caller: Caller) -> str:
    """Whom an ETag belongs to: the installation or user token itself, the App (any JWT)."""
    if caller.token is not None:
        return caller.token.token
    if caller.user_token is not None:
        return caller.user_token.token
    return f"app:{st.app_id}" if caller.kind == "app" else caller.kind


def etag_matches(if_none_match: str, etag: str) -> bool:
    def bare(tag: str) -> str:
        return tag.strip().removeprefix("W/")

    tags = [bare(t) for t in if_none_match.split(",")]
    return "*" in tags or bare(etag) in tags


def http_date(ts: float) -> str:
    """An HTTP-date (whole seconds, as Last-Modified carries it)."""
    return email.utils.formatdate(ts, usegmt=True)


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # not an HTTP-date: the header is ignored
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def not_modified(request: web.Request, etag: str, last_modified: str | None) -> bool:
    """Whether the conditional GET gets a 304. As GitHub (Rails' `fresh?`), every validator
    sent must hold: an If-None-Match with another token's ETag gets a 200 even when its
    If-Modified-Since would hold, and If-Modified-Since holds only where GitHub sends
    Last-Modified."""
    checks: list[bool] = []
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match:
        checks.append(etag_matches(if_none_match, etag))
    since = parse_http_date(request.headers.get("If-Modified-Since"))
    if since is not None:
        modified = parse_http_date(last_modified)
        checks.append(modified is not None and modified <= since)
    return bool(checks) and all(checks)


# ----------------------------------------------------------------------------- helpers
def state_of(request: web.Request) -> FakeState:
    return request.app[STATE]


def caller_of(request: web.Request) -> Caller:
    return request[CALLER]


def acting_user(request: web.Request) -> User:
    """Who GitHub records as the author: the app's bot for installation tokens."""
    return state_of(request).bot


def int_param(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        return default


def paginate(
    request: web.Request, items: Sequence[T], default_per_page: int = 30
) -> tuple[list[T], dict[str, str]]:
    """One page of `items`, plus a Link header as GitHub builds it (absolute URLs)."""
    per_page = int_param(request, "per_page", default_per_page)
    per_page = default_per_page if per_page < 1 else min(per_page, 100)
    page = max(int_param(request, "page", 1), 1)
    last = max(1, -(-len(items) // per_page))
    start = (page - 1) * per_page
    chunk = list(items[start : start + per_page])

    def url(p: int) -> str:
        return str(request.url.update_query(page=str(p)))

    links: list[str] = []
    if page > 1:
        links.append(f'<{url(min(page - 1, last))}>; rel="prev"')
    if page < last:
        links.append(f'<{url(page + 1)}>; rel="next"')
        links.append(f'<{url(last)}>; rel="last"')
    if page > 1:
        links.append(f'<{url(1)}>; rel="first"')
    return chunk, ({"Link": ", ".join(links)} if links else {})


async def body_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise GitHubError(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise GitHubError(400, "Problems parsing JSON")
    return data


def can_see(caller: Caller, repo: Repo) -> bool:
    inst = caller.installation
    if inst is None or not any(r is repo for r in inst.repos):
        return False
    return token_allows(caller, repo)


def token_allows(caller: Caller, repo: Repo) -> bool:
    """The token is not narrowed to other repositories (installation membership aside)."""
    return caller.token is None or caller.token.repo_ids is None or repo.id in caller.token.repo_ids


def get_repo(request: web.Request) -> Repo:
    """The addressed repository; 404 (as GitHub) when it is missing or not installed."""
    st = state_of(request)
    m = request.match_info
    repo = st.find_repo(f"{m['owner']}/{m['repo']}")
    if repo is None or not can_see(caller_of(request), repo):
        raise not_found()
    return repo


def writable(repo: Repo) -> Repo:
    if repo.archived:
        raise archived_error()
    return repo


def issues_enabled(repo: Repo) -> Repo:
    """GitHub answers 410 for the issues of a repository that has them disabled."""
    if not repo.has_issues:
        raise GitHubError(410, "Issues are disabled for this repo")
    return repo


def get_issue(request: web.Request, repo: Repo) -> Issue:
    try:
        number = int(request.match_info["number"])
    except ValueError:
        raise not_found() from None
    issue = repo.issues.get(number)
    if issue is None or not issue.pull_request:
        issues_enabled(repo)  # a pull request's issue side stays reachable
    if issue is None:
        raise not_found()
    return issue


def label_names(raw: Any) -> list[str]:
    if not isinstance(raw, list):
        raise GitHubError(422, "Invalid request.\n\nFor 'properties/labels', is not an array.")
    names: list[str] = []
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name.strip():
            raise validation_failed("Label", "name", "invalid")
        names.append(name.strip())
    return names


# ----------------------------------------------------------------------------- auth
def authenticate(st: FakeState, request: web.Request, kind: str) -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, cred = header.strip().partition(" ")
    scheme, cred = scheme.lower(), cred.strip()
    if not header:
        if kind == "none":
            return Caller("anonymous")
        raise GitHubError(401, "Requires authentication", doc=DOC_REST)
    if kind == "none":
        kind = "any"  # credentials that are sent must be good ones
    user_token = st.user_tokens.get(cred) if scheme in ("token", "bearer") else None
    if user_token is not None and kind in ("user", "any"):
        if not user_token.valid(time.time()):
            raise GitHubError(401, "Bad credentials", doc=DOC_REST)
        return Caller("user", user=user_token.user, user_token=user_token)
    token = st.tokens.get(cred) if scheme in ("token", "bearer") else None
    if kind == "user":
        # Only a user access token will do; an installation token authenticates (and is
        # then refused by the handler, as GitHub refuses it), anything else is bad.
        kind = "installation"
    if kind == "app" or (kind == "any" and token is None and scheme == "bearer"):
        if scheme != "bearer":
            raise GitHubError(401, "A JSON web token could not be decoded", doc=DOC_REST)
        verify_jwt(st, cred)
        return Caller("app")
    now = time.time()
    if token is None or not token.valid(now):
        raise GitHubError(401, "Bad credentials", doc=DOC_REST)
    inst = st.installations.get(token.installation_id)
    if inst is None or inst.suspended_at is not None:
        raise GitHubError(401, "Bad credentials", doc=DOC_REST)
    return Caller("installation", inst, token)


@dataclass
class AppClock:
    """GitHub's clock as the fake checks App JWTs against it: `offset` seconds ahead of this
    host's (negative: behind), for tests of an App whose host clock is off."""

    offset: float = 0.0

    def now(self) -> float:
        return time.time() + self.offset


_APP_CLOCKS: weakref.WeakKeyDictionary[FakeState, AppClock] = weakref.WeakKeyDictionary()


def app_clock(st: FakeState) -> AppClock:
    """The clock `st`'s App JWTs are checked against; set its `offset` to skew it."""
    clock = _APP_CLOCKS.get(st)
    if clock is None:
        clock = _APP_CLOCKS[st] = AppClock()
    return clock


def verify_jwt(st: FakeState, encoded: str) -> None:
    """GitHub's checks of an App JWT: RS256 with the App's key; `iat` an integer not in the
    future and `exp` after now, no more than ten minutes ahead, both by GitHub's clock and
    with no leeway (GitHub documents none and refuses an `iat` even seconds ahead, hence its
    advice to backdate `iat` by 60 s); `iss` the App's id or client id. Refusals are 401s
    with GitHub's messages (the time ones are what clients such as Octokit match on)."""

    def fail(message: str) -> GitHubError:
        return GitHubError(401, message, doc=DOC_REST)

    try:
        claims = jwt.decode(
            encoded,
            st.public_key_pem,
            algorithms=["RS256"],
            # The times are checked below, against GitHub's clock rather than this host's.
            options={"require": ["exp", "iat", "iss"], "verify_exp": False,
                     "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError:
        raise fail("A JSON web token could not be decoded") from None
    now = app_clock(st).now()
    iat, exp = claims["iat"], claims["exp"]
    if isinstance(iat, bool) or not isinstance(iat, int) or iat > now:
        raise fail(
            "'Issued at' claim ('iat') must be an Integer representing the time that the "
            "assertion was issued"
        )
    if isinstance(exp, bool) or not isinstance(exp, int | float) or exp <= now:
        raise fail(
            "'Expiration time' claim ('exp') must be a numeric value representing the future "
            "time at which the assertion expires"
        )
    if exp - now > JWT_MAX_LIFETIME:
        raise fail("'Expiration time' claim ('exp') is too far in the future")
    if str(claims["iss"]) not in (str(st.app_id), st.client_id):
        raise fail("Integration not found")


# ----------------------------------------------------------------------------- middleware
@web.middleware
async def github_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    st = state_of(request)
    st.total_requests += 1
    st.in_flight += 1
    concurrent = st.in_flight
    st.max_in_flight = max(st.max_in_flight, concurrent)
    try:
        resp = await _serve(st, request, handler, concurrent)
    except Exception as exc:  # a bug in the fake should be loud, not a hung test
        log.exception("fake GitHub failed on %s %s", request.method, request.path)
        resp = error_response(500, f"fake GitHub error: {exc!r}", DOC_REST)
    finally:
        st.in_flight -= 1
    caller = request.get(CALLER)
    st.log.append(
        RequestRecord(
            request.method,
            request.path,
            resp.status,
            request.query_string,
            caller.installation.id if caller and caller.installation else None,
            time.time(),
            caller.user.login if caller and caller.user else None,
        )
    )
    return resp


async def _serve(
    st: FakeState, request: web.Request, handler: Handler, concurrent: int
) -> web.StreamResponse:
    if st.latency > 0:
        await asyncio.sleep(st.latency)
    rule = st.pick_failure(request.method, request.path)
    if rule is not None:
        st.injected_failures += 1
        return fault_response(rule)

    match = request.match_info
    r = _ROUTE_OF.get(match.route.handler) if match.http_exception is None else None
    if r is None:
        unknown = error_response(404, "Not Found", DOC_REST)
        unknown.headers.update(anonymous_rate_headers())
        return unknown

    if r.auth == "web":
        # github.com itself, not the API: no API authentication, budget or headers.
        page = await handler(request)
        late = st.pick_failure(request.method, request.path, after=True)
        if late is not None:
            st.injected_failures += 1
            return fault_response(late)
        return page

    try:
        caller = authenticate(st, request, r.auth)
    except GitHubError as e:
        st.unauthorized_responses += 1
        err = error_response(e.status, e.message, e.doc or r.doc)
        err.headers.update(anonymous_rate_headers())
        return err
    request[CALLER] = caller

    resource = "graphql" if r.path == "/graphql" else "core"
    bucket = st.bucket(caller.bucket_key, resource)
    if r.counted and bucket.remaining <= 0:
        st.primary_limit_responses += 1
        if caller.installation:
            message = f"API rate limit exceeded for installation ID {caller.installation.id}."
        elif caller.user:
            message = f"API rate limit exceeded for user ID {caller.user.id}."
        elif caller.kind == "anonymous":
            message = (
                f"API rate limit exceeded for {request.remote}. (But here's the good news: "
                "Authenticated requests get a higher rate limit. Check out the documentation "
                "for more details.)"
            )
        else:
            message = f"API rate limit exceeded for app ID {st.app_id}."
        if resource == "graphql":
            err = json_response({"errors": [{"type": "RATE_LIMITED", "message": message}]})
        else:
            err = error_response(st.rate_limit.status, message, RATE_DOC)
        err.headers.update(rate_headers(bucket, resource))
        return err

    mutation = resource == "graphql" and await _is_mutation(request)
    creates = r.creates_content or mutation
    # GitHub: a GraphQL query is 1 point toward the per-minute limit, a mutation 5.
    points = (5 if mutation else 1) if resource == "graphql" else None
    retry = st.secondary_check(caller.bucket_key, request.method, creates, concurrent, points)
    if retry is not None:
        st.secondary_limit_responses += 1
        rid = _request_id()
        err = error_response(
            st.secondary.status, SECONDARY_MESSAGE.format(rid=rid), SECONDARY_DOC
        )
        err.headers.update(rate_headers(bucket, resource))
        err.headers["retry-after"] = str(retry)
        err.headers["X-GitHub-Request-Id"] = rid
        return err

    resp: web.StreamResponse
    try:
        resp = await handler(request)
    except GitHubError as e:
        resp = error_response(e.status, e.message, e.doc or r.doc, e.errors)
        resp.headers.update(e.headers)
    late = st.pick_failure(request.method, request.path, after=True)
    if late is not None:
        st.injected_failures += 1
        return fault_response(late)

    if (
        request.method == "GET"
        and resp.status == 200
        and isinstance(resp, web.Response)
        and isinstance(resp.body, bytes)
    ):
        etag = weak_etag(resp.body, credential_of(st, caller))
        resp.headers["ETag"] = etag
        resp.headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
        # Set by the handlers of the endpoints where GitHub sends it.
        last_modified = resp.headers.get("Last-Modified")
        if not_modified(request, etag, last_modified):
            # Conditional hits are free on GitHub: the budget is not touched.
            st.not_modified_responses += 1
            validators = {"ETag": etag}
            if last_modified:
                validators["Last-Modified"] = last_modified
            resp = web.Response(status=304, headers=validators)

    if r.counted and resp.status != 304:
        if resource == "core":
            bucket.used += 1
            st.rate_limited_requests += 1
        else:
            # A GraphQL request spends its computed cost (set by the handler; 1 otherwise).
            cost = request.get(GRAPHQL_COST, 1)
            bucket.used += cost
            st.graphql_requests += 1
            st.graphql_points += cost
    resp.headers.update(rate_headers(bucket, resource))
    resp.headers.setdefault("X-GitHub-Request-Id", _request_id())
    resp.headers["X-GitHub-Media-Type"] = "github.v3; format=json"
    resp.headers["X-GitHub-Api-Version-Selected"] = "2022-11-28"
    resp.headers["Vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
    return resp


async def _is_mutation(request: web.Request) -> bool:
    try:
        data = json.loads(await request.read() or b"{}")
    except ValueError:
        return False
    query = data.get("query", "") if isinstance(data, dict) else ""
    return isinstance(query, str) and query.lstrip().startswith("mutation")


# ----------------------------------------------------------------------------- app endpoints
@route("GET", "/app", doc="https://docs.github.com/rest/apps/apps#get-the-authenticated-app",
       auth="app")
async def get_app(request: web.Request) -> web.Response:
    return json_response(render.app(state_of(request)))


@route(
    "GET",
    "/app/installations",
    doc="https://docs.github.com/rest/apps/apps#list-installations-for-the-authenticated-app",
    auth="app",
)
async def list_installations(request: web.Request) -> web.Response:
    st = state_of(request)
    page, headers = paginate(request, sorted(st.installations.values(), key=lambda i: i.id))
    return json_response([render.installation(st, i) for i in page], headers=headers)


def _installation_from_path(request: web.Request) -> Installation:
    try:
        ident = int(request.match_info["installation_id"])
    except ValueError:
        raise not_found() from None
    inst = state_of(request).installations.get(ident)
    if inst is None:
        raise not_found()
    return inst


@route(
    "GET",
    "/app/installations/{installation_id}",
    doc="https://docs.github.com/rest/apps/apps#get-an-installation-for-the-authenticated-app",
    auth="app",
)
async def get_installation(request: web.Request) -> web.Response:
    return json_response(render.installation(state_of(request), _installation_from_path(request)))


@route(
    "DELETE",
    "/app/installations/{installation_id}",
    doc="https://docs.github.com/rest/apps/apps#delete-an-installation-for-the-authenticated-app",
    auth="app",
)
async def delete_installation(request: web.Request) -> web.Response:
    state_of(request).remove_installation(_installation_from_path(request).id)
    return no_content()


@route(
    "POST",
    "/app/installations/{installation_id}/access_tokens",
    doc="https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app",
    auth="app",
)
async def create_access_token(request: web.Request) -> web.Response:
    st = state_of(request)
    inst = _installation_from_path(request)
    if inst.suspended_at is not None:
        raise GitHubError(403, "This installation has been suspended")
    body = await body_json(request)
    repo_ids: set[int] | None = None
    if body.get("repositories") or body.get("repository_ids"):
        by_name = {r.name.lower(): r for r in inst.repos}
        by_id = {r.id: r for r in inst.repos}
        wanted = [by_name.get(str(n).lower()) for n in body.get("repositories") or []]
        wanted += [by_id.get(i) for i in body.get("repository_ids") or []]
        if any(r is None for r in wanted):
            raise GitHubError(
                422,
                "There is at least one repository that does not exist or is not accessible "
                "to the parent installation.",
            )
        repo_ids = {r.id for r in wanted if r is not None}
    permissions = body.get("permissions")
    token = st.issue_token(
        inst.id,
        repo_ids=repo_ids,
        permissions=permissions if isinstance(permissions, dict) else None,
    )
    data: dict[str, Any] = {
        "token": token.token,
        "expires_at": iso(token.expires_at),
        "permissions": token.permissions,
        "repository_selection": "selected" if repo_ids is not None else inst.repository_selection,
    }
    if repo_ids is not None:
        data["repositories"] = [render.repo(st, r) for r in inst.repos if r.id in repo_ids]
    return json_response(data, 201)


@route(
    "GET",
    "/repos/{owner}/{repo}/installation",
    doc="https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app",
    auth="app",
)
async def get_repo_installation(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = st.find_repo(f"{request.match_info['owner']}/{request.match_info['repo']}")
    inst = st.installation_for(repo) if repo is not None else None
    if inst is None:
        raise not_found()
    return json_response(render.installation(st, inst))


@route(
    "GET",
    "/rate_limit",
    doc="https://docs.github.com/rest/rate-limit/rate-limit#get-rate-limit-status-for-the-authenticated-user",
    auth="any",
    counted=False,
)
async def get_rate_limit(request: web.Request) -> web.Response:
    st = state_of(request)
    key = caller_of(request).bucket_key

    def view(b: RateBucket) -> dict[str, int]:
        return {"limit": b.limit, "used": b.used, "remaining": b.remaining,
                "reset": math.ceil(b.reset_at)}

    core = view(st.bucket(key, "core"))
    return json_response(
        {"resources": {"core": core, "graphql": view(st.bucket(key, "graphql"))}, "rate": core}
    )


@route(
    "DELETE",
    "/installation/token",
    doc="https://docs.github.com/rest/apps/installations#revoke-an-installation-access-token",
)
async def revoke_own_token(request: web.Request) -> web.Response:
    token = caller_of(request).token
    if token is not None:
        token.revoked = True
    return no_content()


# ----------------------------------------------------------------------------- app webhook
HOOK_DOC = "https://docs.github.com/rest/apps/webhooks"


def _hook_delivery_id(request: web.Request) -> int:
    try:
        return int(request.match_info["delivery_id"])
    except ValueError:
        raise not_found() from None


def _hook_error(e: hooks.HookApiError) -> GitHubError:
    return GitHubError(e.status, e.message, errors=e.errors)


@route("GET", "/app/hook/deliveries",
       doc=HOOK_DOC + "#list-deliveries-for-an-app-webhook", auth="app")
async def list_hook_deliveries(request: web.Request) -> web.Response:
    per_page = int_param(request, "per_page", hooks.DEFAULT_PER_PAGE)
    per_page = hooks.DEFAULT_PER_PAGE if per_page < 1 else min(per_page, hooks.MAX_PER_PAGE)
    try:
        page = state_of(request).hook.page(
            per_page, request.query.get("cursor"), status=request.query.get("status"),
            redelivery=request.query.get("redelivery"))
    except hooks.HookApiError as e:
        raise _hook_error(e) from None
    # Cursor pagination, as GitHub links this endpoint: next/prev, never first/last.
    links = [
        f'<{request.url.update_query(per_page=str(per_page), cursor=cursor)}>; rel="{rel}"'
        for rel, cursor in (("prev", page.prev_cursor), ("next", page.next_cursor)) if cursor
    ]
    return json_response([d.summary() for d in page.items],
                         headers={"Link": ", ".join(links)} if links else None)


@route("GET", "/app/hook/deliveries/{delivery_id}",
       doc=HOOK_DOC + "#get-a-delivery-for-an-app-webhook", auth="app")
async def get_hook_delivery(request: web.Request) -> web.Response:
    delivery = state_of(request).hook.find(_hook_delivery_id(request))
    if delivery is None:
        raise not_found()
    return json_response(delivery.full())


@route("POST", "/app/hook/deliveries/{delivery_id}/attempts",
       doc=HOOK_DOC + "#redeliver-a-delivery-for-an-app-webhook", auth="app")
async def redeliver_hook_delivery(request: web.Request) -> web.Response:
    st = state_of(request)
    try:
        st.hook.request_redelivery(st, _hook_delivery_id(request))
    except hooks.HookApiError as e:
        raise _hook_error(e) from None
    return json_response({}, 202)


# ----------------------------------------------------------------------------- repositories
@route(
    "GET",
    "/installation/repositories",
    doc="https://docs.github.com/rest/apps/installations#list-repositories-accessible-to-the-app-installation",
)
async def list_installation_repos(request: web.Request) -> web.Response:
    st = state_of(request)
    caller = caller_of(request)
    assert caller.installation is not None
    # Every one is installed, so only the token can narrow them (can_see is O(n) per repo).
    repos = [r for r in caller.installation.repos if token_allows(caller, r)]
    page, headers = paginate(request, repos)
    return json_response(
        {
            "total_count": len(repos),
            "repository_selection": caller.installation.repository_selection,
            "repositories": [render.repo(st, r) for r in page],
        },
        headers=headers,
    )


@route("GET", "/repos/{owner}/{repo}",
       doc="https://docs.github.com/rest/repos/repos#get-a-repository")
async def get_repository(request: web.Request) -> web.Response:
    from tests.fakegithub.repo_rules import full_repo  # it imports this module

    repo = get_repo(request)
    # GitHub's Last-Modified here is the repository's updated_at (a push alone, or a new
    # issue, may change the body without it: If-Modified-Since then says "not modified").
    return json_response(full_repo(state_of(request), caller_of(request), repo),
                         headers={"Last-Modified": http_date(repo.updated_at)})


@route("PATCH", "/repos/{owner}/{repo}",
       doc="https://docs.github.com/rest/repos/repos#update-a-repository")
async def update_repository(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    body = await body_json(request)
    if repo.archived and set(body) - {"archived"}:
        raise archived_error()
    if "archived" in body:
        if not isinstance(body["archived"], bool):
            raise validation_failed("Repository", "archived", "invalid")
        repo.archived = body["archived"]
    if "private" in body:
        repo.visibility = "private" if body["private"] else "public"
    if body.get("visibility") in ("public", "private", "internal"):
        repo.visibility = body["visibility"]
    for key in ("description", "has_issues", "is_template", *REPO_SETTINGS):
        if key in body:
            setattr(repo, key, body[key])
    if isinstance(body.get("default_branch"), str):
        if body["default_branch"] not in repo.branches:
            raise validation_failed("Repository", "default_branch", "invalid")
        repo.default_branch = body["default_branch"]
    if isinstance(body.get("name"), str) and body["name"] != repo.name:
        if st.find_repo(f"{repo.owner.login}/{body['name']}") is not None:
            raise validation_failed("Repository", "name", "custom")
        repo.name = body["name"]
    repo.updated_at = time.time()
    from tests.fakegithub.repo_rules import full_repo  # it imports this module

    return json_response(full_repo(st, caller_of(request), repo))


def _resolve_ref(repo: Repo, ref: str) -> dict[str, str] | None:
    ref = ref.removeprefix("refs/heads/")
    if ref in repo.branches:
        return repo.branches[ref]
    for branch, sha in repo.heads.items():
        if len(ref) >= 7 and sha.startswith(ref):
            return repo.branches.get(branch, {})
    found = repo.commit(ref)  # an older commit, or a fork's pull request head
    return found[1] if found is not None else None


@route(
    "GET",
    "/repos/{owner}/{repo}/contents",
    "/repos/{owner}/{repo}/contents/{path:.*}",
    doc="https://docs.github.com/rest/repos/contents#get-repository-content",
)
async def get_contents(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    ref = request.query.get("ref") or repo.default_branch
    if not repo.heads:
        # No commit yet. (GitHub's git database and commit list APIs answer 409 "Git
        # Repository is empty."; the contents API answers 404 with this message.)
        raise GitHubError(404, "This repository is empty.")
    files = _resolve_ref(repo, ref)
    if files is None:
        raise GitHubError(404, f"No commit found for the ref {ref}")
    path = request.match_info.get("path", "").strip("/")
    if path in files:
        text = files[path]
        # GitHub sends the time of the last commit that touched the file; the fake keeps no
        # per-file history, so the repository's last push or settings change stands in (it
        # changes whenever the file does, and more often: never a 304 GitHub would not give).
        modified = {"Last-Modified": http_date(max(repo.pushed_at, repo.updated_at))}
        accept = request.headers.get("Accept", "")
        if "vnd.github.raw" in accept or "vnd.github.v3.raw" in accept:
            return web.Response(
                text=text, content_type="application/vnd.github.raw", charset="utf-8",
                headers=modified,
            )
        return json_response(render.content_file(st, repo, path, text, ref), headers=modified)
    prefix = f"{path}/" if path else ""
    entries: dict[str, tuple[str, str | None]] = {}
    for fpath, text in files.items():
        if fpath.startswith(prefix):
            head, sep, _ = fpath[len(prefix):].partition("/")
            entries[prefix + head] = ("dir", None) if sep else ("file", text)
    if not entries:
        raise not_found()
    return json_response(
        [
            render.content_entry(st, repo, p, kind, text, ref)
            for p, (kind, text) in sorted(entries.items())
        ]
    )


@route(
    "GET",
    "/repos/{owner}/{repo}/actions/permissions",
    doc="https://docs.github.com/rest/actions/permissions#get-github-actions-permissions-for-a-repository",
)
async def get_actions_permissions(request: web.Request) -> web.Response:
    repo = get_repo(request)
    if repo.workflow_permissions is None:
        return json_response({"enabled": False})
    return json_response({
        "enabled": True,
        "allowed_actions": "all",
        "sha_pinning_required": False,
    })


@route(
    "GET",
    "/repos/{owner}/{repo}/actions/permissions/workflow",
    doc="https://docs.github.com/rest/actions/permissions#get-default-workflow-permissions-for-a-repository",
)
async def get_workflow_permissions(request: web.Request) -> web.Response:
    repo = get_repo(request)
    if repo.workflow_permissions is None:
        raise not_found()  # Actions disabled
    # An organization's restricted default applies to all of its repositories.
    owner = repo.owner
    org_read = owner.type == "Organization" and owner.default_workflow_permissions == "read"
    return json_response(
        {
            "default_workflow_permissions": "read" if org_read else repo.workflow_permissions,
            "can_approve_pull_request_reviews": repo.can_approve_pull_request_reviews,
        }
    )


@route(
    "GET",
    "/orgs/{org}/actions/permissions/workflow",
    doc="https://docs.github.com/rest/actions/permissions#get-default-workflow-permissions-for-an-organization",
)
async def get_org_workflow_permissions(request: web.Request) -> web.Response:
    inst = caller_of(request).installation
    if inst is None or inst.account.type != "Organization" \
            or inst.account.login.lower() != request.match_info["org"].lower():
        raise not_found()
    if inst.permissions.get("organization_administration") not in ("read", "write"):
        raise GitHubError(403, "Resource not accessible by integration")
    return json_response(
        {
            "default_workflow_permissions": inst.account.default_workflow_permissions,
            "can_approve_pull_request_reviews": inst.account.can_approve_pull_request_reviews,
        }
    )


@route(
    "PUT",
    "/repos/{owner}/{repo}/actions/permissions/workflow",
    doc="https://docs.github.com/rest/actions/permissions#set-default-workflow-permissions-for-a-repository",
)
async def set_workflow_permissions(request: web.Request) -> web.Response:
    repo = writable(get_repo(request))
    token = caller_of(request).token
    if token is None or token.permissions.get("administration") != "write":
        raise GitHubError(403, "Resource not accessible by integration")
    if repo.workflow_permissions is None:
        raise not_found()
    body = await body_json(request)
    perm = body.get("default_workflow_permissions", repo.workflow_permissions)
    if perm not in ("read", "write"):
        raise validation_failed("Repository", "default_workflow_permissions", "invalid")
    repo.workflow_permissions = perm
    if isinstance(body.get("can_approve_pull_request_reviews"), bool):
        repo.can_approve_pull_request_reviews = body["can_approve_pull_request_reviews"]
    return no_content()


# (permission, role_name) GitHub reports for each role.
_ROLE_VIEW = {
    "admin": ("admin", "admin"),
    "maintain": ("write", "maintain"),
    "write": ("write", "write"),
    "triage": ("read", "triage"),
    "read": ("read", "read"),
    "none": ("none", "none"),
}


@route(
    "GET",
    "/repos/{owner}/{repo}/collaborators/{username}/permission",
    doc="https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user",
)
async def get_collaborator_permission(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    username = request.match_info["username"]
    user = st.user(username)
    role = repo.collaborators.get(username.lower())
    if role is None:
        # Owners administer their repositories; everyone can read a public one.
        role = "admin" if user is repo.owner else ("read" if not repo.private else "none")
    permission, role_name = _ROLE_VIEW[role]
    rank = PERMISSION_LEVELS.index(role)
    user_json = render.user(st, user)
    user_json["permissions"] = {
        "admin": rank <= 0,
        "maintain": rank <= 1,
        "push": rank <= 2,
        "triage": rank <= 3,
        "pull": rank <= 4,
    }
    user_json["role_name"] = role_name
    return json_response({"permission": permission, "role_name": role_name, "user": user_json})


# ----------------------------------------------------------------------------- issues
def _parse_since(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@route("GET", "/repos/{owner}/{repo}/issues",
       doc="https://docs.github.com/rest/issues/issues#list-repository-issues")
async def list_issues(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    q = request.query
    state = q.get("state", "open")
    issues: Iterable[Issue] = repo.issues.values()
    if not repo.has_issues:  # GitHub then lists only the pull requests
        issues = [i for i in issues if i.pull_request]
    if state in ("open", "closed"):
        issues = [i for i in issues if i.state == state]
    if creator := q.get("creator"):
        issues = [i for i in issues if i.user.login.lower() == creator.lower()]
    if labels := q.get("labels"):
        wanted = {n.strip().lower() for n in labels.split(",") if n.strip()}
        issues = [i for i in issues if wanted <= {n.lower() for n in i.labels}]
    if (since := _parse_since(q.get("since", ""))) is not None:
        issues = [i for i in issues if i.updated_at >= since]
    sort = q.get("sort", "created")
    keys: dict[str, Callable[[Issue], tuple[float, int]]] = {
        "created": lambda i: (i.created_at, i.number),
        "updated": lambda i: (i.updated_at, i.number),
        "comments": lambda i: (len(i.comments), i.number),
    }
    ordered = sorted(
        issues, key=keys.get(sort, keys["created"]), reverse=q.get("direction", "desc") != "asc"
    )
    page, headers = paginate(request, ordered)
    return json_response([render.issue(st, i) for i in page], headers=headers)


@route("POST", "/repos/{owner}/{repo}/issues",
       doc="https://docs.github.com/rest/issues/issues#create-an-issue", creates_content=True)
async def create_issue(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = issues_enabled(writable(get_repo(request)))
    body = await body_json(request)
    if "title" not in body or body["title"] is None:
        raise not_supplied("title")
    title = body["title"]
    if not isinstance(title, str | int) or not str(title).strip():
        raise validation_failed("Issue", "title", "missing_field")
    text = body.get("body")
    if text is not None and not isinstance(text, str):
        raise validation_failed("Issue", "body", "invalid")
    issue = st.add_issue(
        repo.full_name,
        str(title),
        text,
        labels=label_names(body.get("labels", [])),
    )
    issue.user = acting_user(request)
    issue.via_app = True
    data = render.issue(st, issue)
    return json_response(data, 201, {"Location": data["url"]})


@route("GET", "/repos/{owner}/{repo}/issues/{number}",
       doc="https://docs.github.com/rest/issues/issues#get-an-issue")
async def get_issue_handler(request: web.Request) -> web.Response:
    repo = get_repo(request)
    issue = get_issue(request, repo)
    # GitHub's Last-Modified here is the issue's updated_at.
    return json_response(render.issue(state_of(request), issue),
                         headers={"Last-Modified": http_date(issue.updated_at)})


STATE_REASONS = ("completed", "not_planned", "duplicate", "reopened")


@route("PATCH", "/repos/{owner}/{repo}/issues/{number}",
       doc="https://docs.github.com/rest/issues/issues#update-an-issue")
async def update_issue(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = writable(get_repo(request))
    issue = get_issue(request, repo)
    body = await body_json(request)
    now = time.time()
    if "title" in body:
        if body["title"] is None or not str(body["title"]).strip():
            raise validation_failed("Issue", "title", "missing_field")
        issue.title = str(body["title"])
    if "body" in body:
        issue.body = body["body"]
    if "labels" in body:
        issue.labels = st.ensure_labels(repo, label_names(body["labels"]))
    reason = body.get("state_reason")
    if reason is not None and reason not in STATE_REASONS:
        raise validation_failed("Issue", "state_reason", "invalid")
    new_state = body.get("state")
    if new_state is not None:
        if new_state not in ("open", "closed"):
            raise validation_failed("Issue", "state", "invalid")
        if new_state == "closed" and issue.state == "open":
            issue.state = "closed"
            issue.state_reason = reason if reason not in (None, "reopened") else "completed"
            issue.closed_at = now
            issue.closed_by = acting_user(request)
        elif new_state == "open" and issue.state == "closed":
            issue.state = "open"
            issue.state_reason = "reopened"
            issue.closed_at = None
            issue.closed_by = None
    issue.updated_at = now
    return json_response(render.issue(st, issue))


@route("GET", "/repos/{owner}/{repo}/issues/{number}/comments",
       doc="https://docs.github.com/rest/issues/comments#list-issue-comments")
async def list_comments(request: web.Request) -> web.Response:
    st = state_of(request)
    issue = get_issue(request, get_repo(request))
    comments = list(issue.comments)
    if (since := _parse_since(request.query.get("since", ""))) is not None:
        comments = [c for c in comments if c.updated_at >= since]
    page, headers = paginate(request, comments)
    return json_response([render.comment(st, c) for c in page], headers=headers)


def _comment_body(body: dict[str, Any]) -> str:
    if "body" not in body or body["body"] is None:
        raise not_supplied("body")
    if not isinstance(body["body"], str) or not body["body"].strip():
        raise validation_failed("IssueComment", "body", "missing_field")
    text: str = body["body"]
    return text


@route("POST", "/repos/{owner}/{repo}/issues/{number}/comments",
       doc="https://docs.github.com/rest/issues/comments#create-an-issue-comment",
       creates_content=True)
async def create_comment(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = writable(get_repo(request))
    issue = get_issue(request, repo)
    text = _comment_body(await body_json(request))
    comment = st.new_comment(issue, acting_user(request), text)
    comment.via_app = True
    data = render.comment(st, comment)
    return json_response(data, 201, {"Location": data["url"]})


def _comment_from_path(request: web.Request, repo: Repo) -> Comment:
    try:
        ident = int(request.match_info["comment_id"])
    except ValueError:
        raise not_found() from None
    comment = state_of(request).find_comment(repo, ident)
    if comment is None:
        raise not_found()
    return comment


@route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}",
       doc="https://docs.github.com/rest/issues/comments#get-an-issue-comment")
async def get_comment(request: web.Request) -> web.Response:
    repo = get_repo(request)
    return json_response(render.comment(state_of(request), _comment_from_path(request, repo)))


@route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}",
       doc="https://docs.github.com/rest/issues/comments#update-an-issue-comment")
async def update_comment(request: web.Request) -> web.Response:
    repo = writable(get_repo(request))
    comment = _comment_from_path(request, repo)
    comment.body = _comment_body(await body_json(request))
    comment.updated_at = time.time()
    return json_response(render.comment(state_of(request), comment))


@route("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}",
       doc="https://docs.github.com/rest/issues/comments#delete-an-issue-comment")
async def delete_comment(request: web.Request) -> web.Response:
    repo = writable(get_repo(request))
    state_of(request).delete_comment(_comment_from_path(request, repo).id)
    return no_content()


@route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
       doc="https://docs.github.com/rest/reactions/reactions#list-reactions-for-an-issue-comment")
async def list_reactions(request: web.Request) -> web.Response:
    st = state_of(request)
    comment = _comment_from_path(request, get_repo(request))
    reactions: list[Reaction] = list(comment.reactions)
    if content := request.query.get("content"):
        reactions = [x for x in reactions if x.content == content]
    page, headers = paginate(request, reactions)
    return json_response([render.reaction(st, x) for x in page], headers=headers)


@route("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
       doc="https://docs.github.com/rest/reactions/reactions#create-reaction-for-an-issue-comment",
       creates_content=True)
async def create_reaction(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = writable(get_repo(request))
    comment = _comment_from_path(request, repo)
    content = (await body_json(request)).get("content")
    if content not in REACTION_CONTENTS:
        raise validation_failed("Reaction", "content", "invalid")
    user = acting_user(request)
    for existing in comment.reactions:
        if existing.user is user and existing.content == content:
            return json_response(render.reaction(st, existing), 200)
    reaction = Reaction(st.next_id("reaction"), user, str(content), time.time())
    comment.reactions.append(reaction)
    return json_response(render.reaction(st, reaction), 201)


# ----------------------------------------------------------------------------- labels
@route("GET", "/repos/{owner}/{repo}/labels",
       doc="https://docs.github.com/rest/issues/labels#list-labels-for-a-repository")
async def list_labels(request: web.Request) -> web.Response:
    repo = get_repo(request)
    page, headers = paginate(request, sorted(repo.labels.values(), key=lambda lab: lab.id))
    st = state_of(request)
    return json_response([render.label(st, repo, lab) for lab in page], headers=headers)


@route("GET", "/repos/{owner}/{repo}/labels/{name}",
       doc="https://docs.github.com/rest/issues/labels#get-a-label")
async def get_label(request: web.Request) -> web.Response:
    repo = get_repo(request)
    lab = repo.labels.get(request.match_info["name"].lower())
    if lab is None:
        raise not_found()
    return json_response(render.label(state_of(request), repo, lab))


@route("POST", "/repos/{owner}/{repo}/labels",
       doc="https://docs.github.com/rest/issues/labels#create-a-label", creates_content=True)
async def create_label(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = writable(get_repo(request))
    body = await body_json(request)
    name = body.get("name")
    if name is None:
        raise not_supplied("name")
    if not isinstance(name, str) or not name.strip():
        raise validation_failed("Label", "name", "missing_field")
    if name.strip().lower() in repo.labels:
        raise validation_failed("Label", "name", "already_exists")
    color = str(body.get("color") or "ededed").removeprefix("#").lower()
    if not re.fullmatch(r"[0-9a-f]{6}", color):
        raise validation_failed("Label", "color", "invalid")
    description = body.get("description")
    lab = st.add_label(repo.full_name, name.strip(), color,
                       description if isinstance(description, str) else None)
    data = render.label(st, repo, lab)
    return json_response(data, 201, {"Location": data["url"]})


@route("DELETE", "/repos/{owner}/{repo}/labels/{name}",
       doc="https://docs.github.com/rest/issues/labels#delete-a-label")
async def delete_label(request: web.Request) -> web.Response:
    repo = writable(get_repo(request))
    lab = repo.labels.pop(request.match_info["name"].lower(), None)
    if lab is None:
        raise not_found()
    for issue in repo.issues.values():
        issue.labels = [n for n in issue.labels if n.lower() != lab.name.lower()]
    return no_content()


@route("GET", "/repos/{owner}/{repo}/issues/{number}/labels",
       doc="https://docs.github.com/rest/issues/labels#list-labels-for-an-issue")
async def list_issue_labels(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    issue = get_issue(request, repo)
    return json_response(render.issue(st, issue)["labels"])


@route("POST", "/repos/{owner}/{repo}/issues/{number}/labels",
       doc="https://docs.github.com/rest/issues/labels#add-labels-to-an-issue")
async def add_issue_labels(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = writable(get_repo(request))
    issue = get_issue(request, repo)
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise GitHubError(400, "Problems parsing JSON") from None
    names = label_names(data.get("labels", []) if isinstance(data, dict) else data)
    for name in st.ensure_labels(repo, names):
        if name not in issue.labels:
            issue.labels.append(name)
    issue.updated_at = time.time()
    return json_response(render.issue(st, issue)["labels"])


@route("DELETE", "/repos/{owner}/{repo}/issues/{number}/labels/{name}",
       doc="https://docs.github.com/rest/issues/labels#remove-a-label-from-an-issue")
async def remove_issue_label(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = writable(get_repo(request))
    issue = get_issue(request, repo)
    name = request.match_info["name"].lower()
    if name not in {n.lower() for n in issue.labels}:
        raise GitHubError(404, "Label does not exist")
    issue.labels = [n for n in issue.labels if n.lower() != name]
    issue.updated_at = time.time()
    return json_response(render.issue(st, issue)["labels"])


# ----------------------------------------------------------------------------- the user
def user_of(request: web.Request) -> User:
    """The user of a user access token; GitHub refuses an installation token with 403."""
    user = caller_of(request).user
    if user is None:
        raise GitHubError(403, "Resource not accessible by integration")
    return user


def _find_org(st: FakeState, login: str) -> User:
    org = st.users.get(login.lower())
    if org is None or org.type != "Organization":
        raise not_found()
    return org


@route("GET", "/user", doc="https://docs.github.com/rest/users/users#get-the-authenticated-user",
       auth="user")
async def get_authenticated_user(request: web.Request) -> web.Response:
    return json_response(render.private_user(state_of(request), user_of(request)))


@route(
    "GET",
    "/user/installations",
    doc="https://docs.github.com/rest/apps/installations#list-app-installations-accessible-to-the-user-access-token",
    auth="user",
)
async def list_user_installations(request: web.Request) -> web.Response:
    st = state_of(request)
    installations = st.user_installations(user_of(request).login)
    page, headers = paginate(request, installations)
    return json_response(
        {"total_count": len(installations),
         "installations": [render.installation(st, i) for i in page]},
        headers=headers,
    )


@route(
    "GET",
    "/user/memberships/orgs/{org}",
    doc="https://docs.github.com/rest/orgs/members#get-an-organization-membership-for-the-authenticated-user",
    auth="user",
)
async def get_own_org_membership(request: web.Request) -> web.Response:
    st = state_of(request)
    user = user_of(request)
    org = _find_org(st, request.match_info["org"])
    # A user access token reaches only what both the user and the App can: the App must
    # be installed on the organization.
    if not any(i.account is org for i in st.installations.values()):
        raise GitHubError(403, "Resource not accessible by integration")
    membership = st.org_membership(org.login, user.login)
    if membership is None:
        raise not_found()
    return json_response(render.org_membership(st, membership))


# ----------------------------------------------------------------------------- org members
_LEVELS = {"read": 1, "write": 2, "admin": 3}


def _grants(level: str | None, need: str) -> bool:
    return _LEVELS.get(level or "", 0) >= _LEVELS[need]


def _org_for_members(request: web.Request) -> User:
    """The addressed organization, when the caller may read its members: an installation
    on that organization whose installation (and token) hold `members: read`."""
    st = state_of(request)
    caller = caller_of(request)
    org = _find_org(st, request.match_info["org"])
    inst = caller.installation
    token_level = caller.token.permissions.get("members") if caller.token else None
    if (inst is None or inst.account is not org
            or not _grants(inst.permissions.get("members"), "read")
            or not _grants(token_level, "read")):
        raise GitHubError(403, "Resource not accessible by integration",
                          headers={"X-Accepted-GitHub-Permissions": "members=read"})
    return org


@route(
    "GET",
    "/orgs/{org}/memberships/{username}",
    doc="https://docs.github.com/rest/orgs/members#get-organization-membership-for-a-user",
)
async def get_org_membership(request: web.Request) -> web.Response:
    st = state_of(request)
    st.org_membership_requests += 1
    org = _org_for_members(request)
    membership = st.org_membership(org.login, request.match_info["username"])
    if membership is None:
        raise not_found()
    return json_response(render.org_membership(st, membership))


@route(
    "GET",
    "/orgs/{org}/teams/{team_slug}/memberships/{username}",
    doc="https://docs.github.com/rest/teams/members#get-team-membership-for-a-user",
)
async def get_team_membership(request: web.Request) -> web.Response:
    st = state_of(request)
    st.team_membership_requests += 1
    org = _org_for_members(request)
    team = st.teams.get((org.login.lower(), request.match_info["team_slug"].lower()))
    username = request.match_info["username"]
    role = team.members.get(username.lower()) if team is not None else None
    membership = st.org_membership(org.login, username)
    if team is None or role is None or membership is None:
        raise not_found()
    if membership.role == "admin":
        role = "maintainer"  # GitHub: an organization owner's team role is maintainer
    return json_response(render.team_membership(st, team, membership.user, role,
                                                membership.state))


# ----------------------------------------------------------------------------- github.com
SESSION_COOKIE = "user_session"
OAUTH_TOKEN_DOC = ("https://docs.github.com/apps/managing-oauth-apps/"
                   "troubleshooting-oauth-app-access-token-request-errors/")
OAUTH_AUTHORIZE_DOC = ("https://docs.github.com/apps/managing-oauth-apps/"
                       "troubleshooting-authorization-request-errors/")
REDIRECT_MISMATCH = "The redirect_uri MUST match the registered callback URL for this application."
LOGIN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
MANIFEST_DOC = "https://docs.github.com/apps/sharing-github-apps/registering-a-github-app-from-a-manifest"
# Events GitHub sends every App unasked; a manifest may not subscribe to them.
UNSUBSCRIBABLE_EVENTS = frozenset(
    {"installation", "installation_repositories", "installation_target",
     "github_app_authorization"}
)
# Events that need one of these permissions (metadata, always granted, is not listed).
EVENT_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "branch_protection_rule": ("administration",),
    "custom_property_values": ("organization_custom_properties",),
    "member": ("members",),
    "repository_ruleset": ("administration",),
    "security_and_analysis": ("administration",),
    "check_run": ("checks",),
    "check_suite": ("checks",),
    "commit_comment": ("contents",),
    "create": ("contents",),
    "delete": ("contents",),
    "deployment": ("deployments",),
    "deployment_status": ("deployments",),
    "issues": ("issues",),
    "issue_comment": ("issues", "pull_requests"),
    "membership": ("members",),
    "organization": ("members",),
    "pull_request": ("pull_requests",),
    "pull_request_review": ("pull_requests",),
    "pull_request_review_comment": ("pull_requests",),
    "push": ("contents",),
    "release": ("contents",),
    "status": ("statuses",),
    "team": ("members",),
    "workflow_job": ("actions",),
    "workflow_run": ("actions",),
}
MAX_APP_NAME = 34


def html_page(title: str, body: str, status: int = 200) -> web.Response:
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · GitHub</title></head>\n<body>\n{body}\n</body></html>\n"
    )
    return web.Response(text=document, status=status, content_type="text/html",
                        charset="utf-8")


def web_not_found() -> web.Response:
    return html_page("Page not found",
                     "<h1>404</h1><p>This is not the web page you are looking for.</p>", 404)


def redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def with_query(url: str, params: dict[str, str | None]) -> str:
    """`url` with `params` (None values left out) added to its query string."""
    return str(URL(url).update_query({k: v for k, v in params.items() if v is not None}))


def _http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def callback_matches(callback: str, redirect_uri: str) -> bool:
    """GitHub's rule: same scheme, host and port; the path the callback's or below it."""
    cb, ru = urlsplit(callback), urlsplit(redirect_uri)
    try:
        same_port = cb.port == ru.port
    except ValueError:
        return False
    if cb.scheme != ru.scheme or (cb.hostname or "") != (ru.hostname or "") or not same_port:
        return False
    base = cb.path.rstrip("/")
    return ru.path in (base, base + "/") or ru.path.startswith(base + "/")


def local_path(target: str | None) -> str:
    """`target` when it is a path on this site, else "/" (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def browser_user(request: web.Request) -> User | None:
    """Who is signed in on the fake's github.com in this browser (the `user_session` cookie)."""
    return state_of(request).session_user(request.cookies.get(SESSION_COOKIE))


def to_sign_in(return_to: str, login: str | None = None) -> web.Response:
    params = {"return_to": return_to}
    if login:
        params["login"] = login
    return redirect("/login?" + urlencode(params))


def _sign_in_form(return_to: str, login: str = "", error: str | None = None,
                  status: int = 200) -> web.Response:
    flash = f'<div class="flash flash-error" role="alert">{escape(error)}</div>\n' if error else ""
    return html_page("Sign in to GitHub", (
        "<h1>Sign in to GitHub</h1>\n" + flash +
        '<form action="/session" method="post">\n'
        '<label for="login_field">Username or email address</label>\n'
        f'<input type="text" name="login" id="login_field" value="{escape(login)}" '
        'autocomplete="username" autofocus required>\n'
        f'<input type="hidden" name="return_to" value="{escape(return_to)}">\n'
        '<input type="submit" name="commit" value="Sign in">\n'
        "</form>"
    ), status)


@route("GET", "/", doc="https://github.com", auth="web")
async def web_home(request: web.Request) -> web.Response:
    user = browser_user(request)
    if user is None:
        return html_page("GitHub", '<p><a href="/login">Sign in</a></p>')
    return html_page("GitHub", (
        f'<p>Signed in as <strong class="css-truncate-target">{escape(user.login)}</strong></p>'
        '\n<p><a href="/logout">Sign out</a></p>'
    ))


@route("GET", "/login", doc="https://github.com/login", auth="web")
async def web_login(request: web.Request) -> web.Response:
    return_to = local_path(request.query.get("return_to"))
    if browser_user(request) is not None:
        return redirect(return_to)
    return _sign_in_form(return_to, request.query.get("login", ""))


@route("POST", "/session", doc="https://github.com/login", auth="web")
async def web_create_session(request: web.Request) -> web.Response:
    st = state_of(request)
    form = await request.post()
    login = str(form.get("login", "")).strip()
    return_to = local_path(str(form.get("return_to", "")))
    existing = st.users.get(login.lower())
    if not LOGIN_RE.fullmatch(login) or (existing is not None and existing.type != "User"):
        return _sign_in_form(return_to, login, "Incorrect username or password.", 422)
    value = st.web_session(login)
    resp = redirect(return_to)
    resp.set_cookie(SESSION_COOKIE, value, path="/", httponly=True, samesite="Lax")
    resp.set_cookie("logged_in", "yes", path="/", httponly=True, samesite="Lax")
    resp.set_cookie("dotcom_user", st.user(login).login, path="/", httponly=True,
                    samesite="Lax")
    return resp


@route("GET", "/logout", doc="https://github.com/logout", auth="web")
async def web_logout_page(request: web.Request) -> web.Response:
    return html_page("Sign out", (
        "<h1>Are you sure you want to sign out?</h1>\n"
        '<form action="/logout" method="post"><input type="submit" value="Sign out"></form>'
    ))


@route("POST", "/logout", doc="https://github.com/logout", auth="web")
async def web_logout(request: web.Request) -> web.Response:
    state_of(request).web_sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
    resp = redirect("/")
    for name in (SESSION_COOKIE, "logged_in", "dotcom_user"):
        resp.del_cookie(name, path="/")
    return resp


# ----------------------------------------------------------------------------- OAuth web flow
@route(
    "GET",
    "/login/oauth/authorize",
    doc="https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-user-access-token-for-a-github-app",
    auth="web",
)
async def oauth_authorize(request: web.Request) -> web.Response:
    st = state_of(request)
    q = request.query
    if q.get("client_id") != st.client_id:
        return web_not_found()
    state = q.get("state")
    given = q.get("redirect_uri")
    if given is None or given == "":
        if not st.callback_urls:
            return html_page("Application error", (
                "<h1>The redirect_uri is missing</h1><p>This GitHub App has no callback URL; "
                "the authorization request must name one.</p>"
            ), 422)
        redirect_uri = st.callback_urls[0]
    elif st.callback_urls and not any(callback_matches(cb, given) for cb in st.callback_urls):
        # GitHub sends the error to the App's registered callback URL, not to the given one.
        st.oauth_errors += 1
        return redirect(with_query(st.callback_urls[0], {
            "error": "redirect_uri_mismatch",
            "error_description": REDIRECT_MISMATCH,
            "error_uri": OAUTH_AUTHORIZE_DOC + "#redirect-uri-mismatch",
            "state": state,
        }))
    elif not _http_url(given):
        return html_page("Application error",
                         "<h1>The redirect_uri is not a valid URL</h1>", 422)
    else:
        redirect_uri = given
    user = browser_user(request)
    if user is None:
        return to_sign_in(request.path_qs, q.get("login"))
    code = st.issue_oauth_code(user.login, redirect_uri, state=state)
    return redirect(with_query(redirect_uri, {"code": code.code, "state": state}))


async def _oauth_params(request: web.Request) -> dict[str, str]:
    """The access_token endpoint's parameters: query string, then a form or JSON body."""
    params = {k: v for k, v in request.query.items()}
    if request.content_type == "application/json":
        try:
            data = json.loads(await request.read() or b"{}")
        except ValueError:
            data = None
        if isinstance(data, dict):
            params.update({str(k): str(v) for k, v in data.items() if v is not None})
    else:
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


@route(
    "POST",
    "/login/oauth/access_token",
    doc="https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-user-access-token-for-a-github-app",
    auth="web",
)
async def oauth_access_token(request: web.Request) -> web.Response:
    st = state_of(request)
    params = await _oauth_params(request)
    now = time.time()

    def answer(data: dict[str, Any]) -> web.Response:
        # GitHub answers JSON only when asked; otherwise a form-encoded body.
        if "application/json" in request.headers.get("Accept", ""):
            return json_response(data)
        return web.Response(text=urlencode(data), content_type="application/x-www-form-urlencoded",
                            charset="utf-8")

    def error(code: str, description: str, uri: str) -> web.Response:
        st.oauth_errors += 1
        return answer({"error": code, "error_description": description, "error_uri": uri})

    def issued(token: UserToken) -> web.Response:
        return answer({
            "access_token": token.token,
            "expires_in": max(0, round(token.expires_at - now)),
            "refresh_token": token.refresh_token,
            "refresh_token_expires_in": max(0, round(token.refresh_expires_at - now)),
            "token_type": "bearer",
            "scope": "",
        })

    if params.get("client_id") != st.client_id or not secrets.compare_digest(
            params.get("client_secret", "").encode(), st.client_secret.encode()):
        return error("incorrect_client_credentials",
                     "The client_id and/or client_secret passed are incorrect.",
                     OAUTH_TOKEN_DOC + "#incorrect-client-credentials")
    grant = params.get("grant_type", "authorization_code")
    if grant == "refresh_token":
        old = st.find_refresh_token(params.get("refresh_token", ""))
        if old is None or old.client_id != st.client_id or not old.refreshable(now):
            return error("bad_refresh_token", "The refresh token passed is incorrect or expired.",
                         OAUTH_TOKEN_DOC + "#bad-refresh-token")
        # The refresh token and the access token it came with stop working.
        old.refresh_used = True
        old.revoked = True
        return issued(st.issue_user_token(old.user.login))
    if grant != "authorization_code":
        return error("unsupported_grant_type", "The grant_type passed is not supported.",
                     OAUTH_TOKEN_DOC)
    code = st.oauth_codes.get(params.get("code", ""))
    if code is None or code.used or now >= code.expires_at or code.client_id != st.client_id:
        return error("bad_verification_code", "The code passed is incorrect or expired.",
                     OAUTH_TOKEN_DOC + "#bad-verification-code")
    if params.get("redirect_uri") and params["redirect_uri"] != code.redirect_uri:
        return error("redirect_uri_mismatch", REDIRECT_MISMATCH,
                     OAUTH_AUTHORIZE_DOC + "#redirect-uri-mismatch2")
    code.used = True
    return issued(st.issue_user_token(code.user.login))


# ----------------------------------------------------------------------------- manifest flow
def validate_manifest(raw: Any) -> tuple[dict[str, Any], list[str]]:
    """The manifest, and what GitHub would reject in it (empty when it is fine)."""
    if not isinstance(raw, str) or not raw.strip():
        return {}, ["Manifest can't be blank"]
    try:
        manifest = json.loads(raw)
    except ValueError:
        return {}, ["Manifest is not valid JSON"]
    if not isinstance(manifest, dict):
        return {}, ["Manifest must be a JSON object"]
    errors: list[str] = []

    def url_field(value: Any, label: str) -> None:
        if value is None or value == "":
            errors.append(f"{label} can't be blank")
        elif not _http_url(value):
            errors.append(f"{label} is not a valid URL")

    url_field(manifest.get("url"), "Url")
    hook = manifest.get("hook_attributes")
    url_field(hook.get("url") if isinstance(hook, dict) else None, "Hook attributes url")
    url_field(manifest.get("redirect_url"), "Redirect url")
    name = manifest.get("name")
    if name is not None and not isinstance(name, str):
        errors.append("Name is invalid")
    elif isinstance(name, str) and len(name) > MAX_APP_NAME:
        errors.append(f"Name is too long (maximum is {MAX_APP_NAME} characters)")
    callbacks = manifest.get("callback_urls", [])
    if not isinstance(callbacks, list) or len(callbacks) > 10:
        errors.append("Callback urls must be a list of at most 10 URLs")
    else:
        for cb in callbacks:
            url_field(cb, "Callback url")
    for key in ("setup_url",):
        if manifest.get(key) is not None:
            url_field(manifest[key], key.replace("_", " ").capitalize())
    permissions = manifest.get("default_permissions", {})
    if not isinstance(permissions, dict) or any(
            not isinstance(v, str) or v not in _LEVELS for v in permissions.values()):
        errors.append("Default permissions are invalid")
        permissions = {}
    events = manifest.get("default_events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        errors.append("Default events must be a list of event names")
        events = []
    unsupported = [e for e in events if e in UNSUBSCRIBABLE_EVENTS]
    if unsupported:
        errors.append(f"Default events unsupported: {', '.join(unsupported)}")
    for event in events:
        needs = EVENT_PERMISSIONS.get(event, ())
        if needs and not any(p in permissions for p in needs):
            errors.append(f"Default events {event} requires the "
                          f"{' or '.join(needs)} permission")
    return manifest, errors


def _manifest_errors_page(errors: list[str]) -> web.Response:
    items = "".join(f"<li>{escape(e)}</li>" for e in errors)
    return html_page("Invalid GitHub App manifest", (
        "<h1>Invalid GitHub App configuration</h1>\n"
        f'<ul class="flash flash-error" role="alert">{items}</ul>\n'
        f'<p><a href="{MANIFEST_DOC}">Registering a GitHub App from a manifest</a></p>'
    ), 422)


def _manifest_page(draft: ManifestDraft, owner: User, name: str,
                   error: str | None = None) -> web.Response:
    flash = f'<div class="flash flash-error" role="alert">{escape(error)}</div>\n' if error else ""
    return html_page(f"Create GitHub App for {owner.login}", (
        f"<h1>Create GitHub App for <strong>{escape(owner.login)}</strong></h1>\n" + flash +
        f'<p>GitHub App name: <strong id="manifest-name">{escape(name)}</strong></p>\n'
        f'<form action="/settings/apps/manifest/{draft.id}" method="post">\n'
        '<label for="integration_name">GitHub App name</label>\n'
        f'<input type="text" id="integration_name" name="name" value="{escape(name)}" required>\n'
        '<input type="submit" value="Create GitHub App">\n'
        "</form>"
    ), 422 if error else 200)


def _manifest_owner(st: FakeState, draft: ManifestDraft, user: User) -> User | None:
    """Whom the App is registered for; None when `user` may not register it there."""
    if draft.org is None:
        return user
    membership = st.org_membership(draft.org.login, user.login)
    ok = membership is not None and membership.role == "admin" and membership.state == "active"
    return draft.org if ok else None


@route("POST", "/settings/apps/new", "/organizations/{org}/settings/apps/new",
       doc=MANIFEST_DOC, auth="web")
async def manifest_new(request: web.Request) -> web.Response:
    st = state_of(request)
    org: User | None = None
    if "org" in request.match_info:
        org = st.users.get(request.match_info["org"].lower())
        if org is None or org.type != "Organization":
            return web_not_found()
    form = await request.post()
    manifest, errors = validate_manifest(form.get("manifest"))
    if errors:
        return _manifest_errors_page(errors)
    draft = ManifestDraft(secrets.token_hex(16), manifest, org, request.query.get("state"),
                          time.time() + st.manifest_code_ttl_seconds)
    st.manifest_drafts[draft.id] = draft
    user = browser_user(request)
    if user is None:
        # The manifest waits while the user signs in.
        return to_sign_in(f"/settings/apps/manifest/{draft.id}")
    owner = _manifest_owner(st, draft, user)
    if owner is None:
        return web_not_found()
    return _manifest_page(draft, owner, str(manifest.get("name") or ""))


def _draft(request: web.Request) -> ManifestDraft | None:
    st = state_of(request)
    draft = st.manifest_drafts.get(request.match_info["draft"])
    if draft is None or time.time() >= draft.expires_at:
        return None
    return draft


@route("GET", "/settings/apps/manifest/{draft}", doc=MANIFEST_DOC, auth="web")
async def manifest_confirm_page(request: web.Request) -> web.Response:
    draft = _draft(request)
    if draft is None:
        return web_not_found()
    user = browser_user(request)
    if user is None:
        return to_sign_in(request.path)
    owner = _manifest_owner(state_of(request), draft, user)
    if owner is None:
        return web_not_found()
    return _manifest_page(draft, owner, str(draft.manifest.get("name") or ""))


@route("POST", "/settings/apps/manifest/{draft}", doc=MANIFEST_DOC, auth="web")
async def manifest_confirm(request: web.Request) -> web.Response:
    st = state_of(request)
    draft = _draft(request)
    if draft is None:
        return web_not_found()
    user = browser_user(request)
    if user is None:
        return to_sign_in(request.path)
    owner = _manifest_owner(st, draft, user)
    if owner is None:
        return web_not_found()
    form = await request.post()
    name = str(form.get("name", draft.manifest.get("name") or "")).strip()
    if not name:
        return _manifest_page(draft, owner, name, "Name can't be blank")
    if len(name) > MAX_APP_NAME:
        return _manifest_page(draft, owner, name,
                              f"Name is too long (maximum is {MAX_APP_NAME} characters)")
    del st.manifest_drafts[draft.id]
    conversion = st.create_manifest_code(draft.manifest, owner.login, name=name)
    return redirect(with_query(str(draft.manifest["redirect_url"]),
                               {"code": conversion.code, "state": draft.state}))


@route(
    "POST",
    "/app-manifests/{code}/conversions",
    doc="https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest",
    auth="none",
)
async def manifest_conversion(request: web.Request) -> web.Response:
    st = state_of(request)
    now = time.time()
    conversion = st.manifest_codes.get(request.match_info["code"])
    if conversion is None or conversion.used or now >= conversion.expires_at:
        raise not_found()
    conversion.used = True
    # GitHub generates the webhook secret (a manifest cannot set one).
    conversion.webhook_secret = secrets.token_hex(20)
    st.webhook_secret = conversion.webhook_secret
    # The fake now is the App the manifest describes (same id, key and client).
    st.app_name = conversion.name
    st.app_owner = conversion.owner
    callbacks = conversion.manifest.get("callback_urls")
    if isinstance(callbacks, list):
        st.callback_urls = [str(c) for c in callbacks]
    st.manifest_conversions += 1
    return json_response(render.manifest_app(st, conversion, now), 201)


# ----------------------------------------------------------------------------- graphql
@route("POST", "/graphql", doc="https://docs.github.com/graphql")
async def graphql(request: web.Request) -> web.Response:
    """GraphQL over the slice of GitHub's schema in tests/fakegithub/graphql.py."""
    st = state_of(request)
    caller = caller_of(request)
    body = await body_json(request)
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        return json_response({"errors": [{"message": "A query attribute must be specified and "
                                                     "must be a string."}]}, 200)
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        return json_response({"errors": [{"message": "Variables are invalid JSON."}]}, 200)
    name = body.get("operationName")
    bucket = st.bucket(caller.bucket_key, "graphql")

    def rate(cost: int) -> dict[str, Any] | None:
        if cost > bucket.remaining:
            return None
        return {"limit": bucket.limit, "cost": cost, "used": bucket.used + cost,
                "remaining": bucket.remaining - cost, "resetAt": iso(bucket.reset_at),
                "nodeCount": 0}

    out = gql.run(st, query, variables, name if isinstance(name, str) else None,
                  lambda repo: can_see(caller, repo), rate)
    request[GRAPHQL_COST] = out.cost
    return json_response(out.body)


# ----------------------------------------------------------------------------- server
def create_app(state: FakeState) -> web.Application:
    # Pull request and check run endpoints, and the git/contents writes, live in modules of
    # their own (they import this one); importing them registers them.
    from tests.fakegithub import checks, git, repo_rules  # noqa: F401

    app = web.Application(middlewares=[github_middleware])
    app[STATE] = state
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)
    return app


class FakeGitHub:
    """A running fake: `async with FakeGitHub() as gh:` then point the app at `gh.url`."""

    def __init__(
        self, state: FakeState | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = state or FakeState()
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL, no trailing slash: use as GITHUB_API_URL / gidgethub's base_url."""
        return f"http://{self.host}:{self.port}"

    @property
    def app_id(self) -> int:
        return self.state.app_id

    @property
    def private_key_pem(self) -> str:
        return self.state.private_key_pem

    @property
    def bot_login(self) -> str:
        return self.state.bot_login

    def env(self) -> dict[str, str]:
        """Settings variables that point the app at this fake."""
        return {
            "GITHUB_API_URL": self.url,
            "APP_ID": str(self.app_id),
            "PRIVATE_KEY": self.private_key_pem,
            "APP_NAME": self.state.app_slug,
            "GITHUB_URL": self.url,
            "GITHUB_CLIENT_ID": self.state.client_id,
            "GITHUB_CLIENT_SECRET": self.state.client_secret,
        }

    def installation_token(self, installation_id: int) -> str:
        """A fresh installation token without the JWT round trip (for arranging tests)."""
        return self.state.issue_token(installation_id).token

    def user_token(self, login: str) -> str:
        """A user access token (ghu_) for `login` without the web flow."""
        return self.state.issue_user_token(login).token

    def session_cookie(self, login: str) -> dict[str, str]:
        """Cookies of a browser signed in on the fake's github.com as `login`."""
        return {SESSION_COOKIE: self.state.web_session(login)}

    async def start(self) -> FakeGitHub:
        runner = web.AppRunner(create_app(self.state), access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.state.api_url = self.url
        return self

    async def send_event(
        self, event: str, payload: dict[str, Any], *,
        installation: Installation | int | None = None, delivered_at: float | None = None,
        guid: str | None = None,
    ) -> hooks.HookDelivery | None:
        """GitHub sends `event` to the App's hook (`state.hook.url`); see hooks.send_event."""
        return await hooks.send_event(self.state, event, payload, installation=installation,
                                      delivered_at=delivered_at, guid=guid)

    async def hooks_idle(self) -> None:
        """Wait until every redelivery asked through the API has been sent and logged."""
        await self.state.hook.idle()

    async def close(self) -> None:
        await self.state.hook.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGitHub:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
