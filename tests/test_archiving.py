"""archive-repo end to end: the grace period, the date announced in the issue, what is never
archived, and dry-run. Real web app, arq worker, Redis, database and the fake GitHub.

Time is moved through the database, as if the violations had been found days ago (their
first/last seen times, archive date and grace start go back), never by patching a clock or
the GitHub client: `age()`. The hourly sweep (app/services/archiving.py) is called as the
cron job would call it.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from app.db.models import ActionLog, Repository, Violation
from app.services import archiving
from app.services.scan_requests import request_full_scan
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation, Issue
from tests.stack import Stack, services_for
from tests.test_dashboard import browser, dash, sign_in, text
from tests.test_e2e import install

__all__ = ["dash"]  # the dashboard's stack fixture, used here too

POLICY = "Must have AGENTS.md"
CONFIG = """\
protected_repos: ["infra-*"]
policies:
  - name: Must have AGENTS.md
    type: has_agents_md
    action: [create-issue, archive-repo]
    archive_after_days: {days}
  - name: Catalog
    type: has_catalog_info_yaml
    action: log-only
    issue_repo: tracker
"""
OLD = time.time() - 60 * 86400  # created two months ago: old enough to be archived
# Requests that write nothing to a repository: reads through GraphQL, installation tokens.
NOT_WRITES = re.compile(r"^POST (/graphql|/app/installations/\d+/access_tokens)$")


def utc_today() -> date:
    return datetime.now(UTC).date()


def org(st: FakeState, config: str) -> Installation:
    """`.github`, an issue repository and an `infra-*` repository fail the policy and are
    never archived; `api` is archived when its date comes; `young` was created an hour ago."""
    return st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": config}, "created_at": OLD},
        {"name": "api", "files": {"README.md": "x"}, "created_at": OLD},
        {"name": "web", "files": {"AGENTS.md": "ok"}, "created_at": OLD},
        {"name": "infra-dns", "files": {"README.md": "x"}, "created_at": OLD},
        {"name": "tracker", "files": {"README.md": "x"}, "created_at": OLD},
        {"name": "young", "files": {"README.md": "x"}},
    ])


async def age(stack: Stack, days: int) -> None:
    """Move every violation `days` into the past: found, last seen, its archive date and
    its grace period's start, as if the scans had happened then."""
    shift = timedelta(days=days)
    async with stack.db() as db, db.begin():
        for v in await db.scalars(select(Violation)):
            v.first_seen_at -= shift
            v.last_seen_at -= shift
            if v.archive_due is not None:
                v.archive_due -= shift
            done = dict(v.reconciled)
            for key in (archiving.GRACE_FROM, archiving.mode_key(archiving.GRACE_FROM, True)):
                if key in done:
                    done[key] = (date.fromisoformat(done[key]) - shift).isoformat()
            v.reconciled = done


async def violation(stack: Stack, repo: str) -> Violation:
    async with stack.db() as db:
        found = await db.scalar(select(Violation).join(
            Repository, Repository.id == Violation.repository_id).where(
            Repository.full_name == repo, Violation.policy == POLICY))
    assert found is not None, repo
    return found


async def logged(stack: Stack, repo: str, action: str = "archive-repo") -> list[tuple[str, str]]:
    async with stack.db() as db:
        rows = await db.scalars(select(ActionLog).where(
            ActionLog.repository == repo, ActionLog.action == action).order_by(ActionLog.id))
        return [(a.status, a.detail) for a in rows]


def issue_of(st: FakeState, repo: str) -> Issue:
    (issue,) = [i for i in st.issues(repo) if POLICY in (i.body or "")]
    return issue


def writes(st: FakeState, repo: str | None = None) -> list[tuple[str, str, int]]:
    return [r for r in st.requests if r[0] != "GET" and not NOT_WRITES.match(f"{r[0]} {r[1]}")
            and (repo is None or r[1].startswith(f"/repos/{repo}"))]


def archives(st: FakeState, repo: str) -> int:
    """Requests to update the repository itself (archiving it)."""
    return sum(1 for method, path, _ in st.requests
               if method == "PATCH" and path == f"/repos/{repo}")


async def sweep(stack: Stack) -> archiving.SweepResult:
    result = await archiving.sweep(services_for(stack))
    await stack.drain()
    return result


async def full_scan(stack: Stack, st: FakeState) -> None:
    (inst,) = st.installations.values()
    await request_full_scan(services_for(stack), inst.id, "user")
    await stack.drain()


