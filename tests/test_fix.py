"""fix, end to end: the real web app, arq workers, Redis, database and the fake GitHub.

A setting is applied with the REST API; missing files are proposed in one pull request per
repository from the org's templates; a refused fix is recorded as failed while the other
actions run; a pull request a person closed is respected until the config changes; dry-run
writes nothing; a maintainer's one-shot fix works from the command line and the dashboard.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from ruamel.yaml import YAML
from sqlalchemy import select

from app.actions.fix import FIX_BRANCH, PR_MARKER
from app.db.models import ActionLog, Repository, Violation
from app.services.reconcile import HELD
from app.services.scan_requests import request_full_scan, request_reconcile
from tests.fakegithub import git as fakegit
from tests.fakegithub import pull_webhooks as events
from tests.fakegithub import pulls
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation
from tests.procs import app_env
from tests.stack import Stack, running_stack, services_for
from tests.test_dashboard import OUTSIDER, OWNER, browser, csrf_of, dash, sign_in, text
from tests.test_fakegithub_checks import Api

__all__ = ["dash"]  # the dashboard's stack fixture, used here too

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = YAML(typ="safe").load(ROOT / "app.yml")
AGENTS_TEMPLATE = "# AGENTS.md\n\nBuild with `make`, test with `make test`.\n"
CATALOG_TEMPLATE = "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
CONFIG = """\
policies:
  - name: Read-only workflow token
    type: correct_workflow_permissions
    action: [create-issue, fix]
  - name: Require AGENTS.md
    type: has_agents_md
    action: [fix]
  - name: Catalog entry
    type: has_catalog_info_yaml
    action: [fix]
    fix_details:
      template: backstage/catalog-info.yaml
