"""End to end: signed webhooks → web → arq → scans → issues on the fake GitHub.

Real parts throughout: the aiohttp web server and the fake GitHub on sockets, a real
Redis, a real database (SQLite, or PostgreSQL with TEST_DATABASE_URL), arq workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.actions.base import marker
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation, Issue
from tests.stack import Stack, running_stack

CONFIG = """\
access_control:
  authorized_team: acme/platform
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
    issue_details:
      title: Add an AGENTS.md
      labels: [compliance, agents]
  - name: Require catalog-info.yaml
    type: has_catalog_info_yaml
    action: create_issue
  - name: Catalog owner
    type: catalog_info_has_owner
    action: [create-issue]
  - name: Read-only workflow token
    type: correct_workflow_permissions
    action: [create-issue, log-only]
"""

POLICIES = ["Require AGENTS.md", "Require catalog-info.yaml", "Catalog owner",
            "Read-only workflow token"]


def build_org(st: FakeState, n: int = 30) -> tuple[Installation, dict[str, set[str]]]:
    """An org of n scannable repositories (+ .github, an archived repo and a fork) and
    the policies each repository is expected to fail, worked out from its files."""
    specs: list[dict[str, object]] = [{"name": ".github",
                                       "files": {"config.yaml": CONFIG, "AGENTS.md": "x",
                                                 "catalog-info.yaml": "spec:\n  owner: a\n"}}]
    expected: dict[str, set[str]] = {"acme/.github": set()}
    for i in range(n):
        files: dict[str, str] = {}
        fails: set[str] = set()
        if i % 3:
            files["AGENTS.md"] = "# Agents\n"
        else:
            fails.add("Require AGENTS.md")
        if i % 4 == 0:
            fails.add("Require catalog-info.yaml")
        elif i % 4 == 1:
            files["catalog-info.yaml"] = "apiVersion: backstage.io/v1alpha1\nspec:\n  type: x\n"
            fails.add("Catalog owner")
        else:
            files["catalog-info.yaml"] = "spec:\n  owner: group:team\n"
        perms = "write" if i % 5 == 0 else ("read" if i % 5 else None)
        if i % 10 == 0:
            perms = "write"
            fails.add("Read-only workflow token")
        elif i % 5 == 0:
            perms = None  # Actions disabled passes
        specs.append({"name": f"svc-{i:02d}", "files": files, "workflow_permissions": perms})
        expected[f"acme/svc-{i:02d}"] = fails
    specs.append({"name": "old", "archived": True})
    specs.append({"name": "forked", "fork": True})
    inst = st.add_installation("acme", specs)
    return inst, expected


def policy_of(issue: Issue) -> str | None:
    for name in POLICIES:
        if marker(name) in (issue.body or ""):
            return name
    return None


def open_issues(st: FakeState, full_name: str) -> dict[str, Issue]:
    found: dict[str, Issue] = {}
    for issue in st.issues(full_name):
        name = policy_of(issue)
        if issue.state == "open" and name is not None:
            assert name not in found, f"duplicate open issue for {name} in {full_name}"
            found[name] = issue
    return found


@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str,
                any_database_url: str) -> AsyncIterator[Stack]:
    async with running_stack(github_url=fake_github.url, app_id=fake_github.app_id,
                             private_key=fake_github.private_key_pem, redis_url=redis_url,
                             database_url=any_database_url) as s:
        yield s


async def install(stack: Stack, st: FakeState, inst: Installation) -> None:
    status, body = await stack.deliver("installation", hooks.installation(st, inst))
    assert (status, body) == (202, {"status": "queued"})
    await stack.drain()


async def test_org_scan_files_issues_and_reconciles(stack: Stack,
                                                    fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected = build_org(st)
    await install(stack, st, inst)

    # Exactly the expected issues, one per (repository, failing policy), never for the
    # archived repository or the fork.
    for full_name, fails in expected.items():
        assert set(open_issues(st, full_name)) == fails, full_name
    assert st.issues("acme/old") == [] and st.issues("acme/forked") == []
    agents = open_issues(st, "acme/svc-00")["Require AGENTS.md"]
    assert agents.title == "Add an AGENTS.md"
    assert set(agents.labels) == {"compliance", "agents"}
    assert "AGENTS.md" in (agents.body or "")
    catalog = open_issues(st, "acme/svc-00")["Require catalog-info.yaml"]
    assert catalog.title == "Policy violation: Require catalog-info.yaml"
    assert catalog.labels == ["policy-enforcer"]
    total_issues = sum(len(st.issues(name)) for name in expected)
    assert total_issues == sum(len(f) for f in expected.values())

    scans = await stack.scans()
    full = [s for s in scans if s.kind == "full"]
    assert len(full) == 1 and full[0].trigger == "webhook:installation.created"
    assert (full[0].status, full[0].total, full[0].done, full[0].errored) == ("ok", 31, 31, 0)
    assert full[0].finished_at is not None
    # 31 repositories: one GraphQL query for metadata and files, REST for the rest.
    assert st.graphql_requests == 1
    assert st.count_requests("GET", "/repos/acme/svc-00/contents") == 0
    inst_row = await stack.installation(inst.id)
    assert inst_row is not None and inst_row.config_status == "valid"
    log_only = [a for a in await stack.action_log() if a.action == "log-only"]
    assert len(log_only) == sum("Read-only workflow token" in f for f in expected.values())

    # A second full scan creates nothing and logs nothing new (POSTs to /graphql only
    # read; this one sends none: nothing changed, so no file is read again).
    posts_before = st.count_requests("POST", "/repos")
    graphql_before = st.graphql_requests
    log_before = len(await stack.action_log())
    from app.services.scan_requests import request_full_scan
    from tests.stack import services_for

    await request_full_scan(services_for(stack), inst.id, "user")
    await stack.drain()
    assert st.count_requests("POST", "/repos") == posts_before
    assert st.graphql_requests == graphql_before
    assert sum(len(st.issues(name)) for name in expected) == total_issues
    assert len(await stack.action_log()) == log_before

    # Fixing the repository closes its issue with a comment...
    number = agents.number
    push = hooks.commit_and_push(st, "acme/svc-00", {"AGENTS.md": "# Agents\n"})
    assert (await stack.deliver("push", push))[0] == 202
    await stack.drain()
    issue = st.issue("acme/svc-00", number)
    assert issue.state == "closed" and issue.state_reason == "completed"
    assert "now complies" in (issue.comments[-1].body or "")
    assert "Require AGENTS.md" not in open_issues(st, "acme/svc-00")
    (v,) = [v for v in await stack.violations() if v.policy == "Require AGENTS.md"
            and v.repository_id == st.repo("acme/svc-00").id]
    assert v.state == "resolved" and v.issue_number == number

    # ...and breaking it again reopens the same issue instead of filing a new one.
    push = hooks.commit_and_push(st, "acme/svc-00", {"AGENTS.md": None})
    await stack.deliver("push", push)
    await stack.drain()
    assert st.issue("acme/svc-00", number).state == "open"
    assert open_issues(st, "acme/svc-00")["Require AGENTS.md"].number == number
    assert sum(len(st.issues(name)) for name in expected) == total_issues


async def test_issue_is_found_by_its_marker_when_the_database_forgot_it(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected = build_org(st, n=3)
    await install(stack, st, inst)
    issues_before = {name: len(st.issues(name)) for name in expected}
    from sqlalchemy import update

    from app.db.models import Violation

    async with stack.db() as db, db.begin():
        await db.execute(update(Violation).values(issue_number=None, reconciled={}))
    from app.services.scan_requests import request_full_scan
    from tests.stack import services_for

    await request_full_scan(services_for(stack), inst.id, "user")
    await stack.drain()
    assert {name: len(st.issues(name)) for name in expected} == issues_before
    assert all(v.issue_number for v in await stack.violations("open"))
