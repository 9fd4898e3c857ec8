"""The fake GitHub's organization teams endpoints (GET /orgs/{org}/teams and
/orgs/{org}/teams/{team_slug}/repos) and the `security_and_analysis` of
GET /installation/repositories, over real sockets with installation tokens: permissions,
404s, shapes, pagination and per-token ETags, as strict as GitHub."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import DEFAULT_INSTALLATION_PERMISSIONS, FakeState

APP = {**DEFAULT_INSTALLATION_PERMISSIONS, "administration": "write", "contents": "write",
       "members": "read"}
NO_MEMBERS = {k: v for k, v in APP.items() if k != "members"}
NO_ADMIN = {k: v for k, v in APP.items() if k != "administration"}
FORBIDDEN = "Resource not accessible by integration"
# GitHub's `minimal-repository` has none of these; its `repository` (the listing) has them.
FULL_ONLY = {"allow_rebase_merge", "allow_squash_merge", "allow_auto_merge",
             "allow_merge_commit"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@dataclass
class Api:
    http: aiohttp.ClientSession
    gh: FakeGitHub
    token: str

    async def get(self, path: str, etag: str | None = None
                  ) -> tuple[int, CIMultiDict[str], Any]:
        headers = {"Authorization": f"token {self.token}"}
        if etag is not None:
            headers["If-None-Match"] = etag
        async with self.http.get(self.gh.url + path, headers=headers) as resp:
            text = await resp.text()
            # Header names are case-insensitive (aiohttp sends "Etag").
            return resp.status, CIMultiDict(resp.headers), json.loads(text) if text else None


def api_for(http: aiohttp.ClientSession, gh: FakeGitHub, installation: int,
            permissions: dict[str, str] | None = None, repo_ids: list[int] | None = None
            ) -> Api:
    token = gh.state.issue_token(installation, permissions=permissions, repo_ids=repo_ids)
    return Api(http, gh, token.token)


def links(headers: Mapping[str, str]) -> dict[str, str]:
    """rel -> URL of a Link header."""
    return {rel: url for url, rel in
            re.findall(r'<([^>]+)>; rel="(\w+)"', headers.get("Link", ""))}


def acme(st: FakeState) -> int:
    """acme with three installed repositories and one it did not install, and teams."""
    inst = st.add_installation("acme", ["svc", "web", "docs"], permissions=APP).id
    st.add_repo("acme", "secret-sauce", installed=False)
    st.add_team("acme", "platform", ["alice"], name="Platform")
    st.add_team("acme", "backend", ["bob"], name="Backend")
    st.add_team("acme", "zeta", name="Alpha Squad")
    st.add_team_access("acme/svc", "platform", "admin")
    st.add_team_access("acme/web", "platform", "triage")
    st.add_team_access("acme/docs", "platform", "pull")
    st.add_team_access("acme/secret-sauce", "platform", "maintain")
    st.add_team_access("acme/svc", "backend", "push")
    return inst


# ----------------------------------------------------------------------------- /orgs/{org}/teams
async def test_org_teams_in_githubs_team_shape(http: aiohttp.ClientSession,
                                               fake_github: FakeGitHub) -> None:
    st = fake_github.state
    api = api_for(http, fake_github, acme(st))

    status, _, teams = await api.get("/orgs/acme/teams")
    assert status == 200
    # Ordered by name, whatever the slug or creation order.
    assert [t["name"] for t in teams] == ["Alpha Squad", "Backend", "Platform"]
    platform = teams[2]
    team = st.team("acme", "platform")
    org_id = st.user("acme").id
    base = f"{fake_github.url}/organizations/{org_id}/team/{team.id}"
    assert platform == {
        "name": "Platform", "id": team.id, "node_id": platform["node_id"],
        "slug": "platform", "description": None, "privacy": "closed",
        "notification_setting": "notifications_enabled", "permission": "pull",
        "url": base, "html_url": f"{st.web_url}/orgs/acme/teams/platform",
        "members_url": f"{base}/members{{/member}}", "repositories_url": f"{base}/repos",
        "type": "organization", "organization_id": org_id, "parent": None}
    # The organization is not case sensitive; team_type filters (no enterprise teams here).
    status, _, same = await api.get("/orgs/ACME/teams?team_type=organization")
    assert (status, same) == (200, teams)
    status, _, none = await api.get("/orgs/acme/teams?team_type=enterprise")
    assert (status, none) == (200, [])
    status, _, body = await api.get("/orgs/acme/teams?team_type=secret")
    assert status == 422 and "team_type" in body["message"]


async def test_org_teams_permission_and_404s(http: aiohttp.ClientSession,
                                             fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st)
    weak = api_for(http, fake_github, inst, NO_MEMBERS)
    status, headers, body = await weak.get("/orgs/acme/teams")
    assert (status, body["message"]) == (403, FORBIDDEN)
    assert headers["X-Accepted-GitHub-Permissions"] == "members=read"
    # An installation that lacks the permission cannot get a token with it either way.
    bare = st.add_installation("globex", ["app"], permissions=NO_MEMBERS).id
    st.add_team("globex", "ops")
    status, _, body = await api_for(http, fake_github, bare).get("/orgs/globex/teams")
    assert (status, body["message"]) == (403, FORBIDDEN)

    api = api_for(http, fake_github, inst)
    status, _, body = await api.get("/orgs/nope/teams")
    assert (status, body["message"]) == (404, "Not Found")
    # A personal account: no teams, no such organization.
    st.add_repo("alice", "dotfiles", installed=False, owner_type="User")
    status, _, body = await api.get("/orgs/alice/teams")
    assert (status, body["message"]) == (404, "Not Found")
    # Another organization's teams are not the installation's to read.
    status, _, _ = await api.get("/orgs/globex/teams")
    assert status == 403


async def test_org_teams_paginate_with_links_and_etags(http: aiohttp.ClientSession,
                                                       fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st)
    for i in range(4):
        st.add_team("acme", f"squad-{i}", name=f"Squad {i}")
    api = api_for(http, fake_github, inst)

    status, headers, first = await api.get("/orgs/acme/teams?per_page=3")
    assert status == 200 and len(first) == 3
    rels = links(headers)
    assert set(rels) == {"next", "last"}
    assert "page=2" in rels["next"] and "page=3" in rels["last"]
    assert rels["next"].startswith(fake_github.url)
    _, headers, last = await api.get("/orgs/acme/teams?per_page=3&page=3")
    assert len(last) == 1 and set(links(headers)) == {"prev", "first"}
    _, _, everything = await api.get("/orgs/acme/teams?per_page=100")
    assert [t["slug"] for t in everything][:3] == [t["slug"] for t in first]
    assert len(everything) == 7
    # per_page is capped at 100 and defaults to 30.
    for i in range(130):
        st.add_team("acme", f"t{i:03}")
    _, _, capped = await api.get("/orgs/acme/teams?per_page=500")
    _, _, default = await api.get("/orgs/acme/teams")
    assert (len(capped), len(default)) == (100, 30)

    # A conditional GET with this token's ETag is a 304; a new team changes the ETag.
    status, headers, _ = await api.get("/orgs/acme/teams")
    etag = headers["ETag"]
    status, _, _ = await api.get("/orgs/acme/teams", etag=etag)
    assert status == 304
    other = api_for(http, fake_github, inst)
    status, _, _ = await other.get("/orgs/acme/teams", etag=etag)
    assert status == 200  # ETags are per token
    st.add_team("acme", "aaa-first", name="AAA")
    status, _, body = await api.get("/orgs/acme/teams", etag=etag)
    assert status == 200 and body[0]["slug"] == "aaa-first"


# ----------------------------------------------------------------------------- team repos
async def test_team_repos_minimal_with_the_teams_role(http: aiohttp.ClientSession,
                                                      fake_github: FakeGitHub) -> None:
    st = fake_github.state
    api = api_for(http, fake_github, acme(st))

    status, _, repos = await api.get("/orgs/acme/teams/platform/repos")
    assert status == 200
    # Only the installed repositories (not secret-sauce), by id.
    assert [r["full_name"] for r in repos] == ["acme/svc", "acme/web", "acme/docs"]
    assert [(r["role_name"], r["permissions"]) for r in repos] == [
        ("admin", {"admin": True, "maintain": True, "push": True, "triage": True,
                   "pull": True}),
        ("triage", {"admin": False, "maintain": False, "push": False, "triage": True,
                    "pull": True}),
        ("read", {"admin": False, "maintain": False, "push": False, "triage": False,
                  "pull": True})]
    svc = repos[0]
    assert not FULL_ONLY & set(svc)
    _, _, full = await api.get("/repos/acme/svc")
    # Everything else is what GET /repos/{owner}/{repo} shows this token.
    assert {k: v for k, v in svc.items() if k not in ("permissions", "role_name")} == {
        k: v for k, v in full.items() if k not in FULL_ONLY and k != "permissions"
        and k not in ("allow_update_branch", "use_squash_pr_title_as_default",
                      "squash_merge_commit_title", "squash_merge_commit_message",
                      "merge_commit_title", "merge_commit_message")}
    assert "security_and_analysis" in svc and "delete_branch_on_merge" in svc
    # Slugs are not case sensitive; a team without repositories lists none.
    status, _, same = await api.get("/orgs/ACME/teams/Platform/repos")
    assert (status, same) == (200, repos)
    status, _, empty = await api.get("/orgs/acme/teams/zeta/repos")
    assert (status, empty) == (200, [])


async def test_team_repos_agree_with_repository_teams(http: aiohttp.ClientSession,
                                                      fake_github: FakeGitHub) -> None:
    st = fake_github.state
    api = api_for(http, fake_github, acme(st))
    st.add_team_access("acme/web", "backend", "maintain")
    for slug in ("platform", "backend"):
        _, _, repos = await api.get(f"/orgs/acme/teams/{slug}/repos")
        for repo in repos:
            status, _, teams = await api.get(f"/repos/{repo['full_name']}/teams")
            assert status == 200
            entry = next(t for t in teams if t["slug"] == slug)
            assert entry["permissions"] == repo["permissions"]
    # A change of role shows in both.
    st.add_team_access("acme/svc", "backend", "admin")
    _, _, repos = await api.get("/orgs/acme/teams/backend/repos")
    assert [(r["name"], r["role_name"]) for r in repos] == [("svc", "admin"),
                                                          ("web", "maintain")]


async def test_team_repos_visibility_permissions_and_404(http: aiohttp.ClientSession,
                                                         fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st)
    # A token narrowed to some repositories lists only those.
    narrow = api_for(http, fake_github, inst, repo_ids=[st.repo("acme/web").id])
    _, _, repos = await narrow.get("/orgs/acme/teams/platform/repos")
    assert [r["name"] for r in repos] == ["web"]
    # Installing a repository makes it listed.
    st.add_repo_to_installation("acme/secret-sauce")
    _, _, repos = await api_for(http, fake_github, inst).get("/orgs/acme/teams/platform/repos")
    assert [(r["name"], r["role_name"]) for r in repos][-1] == ("secret-sauce", "maintain")

    weak = api_for(http, fake_github, inst, NO_MEMBERS)
    status, headers, body = await weak.get("/orgs/acme/teams/platform/repos")
    assert (status, body["message"]) == (403, FORBIDDEN)
    assert headers["X-Accepted-GitHub-Permissions"] == "members=read"
    # security_and_analysis only for a token that may administer the repositories.
    no_admin = api_for(http, fake_github, inst, NO_ADMIN)
    status, _, repos = await no_admin.get("/orgs/acme/teams/platform/repos")
    assert status == 200 and all("security_and_analysis" not in r for r in repos)

    api = api_for(http, fake_github, inst)
    status, _, body = await api.get("/orgs/acme/teams/ghosts/repos")
    assert (status, body["message"]) == (404, "Not Found")
    status, _, body = await api.get("/orgs/nope/teams/platform/repos")
    assert (status, body["message"]) == (404, "Not Found")


async def test_team_repos_paginate_with_links_and_etags(http: aiohttp.ClientSession,
                                                        fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st)
    for i in range(3):
        st.add_repo("acme", f"extra-{i}")
        st.add_team_access(f"acme/extra-{i}", "platform", "push")
    api = api_for(http, fake_github, inst)
    path = "/orgs/acme/teams/platform/repos"

    status, headers, first = await api.get(f"{path}?per_page=2")
    assert status == 200 and [r["name"] for r in first] == ["svc", "web"]
    rels = links(headers)
    assert set(rels) == {"next", "last"} and "page=3" in rels["last"]
    _, headers, middle = await api.get(f"{path}?per_page=2&page=2")
    assert [r["name"] for r in middle] == ["docs", "extra-0"]
    assert set(links(headers)) == {"prev", "next", "last", "first"}

    _, headers, _ = await api.get(path)
    status, _, _ = await api.get(path, etag=headers["ETag"])
    assert status == 304
    st.add_team_access("acme/web", "platform", "admin")
    status, _, repos = await api.get(path, etag=headers["ETag"])
    assert status == 200 and repos[1]["role_name"] == "admin"


# ----------------------------------------------------------------------------- installation repos
async def test_installation_repositories_have_no_security_and_analysis(
        http: aiohttp.ClientSession, fake_github: FakeGitHub) -> None:
    """GitHub lists an installation's repositories in its `repository` shape, which has no
    `security_and_analysis` (GET /repos/{o}/{r} does, for an administering token)."""
    st = fake_github.state
    inst = st.add_installation("acme", [{"name": "svc", "private": True}, "web"],
                               permissions=APP).id
    st.set_security("acme/svc", advanced_security=True, secret_scanning=True,
                    dependabot_alerts=True, dependabot_security_updates=True)
    api = api_for(http, fake_github, inst)
    status, _, body = await api.get("/installation/repositories")
    assert status == 200
    assert all("security_and_analysis" not in r for r in body["repositories"])
    _, _, full = await api.get("/repos/acme/svc")
    assert full["security_and_analysis"]["secret_scanning"]["status"] == "enabled"


async def test_organization_repositories_carry_security_and_analysis(
        http: aiohttp.ClientSession, fake_github: FakeGitHub) -> None:
    """GET /orgs/{org}/repos: `minimal-repository` items, with `security_and_analysis` for a
    token that may administer the repositories (GitHub's docs say so for this listing)."""
    st = fake_github.state
    inst = st.add_installation("acme", [{"name": "svc", "private": True}, "web",
                                        {"name": "copy", "fork": True}],
                               permissions=APP).id
    st.set_security("acme/svc", advanced_security=True, secret_scanning=True)
    api = api_for(http, fake_github, inst)
    status, _, repos = await api.get("/orgs/acme/repos?per_page=2")
    assert status == 200 and [r["name"] for r in repos] == ["svc", "web"]
    _, _, full = await api.get("/repos/acme/svc")
    assert repos[0]["security_and_analysis"] == full["security_and_analysis"]
    assert not FULL_ONLY & repos[0].keys()
    status, _, forks = await api.get("/orgs/acme/repos?type=forks")
    assert [r["name"] for r in forks] == ["copy"]
    assert (await api.get("/orgs/acme/repos?type=nope"))[0] == 422
    assert (await api.get("/orgs/nobody-here/repos"))[0] == 404
    plain = api_for(http, fake_github, inst, permissions=NO_ADMIN)
    _, _, repos = await plain.get("/orgs/acme/repos")
    assert all("security_and_analysis" not in r for r in repos)
