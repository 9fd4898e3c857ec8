"""A central issue repository (`issue_repo`), and repositories with issues disabled (410).

End to end: the real web app and worker against the fake GitHub, which answers 410
"Issues are disabled for this repo" for the issues of a repository with has_issues false,
as GitHub does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, select

from app.actions.base import marker, parse_marker
from app.db.models import ActionLog, Violation
from app.services.scan_requests import request_full_scan
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation, Issue
from tests.stack import Stack, dashboard_stack, services_for
from tests.test_dashboard import OWNER, browser, sign_in, text

CENTRAL = "acme/security-findings"
POLICIES = """\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
  - name: Require catalog-info.yaml
    type: has_catalog_info_yaml
    action: create-issue
"""
CONFIG = "issue_repo: security-findings\n" + POLICIES
COMPLIANT = {"AGENTS.md": "x", "catalog-info.yaml": "spec:\n  owner: a\n"}


@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str,
                any_database_url: str) -> AsyncIterator[Stack]:
    async with dashboard_stack(fake_github, redis_url, any_database_url) as s:
        yield s


def org(st: FakeState, config: str = CONFIG, violating: tuple[str, ...] = ("api",)
        ) -> Installation:
    specs: list[dict[str, object]] = [
        {"name": ".github", "files": {"config.yaml": config, **COMPLIANT}},
        {"name": "security-findings", "files": dict(COMPLIANT)},
        {"name": "web", "files": dict(COMPLIANT)},
    ]
    specs += [{"name": name, "files": {}} for name in violating]
    inst = st.add_installation("acme", specs)
    inst.permissions["members"] = "read"
    st.add_org_member("acme", OWNER, "admin")
    return inst


async def install(stack: Stack, st: FakeState, inst: Installation) -> None:
    status, _ = await stack.deliver("installation", hooks.installation(st, inst))
    assert status == 202
    await stack.drain()


async def full_scan(stack: Stack, inst: Installation) -> None:
    await request_full_scan(services_for(stack), inst.id, "user")
    await stack.drain()


def central(st: FakeState, state: str | None = "open") -> dict[tuple[str, str], Issue]:
    """The App's issues in the central repository by (repository, policy)."""
    names = {r.id: r.full_name for r in st.repos.values()}
    found: dict[tuple[str, str], Issue] = {}
    for issue in st.issues(CENTRAL):
        parsed = parse_marker(issue.body or "")
        if parsed is None or (state is not None and issue.state != state):
            continue
        assert parsed[1] is not None, "a central issue names its repository"
        key = (names[parsed[1]], parsed[0])
        assert key not in found, f"two issues for {key}"
        found[key] = issue
    return found


def listings(st: FakeState, repo: str) -> int:
    """Requests that list a repository's issues (not those that read one issue)."""
    return sum(1 for r in st.log if r.method == "GET" and r.path == f"/repos/{repo}/issues")


def posts(st: FakeState, repo: str) -> int:
    return sum(1 for r in st.log if r.method == "POST" and r.path == f"/repos/{repo}/issues")