"""
# Requests that write nothing to a repository: reads through GraphQL, installation tokens.
NOT_WRITES = re.compile(r"^POST (/graphql|/app/installations/\d+/access_tokens)$")


@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str,
                any_database_url: str) -> AsyncIterator[Stack]:
    fake_github.state.web_url = fake_github.url
    async with running_stack(github_url=fake_github.url, app_id=fake_github.app_id,
                             private_key=fake_github.private_key_pem, redis_url=redis_url,
                             database_url=any_database_url, GITHUB_URL=fake_github.url) as s:
        yield s


def org(st: FakeState, config: str = CONFIG, **permissions: str) -> Installation:
    """acme with the permissions app.yml asks for (some overridden): `svc-a` lacks
    AGENTS.md and gives workflows a write token; `svc-b` complies."""
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {
            "config.yaml": config, "templates/AGENTS.md": AGENTS_TEMPLATE,
            "backstage/catalog-info.yaml": CATALOG_TEMPLATE, "AGENTS.md": "x",
            "catalog-info.yaml": "x"}},
        {"name": "svc-a", "files": {"README.md": "a\n", "catalog-info.yaml": "kind: x\n"},
         "workflow_permissions": "write"},
        {"name": "svc-b", "files": {"AGENTS.md": "# b\n", "catalog-info.yaml": "kind: x\n"}},
    ], events=MANIFEST["default_events"],
        permissions={**MANIFEST["default_permissions"], **permissions})
    return inst


async def install(stack: Stack, st: FakeState, inst: Installation) -> None:
    status, _ = await stack.deliver("installation", hooks.installation(st, inst))
    assert status == 202
    await stack.drain()


async def full_scan(stack: Stack, st: FakeState) -> None:
    (inst,) = st.installations.values()
    await request_full_scan(services_for(stack), inst.id, "user")
    await stack.drain()


async def push(stack: Stack, st: FakeState, repo: str, changes: dict[str, str | None]) -> None:
    status, _ = await stack.deliver("push", hooks.commit_and_push(st, repo, changes))
    assert status == 202
    await stack.drain()


async def logged(stack: Stack, repo: str, action: str = "fix") -> list[tuple[str, str]]:
    async with stack.db() as db:
        rows = await db.scalars(select(ActionLog).where(
            ActionLog.repository == repo, ActionLog.action == action).order_by(ActionLog.id))
        return [(a.status, a.detail) for a in rows]


async def violation(stack: Stack, repo: str, policy: str) -> Violation:
    async with stack.db() as db:
        found = await db.scalar(select(Violation).join(
            Repository, Repository.id == Violation.repository_id).where(
            Repository.full_name == repo, Violation.policy == policy))
    assert found is not None, (repo, policy)
    return found


def fix_pulls(st: FakeState, repo: str) -> list[pulls.PullRequest]:
    return [p for p in pulls.pulls_of(st, st.repo(repo)) if p.head_ref == FIX_BRANCH]


def writes(st: FakeState, repo: str | None = None) -> list[tuple[str, str, int]]:
    return [r for r in st.requests if r[0] != "GET" and not NOT_WRITES.match(f"{r[0]} {r[1]}")
            and (repo is None or r[1].startswith(f"/repos/{repo}"))]


def count(st: FakeState, method: str, path: str) -> int:
    return sum(1 for m, p, _ in st.requests if m == method and p == path)


# ----------------------------------------------------------------------------- settings
async def test_the_setting_is_applied_and_recorded(stack: Stack,
                                                   fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(stack, st, org(st))

    assert st.repo("acme/svc-a").workflow_permissions == "read"
    assert ("success", "set default_workflow_permissions to 'read' (was 'write')") in \
        await logged(stack, "acme/svc-a")
    assert count(st, "PUT", "/repos/acme/svc-a/actions/permissions/workflow") == 1
    # svc-b already complied: nothing was set there.
    assert count(st, "PUT", "/repos/acme/svc-b/actions/permissions/workflow") == 0
    # create-issue still ran for the policy (the fix is not all it does).
    assert any("workflow" in (i.body or "").lower() for i in st.issues("acme/svc-a"))

    # The next scan sees the setting read, and resolves the violation (closing its issue).
    await full_scan(stack, st)
    v = await violation(stack, "acme/svc-a", "Read-only workflow token")
    assert v.state == "resolved"
    assert all(i.state == "closed" for i in st.issues("acme/svc-a") if not i.pull_request)
    assert count(st, "PUT", "/repos/acme/svc-a/actions/permissions/workflow") == 1


# ----------------------------------------------------------------------------- files
async def test_missing_files_go_into_one_pull_request(stack: Stack,
                                                      fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(stack, st, org(st))
    repo = st.repo("acme/svc-a")

    (pr,) = fix_pulls(st, "acme/svc-a")
    assert pr.state == "open" and pr.base_ref == "main" and pr.issue.user is st.bot
    assert repo.branches[FIX_BRANCH]["AGENTS.md"] == AGENTS_TEMPLATE
    assert pr.head_sha == repo.heads[FIX_BRANCH]
    assert "AGENTS.md" not in repo.files  # proposed, not pushed to the default branch
    assert "- `AGENTS.md` (policy **Require AGENTS.md**)" in (pr.issue.body or "")
    v = await violation(stack, "acme/svc-a", "Require AGENTS.md")
    assert v.fix_pr_number == pr.number
    assert ("success", f"opened pull request #{pr.number} adding `AGENTS.md` (from "
                       "acme/.github:templates/AGENTS.md)") in await logged(stack, "acme/svc-a")

    # A retry after a crash that lost the record (the PR number, the progress) finds the
    # pull request and the file: nothing is opened or pushed twice.
    async with stack.db() as db, db.begin():
        row = await db.get(Violation, v.id)
        assert row is not None
        row.fix_pr_number = None
        row.reconciled = {k: x for k, x in row.reconciled.items() if k != "fix"}
    st.clear_log()
    await request_reconcile(services_for(stack), v.installation_id, v.id)
    await stack.drain()
    assert fix_pulls(st, "acme/svc-a") == [pr]
    assert count(st, "POST", "/repos/acme/svc-a/pulls") == 0
    assert [w for w in writes(st) if w[0] == "PUT" or "/git/" in w[1]] == []
    assert (await violation(stack, "acme/svc-a", "Require AGENTS.md")).fix_pr_number == \
        pr.number

    # A second file goes missing: it is added to the same pull request (its own template,
    # from fix_details.template), and the body lists both.
    await push(stack, st, "acme/svc-a", {"catalog-info.yaml": None})
    assert fix_pulls(st, "acme/svc-a") == [pr]
    assert repo.branches[FIX_BRANCH]["catalog-info.yaml"] == CATALOG_TEMPLATE
    assert repo.branches[FIX_BRANCH]["AGENTS.md"] == AGENTS_TEMPLATE
    assert pr.head_sha == repo.heads[FIX_BRANCH]
    body = pr.issue.body or ""
    assert body.count(PR_MARKER) == 1
    assert "- `AGENTS.md` (policy **Require AGENTS.md**)" in body
    assert "- `catalog-info.yaml` (policy **Catalog entry**)" in body
    assert (await violation(stack, "acme/svc-a", "Catalog entry")).fix_pr_number == pr.number
    assert ("success", f"pull request #{pr.number} added `catalog-info.yaml`") in \
        await logged(stack, "acme/svc-a")

    # Scanning again changes nothing.
    before = len(writes(st, "acme/svc-a"))
    await full_scan(stack, st)
    assert len(writes(st, "acme/svc-a")) == before
    assert fix_pulls(st, "acme/svc-a") == [pr]

    # Merging it complies: the next push resolves both violations.
    pulls.commit(st, "acme/svc-a", "main", dict(repo.branches[FIX_BRANCH]))
    await push(stack, st, "acme/svc-a", {"README.md": "merged\n"})
    for policy in ("Require AGENTS.md", "Catalog entry"):
        assert (await violation(stack, "acme/svc-a", policy)).state == "resolved"


async def test_a_pull_request_a_person_closed_is_respected(stack: Stack,
                                                           fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(stack, st, org(st))
    (first,) = fix_pulls(st, "acme/svc-a")

    pulls.close_pull(st, first)
    status, body = await stack.deliver("pull_request", events.pull_request(
        st, first, "closed", sender="alice"))
    assert status == 202, body
    await stack.drain()
    v = await violation(stack, "acme/svc-a", "Require AGENTS.md")
    assert "fix" in v.reconciled[HELD]
    assert (await logged(stack, "acme/svc-a"))[-1] == (
        "skipped", f"pull request #{first.number} was closed by alice without merging: no "
                   "new fix pull request until the policy's config changes")

    # Scans, and pushes, open no new pull request for it.
    st.clear_log()
    await full_scan(stack, st)
    await push(stack, st, "acme/svc-a", {"README.md": "still no agents\n"})
    assert count(st, "POST", "/repos/acme/svc-a/pulls") == 0
    assert fix_pulls(st, "acme/svc-a") == [first]
    # New permissions retry refused fixes, never declined ones.
    (inst,) = st.installations.values()
    await stack.deliver("installation", hooks.installation(st, inst, "new_permissions_accepted"))
    await stack.drain()
    assert fix_pulls(st, "acme/svc-a") == [first]

    # The config changes (the policy's own entry): a new pull request, from a fresh branch.
    await push(stack, st, "acme/.github", {"config.yaml": CONFIG.replace(
        "    action: [fix]\n  - name: Catalog",
        "    action: [fix]\n    fix_details:\n      template: templates/AGENTS.md\n"
        "  - name: Catalog")})
    prs = fix_pulls(st, "acme/svc-a")
    assert len(prs) == 2 and prs[0] is first and first.state == "closed"
    second = prs[1]
    assert second.state == "open"
    assert st.repo("acme/svc-a").branches[FIX_BRANCH]["AGENTS.md"] == AGENTS_TEMPLATE
    assert (await violation(stack, "acme/svc-a", "Require AGENTS.md")).fix_pr_number == \
        second.number


# ----------------------------------------------------------------------------- refusals
async def test_a_refused_fix_fails_and_the_other_actions_run(stack: Stack,
                                                             fake_github: FakeGitHub) -> None:
    st = fake_github.state
    # Installed without the write permissions the fixes need.
    await install(stack, st, org(st, administration="read", contents="read"))

    assert st.repo("acme/svc-a").workflow_permissions == "write"
    (status, detail), = [e for e in await logged(stack, "acme/svc-a")
                         if "workflow" in e[1]]
    assert status == "failed"
    assert "403" in detail and "administration: write" in detail
    # create-issue ran all the same.
    assert len([i for i in st.issues("acme/svc-a") if not i.pull_request]) == 1
    (agents,) = [e for e in await logged(stack, "acme/svc-a") if "AGENTS" in e[1]]
    assert agents[0] == "failed" and "contents: write" in agents[1]
    assert fix_pulls(st, "acme/svc-a") == []

    # Held: the next scans do not try again (nothing changed)...
    st.clear_log()
    await full_scan(stack, st)
    assert count(st, "PUT", "/repos/acme/svc-a/actions/permissions/workflow") == 0
    assert count(st, "POST", "/repos/acme/svc-a/git/refs") == 0

    # ...until the organization accepts the permissions the App asks for: then both fixes
    # run again, with a new token that has them.
    (inst,) = st.installations.values()
    inst.permissions.update({"administration": "write", "contents": "write"})
    code, answer = await stack.deliver("installation", hooks.installation(
        st, inst, "new_permissions_accepted"))
    assert code == 202, answer
    await stack.drain()
    assert st.repo("acme/svc-a").workflow_permissions == "read"
    (pr,) = fix_pulls(st, "acme/svc-a")
    assert st.repo("acme/svc-a").branches[FIX_BRANCH]["AGENTS.md"] == AGENTS_TEMPLATE
    assert pr.state == "open"


async def test_a_ruleset_on_the_branch_and_a_missing_template(stack: Stack,
                                                              fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = org(st, CONFIG.replace("backstage/catalog-info.yaml", "nowhere/catalog.yaml"))
    fakegit.restrict_branch(st, "acme/svc-a", "policy-enforcer/*")
    st.delete_file("acme/svc-b", "catalog-info.yaml")
    await install(stack, st, inst)

    (agents,) = [e for e in await logged(stack, "acme/svc-a") if "AGENTS" in e[1]]
    assert agents[0] == "failed" and "Repository rule violations found" in agents[1]
    assert FIX_BRANCH not in st.repo("acme/svc-a").heads
    assert ("failed", "the fix template `nowhere/catalog.yaml` is missing from acme/.github "
                      "(or the App cannot read that repository): add it there, or point "
                      "`fix_details.template` at another file") in \
        await logged(stack, "acme/svc-b")
    assert fix_pulls(st, "acme/svc-b") == []


# ----------------------------------------------------------------------------- dry-run
async def test_dry_run_says_what_it_would_fix_and_writes_nothing(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(stack, st, org(st, "enforcement: dry-run\n" + CONFIG))

    assert writes(st) == []
    assert st.repo("acme/svc-a").workflow_permissions == "write"
    fixes = dict((d, s) for s, d in await logged(stack, "acme/svc-a"))
    assert fixes == {
        "would fix: set default_workflow_permissions to 'read' "
        "(PUT /repos/acme/svc-a/actions/permissions/workflow)": "dry-run",
        f"would fix: add `AGENTS.md` from acme/.github:templates/AGENTS.md in the pull "
        f"request from branch {FIX_BRANCH} (one per repository)": "dry-run",
    }


# ----------------------------------------------------------------------------- one-shot
LOG_ONLY = """\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: log-only
  - name: Catalog owner
    type: catalog_info_has_owner
    action: log-only