async def test_archives_only_a_violation_still_open_after_the_grace_period(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(stack, st, org(st, CONFIG.format(days=14)))
    due = utc_today() + timedelta(days=14)

    # The first detection files the issue with the date, and archives nothing.
    issue = issue_of(st, "acme/api")
    assert f"will be archived on {due.isoformat()}**" in (issue.body or "")
    assert (await violation(stack, "acme/api")).archive_due == due
    assert ("skipped", f"archive scheduled for {due.isoformat()} unless fixed") in \
        await logged(stack, "acme/api")
    assert not any(r.archived for r in st.repos.values())
    assert archives(st, "acme/api") == 0

    # Nothing is due yet: the sweep and another full scan change nothing.
    assert await sweep(stack) == archiving.SweepResult()
    await full_scan(stack, st)
    assert not st.repo("acme/api").archived

    # Fifteen days later: the sweep has the repository scanned (still failing), and only
    # then archives it.
    await age(stack, 15)
    st.clear_log()
    result = await sweep(stack)
    assert result.confirming >= 1
    assert st.repo("acme/api").archived
    assert archives(st, "acme/api") == 1
    (archived,) = [d for s, d in await logged(stack, "acme/api") if s == "success"]
    assert archived.startswith(
        f"archived: still violating on {(due - timedelta(days=15)).isoformat()}")
    # It ends as when a person archives a repository: read-only, violations resolved, and
    # nothing more is tried (GitHub would refuse any write with 403).
    v = await violation(stack, "acme/api")
    assert v.state == "resolved" and v.closed_reason == "The repository was archived."
    assert [r for r in st.requests if r[2] == 403] == []

    # Never archived: `.github`, the issue repository, a protected_repos glob; each says why,
    # once, and their issues carry no archive warning.
    for repo, why in [("acme/.github", "the organization's `.github` repository"),
                      ("acme/tracker", "the repository issues are filed in (`issue_repo`)"),
                      ("acme/infra-dns", "matches `protected_repos` glob `infra-*`")]:
        assert not st.repo(repo).archived, repo
        assert archives(st, repo) == 0
        assert await logged(stack, repo) == [("skipped", f"not archived: protected ({why})")]
        assert "archived on" not in (issue_of(st, repo).body or "")
        assert (await violation(stack, repo)).archive_due is None

    # A repository younger than the grace period is not archived: its date moves to the
    # day it is old enough, and its issue says so.
    young = st.repo("acme/young")
    assert not young.archived and archives(st, "acme/young") == 0
    later = datetime.fromtimestamp(young.created_at, UTC).date() + timedelta(days=14)
    assert (await violation(stack, "acme/young")).archive_due == later
    assert f"archived on {later.isoformat()}**" in (issue_of(st, "acme/young").body or "")

    # Running everything again changes nothing.
    requests = len(writes(st))
    await sweep(stack)
    await full_scan(stack, st)
    assert len(writes(st)) == requests
    assert sum(len(st.issues(r.full_name)) for r in st.repos.values()) == 5


async def test_a_violation_fixed_before_its_date_is_never_archived(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(stack, st, org(st, CONFIG.format(days=14)))
    due = (await violation(stack, "acme/api")).archive_due
    assert due == utc_today() + timedelta(days=14)

    await stack.deliver("push", hooks.commit_and_push(st, "acme/api", {"AGENTS.md": "# ok"}))
    await stack.drain()
    v = await violation(stack, "acme/api")
    assert v.state == "resolved" and v.archive_due is None
    assert issue_of(st, "acme/api").state == "closed"
    assert ("skipped", f"not archived: the violation was resolved before {due.isoformat()}") \
        in await logged(stack, "acme/api")

    await age(stack, 30)
    await sweep(stack)
    await full_scan(stack, st)
    assert not st.repo("acme/api").archived
    assert archives(st, "acme/api") == 0

    # Failing again starts a new grace period, announced in the reopened issue.
    await stack.deliver("push", hooks.commit_and_push(st, "acme/api", {"AGENTS.md": None}))
    await stack.drain()
    v = await violation(stack, "acme/api")
    new_due = utc_today() + timedelta(days=14)
    assert v.state == "open" and v.archive_due == new_due
    issue = issue_of(st, "acme/api")
    assert issue.state == "open" and f"archived on {new_due.isoformat()}**" in (issue.body or "")
    await sweep(stack)
    assert not st.repo("acme/api").archived


async def test_a_changed_grace_period_moves_the_date_later_never_earlier(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(stack, st, org(st, CONFIG.format(days=14)))
    first = utc_today() + timedelta(days=14)

    async def set_days(days: int) -> None:
        push = hooks.commit_and_push(st, "acme/.github",
                                     {"config.yaml": CONFIG.format(days=days)})
        await stack.deliver("push", push)
        await stack.drain()
        await sweep(stack)  # the sweep finds the schedules the new config changes

    await set_days(30)
    later = utc_today() + timedelta(days=30)
    assert (await violation(stack, "acme/api")).archive_due == later
    body = issue_of(st, "acme/api").body or ""
    assert f"archived on {later.isoformat()}**" in body and first.isoformat() not in body
    assert ("skipped", f"archive scheduled for {later.isoformat()} unless fixed "
                       f"(was {first.isoformat()})") in await logged(stack, "acme/api")

    # A shorter grace period would archive before the date the team was told: it keeps it.
    patches = st.count_requests("PATCH", "/repos/acme/api/issues")
    await set_days(3)
    assert (await violation(stack, "acme/api")).archive_due == later
    assert st.count_requests("PATCH", "/repos/acme/api/issues") == patches
    await age(stack, 10)  # past the shortened date, before the announced one
    await sweep(stack)
    await full_scan(stack, st)
    assert not st.repo("acme/api").archived


async def test_dry_run_writes_nothing_and_logs_what_it_would_do(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    config = "enforcement: dry-run\n" + CONFIG.format(days=0)
    await install(stack, st, org(st, config))
    today = utc_today().isoformat()

    assert writes(st) == []  # not an issue, label, comment or archive
    assert not any(st.issues(r.full_name) for r in st.repos.values())
    assert await logged(stack, "acme/api", "create-issue") == [
        ("dry-run", f"would open an issue, warning that the repository will be archived "
                    f"on {today}")]
    assert await logged(stack, "acme/api") == [
        ("dry-run", f"would archive on {today} unless fixed"),
        ("dry-run", f"would archive the repository now (still violating on {today})")]
    assert await logged(stack, "acme/.github") == [
        ("skipped", "not archived: protected (the organization's `.github` repository)")]
    # A second scan and the sweep log nothing new (dry-run keeps its own progress).
    count = len(await stack.action_log())
    await full_scan(stack, st)
    await sweep(stack)
    assert len(await stack.action_log()) == count and writes(st) == []

    # Enforcing after weeks of dry-run announces a full grace period: no archive on a date
    # nobody was told.
    await age(stack, 20)
    push = hooks.commit_and_push(st, "acme/.github", {"config.yaml": CONFIG.format(days=14)})
    await stack.deliver("push", push)
    await stack.drain()
    await sweep(stack)
    due = utc_today() + timedelta(days=14)
    assert f"archived on {due.isoformat()}**" in (issue_of(st, "acme/api").body or "")
    assert (await violation(stack, "acme/api")).archive_due == due
    assert not st.repo("acme/api").archived


async def test_dry_run_of_one_policy_leaves_the_others_enforced(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    config = CONFIG.format(days=0).replace(
        "    archive_after_days: 0\n", "    archive_after_days: 0\n    dry_run: true\n"
    ).replace("action: log-only\n    issue_repo: tracker", "action: create-issue")
    await install(stack, st, org(st, config))
    # The enforced policy filed its issues...
    assert [i for i in st.issues("acme/api") if "Catalog" in (i.body or "")]
    # ...and the dry-run one wrote nothing: no issue of its own, nothing archived.
    assert not any(POLICY in (i.body or "") for r in st.repos.values()
                   for i in st.issues(r.full_name))
    assert not any(r.archived for r in st.repos.values())
    assert archives(st, "acme/api") == 0
    statuses = {s for s, _ in await logged(stack, "acme/api")}
    assert statuses == {"dry-run"}


async def test_the_dashboard_shows_the_archive_date_and_dry_run(
        dash: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st, CONFIG.format(days=14))
    inst.permissions["members"] = "read"
    st.add_org_member("acme", "olivia", "admin")
    await install(dash, st, inst)
    due = utc_today() + timedelta(days=14)
    async with browser() as http:
        await sign_in(http, dash, fake_github, "olivia")
        html = await text(http, f"{dash.base_url}/orgs/acme/repos/api")
        assert f'data-archive-due="{due.isoformat()}"' in html
        assert f"on {due.isoformat()} unless fixed" in html
        html = await text(http, f"{dash.base_url}/orgs/acme/repos/infra-dns")
        assert "never: protected (matches `protected_repos` glob `infra-*`)" in html
        # Dry-run outcomes have a status of their own, which the action log filters on.
        push = hooks.commit_and_push(st, "acme/.github", {
            "config.yaml": "enforcement: dry-run\n" + CONFIG.format(days=14)})
        await dash.deliver("push", push)
        await dash.drain()
        await dash.deliver("push", hooks.commit_and_push(st, "acme/web", {"AGENTS.md": None}))
        await dash.drain()
        html = await text(http, f"{dash.base_url}/orgs/acme/actions",
                          params={"status": "dry-run"})
        assert 'class="st-dry-run">dry-run<' in html and "would open an issue" in html
        assert "opened issue" not in html
