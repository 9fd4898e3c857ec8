"""Every policy type end to end: one installation scan through the real web app and
worker, the snapshot layer's GraphQL batch and each source's REST reads against the fake
GitHub, and the violations recorded. A compliant repository and one that breaks every rule;
then webhooks that make a source stale rescan a repository within seconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import pytest

from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation, ruleset_rule
from tests.stack import MANIFEST, Stack, hooked_stack, send

CONFIG = """\
policies:
  - name: license
    type: file_exists
    action: log-only
    params: {any_of: [LICENSE, LICENSE.md]}
  - name: lifecycle
    type: file_contains
    action: log-only
    params: {path: catalog-info.yaml, yaml_path: spec.lifecycle, one_of: [production]}
  - name: codeowners
    type: codeowners_valid
    action: log-only
  - name: settings
    type: repo_settings
    action: log-only
    params: {delete_branch_on_merge: true, has_wiki: false, require_description: true,
             required_topics: [service]}
  - name: stale
    type: stale_repository
    action: log-only
    params: {max_days_inactive: 365}
  - name: protection
    type: branch_protection
    action: log-only
    params: {required_approving_review_count: 1, allow_force_pushes: false}
  - name: security
    type: security_features
    action: log-only
  - name: outsiders
    type: outside_collaborators
    action: log-only
  - name: admins
    type: repo_admins
    action: log-only
  - name: dangerous
    type: dangerous_workflow
    action: log-only
  - name: pinned
    type: actions_pinned
    action: log-only
  - name: binaries
    type: binary_artifacts
    action: log-only
  - name: lifecycle-rule
    type: expression
    action: log-only
    params:
      files: [catalog-info.yaml]
      query: "files.\\"catalog-info.yaml\\".documents[0].spec.lifecycle"
      expect: production
      message: "`{repo}` has lifecycle {value}; set it to production."
"""
POLICIES = {"license", "lifecycle", "codeowners", "settings", "stale", "protection",
            "security", "outsiders", "admins", "dangerous", "pinned", "binaries",
            "lifecycle-rule"}

SAFE_WORKFLOW = """\
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: some-org/setup-tool@0123456789abcdef0123456789abcdef01234567
      - run: make test
"""
DANGEROUS_WORKFLOW = """\
on: pull_request_target
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - uses: someone/deploy-action@v1
      - run: echo "${{ github.event.pull_request.title }}"
