"""The fake GitHub's web side (sign-in, the OAuth web flow, the manifest flow) and the
user and organization-membership endpoints a dashboard sign-in needs, over real sockets."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_jwt
from yarl import URL

from tests.fakegithub import webhooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import DEFAULT_INSTALLATION_PERMISSIONS

CALLBACK = "http://dashboard.example:8080/login/callback"
WITH_MEMBERS = {**DEFAULT_INSTALLATION_PERMISSIONS, "members": "read"}
TOKEN_KEYS = ["access_token", "expires_in", "refresh_token", "refresh_token_expires_in",
              "token_type", "scope"]
OAUTH_DOC = ("https://docs.github.com/apps/managing-oauth-apps/"
             "troubleshooting-oauth-app-access-token-request-errors/")
MANIFEST: dict[str, Any] = {
    "name": "Policy Enforcer (acme)",
    "url": "https://enforcer.example.com",
    "hook_attributes": {"url": "https://enforcer.example.com/api/github/webhooks"},
    "redirect_url": "https://enforcer.example.com/setup/manifest",
    "callback_urls": ["https://enforcer.example.com/login/callback"],
    "public": False,
    "default_permissions": {"contents": "read", "issues": "write", "members": "read"},
    "default_events": ["push", "issue_comment", "repository"],
}


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies (also for 127.0.0.1) and never follows redirects itself."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def call(session: aiohttp.ClientSession, method: str, url: str, token: str | None = None,
               **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with session.request(method, url, headers=headers, allow_redirects=False,
                               **kwargs) as resp:
        text = await resp.text()
        ctype = resp.headers.get("Content-Type", "")
        body: Any = json.loads(text) if text and ctype.startswith("application/json") else text
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def authorize_path(gh: FakeGitHub, redirect_uri: str | None = CALLBACK,
                   state: str = "st-1", **extra: str) -> str:
    params = {"client_id": gh.state.client_id, "state": state, **extra}
    if redirect_uri is not None:
        params["redirect_uri"] = redirect_uri
    return str(URL("/login/oauth/authorize").with_query(params))


async def sign_in(browser: aiohttp.ClientSession, gh: FakeGitHub, login: str,
                  return_to: str = "/") -> str:
    """Sign in through the fake's form, as a person would; returns where it sent us."""
    status, _, page = await call(browser, "GET", f"{gh.url}/login",
                                 params={"return_to": return_to})
    assert status == 200 and 'action="/session"' in page
    status, headers, _ = await call(browser, "POST", f"{gh.url}/session",
                                    data={"login": login, "return_to": return_to})
    assert status == 302
    return headers["location"]


async def get_code(browser: aiohttp.ClientSession, gh: FakeGitHub, login: str,
                   redirect_uri: str = CALLBACK, state: str = "st-1") -> str:
    path = authorize_path(gh, redirect_uri, state)
    status, headers, _ = await call(browser, "GET", gh.url + path)
    if urlsplit(headers["location"]).path == "/login":
        await sign_in(browser, gh, login, path)
        status, headers, _ = await call(browser, "GET", gh.url + path)
    assert status == 302, headers
    q = query_of(headers["location"])
    assert q["state"] == state
    return q["code"]


async def exchange(session: aiohttp.ClientSession, gh: FakeGitHub, **params: str
                   ) -> tuple[int, dict[str, str], Any]:
    data = {"client_id": gh.state.client_id, "client_secret": gh.state.client_secret, **params}
    return await call(session, "POST", f"{gh.url}/login/oauth/access_token", data=data,
                      headers={"Accept": "application/json"})