"""


async def run_cli(stack: Stack, fake: FakeGitHub, *args: str) -> tuple[int, str, str]:
    env = app_env(fake, redis_url=stack.settings.REDIS_URL or "",
                  database_url=stack.settings.DATABASE_URL)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "fix", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_one_shot_fix_from_the_command_line(stack: Stack,
                                                  fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(stack, st, org(st, LOG_ONLY))
    assert fix_pulls(st, "acme/svc-a") == []  # `fix` is not among the actions

    code, out, err = await run_cli(stack, fake_github, "--repo", "acme/svc-a",
                                   "--policy", "Require AGENTS.md")
    assert code == 0, err
    (pr,) = fix_pulls(st, "acme/svc-a")
    assert out.strip() == (
        f"policy-enforcer: fix acme/svc-a / Require AGENTS.md: success: opened pull request "
        f"#{pr.number} adding `AGENTS.md` (from acme/.github:templates/AGENTS.md) "
        f"{st.web_url}/acme/svc-a/pull/{pr.number}")
    assert st.repo("acme/svc-a").branches[FIX_BRANCH]["AGENTS.md"] == AGENTS_TEMPLATE

    # Clear failures: nothing to fix, an unknown policy, no automatic fix.
    code, _, err = await run_cli(stack, fake_github, "--repo", "acme/svc-b",
                                 "--policy", "Require AGENTS.md")
    assert code == 1 and "nothing to fix: acme/svc-b has no open violation" in err
    code, _, err = await run_cli(stack, fake_github, "--repo", "acme/svc-a",
                                 "--policy", "Nope")
    assert code == 1 and "no policy named 'Nope'" in err
    code, out, _ = await run_cli(stack, fake_github, "--repo", "acme/svc-b",
                                 "--policy", "Catalog owner")
    assert code == 0
    assert "skipped: no automatic fix for catalog_info_has_owner" in out
    assert fix_pulls(st, "acme/svc-b") == []


async def test_a_unicode_template_arrives_intact(stack: Stack, fake_github: FakeGitHub) -> None:
    """The fake decodes what the App sends exactly as GitHub would (strict base64)."""
    st = fake_github.state
    unicode_template = "# Agents — ünïcode ✓\n"
    inst = org(st)
    st.set_file("acme/.github", "templates/AGENTS.md", unicode_template)
    await install(stack, st, inst)
    assert st.repo("acme/svc-a").branches[FIX_BRANCH]["AGENTS.md"] == unicode_template


def test_a_held_fix_does_not_hold_back_the_later_actions() -> None:
    """A refused fix is held, yet archive-repo (after it) is still pending; a held
    create-issue (before it) holds back everything after it, as before."""
    from app.config import parse_config
    from app.services.reconcile import pending_actions, policy_key

    cfg = parse_config("policies:\n  - name: P\n    type: has_agents_md\n"
                       "    action: [create-issue, fix, archive-repo]\n")
    (pc,) = cfg.policies

    def held(name: str) -> Violation:
        entry = {"state": "open", "policy": policy_key(pc), "target": None, "repo": None}
        return Violation(state="open", issue_number=None, reconciled={
            "create-issue": "open", HELD: {name: entry}})

    assert pending_actions(held("fix"), pc, cfg) == ["archive-repo"]
    v = held("create-issue")
    v.reconciled = {HELD: v.reconciled[HELD]}
    assert pending_actions(v, pc, cfg) == []


# ----------------------------------------------------------------------------- dashboard
async def test_fix_now_on_the_repository_page(dash: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    org(st, LOG_ONLY, members="read")
    st.add_org_member("acme", OWNER, "admin")
    st.add_org_member("acme", OUTSIDER, "member")  # a member, but not authorised
    await install(dash, st, next(iter(st.installations.values())))
    page_url = f"{dash.base_url}/orgs/acme/repos/svc-a"
    agents = await violation(dash, "acme/svc-a", "Require AGENTS.md")

    # Signed out, or signed in without access: refused, nothing queued.
    async with browser() as http:
        async with http.post(f"{page_url}/fix", data={"csrf": "x", "violation": agents.id},
                             allow_redirects=False) as resp:
            assert resp.status in (303, 401, 403)
        await sign_in(http, dash, fake_github, OUTSIDER)
        async with http.post(f"{page_url}/fix", data={"csrf": "x", "violation": agents.id},
                             allow_redirects=False) as resp:
            assert resp.status in (403, 404)
    await dash.drain()
    assert fix_pulls(st, "acme/svc-a") == []

    async with browser() as http:
        await sign_in(http, dash, fake_github, OWNER)
        html = await text(http, page_url)
        # A button for the fixable open violation only (the catalog owner has no fix).
        assert html.count("data-fix-now=") == 1
        assert 'data-fix-now="Require AGENTS.md"' in html
        # Without the CSRF token: refused.
        async with http.post(f"{page_url}/fix", data={"violation": agents.id},
                             allow_redirects=False) as resp:
            assert resp.status == 403
        # A violation that is not this repository's, or not a number: 404.
        for bad in ("999999", "x"):
            async with http.post(f"{page_url}/fix", data={"csrf": csrf_of(html),
                                                          "violation": bad}) as resp:
                assert resp.status == 404
        async with http.post(f"{page_url}/fix", data={"csrf": csrf_of(html),
                                                      "violation": agents.id},
                             allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/orgs/acme/repos/svc-a?fix=queued"
        assert fix_pulls(st, "acme/svc-a") == []  # queued: the web process never calls GitHub
        await dash.drain()
        (pr,) = fix_pulls(st, "acme/svc-a")
        assert st.repo("acme/svc-a").branches[FIX_BRANCH]["AGENTS.md"] == AGENTS_TEMPLATE
        html = await text(http, page_url)
        assert f"opened pull request #{pr.number} adding `AGENTS.md`" in html

        # Pressing it again updates nothing and opens nothing.
        async with http.post(f"{page_url}/fix", data={"csrf": csrf_of(html),
                                                      "violation": agents.id}) as resp:
            assert resp.status == 200
        await dash.drain()
        assert fix_pulls(st, "acme/svc-a") == [pr]
        assert count(st, "POST", "/repos/acme/svc-a/pulls") == 1


async def test_a_file_deleted_again_after_its_fix_was_merged_gets_a_new_pull_request(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await install(stack, st, org(st))
    (first,) = fix_pulls(st, "acme/svc-a")
    repo = st.repo("acme/svc-a")

    # Merged: the next push resolves the violation; the branch's pull request is done.
    pulls.commit(st, "acme/svc-a", "main", {"AGENTS.md": repo.branches[FIX_BRANCH]["AGENTS.md"]})
    first.merged, first.merged_at = True, 1.0
    pulls.close_pull(st, first)
    await push(stack, st, "acme/svc-a", {"README.md": "merged\n"})
    assert (await violation(stack, "acme/svc-a", "Require AGENTS.md")).state == "resolved"

    # Deleted again: a new pull request from a fresh branch, with the template.
    await push(stack, st, "acme/svc-a", {"AGENTS.md": None})
    prs = fix_pulls(st, "acme/svc-a")
    assert len(prs) == 2 and prs[1].state == "open"
    assert repo.branches[FIX_BRANCH]["AGENTS.md"] == AGENTS_TEMPLATE
    assert repo.heads[FIX_BRANCH] == prs[1].head_sha


# ----------------------------------------------------------------------------- the fake
async def test_the_fakes_git_writes_are_as_strict_as_github(fake_github: FakeGitHub) -> None:
    """The error shapes app/actions/fix.py relies on, straight from the fake."""
    st = fake_github.state
    inst = st.add_installation("acme", [{"name": "svc", "files": {"README.md": "r"}}],
                               permissions={**MANIFEST["default_permissions"]})
    readonly = st.add_installation("other", [{"name": "svc", "files": {"README.md": "r"}}])
    async with aiohttp.ClientSession() as http:
        api = Api(http, fake_github, fake_github.installation_token(inst.id))
        main = st.repo("acme/svc").heads["main"]
        assert (await api.call("GET", "/repos/acme/svc/git/ref/heads/nope"))[0] == 404
        status, ref = await api.call("GET", "/repos/acme/svc/git/ref/heads/main")
        assert status == 200 and ref["object"]["sha"] == main
        new = {"ref": "refs/heads/b", "sha": main}
        assert (await api.call("POST", "/repos/acme/svc/git/refs", new))[0] == 201
        status, body = await api.call("POST", "/repos/acme/svc/git/refs", new)
        assert (status, body["message"]) == (422, "Reference already exists")
        content = {"message": "m", "content": "aGk=", "branch": "b"}  # "hi"
        assert (await api.call("PUT", "/repos/acme/svc/contents/x.md", content))[0] == 201
        status, body = await api.call("PUT", "/repos/acme/svc/contents/x.md", content)
        assert (status, body["message"]) == (422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
        status, _ = await api.call("PUT", "/repos/acme/svc/contents/x.md",
                                   {**content, "sha": "0" * 40})
        assert status == 409
        status, pr = await api.call("POST", "/repos/acme/svc/pulls",
                                    {"title": "t", "head": "b", "base": "main"})
        assert status == 201 and pr["head"]["ref"] == "b"
        status, body = await api.call("POST", "/repos/acme/svc/pulls",
                                      {"title": "t", "head": "acme:b", "base": "main"})
        assert status == 422 and "already exists" in body["errors"][0]["message"]
        status, body = await api.call("PATCH", "/repos/acme/svc/git/refs/heads/b",
                                      {"sha": main})
        assert (status, body["message"]) == (422, "Update is not a fast forward")
        assert (await api.call("PATCH", "/repos/acme/svc/git/refs/heads/b",
                               {"sha": main, "force": True}))[0] == 200
        assert pulls.pull(st, "acme/svc", pr["number"]).head_sha == main  # follows its branch

        # The default permissions (contents: read, no pull_requests, administration: read).
        weak = Api(http, fake_github, fake_github.installation_token(readonly.id))
        for method, path, body in [
                ("POST", "/repos/other/svc/git/refs", {"ref": "refs/heads/c", "sha": main}),
                ("PUT", "/repos/other/svc/contents/y.md", content),
                ("POST", "/repos/other/svc/pulls", {"title": "t", "head": "c", "base": "main"}),
                ("PUT", "/repos/other/svc/actions/permissions/workflow",
                 {"default_workflow_permissions": "read"})]:
            status, answer = await weak.call(method, path, body)
            assert (status, answer["message"]) == (
                403, "Resource not accessible by integration"), path
