"""The fake GitHub's GraphQL fields for the App's data sources, over real sockets: the classic
rule of a branch, collaborators, CODEOWNERS errors and the Dependabot alerts setting. Each
agrees with the REST endpoint the App read before, is refused as REST refuses (null and a
FORBIDDEN error at the field's path, the rest of a batch answered) and costs what GitHub
charges."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import DEFAULT_INSTALLATION_PERMISSIONS, FakeState

APP = {**DEFAULT_INSTALLATION_PERMISSIONS, "administration": "write", "contents": "write",
       "members": "read"}
NO_ADMIN = {k: v for k, v in APP.items() if k != "administration"}
FORBIDDEN = "Resource not accessible by integration"

RULE_FIELDS = """pattern requiresApprovingReviews requiredApprovingReviewCount
  dismissesStaleReviews requiresCodeOwnerReviews requiresStatusChecks
  requiredStatusCheckContexts isAdminEnforced allowsForcePushes allowsDeletions
  requiresCommitSignatures requiresConversationResolution requiresLinearHistory lockBranch
  requireLastPushApproval"""
COLLABORATORS = """query($o: String!, $n: String!, $aff: CollaboratorAffiliation,
  $after: String) { repository(owner: $o, name: $n) {
  collaborators(affiliation: $aff, first: 2, after: $after) { totalCount
    pageInfo { hasNextPage endCursor } edges { permission node { login } } } } }"""
CODEOWNERS = """query($ref: String) { repository(owner: "acme", name: "svc") {
  codeowners(refName: $ref) { errors { column kind line message path source suggestion } } } }"""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@dataclass
class Api:
    http: aiohttp.ClientSession
    gh: FakeGitHub
    token: str

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.gh.url + path,
                                 headers={"Authorization": f"token {self.token}"}) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    async def graphql(self, query: str, **variables: Any) -> Any:
        async with self.http.post(self.gh.url + "/graphql",
                                  json={"query": query, "variables": variables},
                                  headers={"Authorization": f"token {self.token}"}) as resp:
            assert resp.status == 200
            return await resp.json()


def api_for(http: aiohttp.ClientSession, gh: FakeGitHub, installation: int,
            permissions: dict[str, str] | None = None) -> Api:
    return Api(http, gh, gh.state.issue_token(installation, permissions=permissions).token)


def acme(st: FakeState, *names: str, **repo: Any) -> int:
    specs = [{"name": n, **repo} for n in names or ("svc",)]
    return st.add_installation("acme", specs, permissions=APP).id


def errors_by_path(body: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(e["path"]): e for e in body.get("errors", [])}


# ----------------------------------------------------------------------------- branch rules
async def test_branch_protection_rule_of_a_ref(http: aiohttp.ClientSession,
                                               fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st, files={"README.md": "hi"})
    repo = st.repo("acme/svc")
    for branch in ("release/1", "release/1/hotfix", "dev"):
        repo.branches[branch] = {}
        repo.heads[branch] = repo.heads["main"]
    st.protect_branch("acme/svc", "main", required_status_checks=["ci", "lint"], strict=True,
                      required_approving_review_count=2, dismiss_stale_reviews=True,
                      require_code_owner_reviews=True, enforce_admins=True,
                      required_conversation_resolution=True, required_signatures=True,
                      required_linear_history=True, require_last_push_approval=True)
    st.protect_branch("acme/svc", "release/*", allow_force_pushes=True, allow_deletions=True,
                      lock_branch=True)
    api = api_for(http, fake_github, inst)
    body = await api.graphql(f"""{{ repository(owner: "acme", name: "svc") {{
      main: ref(qualifiedName: "main") {{ name prefix branchProtectionRule {{ {RULE_FIELDS} }} }}
      rel: ref(qualifiedName: "refs/heads/release/1") {{ name
        branchProtectionRule {{ {RULE_FIELDS} }} }}
      hotfix: ref(qualifiedName: "release/1/hotfix") {{ branchProtectionRule {{ pattern }} }}
      dev: ref(qualifiedName: "dev") {{ name branchProtectionRule {{ pattern }} }}
      nope: ref(qualifiedName: "nope") {{ name }}
      tag: ref(qualifiedName: "refs/tags/main") {{ name }}
      defaultBranchRef {{ branchProtectionRule {{ pattern }} }} }} }}""")
    assert "errors" not in body
    data = body["data"]["repository"]
    assert (data["main"]["name"], data["main"]["prefix"]) == ("main", "refs/heads/")
    assert data["main"]["branchProtectionRule"] == {
        "pattern": "main", "requiresApprovingReviews": True, "requiredApprovingReviewCount": 2,
        "dismissesStaleReviews": True, "requiresCodeOwnerReviews": True,
        "requiresStatusChecks": True, "requiredStatusCheckContexts": ["ci", "lint"],
        "isAdminEnforced": True, "allowsForcePushes": False, "allowsDeletions": False,
        "requiresCommitSignatures": True, "requiresConversationResolution": True,
        "requiresLinearHistory": True, "lockBranch": False, "requireLastPushApproval": True}
    # A pattern rule (`*` stops at "/"): nothing about reviews or checks required.
    assert data["rel"]["name"] == "release/1"
    assert data["rel"]["branchProtectionRule"] == {
        "pattern": "release/*", "requiresApprovingReviews": False,
        "requiredApprovingReviewCount": None, "dismissesStaleReviews": False,
        "requiresCodeOwnerReviews": False, "requiresStatusChecks": False,
        "requiredStatusCheckContexts": [], "isAdminEnforced": False, "allowsForcePushes": True,
        "allowsDeletions": True, "requiresCommitSignatures": False,
        "requiresConversationResolution": False, "requiresLinearHistory": False,
        "lockBranch": True, "requireLastPushApproval": False}
    assert data["hotfix"] == {"branchProtectionRule": None}
    assert data["dev"] == {"name": "dev", "branchProtectionRule": None}
    assert data["nope"] is None and data["tag"] is None
    assert data["defaultBranchRef"] == {"branchProtectionRule": {"pattern": "main"}}

    # The same rules REST serves: a rule naming the branch beats an older pattern.
    st.protect_branch("acme/svc", "release/1", allow_deletions=False)
    status, rest = await api.get("/repos/acme/svc/branches/release/1/protection")
    body = await api.graphql('{ repository(owner: "acme", name: "svc") { '
                             'ref(qualifiedName: "release/1") { branchProtectionRule { '
                             "pattern allowsForcePushes allowsDeletions } } } }")
    rule = body["data"]["repository"]["ref"]["branchProtectionRule"]
    assert status == 200 and rule["pattern"] == "release/1"
    assert (rule["allowsForcePushes"], rule["allowsDeletions"]) == (
        rest["allow_force_pushes"]["enabled"], rest["allow_deletions"]["enabled"]) == (
        False, False)

    body = await api.graphql('{ repository(owner: "acme", name: "svc") { ref { name } } }')
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "missingRequiredArguments"


async def test_a_refused_field_leaves_the_rest_of_the_batch(http: aiohttp.ClientSession,
                                                            fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st, "a", "b")
    st.protect_branch("acme/a", "main", required_approving_review_count=1)
    weak = api_for(http, fake_github, inst, NO_ADMIN)
    query = """{ a: repository(owner: "acme", name: "a") { name
        ref(qualifiedName: "main") { name branchProtectionRule { pattern } } }
      b: repository(owner: "acme", name: "b") { name
        ref(qualifiedName: "main") { name branchProtectionRule { pattern } } }
      gone: repository(owner: "acme", name: "gone") { name } }"""
    body = await weak.graphql(query)
    assert body["data"] == {
        "a": {"name": "a", "ref": {"name": "main", "branchProtectionRule": None}},
        "b": {"name": "b", "ref": {"name": "main", "branchProtectionRule": None}},
        "gone": None}
    errors = errors_by_path(body)
    # Refused whether or not a rule applies; GitHub's shape, at the field's path.
    assert set(errors) == {("a", "ref", "branchProtectionRule"),
                           ("b", "ref", "branchProtectionRule"), ("gone",)}
    refused = errors[("a", "ref", "branchProtectionRule")]
    assert refused == {"type": "FORBIDDEN", "path": ["a", "ref", "branchProtectionRule"],
                       "extensions": {"saml_failure": False},
                       "locations": refused["locations"], "message": FORBIDDEN}
    assert refused["locations"][0]["line"] == 2
    assert errors[("gone",)]["type"] == "NOT_FOUND"
    # REST refuses the same token.
    status, rest = await weak.get("/repos/acme/a/branches/main/protection")
    assert (status, rest["message"]) == (403, FORBIDDEN)
    # With administration: read, the same query is answered.
    body = await api_for(http, fake_github, inst).graphql(query)
    assert body["data"]["a"]["ref"]["branchProtectionRule"] == {"pattern": "main"}
    assert set(errors_by_path(body)) == {("gone",)}


# ----------------------------------------------------------------------------- collaborators
def rest_people(body: list[dict[str, Any]]) -> dict[str, str]:
    return {u["login"]: u["role_name"].upper() for u in body}


async def collaborators(api: Api, repo: str, affiliation: str | None) -> dict[str, str]:
    """Every page of `collaborators` (2 a page), login -> permission, checking the pages."""
    owner, name = repo.split("/")
    found: dict[str, str] = {}
    after = None
    while True:
        body = await api.graphql(COLLABORATORS, o=owner, n=name, aff=affiliation, after=after)
        assert "errors" not in body, body
        conn = body["data"]["repository"]["collaborators"]
        assert len(conn["edges"]) <= 2
        found.update({e["node"]["login"]: e["permission"] for e in conn["edges"]})
        if not conn["pageInfo"]["hasNextPage"]:
            assert conn["totalCount"] == len(found)
            return found
        after = conn["pageInfo"]["endCursor"]


async def test_collaborators_agree_with_rest(http: aiohttp.ClientSession,
                                            fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", ["svc"], permissions={"metadata": "read"}).id
    st.add_org_member("acme", "alice")
    st.add_org_member("acme", "carol", role="admin")
    st.add_org_member("acme", "eve")
    st.add_org_member("acme", "pending", state="pending")
    st.set_permission("acme/svc", "alice", "write")
    st.set_permission("acme/svc", "bob", "read")  # not a member: an outside collaborator
    st.set_permission("acme/svc", "pending", "triage")
    st.add_team("acme", "core", ["dave", "alice"])
    st.add_team_access("acme/svc", "core", "maintain")
    api = api_for(http, fake_github, inst)  # metadata is enough, as for REST

    expected = {"DIRECT": {"alice": "MAINTAIN", "bob": "READ", "pending": "TRIAGE"},
                "OUTSIDE": {"bob": "READ", "pending": "TRIAGE"},
                "ALL": {"alice": "MAINTAIN", "bob": "READ", "carol": "ADMIN",
                        "dave": "MAINTAIN", "eve": "READ", "pending": "TRIAGE"}}
    for affiliation, people in expected.items():
        assert await collaborators(api, "acme/svc", affiliation) == people
        status, rest = await api.get(
            f"/repos/acme/svc/collaborators?affiliation={affiliation.lower()}")
        assert status == 200 and rest_people(rest) == people
    assert await collaborators(api, "acme/svc", None) == expected["ALL"]  # the default

    # A personal repository: its owner is a collaborator, but not an outside one.
    mine = st.add_installation("mona", ["own"], account_type="User").id
    st.set_permission("mona/own", "bob", "write")
    mona = api_for(http, fake_github, mine)
    assert await collaborators(mona, "mona/own", "OUTSIDE") == {"bob": "WRITE"}
    assert await collaborators(mona, "mona/own", "ALL") == {"mona": "ADMIN", "bob": "WRITE"}


async def test_collaborators_arguments_are_checked(http: aiohttp.ClientSession,
                                                  fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st)
    st.set_permission("acme/svc", "bob", "read")
    api = api_for(http, fake_github, inst)
    body = await api.graphql('{ repository(owner: "acme", name: "svc") { '
                             "collaborators { totalCount } } }")
    assert "data" not in body and body["errors"][0]["type"] == "MISSING_PAGINATION_BOUNDARIES"
    body = await api.graphql('{ repository(owner: "acme", name: "svc") { '
                             "collaborators(first: 101) { totalCount } } }")
    assert "data" not in body and body["errors"][0]["type"] == "EXCESSIVE_PAGINATION"
    body = await api.graphql('{ repository(owner: "acme", name: "svc") { '
                             "collaborators(first: 5, affiliation: FRIENDS) { totalCount } } }")
    assert "data" not in body
    assert body["errors"][0]["message"] == (
        "Argument 'affiliation' on Field 'collaborators' has an invalid value (FRIENDS). "
        "Expected type 'CollaboratorAffiliation'.")
    body = await api.graphql('{ repository(owner: "acme", name: "svc") { '
                             'collaborators(first: 5, affiliation: "ALL") { totalCount } } }')
    assert body["errors"][0]["extensions"]["code"] == "argumentLiteralsIncompatible"
    body = await api.graphql(COLLABORATORS, o="acme", n="svc", aff="FRIENDS")
    assert "data" not in body
    assert body["errors"][0]["message"] == (
        "Variable $aff of type CollaboratorAffiliation was provided invalid value")
    body = await api.graphql(COLLABORATORS, o="acme", n="svc", aff="OUTSIDE", after="nope")
    assert body["data"] == {"repository": {"collaborators": None}}
    assert body["errors"][0]["type"] == "INVALID_CURSOR_ARGUMENTS"
    assert body["errors"][0]["path"] == ["repository", "collaborators"]
    body = await api.graphql('{ repository(owner: "acme", name: "svc") { '
                             "collaborators(first: 5) { nodes { login databaseId } } } }")
    assert body["data"]["repository"]["collaborators"]["nodes"] == [
        {"login": "bob", "databaseId": st.user("bob").id}]


async def test_collaborators_refused_leave_the_rest(http: aiohttp.ClientSession,
                                                   fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st, "a", "b")
    st.set_permission("acme/a", "bob", "write")
    st.set_permission("acme/b", "bob", "write")
    st.graphql_collaborators_forbidden.add("acme/a")
    body = await api_for(http, fake_github, inst).graphql(
        """{ a: repository(owner: "acme", name: "a") { name
               collaborators(first: 10, affiliation: DIRECT) { totalCount } }
             b: repository(owner: "acme", name: "b") { name
               collaborators(first: 10, affiliation: DIRECT) { totalCount } } }""")
    assert body["data"] == {"a": {"name": "a", "collaborators": None},
                            "b": {"name": "b", "collaborators": {"totalCount": 1}}}
    [refused] = body["errors"]
    assert (refused["type"], refused["path"], refused["message"]) == (
        "FORBIDDEN", ["a", "collaborators"],
        "Must have push access to view repository collaborators.")


# ----------------------------------------------------------------------------- CODEOWNERS
async def test_codeowners_errors_as_rest_computes_them(http: aiohttp.ClientSession,
                                                       fake_github: FakeGitHub) -> None:
    st = fake_github.state
    text = ("# Owners\n"
            "*        @alice @ghost\n"
            "***/*.rb @alice\n"
            "*.txt    docs@\n")
    inst = acme(st, files={".github/CODEOWNERS": text, "CODEOWNERS": "* @ghost\n"})
    st.set_permission("acme/svc", "alice", "write")
    api = api_for(http, fake_github, inst)

    body = await api.graphql(CODEOWNERS)
    errors = body["data"]["repository"]["codeowners"]["errors"]
    status, rest = await api.get("/repos/acme/svc/codeowners/errors")
    assert status == 200 and errors == rest["errors"]  # field for field
    assert [(e["line"], e["column"], e["kind"], e["path"]) for e in errors] == [
        (2, 17, "Unknown owner", ".github/CODEOWNERS"),
        (3, 1, "Invalid pattern", ".github/CODEOWNERS"),
        (4, 10, "Invalid owner", ".github/CODEOWNERS")]
    assert errors[1]["suggestion"] == "Did you mean `**/*.rb`?"
    assert errors[2]["suggestion"] is None

    # Another ref: a branch by either name, or a commit; a missing ref or file is null.
    old = st.repo("acme/svc").heads["main"]
    st.set_file("acme/svc", ".github/CODEOWNERS", "* @alice\n")
    st.repo("acme/svc").branches["dev"] = {"docs/CODEOWNERS": "* @nobody\n"}
    st.repo("acme/svc").heads["dev"] = "d" * 40
    assert (await api.graphql(CODEOWNERS))["data"]["repository"]["codeowners"] == {
        "errors": []}
    body = await api.graphql(CODEOWNERS, ref=old)
    assert body["data"]["repository"]["codeowners"]["errors"] == errors
    for ref in ("dev", "refs/heads/dev"):
        body = await api.graphql(CODEOWNERS, ref=ref)
        [error] = body["data"]["repository"]["codeowners"]["errors"]
        assert (error["path"], error["kind"]) == ("docs/CODEOWNERS", "Unknown owner")
    body = await api.graphql(CODEOWNERS, ref="nope")
    assert body == {"data": {"repository": {"codeowners": None}}}
    st.delete_file("acme/svc", ".github/CODEOWNERS")
    st.delete_file("acme/svc", "CODEOWNERS")
    assert (await api.graphql(CODEOWNERS)) == {"data": {"repository": {"codeowners": None}}}

    # contents: read, as REST.
    body = await api_for(http, fake_github, inst, {"metadata": "read"}).graphql(
        CODEOWNERS, ref="dev")
    assert body["data"] == {"repository": {"codeowners": None}}
    assert [(e["type"], e["path"]) for e in body["errors"]] == [
        ("FORBIDDEN", ["repository", "codeowners"])]


# ----------------------------------------------------------------------------- security
async def test_vulnerability_alerts_flag(http: aiohttp.ClientSession,
                                         fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = acme(st, "a", "b")
    st.set_security("acme/a", dependabot_alerts=True)
    api = api_for(http, fake_github, inst)
    query = """{ a: repository(owner: "acme", name: "a") { name hasVulnerabilityAlertsEnabled }
                 b: repository(owner: "acme", name: "b") { name hasVulnerabilityAlertsEnabled }
                 rateLimit { cost } }"""
    body = await api.graphql(query)
    assert body["data"]["a"] == {"name": "a", "hasVulnerabilityAlertsEnabled": True}
    assert body["data"]["b"] == {"name": "b", "hasVulnerabilityAlertsEnabled": False}
    assert [(await api.get(f"/repos/acme/{r}/vulnerability-alerts"))[0]
            for r in "ab"] == [204, 404]

    # administration: read, as REST; a Boolean! refused nulls its whole repository.
    body = await api_for(http, fake_github, inst, NO_ADMIN).graphql(query)
    assert body["data"] == {"a": None, "b": None, "rateLimit": {"cost": 1}}
    assert [(e["type"], e["path"], e["message"]) for e in body["errors"]] == [
        ("FORBIDDEN", ["a", "hasVulnerabilityAlertsEnabled"], FORBIDDEN),
        ("FORBIDDEN", ["b", "hasVulnerabilityAlertsEnabled"], FORBIDDEN)]


# ----------------------------------------------------------------------------- cost
async def test_cost_counts_collaborator_connections(http: aiohttp.ClientSession,
                                                    fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", 150, permissions=APP).id
    api = api_for(http, fake_github, inst)

    async def cost(count: int, fragment: str) -> int:
        aliases = " ".join(f'r{i}: repository(owner: "acme", name: "repo-{i:03d}") {{ ...f }}'
                           for i in range(count))
        body = await api.graphql(f"query {{ rateLimit {{ cost }} {aliases} }}\n"
                                 f"fragment f on Repository {{ {fragment} }}")
        assert "errors" not in body
        return int(body["data"]["rateLimit"]["cost"])

    reads = ("collaborators(first: 100) { edges { permission node { login } } } "
             "codeowners { errors { line } } hasVulnerabilityAlertsEnabled "
             'ref(qualifiedName: "main") { branchProtectionRule { pattern } }')
    assert await cost(100, reads) == 1  # one batch of the App's reads: 1 point
    assert await cost(150, reads) == 2  # 150 requests / 100, rounded
    assert await cost(150, reads + " repositoryTopics(first: 20) { totalCount }") == 3
    assert await cost(150, 'ref(qualifiedName: "main") { branchProtectionRule { pattern } }') == 1
    before = st.graphql_points
    await cost(100, reads)
    assert st.graphql_points - before == 1
