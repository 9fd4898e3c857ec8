"""block-prs and comment-on-prs, end to end: the fake GitHub sends the webhooks the App
subscribed to (app.yml) to the real web app, arq workers judge the pull request's head and
report it as check runs and one sticky comment; the fake's request log shows what it cost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from app.db.models import ActionLog, PullCheck
from app.services.pull_report import COMMENT_MARKER
from tests.fakegithub import pull_webhooks as events
from tests.fakegithub import pulls
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import Comment, FakeState, Installation, RequestRecord
from tests.stack import MANIFEST, Stack, hooked_stack, send

PUBLIC_URL = "https://enforcer.example.com"
AGENTS_MESSAGE = "Every repository needs an AGENTS.md: see the engineering handbook."
CONFIG = f"""\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: [block-prs, comment-on-prs]
    pr_comment_details:
      message: "{AGENTS_MESSAGE}"
  - name: Read-only workflow token
    type: correct_workflow_permissions
    action: block-prs
    block_prs_details:
      status_check_name: policy/workflow-permissions
  - name: Catalog entry
    type: has_catalog_info_yaml
    action: log-only
"""
WORKFLOW_CHECK = "policy/workflow-permissions"


@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str,
                any_database_url: str) -> AsyncIterator[Stack]:
    async with hooked_stack(fake_github, redis_url, any_database_url,
                            PUBLIC_URL=PUBLIC_URL) as s:
        yield s


def org(st: FakeState, config: str = CONFIG) -> Installation:
    """acme, installed with the events and permissions app.yml asks for: svc-a has no
    AGENTS.md on its default branch, svc-b has one."""
    return st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": config}},
        {"name": "svc-a", "files": {"README.md": "a\n"}},
        {"name": "svc-b", "files": {"AGENTS.md": "# Agents\n", "README.md": "b\n"}},
    ], events=MANIFEST["default_events"], permissions=MANIFEST["default_permissions"])



async def installed(stack: Stack, fake: FakeGitHub, config: str = CONFIG) -> Installation:
    inst = org(fake.state, config)
    await send(stack, fake, "installation", hooks.installation(fake.state, inst))
    return inst


async def open_pr(stack: Stack, fake: FakeGitHub, repo: str, changes: dict[str, str | None],
                  *, head_repo: str | None = None, branch: str = "change") -> pulls.PullRequest:
    st = fake.state
    source = head_repo or repo
    pulls.create_branch(st, source, branch)
    pulls.commit(st, source, branch, changes)
    pr = pulls.open_pull(st, repo, branch, head_repo=head_repo)
    await send(stack, fake, "pull_request", events.pull_request(st, pr, "opened"))
    return pr


async def push(stack: Stack, fake: FakeGitHub, pr: pulls.PullRequest,
               changes: dict[str, str | None]) -> str:
    before = pr.head_sha
    sha = pulls.push_to_pull(fake.state, pr, changes)
    await send(stack, fake, "pull_request",
               events.pull_request(fake.state, pr, "synchronize", before=before))
    return sha


def run_on(st: FakeState, repo: str, sha: str, name: str) -> pulls.CheckRun:
    (run,) = pulls.check_runs(st, repo, sha, name)
    return run


def app_comments(pr: pulls.PullRequest) -> list[Comment]:
    return [c for c in pr.issue.comments if COMMENT_MARKER in c.body]


def requests_since(st: FakeState, mark: int) -> list[RequestRecord]:
    return st.log[mark:]


async def pull_row(stack: Stack, number: int, repo_id: int) -> PullCheck:
    async with stack.db() as db:
        row = await db.scalar(select(PullCheck).where(PullCheck.number == number,
                                                      PullCheck.repository_id == repo_id))
        assert row is not None
        return row


# ----------------------------------------------------------------------------- the head
async def test_the_head_is_judged_not_the_default_branch(stack: Stack,
                                                         fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, fake_github)

    # svc-a lacks AGENTS.md on main; a pull request adding it goes green.
    adds = await open_pr(stack, fake_github, "acme/svc-a", {"AGENTS.md": "# Agents\n"})
    green = run_on(st, "acme/svc-a", adds.head_sha, "policy-enforcer")
    assert (green.status, green.conclusion, green.title) == ("completed", "success",
                                                             "All policies pass")
    assert green.details_url == f"{PUBLIC_URL}/orgs/acme/repos/svc-a"
    assert "Require AGENTS.md" in (green.summary or "")
    # Nothing fails: no comment (only a comment that existed would turn "all clear").
    assert app_comments(adds) == []

    # svc-b has AGENTS.md on main; a pull request deleting it goes red all the same.
    deletes = await open_pr(stack, fake_github, "acme/svc-b", {"AGENTS.md": None})
    assert "AGENTS.md" in st.repo("acme/svc-b").files
    red = run_on(st, "acme/svc-b", deletes.head_sha, "policy-enforcer")
    assert (red.conclusion, red.title) == ("failure", "1 policy fails")
    assert "**Require AGENTS.md**" in (red.summary or "")
    assert "this pull request's head" in (red.summary or "")
    assert "default branch" not in (red.summary or "")
    # status_check_name: the workflow policy reports in a check run of its own, judged on
    # the repository's settings (read-only here).
    workflow = run_on(st, "acme/svc-b", deletes.head_sha, WORKFLOW_CHECK)
    assert workflow.conclusion == "success"
    assert "Read-only workflow token" in (workflow.summary or "")
    assert "Require AGENTS.md" not in (workflow.summary or "")
    assert "Read-only workflow token" not in (red.summary or "")
    assert len(pulls.check_runs(st, "acme/svc-b")) == 2

    # The sticky comment: created once, headed by pr_comment_details.message.
    (comment,) = app_comments(deletes)
    assert comment.user is st.bot
    assert comment.body.index(AGENTS_MESSAGE) < comment.body.index("Require AGENTS.md")

    # A push that restores the file: a new check run on the new head, the same comment
    # edited in place to "all clear".
    fixed = await push(stack, fake_github, deletes, {"AGENTS.md": "# Agents, again\n"})
    assert run_on(st, "acme/svc-b", fixed, "policy-enforcer").conclusion == "success"
    assert red.conclusion == "failure"  # the old commit keeps its own result
    assert app_comments(deletes) == [comment]
    assert "all clear" in comment.body and AGENTS_MESSAGE not in comment.body
    edited_at = comment.updated_at

    # A push that changes nothing the policies see: the check goes on the new head, the
    # comment is not touched.
    mark = len(st.log)
    again = await push(stack, fake_github, deletes, {"README.md": "b, reworded\n"})
    assert run_on(st, "acme/svc-b", again, "policy-enforcer").conclusion == "success"
    assert not [r for r in requests_since(st, mark) if "/comments" in r.path]
    assert comment.updated_at == edited_at and app_comments(deletes) == [comment]

    # The same event delivered again, and a re-run of the unchanged commit: no request.
    mark = len(st.log)
    await send(stack, fake_github, "pull_request",
               events.pull_request(st, deletes, "synchronize"))
    await send(stack, fake_github, "check_suite",
               events.check_suite(st, "acme/svc-b", again, "rerequested"))
    assert requests_since(st, mark) == []
    # Ready for review judges the draft's head again: unchanged, so nothing either.
    await send(stack, fake_github, "pull_request",
               events.pull_request(st, deletes, "ready_for_review"))
    assert requests_since(st, mark) == []
    log = [a for a in await stack.action_log() if a.action in ("block-prs", "comment-on-prs")]
    assert {a.status for a in log} == {"success"}
    assert any(a.action == "comment-on-prs" and "created" in a.detail for a in log)


async def test_a_fork_is_judged_from_the_base_repository(stack: Stack,
                                                         fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, fake_github)
    pulls.fork(st, "acme/svc-b", "mallory")
    mark = len(st.log)
    pr = await open_pr(stack, fake_github, "acme/svc-b", {"AGENTS.md": None},
                       head_repo="mallory/svc-b", branch="remove-agents")
    assert pr.from_fork
    red = run_on(st, "acme/svc-b", pr.head_sha, "policy-enforcer")
    assert red.conclusion == "failure"
    assert len(app_comments(pr)) == 1
    # Nothing was asked of the fork: the head commit is read in the base repository.
    assert not [r for r in requests_since(st, mark) if r.path.startswith("/repos/mallory/")]

    # The fork fixes it: judged again on its new head.
    fixed = await push(stack, fake_github, pr, {"AGENTS.md": "# fine\n"})
    assert run_on(st, "acme/svc-b", fixed, "policy-enforcer").conclusion == "success"
    assert "all clear" in app_comments(pr)[0].body


# ----------------------------------------------------------------------------- re-runs
async def test_rerequested_checks_judge_the_settings_again(stack: Stack,
                                                           fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, fake_github)
    pr = await open_pr(stack, fake_github, "acme/svc-b", {"README.md": "new\n"})
    workflow = run_on(st, "acme/svc-b", pr.head_sha, WORKFLOW_CHECK)
    assert workflow.conclusion == "success"

    # A re-run of an unchanged commit costs nothing.
    mark = len(st.log)
    await send(stack, fake_github, "check_run", events.check_run(st, workflow))
    assert requests_since(st, mark) == []

    # The repository's workflow token turns writable (a setting: no webhook says so); the
    # next scan reads it, and a re-run of the check reports it on the same check run.
    st.set_workflow_permissions("acme/svc-b", "write")
    st.set_org_workflow_permissions("acme", "write")
    await send(stack, fake_github, "push",
               hooks.commit_and_push(st, "acme/svc-b", {"docs.md": "x"}))
    await send(stack, fake_github, "check_run", events.check_run(st, workflow))
    assert run_on(st, "acme/svc-b", pr.head_sha, WORKFLOW_CHECK) is workflow
    assert (workflow.conclusion, workflow.updates) == ("failure", 1)
    assert run_on(st, "acme/svc-b", pr.head_sha, "policy-enforcer").conclusion == "success"

    # Another App's check run being re-run is not ours to answer.
    other = pulls.add_check_run(st, "acme/svc-b", pr.head_sha, "ci", app_id=999)
    mark = len(st.log)
    await send(stack, fake_github, "check_run", events.check_run(st, other))
    assert requests_since(st, mark) == []
    assert other.updates == 0


async def test_merge_group_is_judged_on_its_own_head(stack: Stack,
                                                     fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, fake_github)
    good = await open_pr(stack, fake_github, "acme/svc-a", {"AGENTS.md": "# Agents\n"},
                         branch="good")
    bad = await open_pr(stack, fake_github, "acme/svc-b", {"AGENTS.md": None}, branch="bad")

    queued = pulls.create_merge_group(st, good)
    await send(stack, fake_github, "merge_group", events.merge_group(st, queued))
    assert run_on(st, "acme/svc-a", queued.head_sha, "policy-enforcer").conclusion == "success"
    # svc-a's default branch still lacks the file: the merge group's commit is what counts.
    assert "AGENTS.md" not in st.repo("acme/svc-a").files

    blocked = pulls.create_merge_group(st, bad)
    await send(stack, fake_github, "merge_group", events.merge_group(st, blocked))
    run = run_on(st, "acme/svc-b", blocked.head_sha, "policy-enforcer")
    assert run.conclusion == "failure"
    assert app_comments(bad) and len(app_comments(bad)) == 1  # no comment for the group

    # The same request again (a new delivery), and a re-run of its check: nothing more.
    mark = len(st.log)
    await send(stack, fake_github, "merge_group", events.merge_group(st, blocked))
    await send(stack, fake_github, "check_run", events.check_run(st, run))
    assert requests_since(st, mark) == []
    assert len(pulls.check_runs(st, "acme/svc-b", blocked.head_sha)) == 2


# ----------------------------------------------------------------------------- never twice
async def test_sticky_comment_and_check_runs_are_never_duplicated(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, fake_github)

    # A retry after GitHub created the comment and the check run but the answers were lost
    # (a gateway timeout after the work was done).
    st.fail_next(1, 502, method="POST", path_prefix="/repos/acme/svc-b/check-runs",
                 after=True)
    st.fail_next(1, 502, method="POST", path_prefix="/repos/acme/svc-b/issues/", after=True)
    pr = await open_pr(stack, fake_github, "acme/svc-b", {"AGENTS.md": None})
    assert st.injected_failures == 2
    assert len(pulls.check_runs(st, "acme/svc-b", pr.head_sha, "policy-enforcer")) == 1
    assert len(pulls.check_runs(st, "acme/svc-b", pr.head_sha, WORKFLOW_CHECK)) == 1
    assert len(app_comments(pr)) == 1

    # Two jobs for a new pull request at once (its first check): one check run, one comment.
    pulls.create_branch(st, "acme/svc-a", "twice")
    pulls.commit(st, "acme/svc-a", "twice", {"README.md": "still no AGENTS.md\n"})
    other = pulls.open_pull(st, "acme/svc-a", "twice")
    inst_id, repo_id = st.installation("acme").id, st.repo("acme/svc-a").id
    async with stack.db() as db, db.begin():
        db.add(PullCheck(installation_id=inst_id, repository_id=repo_id, number=other.number,
                         head_sha=other.head_sha, state="open", results={}, check_runs={}))
    for job_id in ("concurrent-a", "concurrent-b"):
        await stack.redis.enqueue_job("check_pull", inst_id, repo_id, other.number,
                                      _job_id=job_id)
    st.latency = 0.05  # so the two overlap
    await stack.drain(max_jobs=10)
    st.latency = 0.0
    assert len(app_comments(other)) == 1
    assert len(pulls.check_runs(st, "acme/svc-a", other.head_sha, "policy-enforcer")) == 1
    assert run_on(st, "acme/svc-a", other.head_sha, "policy-enforcer").conclusion == "failure"
    row = await pull_row(stack, other.number, repo_id)
    assert row.comment_id == app_comments(other)[0].id

    # The database forgets the comment: it is found again by its marker, not posted again.
    async with stack.db() as db, db.begin():
        await db.execute(update(PullCheck).values(comment_id=None, comment_digest=None,
                                                  evaluated_key=None))
    fixed = await push(stack, fake_github, pr, {"AGENTS.md": "# back\n"})
    assert run_on(st, "acme/svc-b", fixed, "policy-enforcer").conclusion == "success"
    assert len(app_comments(pr)) == 1 and "all clear" in app_comments(pr)[0].body


# ----------------------------------------------------------------------------- config
async def test_a_config_change_checks_open_pull_requests_again(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, fake_github)
    pr = await open_pr(stack, fake_github, "acme/svc-b", {"AGENTS.md": None})
    closed = await open_pr(stack, fake_github, "acme/svc-a", {"x.md": "x"}, branch="other")
    pulls.close_pull(st, closed)
    await send(stack, fake_github, "pull_request", events.pull_request(st, closed, "closed"))
    red = run_on(st, "acme/svc-b", pr.head_sha, "policy-enforcer")
    assert red.conclusion == "failure"

    # A change that leaves the pull-request policies alone: no request about any pull
    # request (the full scan it starts reads the org as usual, and the pushed commit of
    # .github gets the config's own check run).
    mark = len(st.log)
    push = hooks.commit_and_push(st, "acme/.github", {
        "config.yaml": CONFIG.replace("action: log-only", "action: [log-only]")})
    await send(stack, fake_github, "push", push)
    about_pulls = [r for r in requests_since(st, mark)
                   if ("/pulls" in r.path or "check-runs" in r.path or "/issues/" in r.path)
                   and not r.path.startswith("/repos/acme/.github/")]
    assert about_pulls == []
    assert [r.conclusion for r in pulls.check_runs(st, "acme/.github", push["after"])] == \
        ["success"]

    # block-prs leaves the AGENTS.md policy: its check run stops blocking the open pull
    # request at once; the closed one is left alone.
    mark = len(st.log)
    await send(stack, fake_github, "push", hooks.commit_and_push(
        st, "acme/.github", {"config.yaml": CONFIG.replace("action: [block-prs, comment-on-prs]",
                                                           "action: comment-on-prs")}))
    assert run_on(st, "acme/svc-b", pr.head_sha, "policy-enforcer") is red
    assert (red.conclusion, red.title) == ("neutral", "No longer enforced")
    assert not [r for r in requests_since(st, mark) if r.path.startswith("/repos/acme/svc-a/")
                and ("/pulls" in r.path or "check-runs" in r.path)]
    # (svc-a lacks AGENTS.md: its check failed, and a closed pull request is not re-judged.)
    assert pulls.check_runs(st, "acme/svc-a", closed.head_sha, "policy-enforcer")[0] \
        .conclusion == "failure"
    assert len(app_comments(pr)) == 1  # comment-on-prs stays: the comment is as it was


# ----------------------------------------------------------------------------- dry run
@pytest.mark.parametrize("how", ["enforcement", "policy"])
async def test_dry_run_posts_nothing(stack: Stack, fake_github: FakeGitHub, how: str) -> None:
    st = fake_github.state
    config = (f"enforcement: dry-run\n{CONFIG}" if how == "enforcement" else
              CONFIG.replace("action: [block-prs, comment-on-prs]\n",
                             "action: [block-prs, comment-on-prs]\n    dry_run: true\n"))
    await installed(stack, fake_github, config)
    pr = await open_pr(stack, fake_github, "acme/svc-b", {"AGENTS.md": None})
    assert pulls.check_runs(st, "acme/svc-b", pr.head_sha, "policy-enforcer") == []
    assert app_comments(pr) == []
    async with stack.db() as db:
        dry = list(await db.scalars(select(ActionLog).where(ActionLog.status == "dry-run")))
    lines = {(a.policy, a.action) for a in dry if "would have reported" in a.detail}
    assert ("Require AGENTS.md", "block-prs") in lines
    assert ("Require AGENTS.md", "comment-on-prs") in lines
    failing = [a for a in dry if a.policy == "Require AGENTS.md"]
    assert all("fails" in a.detail and f"#{pr.number}" in a.detail for a in failing)
    workflow = pulls.check_runs(st, "acme/svc-b", pr.head_sha, WORKFLOW_CHECK)
    if how == "enforcement":
        assert workflow == []
    else:  # only that policy is in dry run; the other one still reports
        assert [r.conclusion for r in workflow] == ["success"]