# ----------------------------------------------------------------------------- central
async def test_issues_are_filed_centrally_naming_the_repository_and_close_on_fix(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st)
    await install(stack, st, inst)

    issues = central(st)
    assert set(issues) == {("acme/api", "Require AGENTS.md"),
                           ("acme/api", "Require catalog-info.yaml")}
    assert st.issues("acme/api") == []  # nothing in the repository itself
    agents = issues[("acme/api", "Require AGENTS.md")]
    assert agents.title == "[acme/api] Policy violation: Require AGENTS.md"
    assert f"**Repository:** [acme/api]({fake_github.url}/acme/api)" in (agents.body or "")
    api_id = st.repo("acme/api").id
    assert marker("Require AGENTS.md", api_id) in (agents.body or "")
    rows = await stack.violations("open")
    assert {(v.issue_repository, v.issue_number) for v in rows} == \
        {(CENTRAL, i.number) for i in issues.values()}

    # A scan with nothing new asks nothing of the central repository's issues.
    before = (listings(st, CENTRAL), posts(st, CENTRAL))
    await full_scan(stack, inst)
    assert (listings(st, CENTRAL), posts(st, CENTRAL)) == before

    # Fixed: the central issue closes with a comment; the other stays open.
    await stack.deliver("push", hooks.commit_and_push(st, "acme/api", {"AGENTS.md": "ok"}))
    await stack.drain()
    assert agents.state == "closed" and agents.state_reason == "completed"
    assert "now complies" in (agents.comments[-1].body or "")
    assert set(central(st)) == {("acme/api", "Require catalog-info.yaml")}

    # A person closes the other one in the central repository: it is reopened, naming them.
    other = issues[("acme/api", "Require catalog-info.yaml")]
    st.close_issue(CENTRAL, other.number, by="mallory")
    status, _ = await stack.deliver("issues", hooks.issues(st, other, "closed"))
    assert status == 202
    await stack.drain()
    assert other.state == "open"
    assert "@mallory closed this issue" in (other.comments[-1].body or "")
    assert len(st.issues(CENTRAL)) == 2


async def test_after_a_database_loss_the_central_issues_are_found_by_marker_in_one_listing(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st, violating=("api", "billing", "search", "docs"))
    await install(stack, st, inst)
    filed = {key: issue.number for key, issue in central(st).items()}
    assert len(filed) == 8 and st.issues("acme/api") == []

    # The database forgets every violation and action, and Redis its index of the issues.
    async with stack.db() as db, db.begin():
        await db.execute(delete(ActionLog))
        await db.execute(delete(Violation))
    await stack.redis.delete(*await stack.redis.keys("pe:issue-index:*"))
    lists_before = listings(st, CENTRAL)
    await full_scan(stack, inst)

    assert {key: issue.number for key, issue in central(st).items()} == filed
    assert len(st.issues(CENTRAL)) == 8  # no second issue for anything
    # One listing served all eight violations (its 8 issues fit one page).
    assert listings(st, CENTRAL) - lists_before == 1
    assert {(v.issue_repository, v.issue_number) for v in await stack.violations("open")} == \
        {(CENTRAL, n) for n in filed.values()}

    # With Redis intact, a lost database needs no listing at all.
    async with stack.db() as db, db.begin():
        await db.execute(delete(Violation))
    lists_before = listings(st, CENTRAL)
    await full_scan(stack, inst)
    assert listings(st, CENTRAL) == lists_before
    assert len(st.issues(CENTRAL)) == 8


async def test_a_filing_cut_short_after_the_post_is_found_not_filed_again(
        stack: Stack, fake_github: FakeGitHub) -> None:
    """The job died between GitHub creating the issue and the database recording it (and
    before the index did): the retry lists only what changed since the filing began."""
    st = fake_github.state
    inst = org(st)
    await install(stack, st, inst)
    (v, _) = sorted(await stack.violations("open"), key=lambda r: r.policy)
    number = v.issue_number
    async with stack.db() as db, db.begin():
        row = await db.get(Violation, v.id)
        assert row is not None
        row.issue_number, row.issue_repository = None, None
        row.reconciled = {"filing": {"repo": CENTRAL,
                                     "at": "2001-01-01T00:00:00+00:00"}}
    await stack.redis.delete(*await stack.redis.keys("pe:issue-index:*"))
    st.clear_log()
    await stack.redis.enqueue_job("reconcile_violation", inst.id, v.id, _job_id="retry-1")
    await stack.drain()

    assert posts(st, CENTRAL) == 0 and len(st.issues(CENTRAL)) == 2
    (listing,) = [r for r in st.log if r.method == "GET" and r.path == f"/repos/{CENTRAL}/issues"]
    assert "since=2000-12-31T23" in listing.query.replace("%3A", ":")
    async with stack.db() as db:
        row = await db.get(Violation, v.id)
        assert row is not None and row.issue_number == number
        assert row.issue_repository == CENTRAL and "filing" not in row.reconciled


