"""The fake GitHub itself, driven through gidgethub over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub import (
    BadRequest,
    GitHubBroken,
    InvalidField,
    RateLimitExceeded,
    ValidationFailure,
    sansio,
)
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_installation_access_token, get_jwt
from jwt.api_jws import PyJWS

from tests.fakegithub import webhooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import git_blob_sha

FIXTURES = Path(__file__).parent / "fakegithub" / "fixtures"
NOT_FOUND = {
    "message": "Not Found",
    "documentation_url": "https://docs.github.com/rest/repos/contents#get-repository-content",
    "status": "404",
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def api(session: aiohttp.ClientSession, gh: FakeGitHub, token: str | None = None,
        **kwargs: Any) -> GitHubAPI:
    return GitHubAPI(session, "policy-enforcer-tests", oauth_token=token, base_url=gh.url,
                     **kwargs)


async def token_for(session: aiohttp.ClientSession, gh: FakeGitHub, installation_id: int) -> str:
    data = await get_installation_access_token(
        api(session, gh),
        installation_id=str(installation_id),
        app_id=str(gh.app_id),
        private_key=gh.private_key_pem,
    )
    return str(data["token"])


async def raw(
    session: aiohttp.ClientSession, method: str, url: str, token: str | None = None,
    **kwargs: Any,
) -> tuple[int, dict[str, str], Any]:
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"token {token}"
    async with session.request(method, url, headers=headers, **kwargs) as resp:
        text = await resp.text()
        body = json.loads(text) if text else None
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body


# ----------------------------------------------------------------------------- auth
async def test_app_endpoints_need_a_valid_app_jwt(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    good = get_jwt(app_id=str(gh.app_id), private_key=gh.private_key_pem)
    app = await api(session, gh).getitem("/app", jwt=good)
    assert app["slug"] == "policy-enforcer" and app["id"] == gh.app_id

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = get_jwt(
        app_id=str(gh.app_id),
        private_key=other_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    now = int(time.time())
    expired = jwt.encode({"iat": now - 700, "exp": now - 100, "iss": str(gh.app_id)},
                         gh.private_key_pem, algorithm="RS256")
    too_long = jwt.encode({"iat": now, "exp": now + 3600, "iss": str(gh.app_id)},
                          gh.private_key_pem, algorithm="RS256")
    wrong_app = get_jwt(app_id="999", private_key=gh.private_key_pem)
    # GitHub also takes the app id as a JSON number (PyJWT only encodes strings).
    numeric_iss = PyJWS().encode(
        json.dumps({"iat": now - 60, "exp": now + 540, "iss": gh.app_id}).encode(),
        gh.private_key_pem, algorithm="RS256")
    assert (await api(session, gh).getitem("/app", jwt=numeric_iss))["id"] == gh.app_id
    for bad in (forged, expired, too_long, wrong_app):
        with pytest.raises(BadRequest) as exc:
            await api(session, gh).getitem("/app", jwt=bad)
        assert exc.value.status_code == 401

    # An installation token is not an app credential, and there is no anonymous access.
    token = gh.installation_token(inst.id)
    status, _, body = await raw(session, "GET", f"{gh.url}/app/installations", token)
    assert status == 401 and body["status"] == "401"
    status, _, body = await raw(session, "GET", f"{gh.url}/installation/repositories")
    assert status == 401 and body["message"] == "Requires authentication"


async def test_installation_token_flow_and_revocation(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 2)
    gh.state.add_installation("other", ["secret"])
    gh.state.token_ttl_seconds = 120

    data = await get_installation_access_token(
        api(session, gh), installation_id=str(inst.id), app_id=str(gh.app_id),
        private_key=gh.private_key_pem,
    )
    assert data["token"].startswith("ghs_")
    expires = datetime.strptime(data["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert 100 < expires.timestamp() - time.time() <= 121
    assert data["permissions"]["issues"] == "write"
    assert data["repository_selection"] == "all"

    client = api(session, gh, data["token"])
    status, _, _ = await raw(session, "GET", f"{gh.url}/repos/acme/repo-000",
                             headers={"Authorization": f"Bearer {data['token']}"})
    assert status == 200  # GitHub takes "Bearer" as well as "token"
    listing = await client.getitem("/installation/repositories")
    assert listing["total_count"] == 2
    assert [r["full_name"] for r in listing["repositories"]] == ["acme/repo-000", "acme/repo-001"]
    # Other installations' repositories do not exist for this token.
    with pytest.raises(BadRequest) as exc:
        await client.getitem("/repos/other/secret")
    assert exc.value.status_code == 404

    assert gh.state.revoke_tokens(inst.id) == 1
    status, _, body = await raw(session, "GET", f"{gh.url}/repos/acme/repo-000", data["token"])
    assert status == 401
    assert body == {"message": "Bad credentials", "documentation_url":
                    "https://docs.github.com/rest", "status": "401"}

    gh.state.token_ttl_seconds = 0.2
    short = await token_for(session, gh, inst.id)
    await api(session, gh, short).getitem("/repos/acme/repo-000")
    await asyncio.sleep(0.25)
    with pytest.raises(BadRequest) as exc:
        await api(session, gh, short).getitem("/repos/acme/repo-000")
    assert exc.value.status_code == 401

    with pytest.raises(BadRequest) as exc:
        await get_installation_access_token(
            api(session, gh), installation_id="4242", app_id=str(gh.app_id),
            private_key=gh.private_key_pem,
        )
    assert exc.value.status_code == 404


# ----------------------------------------------------------------------------- reads
async def test_pagination_over_more_than_100_repositories(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("bigorg", 150)
    token = gh.installation_token(inst.id)

    names = [r["name"] async for r in api(session, gh, token).getiter(
        "/installation/repositories?per_page=100", iterable_key="repositories")]
    assert len(names) == 150 and len(set(names)) == 150

    url = f"{gh.url}/installation/repositories?per_page=100"
    status, headers, body = await raw(session, "GET", url, token)
    assert status == 200 and body["total_count"] == 150 and len(body["repositories"]) == 100
    assert headers["link"] == (
        f'<{gh.url}/installation/repositories?per_page=100&page=2>; rel="next", '
        f'<{gh.url}/installation/repositories?per_page=100&page=2>; rel="last"'
    )
    _, headers, body = await raw(session, "GET", f"{url}&page=2", token)
    assert len(body["repositories"]) == 50
    assert 'rel="prev"' in headers["link"] and 'rel="first"' in headers["link"]
    assert 'rel="next"' not in headers["link"]
    # Default page size is 30, the maximum 100.
    _, _, body = await raw(session, "GET", f"{gh.url}/installation/repositories", token)
    assert len(body["repositories"]) == 30
    _, _, body = await raw(session, "GET", f"{url[:-3]}500", token)
    assert len(body["repositories"]) == 100


async def test_etag_304_does_not_spend_rate_limit(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    token = gh.installation_token(inst.id)
    url = f"{gh.url}/repos/acme/repo-000"

    status, h1, _ = await raw(session, "GET", url, token)
    assert status == 200 and h1["etag"].startswith('W/"')
    status, h2, body = await raw(session, "GET", url, token,
                                 headers={"If-None-Match": h1["etag"]})
    assert status == 304 and body is None
    assert h2["x-ratelimit-remaining"] == h1["x-ratelimit-remaining"] == "4999"
    assert gh.state.rate_limited_requests == 1 and gh.state.not_modified_responses == 1

    # A change to the resource changes the ETag.
    gh.state.archive_repo("acme/repo-000")
    status, h3, body = await raw(session, "GET", url, token,
                                 headers={"If-None-Match": h1["etag"]})
    assert status == 200 and body["archived"] is True and h3["etag"] != h1["etag"]

    # gidgethub's cache sends If-None-Match and serves the 304 from its cache.
    cache: dict[str, Any] = {}
    client = api(session, gh, token, cache=cache)
    first = await client.getitem("/repos/acme/repo-000")
    again = await client.getitem("/repos/acme/repo-000")
    assert first == again
    assert gh.state.requests[-1] == ("GET", "/repos/acme/repo-000", 304)


async def test_contents_file_and_404_shape(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    text = "# Agents\n" + "x" * 100 + "\nünïcode\n"
    gh.state.set_file("acme/repo-000", "AGENTS.md", text)
    gh.state.set_file("acme/repo-000", "docs/catalog-info.yaml", "owner: team-a\n")
    client = api(session, gh, gh.installation_token(inst.id))

    data = await client.getitem("/repos/acme/repo-000/contents/AGENTS.md")
    assert data["type"] == "file" and data["encoding"] == "base64"
    lines = data["content"].split("\n")
    assert all(len(line) == 60 for line in lines[:-2]) and lines[-1] == ""
    raw_bytes = base64.b64decode(data["content"])
    assert raw_bytes.decode() == text and data["size"] == len(raw_bytes)
    assert data["sha"] == git_blob_sha(raw_bytes)
    assert data["html_url"] == "https://github.com/acme/repo-000/blob/main/AGENTS.md"
    nested = await client.getitem("/repos/acme/repo-000/contents/docs/catalog-info.yaml?ref=main")
    assert nested["path"] == "docs/catalog-info.yaml" and nested["name"] == "catalog-info.yaml"
    listing = await client.getitem("/repos/acme/repo-000/contents/")
    assert [(e["type"], e["path"]) for e in listing] == [("file", "AGENTS.md"), ("dir", "docs")]

    status, _, body = await raw(session, "GET", f"{gh.url}/repos/acme/repo-000/contents/nope.md",
                                gh.installation_token(inst.id))
    assert (status, body) == (404, NOT_FOUND)
    with pytest.raises(BadRequest) as exc:
        await client.getitem("/repos/acme/repo-000/contents/AGENTS.md?ref=no-such-branch")
    assert exc.value.status_code == 404

    # Over 1 MB GitHub sends no content; the raw media type returns the text itself.
    big = "y" * (1024 * 1024 + 1)
    gh.state.set_file("acme/repo-000", "big.txt", big)
    meta = await client.getitem("/repos/acme/repo-000/contents/big.txt")
    assert (meta["encoding"], meta["content"], meta["size"]) == ("none", "", len(big))
    assert await client.getitem("/repos/acme/repo-000/contents/big.txt",
                                accept="application/vnd.github.raw+json") == big

    gh.state.delete_file("acme/repo-000", "AGENTS.md")
    with pytest.raises(BadRequest):
        await client.getitem("/repos/acme/repo-000/contents/AGENTS.md")


async def test_workflow_permissions_and_collaborator_permission(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", ["a", {"name": "b", "workflow_permissions": None}])
    client = api(session, gh, gh.installation_token(inst.id))
    assert await client.getitem("/repos/acme/a/actions/permissions/workflow") == {
        "default_workflow_permissions": "read", "can_approve_pull_request_reviews": False}
    gh.state.set_workflow_permissions("acme/a", "write")
    data = await client.getitem("/repos/acme/a/actions/permissions/workflow")
    assert data["default_workflow_permissions"] == "write"
    with pytest.raises(BadRequest) as exc:
        await client.getitem("/repos/acme/b/actions/permissions/workflow")
    assert exc.value.status_code == 404

    gh.state.set_permission("acme/a", "alice", "admin")
    gh.state.set_permission("acme/a", "bob", "maintain")
    alice = await client.getitem("/repos/acme/a/collaborators/alice/permission")
    assert (alice["permission"], alice["role_name"], alice["user"]["login"]) == (
        "admin", "admin", "alice")
    bob = await client.getitem("/repos/acme/a/collaborators/bob/permission")
    assert (bob["permission"], bob["role_name"]) == ("write", "maintain")
    gh.state.set_visibility("acme/a", "private")
    nobody = await client.getitem("/repos/acme/a/collaborators/mallory/permission")
    assert nobody["permission"] == "none"


# ----------------------------------------------------------------------------- writes
async def test_issue_create_list_close(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    gh.state.add_issue("acme/repo-000", "Someone else's issue", user_login="carol")
    client = api(session, gh, gh.installation_token(inst.id))

    created = await client.post("/repos/acme/repo-000/issues", data={
        "title": "Policy: add AGENTS.md", "body": "Details", "labels": ["policy", "Bug"]})
    assert created["number"] == 2 and created["state"] == "open"
    assert created["user"]["login"] == "policy-enforcer[bot]"
    assert created["user"]["type"] == "Bot"
    assert created["html_url"] == "https://github.com/acme/repo-000/issues/2"
    assert [lab["name"] for lab in created["labels"]] == ["policy", "Bug"]
    assert created["labels"][0]["color"] == "ededed"  # created on the fly, as GitHub does
    label = await client.getitem("/repos/acme/repo-000/labels/policy")
    assert label["name"] == "policy"

    mine = [i async for i in client.getiter(
        "/repos/acme/repo-000/issues?creator=policy-enforcer%5Bbot%5D&labels=policy")]
    assert [i["number"] for i in mine] == [2]
    assert len([i async for i in client.getiter("/repos/acme/repo-000/issues")]) == 2

    closed = await client.patch("/repos/acme/repo-000/issues/2",
                                data={"state": "closed", "state_reason": "not_planned"})
    assert closed["state"] == "closed" and closed["state_reason"] == "not_planned"
    assert closed["closed_at"] is not None
    assert [i["number"] async for i in client.getiter("/repos/acme/repo-000/issues")] == [1]
    assert [i["number"] async for i in client.getiter(
        "/repos/acme/repo-000/issues?state=closed")] == [2]
    issue = gh.state.issue("acme/repo-000", 2)
    assert issue.state == "closed" and issue.labels == ["policy", "Bug"]

    reopened = await client.patch("/repos/acme/repo-000/issues/2", data={"state": "open"})
    assert reopened["state_reason"] == "reopened" and reopened["closed_at"] is None

    with pytest.raises(InvalidField) as exc:
        await client.post("/repos/acme/repo-000/issues", data={"body": "no title"})
    assert exc.value.status_code == 422


async def test_comments_and_reactions(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    gh.state.add_issue("acme/repo-000", "Policy failing")
    comment = gh.state.add_issue_comment("acme/repo-000", 1, "alice", "/policy recheck")
    client = api(session, gh, gh.installation_token(inst.id))

    url = f"/repos/acme/repo-000/issues/comments/{comment['id']}/reactions"
    first = await client.post(url, data={"content": "eyes"})
    status, _, again = await raw(session, "POST", f"{gh.url}{url}",
                                 gh.installation_token(inst.id), json={"content": "eyes"})
    assert status == 200 and again["id"] == first["id"]
    assert [r.content for r in gh.state.reactions(comment["id"])] == ["eyes"]
    with pytest.raises(InvalidField):
        await client.post(url, data={"content": "thumbsup"})

    reply = await client.post("/repos/acme/repo-000/issues/1/comments", data={"body": "On it"})
    assert reply["user"]["login"] == "policy-enforcer[bot]"
    bodies = [c["body"] async for c in client.getiter("/repos/acme/repo-000/issues/1/comments")]
    assert bodies == ["/policy recheck", "On it"]
    assert (await client.getitem("/repos/acme/repo-000/issues/1"))["comments"] == 2


async def test_label_already_exists_and_archived_repo_is_read_only(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    client = api(session, gh, gh.installation_token(inst.id))
    made = await client.post("/repos/acme/repo-000/labels", data={"name": "policy",
                                                                  "color": "#B60205"})
    assert made["color"] == "b60205"
    with pytest.raises(InvalidField) as exc:
        await client.post("/repos/acme/repo-000/labels", data={"name": "Policy"})
    assert exc.value.status_code == 422
    assert exc.value.errors == [{"resource": "Label", "code": "already_exists", "field": "name"}]
    with pytest.raises(BadRequest) as exc404:
        await client.getitem("/repos/acme/repo-000/labels/absent")
    assert exc404.value.status_code == 404

    repo = await client.patch("/repos/acme/repo-000", data={"archived": True})
    assert repo["archived"] is True and gh.state.repo("acme/repo-000").archived
    status, _, body = await raw(session, "POST", f"{gh.url}/repos/acme/repo-000/issues",
                                gh.installation_token(inst.id), json={"title": "x"})
    assert status == 403 and body["message"] == "Repository was archived so is read-only."
    await client.patch("/repos/acme/repo-000", data={"archived": False})
    await client.post("/repos/acme/repo-000/issues", data={"title": "x"})


# ----------------------------------------------------------------------------- limits & faults
async def test_primary_rate_limit_exhaustion_and_reset(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    other = gh.state.add_installation("other", 1)
    gh.state.rate_limit.installation_limits[inst.id] = 3  # budgets are per installation
    gh.state.rate_limit.reset_after_seconds = 0.5
    token = gh.installation_token(inst.id)
    client = api(session, gh, token)
    for expected in (2, 1, 0):
        await client.getitem("/repos/acme/repo-000")
        assert client.rate_limit is not None and client.rate_limit.remaining == expected

    status, headers, body = await raw(session, "GET", f"{gh.url}/repos/acme/repo-000", token)
    assert status == 403
    assert body == {
        "message": f"API rate limit exceeded for installation ID {inst.id}.",
        "documentation_url":
            "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting",
        "status": "403",
    }
    assert headers["x-ratelimit-remaining"] == "0" and headers["x-ratelimit-used"] == "3"
    assert headers["x-ratelimit-resource"] == "core"
    assert 0 <= int(headers["x-ratelimit-reset"]) - time.time() <= 1.5
    with pytest.raises(RateLimitExceeded):
        await client.getitem("/repos/acme/repo-000")
    assert gh.state.primary_limit_responses == 2 and gh.state.rate_limited_requests == 3
    await api(session, gh, gh.installation_token(other.id)).getitem("/repos/other/repo-000")
    assert gh.state.remaining(other.id) == 4999

    await asyncio.sleep(0.55)
    await client.getitem("/repos/acme/repo-000")
    assert client.rate_limit is not None and client.rate_limit.remaining == 2


async def test_secondary_limits_answer_403_with_retry_after(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    token = gh.installation_token(inst.id)
    sec = gh.state.secondary
    sec.enabled, sec.points_per_minute, sec.retry_after = True, 12, 7
    sec.minute_seconds = 5  # retry-after covers the window too: max(7, ~5) = 7
    client = api(session, gh, token)
    await client.post("/repos/acme/repo-000/issues", data={"title": "a"})  # 5 points
    await client.post("/repos/acme/repo-000/issues", data={"title": "b"})  # 10 points
    await client.getitem("/repos/acme/repo-000")  # 11
    await client.getitem("/repos/acme/repo-000")  # 12
    status, headers, body = await raw(session, "GET", f"{gh.url}/repos/acme/repo-000", token)
    assert status == 403 and headers["retry-after"] == "7"
    assert body["message"].startswith(
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
        "again.")
    assert int(headers["x-ratelimit-remaining"]) > 0  # not the primary limit
    assert gh.state.secondary_limit_responses == 1

    # Content creation per minute, answered with 429 this time.
    gh.state.reset_secondary()
    sec.points_per_minute, sec.content_per_minute, sec.status = 900, 2, 429
    for title in ("c", "d"):
        await client.post("/repos/acme/repo-000/issues", data={"title": title})
    with pytest.raises(BadRequest) as exc:
        await client.post("/repos/acme/repo-000/issues", data={"title": "e"})
    assert exc.value.status_code == 429 and exc.value.headers["retry-after"] == "7"

    # Concurrency: with latency, requests beyond max_concurrent are refused.
    gh.state.reset_secondary()
    sec.max_concurrent, sec.status = 2, 403
    gh.state.latency = 0.1
    results = await asyncio.gather(
        *(raw(session, "GET", f"{gh.url}/repos/acme/repo-000", token) for _ in range(5))
    )
    assert sorted(status for status, _, _ in results) == [200, 200, 403, 403, 403]
    assert gh.state.max_in_flight == 5 and gh.state.secondary_limit_responses == 5


async def test_fault_injection_is_targeted_and_deterministic(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    client = api(session, gh, gh.installation_token(inst.id))
    gh.state.fail_next(2, 502, path_prefix="/repos/acme/repo-000/contents")
    await client.getitem("/repos/acme/repo-000")  # other paths are unaffected
    for _ in range(2):
        with pytest.raises(GitHubBroken) as exc:
            await client.getitem("/repos/acme/repo-000/contents/README.md")
        assert exc.value.status_code == 502
    with pytest.raises(BadRequest):  # back to the real answer: 404
        await client.getitem("/repos/acme/repo-000/contents/README.md")
    assert gh.state.injected_failures == 2

    async def pattern() -> list[int]:
        gh.state.seed(7)
        out = []
        for _ in range(40):
            status, _, _ = await raw(session, "GET", f"{gh.url}/repos/acme/repo-000",
                                     gh.installation_token(inst.id))
            out.append(status)
        return out

    gh.state.fail_rate = 0.25
    first, second = await pattern(), await pattern()
    assert first == second and 502 in first and 200 in first


async def test_graphql_rate_limit_query(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", 1)
    client = api(session, gh, gh.installation_token(inst.id))
    data = await client.graphql(
        "query($o: String!, $n: String!) { rateLimit { cost remaining resetAt } "
        "repository(owner: $o, name: $n) { isArchived defaultBranchRef { name } } }",
        endpoint=f"{gh.url}/graphql",  # gidgethub ignores base_url for GraphQL
        o="acme", n="repo-000",
    )
    assert data["rateLimit"]["cost"] == 1 and data["rateLimit"]["remaining"] == 4999
    assert data["repository"]["defaultBranchRef"]["name"] == "main"
    assert gh.state.graphql_requests == 1 and gh.state.rate_limited_requests == 0


async def _gql(session: aiohttp.ClientSession, gh: FakeGitHub, token: str, query: str,
               **variables: Any) -> tuple[int, dict[str, str], Any]:
    return await raw(session, "POST", f"{gh.url}/graphql", token,
                     json={"query": query, "variables": variables})


async def test_graphql_batch_with_aliases_fragments_and_not_found(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    inst = gh.state.add_installation("acme", [
        {"name": "a", "files": {"AGENTS.md": "# hi\n", "docs/x.md": "x"}},
        {"name": "b", "archived": True, "visibility": "private", "default_branch": "dev"},
    ])
    gh.state.add_repo("elsewhere", "hidden")  # exists, but not in this installation
    query = """
    query Batch($o: String!, $a: String!, $b: String!, $p: String!) {
      rateLimit { cost remaining resetAt }
      r0: repository(owner: $o, name: $a) { ...repo }
      r1: repository(owner: $o, name: $b) { ...repo }
      r2: repository(owner: "acme", name: "nope") { ...repo }
      r3: repository(owner: "elsewhere", name: "hidden") { databaseId }
    }
    fragment repo on Repository {
      databaseId nameWithOwner isArchived isFork visibility pushedAt
      defaultBranchRef { name }
      f0: object(expression: $p) { __typename ... on Blob { text byteSize isTruncated } }
      f1: object(expression: "HEAD:docs") { ... on Blob { text } }
    }"""
    token = gh.installation_token(inst.id)
    status, headers, body = await _gql(session, gh, token, query, o="acme", a="a", b="b",
                                       p="HEAD:AGENTS.md")
    assert status == 200 and headers["x-ratelimit-resource"] == "graphql"
    data, errors = body["data"], body["errors"]
    assert data["rateLimit"]["cost"] == 1 and data["rateLimit"]["remaining"] == 4999
    assert data["r0"]["nameWithOwner"] == "acme/a" and data["r0"]["visibility"] == "PUBLIC"
    assert data["r0"]["f0"] == {"__typename": "Blob", "text": "# hi\n", "byteSize": 5,
                                "isTruncated": False}
    assert data["r0"]["f1"] == {}  # a Tree: the Blob fragment does not apply
    assert data["r1"]["isArchived"] is True and data["r1"]["defaultBranchRef"] == {"name": "dev"}
    assert data["r1"]["f0"] is None  # no such file
    assert data["r2"] is None and data["r3"] is None
    assert [(e["type"], e["path"], e["message"]) for e in errors] == [
        ("NOT_FOUND", ["r2"], "Could not resolve to a Repository with the name 'acme/nope'."),
        ("NOT_FOUND", ["r3"],
         "Could not resolve to a Repository with the name 'elsewhere/hidden'."),
    ]
    assert gh.state.graphql_requests == 1 and gh.state.graphql_points == 1
    assert gh.state.rate_limited_requests == 0


async def test_graphql_validation_escapes_truncation_and_budget(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    st = gh.state
    name = 'we"ird\\ ü.md'
    inst = st.add_installation("acme", [{"name": "a", "files": {
        name: "odd", "big.txt": "ü" * 40, "bin": "a\x00b"}}])
    token = gh.installation_token(inst.id)
    st.graphql_blob_text_limit = 31
    literal = json.dumps(f"HEAD:{name}")  # "HEAD:we\"ird\\ \u00fc.md": GraphQL's escapes too
    status, _, body = await _gql(session, gh, token, (
        '{ repository(owner: "acme", name: "a") {\n'
        "  odd: object(expression: " + literal + ") { ... on Blob { text } }\n"
        '  big: object(expression: "HEAD:big.txt") { ... on Blob { text byteSize isTruncated } }\n'
        '  bin: object(expression: "HEAD:bin") { ... on Blob { text isBinary } }\n'
        "} }"))
    assert status == 200 and "errors" not in body, body
    repo = body["data"]["repository"]
    assert repo["odd"] == {"text": "odd"}
    # Cut at the byte limit, never inside a character.
    assert repo["big"] == {"text": "ü" * 15, "byteSize": 80, "isTruncated": True}
    assert repo["bin"] == {"text": None, "isBinary": True}

    # Unknown fields and undeclared variables fail the query before it runs, without data.
    _, _, body = await _gql(session, gh, token,
                            'query { repository(owner: "acme", name: $n) { nope } }')
    assert "data" not in body
    codes = sorted(e["extensions"]["code"] for e in body["errors"])
    assert codes == ["undefinedField", "variableNotDefined"]
    assert "Field 'nope' doesn't exist on type 'Repository'" in str(body["errors"])
    _, _, body = await _gql(session, gh, token, "query { repository(owner: ")
    assert body["errors"][0]["message"].startswith("Parse error")

    # Spent budget: RATE_LIMITED, in GitHub's shape.
    st.exhaust_rate_limit(inst.id, "graphql")
    status, headers, body = await _gql(session, gh, token, "{ rateLimit { remaining } }")
    assert status == 200 and body["errors"][0]["type"] == "RATE_LIMITED"
    assert headers["x-ratelimit-remaining"] == "0"


async def test_graphql_query_is_one_point_toward_the_secondary_limit(
    fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    gh = fake_github
    st = gh.state
    inst = st.add_installation("acme", 1)
    st.secondary.enabled = True
    st.secondary.points_per_minute = 3
    token = gh.installation_token(inst.id)
    statuses = [(await _gql(session, gh, token, "{ rateLimit { cost } }"))[0]
                for _ in range(4)]
    assert statuses == [200, 200, 200, 403]  # 1 point each (a mutation would be 5)


# ----------------------------------------------------------------------------- webhooks
def _expected_keys() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads((FIXTURES / "webhook_keys.json").read_text())
    return data


async def test_webhook_payloads_match_examples_and_state(fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", ["svc"])
    repo = st.repo("acme/svc")
    st.add_issue("acme/svc", "Policy failing")
    comment = st.add_issue_comment("acme/svc", 1, "alice", "/policy recheck")
    expected = _expected_keys()
    nested = webhooks.issue_comment(st, comment)

    built: dict[str, dict[str, Any]] = {
        "installation.created": webhooks.installation(st, inst, "created"),
        "installation.deleted": webhooks.installation(st, inst, "deleted"),
        "installation.suspend": webhooks.installation(st, inst, "suspend"),
        "installation.unsuspend": webhooks.installation(st, inst, "unsuspend"),
        "installation_repositories.added":
            webhooks.installation_repositories(st, inst, "added", [repo]),
        "installation_repositories.removed":
            webhooks.installation_repositories(st, inst, "removed", [repo]),
        "issue_comment.created": webhooks.issue_comment(st, comment),
        "issue_comment.edited": webhooks.issue_comment(st, comment["id"], "edited",
                                                       previous_body="old"),
        "repository.created": webhooks.repository(st, repo, "created"),
        "repository.edited": webhooks.repository(
            st, repo, "edited", changes={"description": {"from": None}}),
        "repository.privatized": webhooks.repository(
            st, st.set_visibility("acme/svc", "private"), "privatized"),
        "repository.renamed": webhooks.repository(
            st, st.rename_repo("acme/svc", "svc2"), "renamed", old_name="svc"),
        "repository.transferred": webhooks.repository(
            st, st.transfer_repo("acme/svc2", "newco"), "transferred", old_owner="acme"),
        "ping": webhooks.ping(st),
    }
    for key, payload in built.items():
        missing = set(expected[key]) - set(payload)
        assert not missing, (key, missing)
    assert set(expected["issue_comment.comment"]) <= set(nested["comment"])
    assert set(expected["issue_comment.issue"]) <= set(nested["issue"])
    assert set(expected["installation.installation"]) <= set(built["installation.created"][
        "installation"])
    assert set(expected["repository.repository"]) <= set(built["repository.created"][
        "repository"])

    # Ids and logins match the state the API serves.
    assert nested["comment"]["id"] == comment["id"]
    assert nested["comment"]["user"] == {**nested["comment"]["user"], "login": "alice",
                                         "type": "User"}
    assert nested["issue"]["number"] == 1 and nested["installation"] == {
        "id": inst.id, "node_id": nested["installation"]["node_id"]}
    assert built["repository.renamed"]["changes"] == {"repository": {"name": {"from": "svc"}}}
    assert built["installation.created"]["repositories"][0]["id"] == repo.id


async def test_push_payload_follows_state(fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [{"name": "svc", "files": {"README.md": "hi"}}])
    payload = webhooks.commit_and_push(
        st, "acme/svc", {"AGENTS.md": "# Agents", "README.md": "hello", "gone.txt": None})
    expected = _expected_keys()
    assert set(expected["push"]) <= set(payload)
    assert set(expected["push.repository"]) <= set(payload["repository"])
    assert set(expected["push.commits[]"]) <= set(payload["commits"][0])
    assert payload["ref"] == "refs/heads/main"
    assert payload["after"] == st.repo("acme/svc").heads["main"]
    assert payload["repository"]["default_branch"] == "main"
    assert payload["installation"]["id"] == inst.id
    head = payload["head_commit"]
    assert (head["added"], head["modified"], head["removed"]) == (["AGENTS.md"], ["README.md"],
                                                                  [])
    assert st.repo("acme/svc").files == {"README.md": "hello", "AGENTS.md": "# Agents"}


async def test_signed_delivery_validates_with_gidgethub() -> None:
    secret = "s3cr3t"
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=202, text="queued")

    app = web.Application()
    app.router.add_post("/api/github/webhooks", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with FakeGitHub() as gh:
            inst = gh.state.add_installation("acme", 1)
            payload = webhooks.installation(gh.state, inst, "created")
            status, text = await webhooks.deliver(
                f"http://127.0.0.1:{port}/api/github/webhooks", "installation", payload, secret,
                delivery_id="d-1")
            assert (status, text) == (202, "queued")
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as s:
                await webhooks.deliver(s, "ping", webhooks.ping(gh.state), secret)
    finally:
        await runner.cleanup()

    headers, body = received[0]
    assert headers["X-GitHub-Event"] == "installation"
    assert headers["X-GitHub-Delivery"] == "d-1"
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["Content-Type"] == "application/json"
    sansio.validate_event(body, signature=headers["X-Hub-Signature-256"], secret=secret)
    assert headers["X-Hub-Signature-256"] == webhooks.sign(body, secret)
    event = sansio.Event.from_http({k.lower(): v for k, v in headers.items()}, body,
                                   secret=secret)
    assert event.data["installation"]["id"] == inst.id
    with pytest.raises(ValidationFailure):
        sansio.validate_event(body + b" ", signature=headers["X-Hub-Signature-256"],
                              secret=secret)
    assert received[1][0]["X-GitHub-Event"] == "ping"
