"""The fake GitHub's pull requests, commits and check runs, driven through raw HTTP over real
sockets: as strict as GitHub (permissions, validation, an App changes only its own runs)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakegithub import pulls
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import DEFAULT_INSTALLATION_PERMISSIONS

PERMISSIONS = {**DEFAULT_INSTALLATION_PERMISSIONS, "checks": "write", "pull_requests": "write"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Api:
    def __init__(self, http: aiohttp.ClientSession, gh: FakeGitHub, token: str) -> None:
        self.http, self.gh, self.token = http, gh, token

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
                method, self.gh.url + path,
                data=json.dumps(body) if body is not None else None,
                headers={"Authorization": f"token {self.token}"}) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None


def acme(gh: FakeGitHub, permissions: dict[str, str] | None = None) -> int:
    inst = gh.state.add_installation("acme", [
        {"name": "svc", "files": {"AGENTS.md": "x", "README.md": "r"}}],
        permissions=permissions or PERMISSIONS)
    return inst.id


async def test_pull_requests_and_their_commits(http: aiohttp.ClientSession,
                                              fake_github: FakeGitHub) -> None:
    st = fake_github.state
    api = Api(http, fake_github, fake_github.installation_token(acme(fake_github)))
    base = st.repo("acme/svc").heads["main"]
    pulls.create_branch(st, "acme/svc", "feature")
    head = pulls.commit(st, "acme/svc", "feature", {"AGENTS.md": None})
    pr = pulls.open_pull(st, "acme/svc", "feature", draft=True)
    status, data = await api.call("GET", f"/repos/acme/svc/pulls/{pr.number}")
    assert status == 200
    assert (data["head"]["sha"], data["head"]["ref"], data["draft"]) == (head, "feature", True)
    assert data["base"]["repo"]["full_name"] == "acme/svc" and data["state"] == "open"
    # A pull request is an issue too (same number space), with `pull_request` set.
    status, issue = await api.call("GET", f"/repos/acme/svc/issues/{pr.number}")
    assert status == 200 and "pull_request" in issue
    status, _ = await api.call("GET", "/repos/acme/svc/pulls/99")
    assert status == 404

    # A fork's head lives in the base repository too; older commits stay readable.
    pulls.fork(st, "acme/svc", "mallory")
    pulls.create_branch(st, "mallory/svc", "evil")
    fork_head = pulls.commit(st, "mallory/svc", "evil", {"AGENTS.md": "changed"})
    fork_pr = pulls.open_pull(st, "acme/svc", "evil", head_repo="mallory/svc")
    status, data = await api.call("GET", "/repos/acme/svc/pulls?state=open")
    assert [p["number"] for p in data] == [fork_pr.number, pr.number]
    assert data[0]["head"]["repo"]["full_name"] == "mallory/svc"
    status, _ = await api.call("GET", "/repos/mallory/svc")
    assert status == 404  # not installed: the App cannot see the fork
    status, file = await api.call("GET", f"/repos/acme/svc/contents/AGENTS.md?ref={fork_head}")
    assert status == 200 and file["type"] == "file"
    status, _ = await api.call("GET", f"/repos/acme/svc/contents/AGENTS.md?ref={head}")
    assert status == 404  # deleted at that commit
    status, file = await api.call("GET", f"/repos/acme/svc/contents/AGENTS.md?ref={base}")
    assert status == 200
    query = ('query($e: String!, $g: String!) { repository(owner: "acme", name: "svc") { '
             'a: object(expression: $e) { ... on Blob { text } } '
             'g: object(expression: $g) { oid } } }')
    status, body = await api.call("POST", "/graphql", {
        "query": query, "variables": {"e": f"{fork_head}:AGENTS.md", "g": "f" * 40}})
    assert status == 200
    assert body["data"]["repository"] == {"a": {"text": "changed"}, "g": None}

    pulls.close_pull(st, pr)
    status, data = await api.call("GET", "/repos/acme/svc/pulls")
    assert [p["number"] for p in data] == [fork_pr.number]


async def test_check_runs_are_validated_like_github(http: aiohttp.ClientSession,
                                                    fake_github: FakeGitHub) -> None:
    st = fake_github.state
    api = Api(http, fake_github, fake_github.installation_token(acme(fake_github)))
    sha = st.repo("acme/svc").heads["main"]
    good = {"name": "policy-enforcer", "head_sha": sha, "status": "completed",
            "conclusion": "success", "output": {"title": "ok", "summary": "fine"}}
    bad: list[tuple[dict[str, Any], str]] = [
        ({**good, "name": None}, '"name" wasn\'t supplied'),
        ({**good, "head_sha": "0" * 40}, "No commit found for SHA"),
        ({**good, "conclusion": None}, '"conclusion" wasn\'t supplied'),
        ({**good, "conclusion": "green"}, "is not a member of"),
        ({**good, "output": {"title": "x"}}, '"summary" wasn\'t supplied'),
        ({**good, "output": {"title": "x", "summary": "y" * 65536}},
         "Only 65535 characters are allowed"),
        ({**good, "details_url": "not a url"}, "Validation Failed"),
    ]
    for body, message in bad:
        status, data = await api.call("POST", "/repos/acme/svc/check-runs", body)
        assert (status, message in data["message"]) == (422, True), body
    assert pulls.check_runs(st, "acme/svc") == []

    status, run = await api.call("POST", "/repos/acme/svc/check-runs", good)
    assert status == 201 and run["app"]["id"] == st.app_id
    assert (run["status"], run["conclusion"], run["output"]["summary"]) == (
        "completed", "success", "fine")
    status, run = await api.call("PATCH", f"/repos/acme/svc/check-runs/{run['id']}",
                                 {"conclusion": "failure",
                                  "output": {"title": "bad", "summary": "broken"}})
    assert (status, run["conclusion"], run["output"]["title"]) == (200, "failure", "bad")

    other = pulls.add_check_run(st, "acme/svc", sha, "policy-enforcer", app_id=4242)
    status, _ = await api.call("PATCH", f"/repos/acme/svc/check-runs/{other.id}",
                               {"conclusion": "success"})
    assert status == 403  # another App's check run
    status, data = await api.call(
        "GET", f"/repos/acme/svc/commits/{sha}/check-runs?check_name=policy-enforcer"
               f"&app_id={st.app_id}&filter=latest")
    assert status == 200 and data["total_count"] == 1
    assert data["check_runs"][0]["id"] == run["id"]
    status, data = await api.call("GET", "/repos/acme/svc/commits/main/check-runs")
    assert {r["app"]["id"] for r in data["check_runs"]} == {st.app_id, 4242}


async def test_permissions_are_required(http: aiohttp.ClientSession,
                                        fake_github: FakeGitHub) -> None:
    st = fake_github.state
    api = Api(http, fake_github,
              fake_github.installation_token(acme(fake_github, DEFAULT_INSTALLATION_PERMISSIONS)))
    sha = st.repo("acme/svc").heads["main"]
    pulls.create_branch(st, "acme/svc", "feature")
    pr = pulls.open_pull(st, "acme/svc", "feature")
    status, data = await api.call("POST", "/repos/acme/svc/check-runs", {
        "name": "x", "head_sha": sha, "conclusion": "success"})
    assert (status, data["message"]) == (403, "Resource not accessible by integration")
    status, _ = await api.call("GET", f"/repos/acme/svc/pulls/{pr.number}")
    assert status == 403
    status, _ = await api.call("GET", f"/repos/acme/svc/commits/{sha}/check-runs")
    assert status == 403