async def test_changing_issue_repo_moves_open_issues(stack: Stack,
                                                     fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st, config=POLICIES)
    await install(stack, st, inst)
    own = {i.number: i for i in st.issues("acme/api")}
    assert len(own) == 2 and st.issues(CENTRAL) == []

    push = hooks.commit_and_push(st, "acme/.github", {"config.yaml": CONFIG})
    await stack.deliver("push", push)
    await stack.drain()

    moved = central(st)
    assert set(moved) == {("acme/api", "Require AGENTS.md"),
                          ("acme/api", "Require catalog-info.yaml")}
    for issue in own.values():
        assert issue.state == "closed" and issue.state_reason == "not_planned"
        assert f"Moved to {CENTRAL}#" in (issue.comments[-1].body or "")
    assert {v.issue_repository for v in await stack.violations("open")} == {CENTRAL}
    # Settled: another scan moves nothing and files nothing.
    counts = (len(st.issues("acme/api")), len(st.issues(CENTRAL)), posts(st, CENTRAL))
    await full_scan(stack, inst)
    assert (len(st.issues("acme/api")), len(st.issues(CENTRAL)), posts(st, CENTRAL)) == counts


# ----------------------------------------------------------------------------- 410
async def test_issues_disabled_is_recorded_once_not_retried_and_shown(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st, config=POLICIES)
    st.repo("acme/api").has_issues = False
    await install(stack, st, inst)

    failed = [a for a in await stack.action_log() if a.action == "create-issue"]
    assert [a.status for a in failed] == ["failed", "failed"]
    assert all("Issues are disabled for acme/api" in a.detail for a in failed)
    assert posts(st, "acme/api") == 2  # one try each: no job retry
    assert st.issues("acme/api") == []

    # Two more scans, nothing changed: no request to file, no new record.
    for _ in range(2):
        await full_scan(stack, inst)
    assert posts(st, "acme/api") == 2 and listings(st, "acme/api") == 2
    assert len(await stack.action_log()) == 2

    async with browser() as http:
        await sign_in(http, stack, fake_github, OWNER)
        page = await text(http, f"{stack.base_url}/orgs/acme/repos/api")
    assert page.count("data-issue-held") == 2
    assert "Issues are disabled for acme/api" in page

    # Issues enabled again (the repository's updated_at moves): the next scan files them.
    repo = st.repo("acme/api")
    repo.has_issues, repo.updated_at = True, time.time()
    await full_scan(stack, inst)
    assert len([i for i in st.issues("acme/api") if i.state == "open"]) == 2
    assert all(v.issue_number for v in await stack.violations("open"))


async def test_issues_disabled_then_issue_repo_set_files_there(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st, config=POLICIES)
    st.repo("acme/api").has_issues = False
    await install(stack, st, inst)
    assert st.issues("acme/api") == [] and st.issues(CENTRAL) == []

    await stack.deliver("push", hooks.commit_and_push(st, "acme/.github",
                                                      {"config.yaml": CONFIG}))
    await stack.drain()
    assert set(central(st)) == {("acme/api", "Require AGENTS.md"),
                                ("acme/api", "Require catalog-info.yaml")}
    async with stack.db() as db:
        rows = list(await db.scalars(select(Violation)))
    assert all("held" not in (v.reconciled.get("held") or {}) for v in rows)
    assert {v.issue_repository for v in rows} == {CENTRAL}


async def test_a_central_repository_with_issues_disabled_holds_until_enabled(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st, violating=("api", "billing"))
    st.repo(CENTRAL).has_issues = False
    await install(stack, st, inst)
    failed = [a for a in await stack.action_log() if a.status == "failed"]
    assert len(failed) == 4 and all(f"Issues are disabled for {CENTRAL}" in a.detail
                                    for a in failed)
    await full_scan(stack, inst)
    assert posts(st, CENTRAL) == 4 and len(await stack.action_log()) == 4

    repo = st.repo(CENTRAL)
    repo.has_issues, repo.updated_at = True, time.time()
    await full_scan(stack, inst)
    assert len(central(st)) == 4