# ----------------------------------------------------------------------------- the OAuth dance
async def test_the_whole_oauth_web_flow(fake_github: FakeGitHub,
                                        browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    gh.state.callback_urls = [CALLBACK]
    path = authorize_path(gh, login="alice")

    # Not signed in: GitHub sends the browser to its sign-in form first.
    status, headers, _ = await call(browser, "GET", gh.url + path)
    assert status == 302
    login_url = headers["location"]
    assert urlsplit(login_url).path == "/login"
    assert query_of(login_url)["return_to"] == path
    status, headers, page = await call(browser, "GET", gh.url + login_url)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "x-ratelimit-limit" not in headers and "x-github-media-type" not in headers
    assert re.search(r'<form action="/session" method="post">', page)
    assert 'name="login"' in page and 'value="alice"' in page and 'value="Sign in"' in page
    hidden = re.search(r'name="return_to" value="([^"]*)"', page)
    assert hidden is not None and unescape(hidden.group(1)) == path

    status, headers, _ = await call(browser, "POST", f"{gh.url}/session",
                                    data={"login": "alice", "return_to": path})
    assert status == 302 and headers["location"] == path
    cookie = next(m for m in browser.cookie_jar if m.key == "user_session")
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert gh.state.session_user(cookie.value) is gh.state.user("alice")

    status, headers, _ = await call(browser, "GET", gh.url + path)
    assert status == 302
    target = headers["location"]
    assert target.startswith(CALLBACK + "?")
    q = query_of(target)
    assert q["state"] == "st-1" and re.fullmatch(r"[0-9a-f]{20}", q["code"])
    assert gh.state.oauth_codes_issued == 1

    status, headers, token = await exchange(browser, gh, code=q["code"], redirect_uri=CALLBACK)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert list(token) == TOKEN_KEYS
    assert token["access_token"].startswith("ghu_") and token["refresh_token"].startswith("ghr_")
    assert token["expires_in"] == 28800 and token["refresh_token_expires_in"] == 15897600
    assert token["token_type"] == "bearer" and token["scope"] == ""

    # The token speaks for alice, through gidgethub as the app uses it.
    api = GitHubAPI(browser, "tests", oauth_token=token["access_token"], base_url=gh.url)
    me = await api.getitem("/user")
    assert me["login"] == "alice" and me["id"] == gh.state.user("alice").id
    assert me["type"] == "User" and "two_factor_authentication" in me
    assert {"name", "email", "avatar_url", "created_at", "plan"} <= set(me)
    assert gh.state.log[-1].user_login == "alice" and gh.state.log[-1].installation_id is None


async def test_the_token_answer_is_form_encoded_unless_json_is_asked_for(
        fake_github: FakeGitHub, browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    code = await get_code(browser, gh, "bob")
    body = {"client_id": gh.state.client_id, "client_secret": gh.state.client_secret,
            "code": code}
    status, headers, text = await call(browser, "POST", f"{gh.url}/login/oauth/access_token",
                                       data=body)
    assert status == 200
    assert headers["content-type"].startswith("application/x-www-form-urlencoded")
    answer = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
    assert answer["access_token"].startswith("ghu_") and answer["token_type"] == "bearer"
    assert answer["expires_in"] == "28800" and answer["scope"] == ""

    # A JSON request body works as well as a form.
    code = await get_code(browser, gh, "bob")
    status, _, data = await call(browser, "POST", f"{gh.url}/login/oauth/access_token",
                                 json={**body, "code": code},
                                 headers={"Accept": "application/json"})
    assert status == 200 and data["access_token"].startswith("ghu_")

    # Errors follow the Accept header too.
    _, headers, text = await call(browser, "POST", f"{gh.url}/login/oauth/access_token",
                                  data={**body, "code": "nope"})
    assert headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert parse_qs(text)["error"] == ["bad_verification_code"]


async def test_oauth_error_answers_are_200s_with_githubs_fields(
        fake_github: FakeGitHub, browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    code = await get_code(browser, gh, "carol")

    status, _, data = await exchange(browser, gh, code=code, client_secret="wrong")
    assert status == 200 and data == {
        "error": "incorrect_client_credentials",
        "error_description": "The client_id and/or client_secret passed are incorrect.",
        "error_uri": OAUTH_DOC + "#incorrect-client-credentials",
    }
    _, _, data = await exchange(browser, gh, code=code, client_id="Iv1.0000000000000000")
    assert data["error"] == "incorrect_client_credentials"

    _, _, data = await exchange(browser, gh, code=code,
                                redirect_uri="http://dashboard.example:8080/elsewhere")
    assert data["error"] == "redirect_uri_mismatch"
    assert data["error_description"] == (
        "The redirect_uri MUST match the registered callback URL for this application.")

    _, _, data = await exchange(browser, gh, code="0123456789abcdef0123")
    assert data == {
        "error": "bad_verification_code",
        "error_description": "The code passed is incorrect or expired.",
        "error_uri": OAUTH_DOC + "#bad-verification-code",
    }
    # None of those spent the code.
    _, _, data = await exchange(browser, gh, code=code)
    assert data["access_token"].startswith("ghu_")
    assert gh.state.oauth_errors == 4 and gh.state.oauth_tokens_issued == 1


async def test_a_code_works_once_and_expires(fake_github: FakeGitHub,
                                             browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    code = await get_code(browser, gh, "dave")
    _, _, data = await exchange(browser, gh, code=code, redirect_uri=CALLBACK)
    assert "access_token" in data
    _, _, data = await exchange(browser, gh, code=code, redirect_uri=CALLBACK)
    assert data["error"] == "bad_verification_code"

    code = await get_code(browser, gh, "dave")
    gh.state.oauth_codes[code].expires_at = time.time() - 1  # ten minutes later
    _, _, data = await exchange(browser, gh, code=code)
    assert data["error"] == "bad_verification_code"


async def test_authorize_checks_the_client_and_the_redirect_uri(
        fake_github: FakeGitHub, browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    gh.state.callback_urls = [CALLBACK, "https://other.example/cb"]
    await sign_in(browser, gh, "erin")

    status, headers, page = await call(
        browser, "GET", f"{gh.url}/login/oauth/authorize?client_id=Iv1.unknown&state=x")
    assert status == 404 and headers["content-type"].startswith("text/html")
    assert "Page not found" in page

    # A redirect_uri outside the callback URLs: the error goes to the registered one.
    for bad in ("http://evil.example/login/callback", "https://dashboard.example:8080/login/callback",
                "http://dashboard.example:8081/login/callback",
                "http://dashboard.example:8080/login/callbackx", "http://dashboard.example:8080/"):
        status, headers, _ = await call(browser, "GET", gh.url + authorize_path(gh, bad, "s9"))
        assert status == 302, bad
        assert headers["location"].startswith(CALLBACK + "?")
        q = query_of(headers["location"])
        assert q["error"] == "redirect_uri_mismatch" and q["state"] == "s9" and "code" not in q
        assert q["error_description"].startswith("The redirect_uri MUST match")

    # A path below a callback URL is fine; so is the second one; none means the first.
    for good in (CALLBACK + "/deeper", "https://other.example/cb"):
        status, headers, _ = await call(browser, "GET", gh.url + authorize_path(gh, good))
        assert status == 302 and headers["location"].startswith(good + "?code=")
    status, headers, _ = await call(browser, "GET", gh.url + authorize_path(gh, None))
    assert headers["location"].startswith(CALLBACK + "?code=")
    code = query_of(headers["location"])["code"]
    _, _, data = await exchange(browser, gh, code=code, redirect_uri=CALLBACK)
    assert "access_token" in data

    # No callback URL registered and none given: nowhere to send the user.
    gh.state.callback_urls = []
    status, _, _ = await call(browser, "GET", gh.url + authorize_path(gh, None))
    assert status == 422


async def test_the_sign_in_form_refuses_bad_logins_and_foreign_return_to(
        fake_github: FakeGitHub, browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    gh.state.add_installation("acme")
    for bad in ("", "acme", "-x", "a" * 40, "bad name"):
        status, _, page = await call(browser, "POST", f"{gh.url}/session",
                                     data={"login": bad, "return_to": "/"})
        assert status == 422 and "Incorrect username or password." in page, bad
    assert await sign_in(browser, gh, "frank", "https://evil.example/") == "/"
    status, _, page = await call(browser, "GET", f"{gh.url}/")
    assert "Signed in as" in page and "frank" in page
    # Signed in already: /login goes straight on.
    status, headers, _ = await call(browser, "GET", f"{gh.url}/login?return_to=/x")
    assert status == 302 and headers["location"] == "/x"
    status, headers, _ = await call(browser, "POST", f"{gh.url}/logout")
    assert status == 302
    status, headers, _ = await call(browser, "GET", gh.url + authorize_path(gh))
    assert urlsplit(headers["location"]).path == "/login"


# ----------------------------------------------------------------------------- user tokens
async def test_user_tokens_expire_and_refresh_once(fake_github: FakeGitHub,
                                                   browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    code = await get_code(browser, gh, "gina")
    _, _, first = await exchange(browser, gh, code=code)
    status, _, _ = await call(browser, "GET", f"{gh.url}/user", first["access_token"])
    assert status == 200

    gh.state.expire_user_tokens("gina")
    status, _, body = await call(browser, "GET", f"{gh.url}/user", first["access_token"])
    assert status == 401 and body["message"] == "Bad credentials"

    _, _, second = await exchange(browser, gh, grant_type="refresh_token",
                                  refresh_token=first["refresh_token"])
    assert second["access_token"] != first["access_token"]
    status, _, me = await call(browser, "GET", f"{gh.url}/user", second["access_token"])
    assert status == 200 and me["login"] == "gina"
    # The used refresh token is spent.
    _, _, data = await exchange(browser, gh, grant_type="refresh_token",
                                refresh_token=first["refresh_token"])
    assert data["error"] == "bad_refresh_token" and set(data) == {"error", "error_description",
                                                                 "error_uri"}
    # Refreshing retires the access token it came with, expired or not.
    _, _, third = await exchange(browser, gh, grant_type="refresh_token",
                                 refresh_token=second["refresh_token"])
    status, _, _ = await call(browser, "GET", f"{gh.url}/user", second["access_token"])
    assert status == 401
    status, _, _ = await call(browser, "GET", f"{gh.url}/user", third["access_token"])
    assert status == 200
    _, _, data = await exchange(browser, gh, grant_type="refresh_token",
                                refresh_token=third["refresh_token"], client_secret="x")
    assert data["error"] == "incorrect_client_credentials"


async def test_user_endpoints_want_a_user_token(fake_github: FakeGitHub,
                                                browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    installation_token = gh.installation_token(inst.id)
    user_token = gh.user_token("hana")
    for path in ("/user", "/user/installations", "/user/memberships/orgs/acme"):
        status, _, body = await call(browser, "GET", gh.url + path, installation_token)
        assert status == 403 and body["message"] == "Resource not accessible by integration"
        status, _, body = await call(browser, "GET", gh.url + path)
        assert status == 401 and body["message"] == "Requires authentication"
        jwt = get_jwt(app_id=str(gh.app_id), private_key=gh.private_key_pem)
        status, _, _ = await call(browser, "GET", gh.url + path, jwt)
        assert status == 401
    # A user token is not an installation token or an app JWT.
    status, _, _ = await call(browser, "GET", f"{gh.url}/installation/repositories", user_token)
    assert status == 401
    status, _, _ = await call(browser, "GET", f"{gh.url}/app", user_token)
    assert status == 401


async def test_user_tokens_have_their_own_budget(fake_github: FakeGitHub,
                                                 browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    token = gh.user_token("ivy")
    status, headers, _ = await call(browser, "GET", f"{gh.url}/user", token)
    assert status == 200 and headers["x-ratelimit-limit"] == "5000"
    assert headers["x-ratelimit-used"] == "1"
    bucket = gh.state.bucket(f"user:{gh.state.user('ivy').id}")
    bucket.used = bucket.limit
    status, _, body = await call(browser, "GET", f"{gh.url}/user", token)
    assert status == 403
    assert body["message"] == f"API rate limit exceeded for user ID {gh.state.user('ivy').id}."


# ----------------------------------------------------------------------------- memberships
async def test_org_membership_needs_the_members_permission(
        fake_github: FakeGitHub, browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    st = gh.state
    plain = st.add_installation("acme", 1)
    st.add_org_member("acme", "owner1", "admin")
    st.add_org_member("acme", "dev1")
    st.add_org_member("acme", "invited", state="pending")

    token = gh.installation_token(plain.id)
    status, headers, body = await call(browser, "GET", f"{gh.url}/orgs/acme/memberships/dev1",
                                       token)
    assert status == 403 and body["message"] == "Resource not accessible by integration"
    assert headers["x-accepted-github-permissions"] == "members=read"
    assert body["documentation_url"] == (
        "https://docs.github.com/rest/orgs/members#get-organization-membership-for-a-user")

    # Granting the permission does not widen a token minted before (GitHub fixes a token's
    # permissions when it is created); a new token has it.
    plain.permissions["members"] = "read"
    status, _, _ = await call(browser, "GET", f"{gh.url}/orgs/acme/memberships/dev1", token)
    assert status == 403
    token = gh.installation_token(plain.id)
    status, _, owner = await call(browser, "GET", f"{gh.url}/orgs/ACME/memberships/Owner1",
                                  token)
    assert status == 200
    assert set(owner) == {"url", "state", "role", "organization_url", "organization", "user"}
    assert owner["role"] == "admin" and owner["state"] == "active"
    assert owner["url"] == f"{gh.url}/orgs/acme/memberships/owner1"
    assert owner["organization"]["login"] == "acme" and owner["user"]["login"] == "owner1"
    _, _, member = await call(browser, "GET", f"{gh.url}/orgs/acme/memberships/dev1", token)
    assert member["role"] == "member"
    _, _, pending = await call(browser, "GET", f"{gh.url}/orgs/acme/memberships/invited", token)
    assert pending["state"] == "pending"
    status, _, body = await call(browser, "GET", f"{gh.url}/orgs/acme/memberships/stranger",
                                 token)
    assert status == 404 and body["message"] == "Not Found"
    st.remove_org_member("acme", "dev1")
    status, _, _ = await call(browser, "GET", f"{gh.url}/orgs/acme/memberships/dev1", token)
    assert status == 404

    # Another organization's members are not this installation's business.
    st.add_installation("other", permissions=WITH_MEMBERS)
    st.add_org_member("other", "dev2")
    status, _, _ = await call(browser, "GET", f"{gh.url}/orgs/other/memberships/dev2", token)
    assert status == 403
    status, _, _ = await call(browser, "GET", f"{gh.url}/orgs/nowhere/memberships/dev2", token)
    assert status == 404
    assert st.org_membership_requests == 9
    assert st.count_requests("GET", "/orgs/acme/memberships/") == 6


async def test_team_membership(fake_github: FakeGitHub, browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    st = gh.state
    inst = st.add_installation("acme", permissions=WITH_MEMBERS)
    team = st.add_team("acme", "Policy-Admins", members=["dev1"], maintainers=["lead"])
    st.add_org_member("acme", "boss", "admin")
    st.add_team_member("acme", "policy-admins", "boss")
    st.add_org_member("acme", "outsider")
    token = gh.installation_token(inst.id)
    base = f"{gh.url}/orgs/acme/teams/policy-admins/memberships"

    status, _, body = await call(browser, "GET", f"{base}/dev1", token)
    assert status == 200 and body == {
        "url": f"{gh.url}/organizations/{st.user('acme').id}/team/{team.id}/memberships/dev1",
        "role": "member",
        "state": "active",
    }
    assert st.org_membership("acme", "dev1") is not None  # team members are org members
    _, _, body = await call(browser, "GET", f"{base}/lead", token)
    assert body["role"] == "maintainer"
    _, _, body = await call(browser, "GET", f"{base}/boss", token)
    assert body["role"] == "maintainer"  # GitHub: owners are maintainers of their teams
    for path in (f"{base}/outsider", f"{base}/nobody",
                 f"{gh.url}/orgs/acme/teams/no-such-team/memberships/dev1"):
        status, _, _ = await call(browser, "GET", path, token)
        assert status == 404, path
    st.remove_org_member("acme", "dev1")  # leaving the org leaves its teams
    status, _, _ = await call(browser, "GET", f"{base}/dev1", token)
    assert status == 404
    st.add_team_member("acme", "policy-admins", "dev1")
    st.remove_team_member("acme", "policy-admins", "dev1")
    status, _, _ = await call(browser, "GET", f"{base}/dev1", token)
    assert status == 404

    narrowed = st.issue_token(inst.id, permissions={"metadata": "read"}).token
    status, _, body = await call(browser, "GET", f"{base}/lead", narrowed)
    assert status == 403 and body["message"] == "Resource not accessible by integration"
    assert st.team_membership_requests == 9


async def test_user_installations(fake_github: FakeGitHub,
                                  browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    st = gh.state
    acme = st.add_installation("acme", 1)
    other = st.add_installation("other", 1)
    own = st.add_installation("jo", account_type="User")
    st.add_installation("invited-org")
    collab = st.add_installation("collab-org", ["shared"])
    st.add_installation("elsewhere")
    st.add_org_member("acme", "jo")
    st.add_org_member("other", "jo", "admin")
    st.add_org_member("invited-org", "jo", state="pending")
    st.set_permission("collab-org/shared", "jo", "write")
    token = gh.user_token("jo")

    status, _, body = await call(browser, "GET", f"{gh.url}/user/installations", token)
    assert status == 200 and list(body) == ["total_count", "installations"]
    assert body["total_count"] == 4
    assert [i["id"] for i in body["installations"]] == [acme.id, other.id, own.id, collab.id]
    assert body["installations"][0]["account"]["login"] == "acme"
    assert body["installations"][0]["app_id"] == gh.app_id

    status, headers, page = await call(browser, "GET",
                                       f"{gh.url}/user/installations?per_page=3", token)
    assert page["total_count"] == 4 and len(page["installations"]) == 3
    assert 'rel="next"' in headers["link"]
    api = GitHubAPI(browser, "tests", oauth_token=token, base_url=gh.url)
    ids = [i["id"] async for i in api.getiter("/user/installations?per_page=2",
                                              iterable_key="installations")]
    assert ids == [acme.id, other.id, own.id, collab.id]

    status, _, body = await call(browser, "GET", f"{gh.url}/user/installations",
                                 gh.user_token("nobody"))
    assert body == {"total_count": 0, "installations": []}


async def test_the_users_own_org_membership(fake_github: FakeGitHub,
                                            browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    st = gh.state
    st.add_installation("acme")
    st.add_org_member("acme", "kim", "admin")
    st.add_org_member("uninstalled", "kim")
    token = gh.user_token("kim")
    status, _, body = await call(browser, "GET", f"{gh.url}/user/memberships/orgs/acme", token)
    assert status == 200 and body["role"] == "admin" and body["user"]["login"] == "kim"
    status, _, _ = await call(browser, "GET", f"{gh.url}/user/memberships/orgs/acme",
                              gh.user_token("lee"))
    assert status == 404
    status, _, _ = await call(browser, "GET", f"{gh.url}/user/memberships/orgs/uninstalled",
                              token)
    assert status == 403
    status, _, _ = await call(browser, "GET", f"{gh.url}/user/memberships/orgs/nowhere", token)
    assert status == 404


# ----------------------------------------------------------------------------- manifest flow
async def post_manifest(browser: aiohttp.ClientSession, gh: FakeGitHub, manifest: Any,
                        org: str | None = "acme", state: str = "m-state"
                        ) -> tuple[int, dict[str, str], Any]:
    path = f"/organizations/{org}/settings/apps/new" if org else "/settings/apps/new"
    raw = manifest if isinstance(manifest, str) else json.dumps(manifest)
    return await call(browser, "POST", f"{gh.url}{path}?state={state}", data={"manifest": raw})


async def confirm(browser: aiohttp.ClientSession, gh: FakeGitHub, page: str,
                  name: str | None = None) -> tuple[int, dict[str, str], Any]:
    action = re.search(r'<form action="([^"]+)" method="post">', page)
    assert action is not None and "Create GitHub App" in page
    value = re.search(r'name="name" value="([^"]*)"', page)
    assert value is not None
    data = {"name": unescape(value.group(1)) if name is None else name}
    return await call(browser, "POST", gh.url + action.group(1), data=data)


async def test_the_manifest_flow(fake_github: FakeGitHub, browser: aiohttp.ClientSession
                                 ) -> None:
    gh = fake_github
    st = gh.state
    st.add_installation("acme", 1)
    st.add_org_member("acme", "owner1", "admin")
    await sign_in(browser, gh, "owner1")

    status, headers, page = await post_manifest(browser, gh, MANIFEST)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "Policy Enforcer (acme)" in page and "acme" in page
    status, headers, _ = await confirm(browser, gh, page)
    assert status == 302
    target = headers["location"]
    assert target.startswith(MANIFEST["redirect_url"] + "?")
    q = query_of(target)
    assert q["state"] == "m-state" and re.fullmatch(r"[0-9a-f]{20}", q["code"])

    # The conversion needs no authentication; the answer is the fake's own App.
    status, headers, app = await call(browser, "POST",
                                      f"{gh.url}/app-manifests/{q['code']}/conversions")
    assert status == 201 and headers["x-ratelimit-limit"] == "60"
    assert {"id", "slug", "node_id", "owner", "name", "description", "external_url", "html_url",
            "created_at", "updated_at", "permissions", "events", "client_id", "client_secret",
            "webhook_secret", "pem"} <= set(app)
    assert app["id"] == gh.app_id and app["slug"] == st.app_slug
    assert app["pem"] == gh.private_key_pem
    assert app["client_id"] == st.client_id and app["client_secret"] == st.client_secret
    assert app["owner"]["login"] == "acme" and app["name"] == "Policy Enforcer (acme)"
    assert app["external_url"] == MANIFEST["url"]
    assert app["permissions"] == {"metadata": "read", "contents": "read", "issues": "write",
                                  "members": "read"}
    assert app["events"] == MANIFEST["default_events"]
    assert app["webhook_secret"] and app["webhook_secret"] == st.webhook_secret
    assert st.callback_urls == MANIFEST["callback_urls"] and st.manifest_conversions == 1
    body = webhooks.encode({"zen": "hi"})
    headers = webhooks.headers_for("ping", body, st.webhook_secret, "d-1", app_id=gh.app_id)
    assert headers["X-Hub-Signature-256"].startswith("sha256=")

    # The code works once.
    status, _, body = await call(browser, "POST",
                                 f"{gh.url}/app-manifests/{q['code']}/conversions")
    assert status == 404 and body["message"] == "Not Found"
    assert body["documentation_url"] == (
        "https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest")

    # The App's credentials from the conversion work for the App's sign-in.
    code = await get_code(browser, gh, "owner1", MANIFEST["callback_urls"][0])
    _, _, data = await call(browser, "POST", f"{gh.url}/login/oauth/access_token",
                            data={"client_id": app["client_id"],
                                  "client_secret": app["client_secret"], "code": code},
                            headers={"Accept": "application/json"})
    assert data["access_token"].startswith("ghu_")


async def test_the_manifest_flow_for_a_personal_account_after_signing_in(
        fake_github: FakeGitHub, browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    status, headers, _ = await post_manifest(browser, gh, MANIFEST, org=None, state="p1")
    assert status == 302
    return_to = query_of(headers["location"])["return_to"]
    assert await sign_in(browser, gh, "solo", return_to) == return_to
    status, _, page = await call(browser, "GET", gh.url + return_to)
    assert status == 200 and "solo" in page
    status, _, _ = await confirm(browser, gh, page, name="")
    assert status == 422
    status, headers, _ = await confirm(browser, gh, page, name="Solo Enforcer")
    q = query_of(headers["location"])
    assert q["state"] == "p1"
    # The confirmation page is used up.
    status, _, _ = await call(browser, "GET", gh.url + return_to)
    assert status == 404
    status, _, app = await call(browser, "POST", f"{gh.url}/app-manifests/{q['code']}/conversions")
    assert app["owner"]["login"] == "solo" and app["name"] == "Solo Enforcer"

    # A code unused for an hour is gone.
    conversion = gh.state.create_manifest_code(MANIFEST, "solo")
    conversion.expires_at = time.time() - 1
    status, _, _ = await call(browser, "POST",
                              f"{gh.url}/app-manifests/{conversion.code}/conversions")
    assert status == 404


async def test_manifests_are_validated_and_orgs_need_an_owner(
        fake_github: FakeGitHub, browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    st = gh.state
    st.add_installation("acme")
    st.add_org_member("acme", "dev1")
    await sign_in(browser, gh, "dev1")
    hook = {"url": "https://x.example/hook"}
    bad: list[tuple[Any, str]] = [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({**MANIFEST, "url": None}, "Url can&#x27;t be blank"),
        ({**MANIFEST, "url": "ftp://x"}, "Url is not a valid URL"),
        ({**MANIFEST, "hook_attributes": {"active": True}}, "Hook attributes url"),
        ({k: v for k, v in MANIFEST.items() if k != "redirect_url"}, "Redirect url"),
        ({**MANIFEST, "hook_attributes": hook, "default_events": ["installation"]},
         "Default events unsupported: installation"),
        ({**MANIFEST, "default_permissions": {"issues": "write"}}, "push requires the contents"),
        ({**MANIFEST, "default_permissions": {"contents": "sometimes"}},
         "Default permissions are invalid"),
        ({**MANIFEST, "name": "x" * 35}, "Name is too long"),
    ]
    for manifest, message in bad:
        status, _, page = await post_manifest(browser, gh, manifest)
        assert status == 422 and message in page, (manifest, page)
    status, _, _ = await call(browser, "POST", f"{gh.url}/organizations/acme/settings/apps/new",
                              data={})
    assert status == 422

    # A member who is not an owner cannot register an App for the organization.
    status, _, _ = await post_manifest(browser, gh, MANIFEST)
    assert status == 404
    status, _, _ = await post_manifest(browser, gh, MANIFEST, org="no-such-org")
    assert status == 404
    assert not st.manifest_codes


async def test_web_pages_are_not_api_calls(fake_github: FakeGitHub,
                                           browser: aiohttp.ClientSession) -> None:
    gh = fake_github
    st = gh.state
    await sign_in(browser, gh, "mo")
    for _ in range(3):
        status, headers, _ = await call(browser, "GET", gh.url + authorize_path(gh))
        assert status == 302 and "x-ratelimit-remaining" not in headers
    assert st.rate_limited_requests == 0
    assert st.count_requests("GET", "/login/oauth/authorize") == 3
    # Faults can still be injected on them.
    st.fail_next(1, 502, path_prefix="/login/oauth/access_token")
    status, _, _ = await exchange(browser, gh, code="x")
    assert status == 502
