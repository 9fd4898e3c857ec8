"""The fake GitHub's endpoints for the App's data sources (app/sources/), over real sockets:
branch protection and rulesets, collaborators and teams, security settings, CODEOWNERS
errors, git trees, the GraphQL settings and tree fields, and the webhooks that make them
stale. As strict as GitHub: permissions, 404 shapes, pagination, per-token ETags."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from ruamel.yaml import YAML

from tests.fakegithub import hooks, webhooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import (
    DEFAULT_INSTALLATION_PERMISSIONS,
    FakeState,
    git_blob_sha,
    ruleset_rule,
)

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fakegithub" / "fixtures"
# What the App asks for (app.yml): administration and contents write, among others.
APP = {**DEFAULT_INSTALLATION_PERMISSIONS, "administration": "write", "contents": "write",
       "members": "read"}
NO_ADMIN = {k: v for k, v in APP.items() if k != "administration"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@dataclass
class Api:
    http: aiohttp.ClientSession
    gh: FakeGitHub
    token: str
    etags: dict[str, str] = field(default_factory=dict)

    async def get(self, path: str, *, conditional: bool = False
                  ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"token {self.token}"}
        if conditional and path in self.etags:
            headers["If-None-Match"] = self.etags[path]
        async with self.http.get(self.gh.url + path, headers=headers) as resp:
            text = await resp.text()
            if "ETag" in resp.headers:
                self.etags[path] = resp.headers["ETag"]
            return resp.status, dict(resp.headers), json.loads(text) if text else None

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.gh.url + path, json=body,
                                     headers={"Authorization": f"token {self.token}"}) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    async def graphql(self, query: str, **variables: Any) -> Any:
        status, body = await self.call("POST", "/graphql",
                                       {"query": query, "variables": variables})
        assert status == 200
        return body


def api_for(http: aiohttp.ClientSession, gh: FakeGitHub, installation: int,
            permissions: dict[str, str] | None = None) -> Api:
    token = gh.state.issue_token(installation, permissions=permissions).token
    return Api(http, gh, token)


def acme(st: FakeState, **repo: Any) -> int:
    inst = st.add_installation("acme", [{"name": "svc", **repo}], permissions=APP)
    return inst.id


# ----------------------------------------------------------------------------- protection
async def test_branch_protection_in_githubs_shape(http: aiohttp.ClientSession,
                                                  fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st, files={"README.md": "hi"})
    for branch in ("release/1", "release/1/hotfix", "dev"):
        st.repo("acme/svc").branches[branch] = {}
        st.repo("acme/svc").heads[branch] = st.repo("acme/svc").heads["main"]
    st.protect_branch("acme/svc", "main", required_status_checks=["ci", "lint"], strict=True,
                      required_approving_review_count=2, dismiss_stale_reviews=True,
                      enforce_admins=True, required_conversation_resolution=True)
    st.protect_branch("acme/svc", "release/*", allow_force_pushes=True)
    api = api_for(http, fake_github, inst)

    status, _, body = await api.get("/repos/acme/svc/branches/main/protection")
    assert status == 200
    base = f"{fake_github.url}/repos/acme/svc/branches/main/protection"
    assert body["url"] == base
    assert body["required_status_checks"] == {
        "url": f"{base}/required_status_checks", "strict": True, "contexts": ["ci", "lint"],
        "contexts_url": f"{base}/required_status_checks/contexts",
        "checks": [{"context": "ci", "app_id": None}, {"context": "lint", "app_id": None}]}
    reviews = body["required_pull_request_reviews"]
    assert (reviews["required_approving_review_count"], reviews["dismiss_stale_reviews"],
            reviews["require_code_owner_reviews"]) == (2, True, False)
    assert body["enforce_admins"] == {"url": f"{base}/enforce_admins", "enabled": True}
    assert body["required_signatures"]["enabled"] is False
    assert body["allow_force_pushes"] == {"enabled": False}
    assert body["required_conversation_resolution"] == {"enabled": True}

    # A pattern rule: `*` stops at "/"; no reviews or checks required: no such keys.
    status, _, body = await api.get("/repos/acme/svc/branches/release/1/protection")
    assert status == 200 and body["allow_force_pushes"] == {"enabled": True}
    assert "required_pull_request_reviews" not in body and "required_status_checks" not in body
    # The App quotes a branch name as one path segment; GitHub decodes it.
    status, _, encoded = await api.get("/repos/acme/svc/branches/release%2F1/protection")
    assert status == 200 and encoded["url"] == body["url"]
    status, _, body = await api.get("/repos/acme/svc/branches/release/1/hotfix/protection")
    assert (status, body["message"]) == (404, "Branch not protected")
    status, _, body = await api.get("/repos/acme/svc/branches/dev/protection")
    assert (status, body["message"]) == (404, "Branch not protected")
    status, _, body = await api.get("/repos/acme/svc/branches/nope/protection")
    assert (status, body["message"]) == (404, "Branch not found")
    # A rule naming the branch beats an older pattern.
    st.protect_branch("acme/svc", "release/1", allow_deletions=True)
    _, _, body = await api.get("/repos/acme/svc/branches/release/1/protection")
    assert body["allow_force_pushes"] == {"enabled": False}
    assert body["allow_deletions"] == {"enabled": True}

    # Administration: read is required.
    weak = api_for(http, fake_github, inst, NO_ADMIN)
    status, headers, body = await weak.get("/repos/acme/svc/branches/main/protection")
    assert (status, body["message"]) == (403, "Resource not accessible by integration")
    assert headers["X-Accepted-GitHub-Permissions"] == "administration=read"
    st.add_repo("elsewhere", "hidden")
    status, _, _ = await api.get("/repos/elsewhere/hidden/branches/main/protection")
    assert status == 404


def test_protection_helpers_validate_and_replace() -> None:
    st = FakeState()
    st.add_installation("acme", ["svc"])
    first = st.protect_branch("acme/svc", "main", required_approving_review_count=1)
    second = st.protect_branch("acme/svc", "main", enforce_admins=True)
    assert (first.id, first.enforce_admins) == (second.id, False)  # the old version stays
    assert (second.required_approving_review_count, second.enforce_admins) == (1, True)
    with pytest.raises(ValueError):
        st.protect_branch("acme/svc", "main", required_approving_review_count=7)
    with pytest.raises(TypeError):
        st.protect_branch("acme/svc", "main", not_a_setting=True)
    assert st.unprotect_branch("acme/svc", "main") is second
    assert st.protection("acme/svc", "main") is None


# ----------------------------------------------------------------------------- rulesets
async def test_active_rules_of_a_branch(http: aiohttp.ClientSession,
                                        fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", ["svc", "web", "legacy-app"], permissions=NO_ADMIN).id
    main = st.add_ruleset("acme/svc", "main", [
        "deletion", ruleset_rule("pull_request", required_approving_review_count=2)])
    st.add_ruleset("acme/svc", "trial", ["required_signatures"], enforcement="evaluate")
    st.add_ruleset("acme/svc", "off", ["non_fast_forward"], enforcement="disabled")
    releases = st.add_ruleset("acme/svc", "releases", [
        ruleset_rule("required_status_checks", required_status_checks=["ci"])],
        include=["refs/heads/release/**"], exclude=["refs/heads/release/old-*"])
    org = st.add_ruleset("acme", "everywhere", ["non_fast_forward"], include=["~ALL"],
                         exclude_repositories=["legacy-*"])
    api = api_for(http, fake_github, inst)  # metadata is enough

    status, _, rules = await api.get("/repos/acme/svc/rules/branches/main")
    assert status == 200
    assert [(r["type"], r["ruleset_source_type"], r["ruleset_source"], r["ruleset_id"])
            for r in rules] == [
        ("non_fast_forward", "Organization", "acme", org.id),
        ("deletion", "Repository", "acme/svc", main.id),
        ("pull_request", "Repository", "acme/svc", main.id)]
    assert "parameters" not in rules[0]  # a rule without parameters has none
    assert rules[2]["parameters"]["required_approving_review_count"] == 2
    assert rules[2]["parameters"]["dismiss_stale_reviews_on_push"] is False

    # `**` crosses "/", exclusions win; the branch need not exist.
    _, _, rules = await api.get("/repos/acme/svc/rules/branches/release/2024/q1")
    assert [(r["type"], r["ruleset_id"]) for r in rules] == [
        ("non_fast_forward", org.id), ("required_status_checks", releases.id)]
    assert rules[1]["parameters"]["required_status_checks"] == [{"context": "ci"}]
    _, _, encoded = await api.get("/repos/acme/svc/rules/branches/release%2F2024%2Fq1")
    assert encoded == rules
    _, _, rules = await api.get("/repos/acme/svc/rules/branches/release/old-1")
    assert [r["ruleset_id"] for r in rules] == [org.id]
    # The organization's ruleset skips the repositories it excludes.
    _, _, rules = await api.get("/repos/acme/legacy-app/rules/branches/main")
    assert rules == []
    _, _, rules = await api.get("/repos/acme/web/rules/branches/main")
    assert [r["ruleset_id"] for r in rules] == [org.id]

    # Paginated like every list.
    status, headers, page = await api.get("/repos/acme/svc/rules/branches/main?per_page=2")
    assert len(page) == 2 and 'rel="next"' in headers["Link"]
    _, _, last = await api.get("/repos/acme/svc/rules/branches/main?per_page=2&page=2")
    assert [r["type"] for r in last] == ["pull_request"]

    # An edit to evaluate mode takes the rules away; a disabled ruleset back on adds them.
    st.update_ruleset(main, enforcement="evaluate")
    st.update_ruleset(st.ruleset("acme/svc", "off"), enforcement="active")
    _, _, rules = await api.get("/repos/acme/svc/rules/branches/main")
    assert [r["type"] for r in rules] == ["non_fast_forward", "non_fast_forward"]
    with pytest.raises(ValueError):
        st.add_ruleset("acme/svc", "bad", ["deletion"], include=["main"])  # not a full ref
    with pytest.raises(ValueError):
        st.add_ruleset("acme/svc", "bad", ["no_such_rule"])


# ----------------------------------------------------------------------------- access
def people(body: list[dict[str, Any]]) -> dict[str, str]:
    return {u["login"]: u["role_name"] for u in body}


async def test_collaborators_by_affiliation(http: aiohttp.ClientSession,
                                           fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", ["svc"], permissions=NO_ADMIN).id
    st.add_org_member("acme", "alice")
    st.add_org_member("acme", "carol", role="admin")
    st.add_org_member("acme", "eve")
    st.add_org_member("acme", "pending", state="pending")
    st.set_permission("acme/svc", "alice", "write")
    st.set_permission("acme/svc", "bob", "read")  # not a member: an outside collaborator
    st.set_permission("acme/svc", "pending", "triage")  # invited, not a member yet
    st.add_team("acme", "core", ["dave", "alice"])
    st.add_team_access("acme/svc", "core", "maintain")
    api = api_for(http, fake_github, inst)  # metadata is enough

    status, _, body = await api.get("/repos/acme/svc/collaborators?affiliation=direct")
    assert status == 200
    # role_name is the strongest role from every source (alice: maintain through a team).
    assert people(body) == {"alice": "maintain", "bob": "read", "pending": "triage"}
    alice = next(u for u in body if u["login"] == "alice")
    assert alice["permissions"] == {"admin": False, "maintain": True, "push": True,
                                    "triage": True, "pull": True}
    assert alice["id"] == st.user("alice").id and alice["type"] == "User"
    _, _, body = await api.get("/repos/acme/svc/collaborators?affiliation=outside")
    assert people(body) == {"bob": "read", "pending": "triage"}
    _, _, body = await api.get("/repos/acme/svc/collaborators")  # all
    assert people(body) == {"alice": "maintain", "bob": "read", "carol": "admin",
                            "dave": "maintain", "eve": "read", "pending": "triage"}
    _, _, body = await api.get("/repos/acme/svc/collaborators?permission=maintain")
    assert sorted(people(body)) == ["alice", "dave"]
    # Without a base permission, plain members reach the repository only as collaborators.
    st.user("acme").default_repository_permission = "none"
    _, _, body = await api.get("/repos/acme/svc/collaborators")
    assert "eve" not in people(body) and "carol" in people(body)

    status, headers, page = await api.get("/repos/acme/svc/collaborators?per_page=2")
    assert len(page) == 2 and 'rel="last"' in headers["Link"]
    status, _, body = await api.get("/repos/acme/svc/collaborators?affiliation=friends")
    assert status == 422 and "affiliation" in body["message"]
    st.remove_collaborator("acme/svc", "bob")
    _, _, body = await api.get("/repos/acme/svc/collaborators?affiliation=outside")
    assert people(body) == {"pending": "triage"}


async def test_repository_teams_need_administration(http: aiohttp.ClientSession,
                                                    fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st)
    st.add_team("acme", "core", ["dave"], name="Core")
    st.add_team("acme", "docs")
    st.add_team("acme", "unrelated")
    st.add_team_access("acme/svc", "core", "admin")
    st.add_team_access("acme/svc", "docs", "pull")
    status, _, body = await api_for(http, fake_github, inst).get("/repos/acme/svc/teams")
    assert status == 200
    assert [(t["slug"], t["name"], t["permission"]) for t in body] == [
        ("core", "Core", "admin"), ("docs", "docs", "pull")]
    assert body[1]["permissions"] == {"admin": False, "maintain": False, "push": False,
                                      "triage": False, "pull": True}
    assert body[0]["id"] == st.team("acme", "core").id
    status, headers, body = await api_for(http, fake_github, inst, NO_ADMIN).get(
        "/repos/acme/svc/teams")
    assert status == 403 and headers["X-Accepted-GitHub-Permissions"] == "administration=read"
    with pytest.raises(KeyError):
        st.add_team_access("acme/svc", "no-such-team")


# ----------------------------------------------------------------------------- security
async def test_security_settings_and_dependabot_alerts(http: aiohttp.ClientSession,
                                                       fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", ["pub", {"name": "priv", "private": True}],
                               permissions=APP).id
    api = api_for(http, fake_github, inst)
    status, _, _ = await api.get("/repos/acme/pub/vulnerability-alerts")
    assert status == 404
    st.set_security("acme/pub", dependabot_alerts=True, dependabot_security_updates=True,
                    secret_scanning=True)
    status, _, body = await api.get("/repos/acme/pub/vulnerability-alerts")
    assert (status, body) == (204, None)

    _, _, repo = await api.get("/repos/acme/pub")
    assert repo["security_and_analysis"] == {
        "secret_scanning": {"status": "enabled"},
        "secret_scanning_push_protection": {"status": "disabled"},
        "secret_scanning_non_provider_patterns": {"status": "disabled"},
        "secret_scanning_validity_checks": {"status": "disabled"},
        "dependabot_security_updates": {"status": "enabled"}}
    # A private repository without Advanced Security shows no secret scanning at all.
    _, _, repo = await api.get("/repos/acme/priv")
    assert repo["security_and_analysis"] == {
        "advanced_security": {"status": "disabled"},
        "dependabot_security_updates": {"status": "disabled"}}
    with pytest.raises(ValueError):
        st.set_security("acme/priv", secret_scanning=True)
    st.set_security("acme/priv", advanced_security=True, secret_scanning=True,
                    secret_scanning_push_protection=True)
    _, _, repo = await api.get("/repos/acme/priv")
    assert repo["security_and_analysis"]["secret_scanning_push_protection"] == {
        "status": "enabled"}
    # Turning Advanced Security off turns off what needs it.
    assert st.set_security("acme/priv", advanced_security=False).secret_scanning is False

    # Without administration: no security_and_analysis, and no answer on alerts.
    weak = api_for(http, fake_github, inst, NO_ADMIN)
    status, _, repo = await weak.get("/repos/acme/pub")
    assert status == 200 and "security_and_analysis" not in repo
    status, _, _ = await weak.get("/repos/acme/pub/vulnerability-alerts")
    assert status == 403
    # Merge settings need contents: write.
    assert repo["allow_squash_merge"] is True and repo["delete_branch_on_merge"] is False
    _, _, repo = await api_for(http, fake_github, inst, {"metadata": "read"}).get(
        "/repos/acme/pub")
    assert "allow_squash_merge" not in repo and "delete_branch_on_merge" not in repo
    assert repo["has_wiki"] is True and "security_and_analysis" not in repo


async def test_repository_settings_agree_across_rest_and_graphql(
        http: aiohttp.ClientSession, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st, topics=["infra", "python", "zeta"])
    st.set_repo_settings("acme/svc", has_wiki=False, allow_merge_commit=False,
                         delete_branch_on_merge=True)
    api = api_for(http, fake_github, inst)
    status, body = await api.call("PATCH", "/repos/acme/svc",
                                  {"has_projects": False, "allow_rebase_merge": False})
    assert status == 200 and (body["has_projects"], body["allow_rebase_merge"]) == (False,
                                                                                   False)
    _, _, rest = await api.get("/repos/acme/svc")
    query = """query($o: String!, $n: String!) { repository(owner: $o, name: $n) {
      hasWikiEnabled hasProjectsEnabled deleteBranchOnMerge mergeCommitAllowed
      squashMergeAllowed rebaseMergeAllowed
      repositoryTopics(first: 2) { totalCount nodes { topic { name } }
                                   pageInfo { hasNextPage endCursor } } } }"""
    data = (await api.graphql(query, o="acme", n="svc"))["data"]["repository"]
    assert (data["hasWikiEnabled"], data["hasProjectsEnabled"], data["deleteBranchOnMerge"],
            data["mergeCommitAllowed"], data["squashMergeAllowed"],
            data["rebaseMergeAllowed"]) == (
        rest["has_wiki"], rest["has_projects"], rest["delete_branch_on_merge"],
        rest["allow_merge_commit"], rest["allow_squash_merge"], rest["allow_rebase_merge"])
    assert data["hasWikiEnabled"] is False and data["squashMergeAllowed"] is True
    topics = data["repositoryTopics"]
    assert [n["topic"]["name"] for n in topics["nodes"]] == ["infra", "python"]
    assert topics["totalCount"] == 3 and topics["pageInfo"]["hasNextPage"] is True
    rest_page = await api.graphql(
        """query($c: String!) { repository(owner: "acme", name: "svc") {
             repositoryTopics(first: 2, after: $c) { nodes { topic { name } } } } }""",
        c=topics["pageInfo"]["endCursor"])
    assert rest_page["data"]["repository"]["repositoryTopics"]["nodes"] == [
        {"topic": {"name": "zeta"}}]
    bad = await api.graphql("""{ repository(owner: "acme", name: "svc") {
        repositoryTopics(first: 2, after: "nope") { totalCount } } }""")
    assert bad["data"]["repository"]["repositoryTopics"] is None
    assert bad["errors"][0]["type"] == "INVALID_CURSOR_ARGUMENTS"

    # A connection needs first/last, at most 100; GitHub answers without data.
    body = await api.graphql('{ repository(owner: "acme", name: "svc") { '
                             "repositoryTopics { totalCount } } }")
    assert "data" not in body and body["errors"][0]["type"] == "MISSING_PAGINATION_BOUNDARIES"
    body = await api.graphql('{ repository(owner: "acme", name: "svc") { '
                             "repositoryTopics(first: 101) { totalCount } } }")
    assert body["errors"][0]["type"] == "EXCESSIVE_PAGINATION"
    with pytest.raises(ValueError):
        st.set_repo_settings("acme/svc", allow_squash_merge=False)  # none left


async def test_graphql_cost_counts_topic_connections(http: aiohttp.ClientSession,
                                                     fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 150, permissions=APP).id
    api = api_for(http, fake_github, inst)
    aliases = " ".join(f'r{i}: repository(owner: "acme", name: "repo-{i:03d}") {{ ...t }}'
                       for i in range(150))
    body = await api.graphql("query { rateLimit { cost } " + aliases + " }\n"
                             "fragment t on Repository { repositoryTopics(first: 10) "
                             "{ totalCount } }")
    assert body["data"]["rateLimit"]["cost"] == 2  # 150 requests / 100, rounded
    body = await api.graphql("query { rateLimit { cost } " + aliases + " }\n"
                             "fragment t on Repository { name }")
    assert body["data"]["rateLimit"]["cost"] == 1


async def test_custom_property_values(http: aiohttp.ClientSession,
                                      fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st)
    api = api_for(http, fake_github, inst, {"metadata": "read"})  # metadata is enough
    status, _, body = await api.get("/repos/acme/svc/properties/values")
    assert (status, body) == (200, [])
    before = st.repo("acme/svc").custom_properties
    st.set_custom_properties("acme/svc", {"tier": "critical", "langs": ["py", "go"]})
    _, _, body = await api.get("/repos/acme/svc/properties/values")
    assert body == [{"property_name": "tier", "value": "critical"},
                    {"property_name": "langs", "value": ["py", "go"]}]
    payload = webhooks.custom_property_values(st, st.repo("acme/svc"), before)
    assert REQUIRED["custom_property_values"] <= set(payload)
    assert payload["old_property_values"] == [{"property_name": "tier", "value": None},
                                              {"property_name": "langs", "value": None}]
    assert payload["new_property_values"][0] == {"property_name": "tier", "value": "critical"}
    # A personal repository has none; its owner is no outside collaborator of it.
    mine = st.add_installation("mona", ["own"], account_type="User").id
    st.set_permission("mona/own", "bob", "write")
    _, _, body = await api_for(http, fake_github, mine).get(
        "/repos/mona/own/collaborators?affiliation=outside")
    assert people(body) == {"bob": "write"}
    _, _, body = await api_for(http, fake_github, mine).get("/repos/mona/own/collaborators")
    assert people(body) == {"mona": "admin", "bob": "write"}
    status, _, _ = await api_for(http, fake_github, mine).get("/repos/mona/own/properties/values")
    assert status == 404
    with pytest.raises(ValueError):
        st.set_custom_properties("mona/own", {"tier": "low"})


# ----------------------------------------------------------------------------- CODEOWNERS
async def test_codeowners_errors(http: aiohttp.ClientSession, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    text = ("# Owners\n"
            "*        @alice @ghost\n"
            "/docs/   @acme/docs @acme/readers\n"
            "***/*.rb @alice\n"
            "*.txt    docs@\n"
            "*.md     writer@example.com # a comment @nobody\n"
            "/build/\n")
    inst = acme(st, files={".github/CODEOWNERS": text, "CODEOWNERS": "* @ghost\n"})
    st.set_permission("acme/svc", "alice", "write")
    st.user("writer").email = "writer@example.com"
    st.set_permission("acme/svc", "writer", "maintain")
    st.add_team("acme", "docs")
    st.add_team("acme", "readers")
    st.add_team_access("acme/svc", "docs", "write")
    st.add_team_access("acme/svc", "readers", "read")
    api = api_for(http, fake_github, inst)

    status, _, body = await api.get("/repos/acme/svc/codeowners/errors")
    assert status == 200
    errors = body["errors"]
    assert [(e["line"], e["column"], e["kind"]) for e in errors] == [
        (2, 17, "Unknown owner"), (3, 21, "Unknown owner"), (4, 1, "Invalid pattern"),
        (5, 10, "Invalid owner")]
    assert {e["path"] for e in errors} == {".github/CODEOWNERS"}  # the first place wins
    assert errors[2]["suggestion"] == "Did you mean `**/*.rb`?"
    assert errors[2]["message"] == ("Invalid pattern on line 4: Did you mean `**/*.rb`?\n\n"
                                    "  ***/*.rb @alice\n  ^")
    assert errors[3]["message"] == "Invalid owner on line 5:\n\n  *.txt    docs@\n           ^"
    assert errors[3]["suggestion"] is None and errors[0]["source"] == "*        @alice @ghost"

    # At another ref, or in the root: another file; none at all is a 404.
    sha = st.set_file("acme/svc", ".github/CODEOWNERS", "* @alice\n")
    _, _, body = await api.get("/repos/acme/svc/codeowners/errors")
    assert body == {"errors": []}
    st.delete_file("acme/svc", ".github/CODEOWNERS")
    _, _, body = await api.get(f"/repos/acme/svc/codeowners/errors?ref={sha}")
    assert body == {"errors": []}
    _, _, body = await api.get("/repos/acme/svc/codeowners/errors")
    assert [(e["path"], e["kind"]) for e in body["errors"]] == [("CODEOWNERS", "Unknown owner")]
    st.delete_file("acme/svc", "CODEOWNERS")
    status, _, _ = await api.get("/repos/acme/svc/codeowners/errors")
    assert status == 404
    status, _, _ = await api_for(http, fake_github, inst, {"metadata": "read"}).get(
        "/repos/acme/svc/codeowners/errors")
    assert status == 403


# ----------------------------------------------------------------------------- trees
TREE_QUERY = """query($o: String!, $n: String!, $tr: String!) { repository(owner: $o, name: $n)
  { tr: object(expression: $tr) { ... on Commit { tree { oid } } } } }"""


async def test_tree_matches_graphql_and_is_free_to_reread(http: aiohttp.ClientSession,
                                                          fake_github: FakeGitHub) -> None:
    st = fake_github.state
    files = {"README.md": "# svc\n", "src/app.py": "print(1)\n", "src/lib/util.py": "x = 1\n",
             "src-notes.txt": "n"}
    inst = acme(st, files=files)
    api = api_for(http, fake_github, inst)
    body = await api.graphql(TREE_QUERY, o="acme", n="svc", tr="HEAD")
    oid = body["data"]["repository"]["tr"]["tree"]["oid"]

    status, _, tree = await api.get(f"/repos/acme/svc/git/trees/{oid}?recursive=1")
    assert status == 200 and tree["sha"] == oid and tree["truncated"] is False
    assert tree["url"] == f"{fake_github.url}/repos/acme/svc/git/trees/{oid}"
    # git's order: "src" sorts as "src/", after "src-notes.txt".
    assert [(e["path"], e["type"], e["mode"]) for e in tree["tree"]] == [
        ("README.md", "blob", "100644"), ("src-notes.txt", "blob", "100644"),
        ("src", "tree", "040000"), ("src/app.py", "blob", "100644"),
        ("src/lib", "tree", "040000"), ("src/lib/util.py", "blob", "100644")]
    readme = tree["tree"][0]
    assert (readme["sha"], readme["size"]) == (git_blob_sha(b"# svc\n"), 6)
    assert readme["url"].endswith(f"/git/blobs/{readme['sha']}") and "size" not in tree["tree"][2]

    # Without `recursive` only the top level; with any value of it (even 0), everything.
    _, _, flat = await api.get(f"/repos/acme/svc/git/trees/{oid}")
    assert [e["path"] for e in flat["tree"]] == ["README.md", "src-notes.txt", "src"]
    _, _, zero = await api.get(f"/repos/acme/svc/git/trees/{oid}?recursive=0")
    assert len(zero["tree"]) == 6
    # A subtree by its sha: paths are relative to it.
    src = tree["tree"][2]["sha"]
    _, _, sub = await api.get(f"/repos/acme/svc/git/trees/{src}?recursive=1")
    assert [e["path"] for e in sub["tree"]] == ["app.py", "lib", "lib/util.py"]
    _, _, by_branch = await api.get("/repos/acme/svc/git/trees/main")
    assert by_branch["sha"] == oid

    # A rescan is a free 304 with the same token; another token's ETag does not match.
    remaining = st.remaining(inst)
    status, _, _ = await api.get(f"/repos/acme/svc/git/trees/{oid}?recursive=1",
                                 conditional=True)
    assert status == 304 and st.remaining(inst) == remaining
    other = api_for(http, fake_github, inst)
    other.etags = dict(api.etags)
    status, _, _ = await other.get(f"/repos/acme/svc/git/trees/{oid}?recursive=1",
                                   conditional=True)
    assert status == 200

    # A push: a new tree id; the old tree stays readable (trees are immutable).
    st.set_file("acme/svc", "src/new.py", "")
    body = await api.graphql(TREE_QUERY, o="acme", n="svc", tr="HEAD")
    new = body["data"]["repository"]["tr"]["tree"]["oid"]
    assert new != oid
    status, _, _ = await api.get(f"/repos/acme/svc/git/trees/{oid}?recursive=1",
                                     conditional=True)
    assert status == 304
    st.tree_entry_limit = 3
    _, _, cut = await api.get(f"/repos/acme/svc/git/trees/{new}?recursive=1")
    assert cut["truncated"] is True and len(cut["tree"]) == 3

    status, _, body = await api.get(f"/repos/acme/svc/git/trees/{'0' * 40}")
    assert (status, body["message"]) == (404, "Not Found")
    status, _, _ = await api_for(http, fake_github, inst, {"metadata": "read"}).get(
        f"/repos/acme/svc/git/trees/{oid}")
    assert status == 403
    st.add_repo("acme", "empty", empty=True)
    status, _, body = await api.get("/repos/acme/empty/git/trees/main")
    assert (status, body["message"]) == (409, "Git Repository is empty.")


async def test_graphql_tree_entries_and_directory_ids(http: aiohttp.ClientSession,
                                                      fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st, files={".github/workflows/ci.yml": "on: push\n",
                           ".github/workflows/deep/x.yml": "", "README": "r"})
    api = api_for(http, fake_github, inst)
    body = await api.graphql(
        """query($wf: String!) { repository(owner: "acme", name: "svc") {
             wf: object(expression: $wf) { oid ... on Tree { entries {
               name path type mode oid extension object { ... on Blob { text byteSize } } } } }
             tr: object(expression: "HEAD") { ... on Commit { tree { entries { name type } } } }
           } }""", wf="HEAD:.github/workflows")
    repo = body["data"]["repository"]
    entries = repo["wf"]["entries"]
    assert [(e["name"], e["type"], e["mode"], e["path"]) for e in entries] == [
        ("ci.yml", "blob", 0o100644, ".github/workflows/ci.yml"),
        ("deep", "tree", 0o40000, ".github/workflows/deep")]
    assert entries[0]["object"] == {"text": "on: push\n", "byteSize": 9}
    assert entries[0]["extension"] == ".yml" and entries[1]["object"] == {}
    assert repo["tr"]["tree"]["entries"] == [{"name": ".github", "type": "tree"},
                                             {"name": "README", "type": "blob"}]
    # A directory's object id is git's: REST serves the same tree.
    status, _, tree = await api.get(f"/repos/acme/svc/git/trees/{repo['wf']['oid']}")
    assert status == 200 and [e["path"] for e in tree["tree"]] == ["ci.yml", "deep"]


# ----------------------------------------------------------------------------- webhooks
def expected_keys() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads((FIXTURES / "webhook_keys.json").read_text())
    return data


# Required keys of the events @octokit/webhooks-examples has no example of (from the
# webhook schemas of GitHub's REST description).
REQUIRED = {"repository_ruleset": {"action", "repository_ruleset", "sender"},
            "security_and_analysis": {"changes", "repository"},
            "custom_property_values": {"action", "repository", "organization",
                                       "new_property_values", "old_property_values"}}


def test_source_webhooks_follow_examples_and_state() -> None:
    st = FakeState()
    inst = st.add_installation("acme", ["svc"], permissions=APP)
    repo = st.repo("acme/svc")
    keys = expected_keys()

    rule = st.protect_branch("acme/svc", "main", required_approving_review_count=1,
                             required_status_checks=["ci"])
    created = webhooks.branch_protection_rule(st, repo, rule, "created")
    edited_rule = st.protect_branch("acme/svc", "main", required_approving_review_count=2,
                                    enforce_admins=True)
    edited = webhooks.branch_protection_rule(st, repo, edited_rule, "edited", previous=rule)
    deleted = webhooks.branch_protection_rule(
        st, repo, st.unprotect_branch("acme/svc", "main"), "deleted")
    for action, payload in (("created", created), ("edited", edited), ("deleted", deleted)):
        assert set(keys[f"branch_protection_rule.{action}"]) <= set(payload), action
        assert set(keys["branch_protection_rule.rule"]) <= set(payload["rule"])
    assert edited["changes"] == {
        "required_approving_review_count": {"from": 1}, "admin_enforced": {"from": False},
        "pull_request_reviews_enforcement_level": {"from": "non_admins"},
        "required_status_checks_enforcement_level": {"from": "non_admins"}}
    assert created["rule"]["required_status_checks"] == ["ci"]
    assert created["rule"]["repository_id"] == repo.id and created["installation"]["id"] == inst.id

    st.set_permission("acme/svc", "bob", "maintain")
    added = webhooks.member(st, repo, "bob", "added")
    assert set(keys["member.added"]) <= set(added)
    assert set(keys["member.member"]) <= set(added["member"])
    assert added["changes"] == {"permission": {"to": "write"}, "role_name": {"to": "maintain"}}
    st.set_permission("acme/svc", "bob", "admin")
    member_edited = webhooks.member(st, repo, "bob", "edited", old_permission="maintain")
    assert set(keys["member.edited"]) <= set(member_edited)
    assert member_edited["changes"]["old_permission"] == {"from": "maintain"}
    st.remove_collaborator("acme/svc", "bob")
    assert webhooks.member(st, repo, "bob", "removed")["member"]["login"] == "bob"

    team = st.add_team("acme", "core")
    st.add_team_access("acme/svc", "core", "push")
    to_repo = webhooks.team(st, team, "added_to_repository", repo=repo)
    assert set(keys["team.added_to_repository"]) <= set(to_repo)
    assert set(keys["team.team"]) <= set(to_repo["team"])
    assert set(keys["team.repository"]) <= set(to_repo["repository"])
    assert to_repo["team"]["permission"] == "push"
    assert to_repo["repository"]["permissions"]["push"] is True
    st.add_team_access("acme/svc", "core", "admin")
    role_edited = webhooks.team(st, team, "edited", repo=repo, old_permission="write")
    assert set(keys["team.edited"]) <= set(role_edited)
    assert role_edited["changes"]["repository"]["permissions"]["from"]["admin"] is False
    st.remove_team_access("acme/svc", "core")
    removed = webhooks.team(st, team, "removed_from_repository", repo=repo)
    assert set(keys["team.removed_from_repository"]) <= set(removed)
    assert removed["repository"]["permissions"]["pull"] is False

    ruleset = st.add_ruleset("acme/svc", "main", ["deletion"])
    made = webhooks.repository_ruleset(st, ruleset, "created")
    assert REQUIRED["repository_ruleset"] <= set(made)
    assert made["repository_ruleset"]["rules"] == [{"type": "deletion"}]
    assert made["repository_ruleset"]["source"] == "acme/svc"
    changed = st.update_ruleset(ruleset, enforcement="evaluate", rules=["non_fast_forward"],
                                include=["~ALL"])
    change = webhooks.repository_ruleset(st, changed, "edited", previous=ruleset)["changes"]
    assert change["enforcement"] == {"from": "active"}
    assert change["rules"]["added"] == [{"type": "non_fast_forward"}]
    assert change["rules"]["deleted"] == [{"type": "deletion"}]
    assert change["conditions"]["updated"][0]["changes"] == {
        "include": {"from": ["~DEFAULT_BRANCH"]}}
    org_set = webhooks.repository_ruleset(st, st.add_ruleset("acme", "all", ["deletion"]),
                                          "created")
    assert "repository" not in org_set and org_set["organization"]["login"] == "acme"
    assert org_set["installation"]["id"] == inst.id

    before = repo.security
    st.set_security("acme/svc", secret_scanning=True)
    security = webhooks.security_and_analysis(st, repo, before)
    assert REQUIRED["security_and_analysis"] <= set(security)
    assert security["changes"]["from"]["security_and_analysis"]["secret_scanning"] == {
        "status": "disabled"}
    assert security["repository"]["security_and_analysis"]["secret_scanning"] == {
        "status": "enabled"}


@dataclass
class Receiver:
    events: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(request.headers["X-GitHub-Event"])
        return web.Response(status=202)


async def test_events_app_yml_subscribes_to_are_delivered(fake_github: FakeGitHub) -> None:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        st = fake_github.state
        st.hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        st.webhook_secret = "sources-test-webhook-secret"
        manifest = YAML(typ="safe").load((ROOT / "app.yml").read_text())
        inst = st.add_installation("acme", ["svc"], events=manifest["default_events"])
        repo = st.repo("acme/svc")
        team = st.add_team("acme", "core")
        st.add_team_access("acme/svc", "core")
        payloads = {
            "branch_protection_rule": webhooks.branch_protection_rule(
                st, repo, st.protect_branch("acme/svc", "main"), "created"),
            "repository_ruleset": webhooks.repository_ruleset(
                st, st.add_ruleset("acme/svc", "r", ["deletion"]), "created"),
            "member": webhooks.member(st, repo, "bob", "added"),
            "team": webhooks.team(st, team, "added_to_repository", repo=repo),
            "security_and_analysis": webhooks.security_and_analysis(st, repo, repo.security),
        }
        for event, payload in payloads.items():
            delivery = await hooks.send_event(st, event, payload)
            assert delivery is not None and delivery.ok, event
        assert rec.events == list(payloads)
        # An installation that did not subscribe gets nothing.
        inst.events = ["push"]
        assert await hooks.send_event(st, "team", payloads["team"]) is None
        assert len(rec.events) == len(payloads)
    finally:
        await runner.cleanup()