"""


@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str,
                any_database_url: str) -> AsyncIterator[Stack]:
    async with hooked_stack(fake_github, redis_url, any_database_url) as s:
        yield s



def org(st: FakeState) -> Installation:
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": CONFIG}},
        {"name": "good", "description": "A good service", "topics": ["service"], "files": {
            "LICENSE": "MIT", "catalog-info.yaml": "spec:\n  lifecycle: production\n",
            ".github/CODEOWNERS": "* @acme/platform\n",
            ".github/workflows/ci.yml": SAFE_WORKFLOW}},
        {"name": "bad", "pushed_at": time.time() - 800 * 86400, "files": {
            "catalog-info.yaml": "spec:\n  lifecycle: deprecated\n",
            "CODEOWNERS": "* @nobody-at-all\n",
            ".github/workflows/pr.yml": DANGEROUS_WORKFLOW,
            "tools/app.exe": "MZ\x00\x00binary"}},
    ], events=MANIFEST["default_events"], permissions=MANIFEST["default_permissions"])
    st.add_org_member("acme", "alice", "member")
    st.add_org_member("acme", "mallory", "member")
    st.add_team("acme", "platform", ["alice"])
    st.set_repo_settings("acme/good", delete_branch_on_merge=True, has_wiki=False)
    st.set_repo_settings("acme/bad", delete_branch_on_merge=False, has_wiki=True)
    st.protect_branch("acme/good", "main", required_approving_review_count=1,
                      allow_force_pushes=False)
    # Evaluate mode: GitHub does not enforce it, so it satisfies nothing.
    st.add_ruleset("acme/bad", "trial", [ruleset_rule(
        "pull_request", required_approving_review_count=2), "non_fast_forward"],
        enforcement="evaluate")
    for name, on in (("good", True), ("bad", False)):
        st.set_security(f"acme/{name}", secret_scanning=on,
                        secret_scanning_push_protection=on, dependabot_alerts=on,
                        dependabot_security_updates=on)
    st.add_team_access("acme/good", "platform", "admin")
    st.set_permission("acme/bad", "eve", "admin")  # not a member: an outside collaborator
    st.set_permission("acme/bad", "mallory", "admin")  # an individual admin
    return inst


async def open_policies(stack: Stack, st: FakeState, repo: str) -> set[str]:
    rid = st.repo(f"acme/{repo}").id
    return {v.policy for v in await stack.violations("open") if v.repository_id == rid}


async def test_every_type_judges_real_github_data(stack: Stack,
                                                  fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st)
    await send(stack, fake_github, "installation", hooks.installation(st, inst))
    scan = next(s for s in await stack.scans() if s.kind == "full")
    assert (scan.status, scan.errored) == ("ok", 0)
    assert await open_policies(stack, st, "good") == set()
    assert await open_policies(stack, st, "bad") == POLICIES
    messages = {v.policy: v.message for v in await stack.violations("open")}
    assert "`eve`" in messages["outsiders"] and "`mallory`" in messages["admins"]
    assert "tools/app.exe" in messages["binaries"]
    assert "someone/deploy-action@v1" in messages["pinned"]
    assert "pull_request_target" in messages["dangerous"]
    assert "nobody-at-all" in messages["codeowners"]
    assert "deprecated" in messages["lifecycle-rule"]
    # The evaluate-mode ruleset was not counted: the requirement is reported unmet.
    assert "required_approving_review_count" in messages["protection"]
    # Teams were read once for the organization, not once per repository; classic
    # protection, collaborators and CODEOWNERS errors came with the GraphQL batch.
    per_repo = [r.path for r in st.log if re.fullmatch(
        r"/repos/acme/[^/]+/(teams|collaborators|codeowners/errors|branches/.+/protection)",
        r.path)]
    assert per_repo == []
    assert st.count_requests("GET", "/orgs/acme/teams") >= 1
    # The security settings came with the organization's repository listing.
    assert [r.path for r in st.log if re.fullmatch(r"/repos/acme/[^/]+", r.path)] == []
    assert st.count_requests("GET", "/orgs/acme/repos") >= 1


async def test_source_events_rescan_the_repository(stack: Stack,
                                                   fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st)
    await send(stack, fake_github, "installation", hooks.installation(st, inst))
    assert "protection" in await open_policies(stack, st, "bad")

    # Branch protection added: the App hears of it and rescans at once.
    rule = st.protect_branch("acme/bad", "main", required_approving_review_count=1,
                             allow_force_pushes=False)
    await send(stack, fake_github, "branch_protection_rule",
               hooks.branch_protection_rule(st, st.repo("acme/bad"), rule, "created"))
    assert "protection" not in await open_policies(stack, st, "bad")
    scans = [s for s in await stack.scans() if s.kind == "repo"]
    assert scans[-1].trigger == "webhook:branch_protection_rule.created"

    # An outside collaborator given admin on the good repository.
    st.set_permission("acme/good", "eve", "admin")
    await send(stack, fake_github, "member",
               hooks.member(st, st.repo("acme/good"), "eve", "added"))
    assert {"outsiders", "admins"} <= await open_policies(stack, st, "good")

    # The trial ruleset enforced: a ruleset counts as protection once it is active.
    st.unprotect_branch("acme/bad", "main")
    ruleset = st.ruleset("acme/bad", "trial")
    st.update_ruleset(ruleset, enforcement="active")
    await send(stack, fake_github, "repository_ruleset",
               hooks.repository_ruleset(st, st.ruleset("acme/bad", "trial"), "edited",
                                        previous=ruleset))
    assert "protection" not in await open_policies(stack, st, "bad")

    # Security settings turned on.
    before = st.repo("acme/bad").security
    st.set_security("acme/bad", secret_scanning=True,
                    secret_scanning_push_protection=True, dependabot_alerts=True,
                    dependabot_security_updates=True)
    await send(stack, fake_github, "security_and_analysis",
               hooks.security_and_analysis(st, st.repo("acme/bad"), before))
    assert "security" not in await open_policies(stack, st, "bad")


async def test_a_permission_github_refuses_leaves_the_result_as_it_was(
        stack: Stack, fake_github: FakeGitHub) -> None:
    """Without administration read, GitHub refuses branch protection (403): the policy is
    not judged, so no violation is invented and none is resolved."""
    st = fake_github.state
    inst = org(st)
    await send(stack, fake_github, "installation", hooks.installation(st, inst))
    assert "protection" in await open_policies(stack, st, "bad")
    inst.permissions.pop("administration")
    st.expire_tokens(inst.id)
    await stack.redis.delete(f"pe:token:{inst.id}")
    st.protect_branch("acme/bad", "main", required_approving_review_count=1,
                      allow_force_pushes=False)
    push = hooks.commit_and_push(st, "acme/bad", {"README.md": "x"})
    await send(stack, fake_github, "push", push)
    # Still open: "not checked" is not "compliant".
    assert "protection" in await open_policies(stack, st, "bad")
    assert "protection" not in await open_policies(stack, st, "good")
    # Dependabot alerts are refused too (a non-null GraphQL field: GitHub nulls the whole
    # repository where it is refused); in a query of their own, they take nothing else
    # with them: the repository was scanned, its other results stand.
    (bad,) = [r for r in await stack.repositories() if r.full_name == "acme/bad"]
    assert (bad.last_scan_status, bad.last_scan_error) == ("ok", None)
    assert {"security", "license", "binaries"} <= await open_policies(stack, st, "bad")
