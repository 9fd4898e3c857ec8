"""Empty repositories (no commit yet) end to end: not evaluated, shown as "empty" on the
dashboard, nothing filed or archived, until their first push. Real web app, arq worker,
Redis, database and the fake GitHub, which answers for an empty repository as GitHub does.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import gidgethub
import pytest

from app.db.models import Repository
from app.services import archiving
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation
from tests.stack import Stack, services_for
from tests.test_dashboard import browser, dash, sign_in, text
from tests.test_e2e import install

__all__ = ["dash"]  # the dashboard's stack fixture, used here too

POLICY = "Must have AGENTS.md"
CONFIG = """\
policies:
  - name: Must have AGENTS.md
    type: has_agents_md
    action: [create-issue, archive-repo]
    archive_after_days: 0
"""
OLD = time.time() - 60 * 86400


def org(st: FakeState) -> Installation:
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": CONFIG, "AGENTS.md": "x"}},
        {"name": "api", "files": {"README.md": "x"}, "created_at": OLD},
        {"name": "fresh", "empty": True, "created_at": OLD},
    ])
    inst.permissions["members"] = "read"
    st.add_org_member("acme", "olivia", "admin")
    return inst


async def repo_row(stack: Stack, full_name: str) -> Repository:
    (row,) = [r for r in await stack.repositories() if r.full_name == full_name]
    return row


def policy_issues(st: FakeState, full_name: str) -> list[int]:
    return [i.number for i in st.issues(full_name) if POLICY in (i.body or "")]


async def test_the_fake_answers_for_an_empty_repository_as_github_does(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st)
    gh = services_for(stack).github.installation(inst.id)
    data = await gh.graphql(
        "query($o: String!, $n: String!) { repository(owner: $o, name: $n) "
        "{ isEmpty defaultBranchRef { name } object(expression: \"HEAD:README.md\") { oid } } }",
        o="acme", n="fresh")
    assert data["repository"] == {"isEmpty": True, "defaultBranchRef": None, "object": None}
    # GitHub's contents API answers 404 "This repository is empty." (409 "Git Repository is
    # empty." is what its git database and commit APIs answer).
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem("/repos/acme/fresh/contents/README.md")
    assert caught.value.status_code == 404
    assert "This repository is empty." in str(caught.value)
    # A repository whose commit has no files is not empty.
    st.add_repo("acme", "bare", files={})
    data = await gh.graphql("query { repository(owner: \"acme\", name: \"bare\") "
                            "{ isEmpty defaultBranchRef { name } } }")
    assert data["repository"] == {"isEmpty": False, "defaultBranchRef": {"name": "main"}}


async def test_an_empty_repository_is_evaluated_after_its_first_push(
        dash: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(dash, st, org(st))

    # The full scan saw it empty: no violation, no issue, no archive; `api` (a repository
    # with a commit, and like every fake repository REST size 0) is evaluated as usual.
    assert policy_issues(st, "acme/api") and st.repo("acme/api").archived
    assert policy_issues(st, "acme/fresh") == [] and not st.repo("acme/fresh").archived
    fresh = await repo_row(dash, "acme/fresh")
    assert fresh.empty and fresh.last_scan_status == "ok" and fresh.last_scanned_at
    assert fresh.created_on_github is not None and \
        fresh.created_on_github < datetime.now(UTC) - timedelta(days=59)
    assert [v for v in await dash.violations() if v.repository_id == fresh.id] == []
    assert st.count_requests(None, "/repos/acme/fresh") == 0  # GraphQL said it all
    assert await archiving.sweep(services_for(dash)) == archiving.SweepResult()

    async with browser() as http:
        await sign_in(http, dash, fake_github, "olivia")
        html = await text(http, f"{dash.base_url}/orgs/acme/repos/fresh")
        assert 'data-state>empty<' in html and "data-empty" in html
        html = await text(http, f"{dash.base_url}/orgs/acme/repos", params={"state": "empty"})
        assert "acme/fresh" in html and "acme/api" not in html
        html = await text(http, f"{dash.base_url}/orgs/acme")
        assert "<span data-empty>1</span> empty" in html

        # The first push makes it a repository like any other.
        push = hooks.commit_and_push(st, "acme/fresh", {"README.md": "# Fresh\n"})
        assert push["created"] is True
        await dash.deliver("push", push)
        await dash.drain()
        fresh = await repo_row(dash, "acme/fresh")
        assert not fresh.empty
        # Found failing, filed, and (no grace period here) archived.
        (v,) = [v for v in await dash.violations() if v.repository_id == fresh.id]
        assert v.policy == POLICY and v.closed_reason == "The repository was archived."
        assert len(policy_issues(st, "acme/fresh")) == 1 and st.repo("acme/fresh").archived
        html = await text(http, f"{dash.base_url}/orgs/acme/repos/fresh")
        assert 'data-state>empty<' not in html


async def test_a_repository_created_empty_is_not_evaluated(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(stack, st, org(st))
    new = st.add_repo("acme", "brand-new", empty=True)
    assert (await stack.deliver("repository", hooks.repository(st, new, "created")))[0] == 202
    await stack.drain()
    row = await repo_row(stack, "acme/brand-new")
    assert row.empty and row.last_scan_status == "ok"
    assert policy_issues(st, "acme/brand-new") == []
    scans = [s for s in await stack.scans() if s.repository_id == row.id]
    assert [(s.status, s.violations_opened) for s in scans] == [("ok", 0)]
    assert not new.archived

    await stack.deliver("push", hooks.commit_and_push(st, "acme/brand-new", {"AGENTS.md": "x"}))
    await stack.drain()
    row = await repo_row(stack, "acme/brand-new")
    assert not row.empty and row.last_scan_status == "ok"
    assert policy_issues(st, "acme/brand-new") == []  # it complies
