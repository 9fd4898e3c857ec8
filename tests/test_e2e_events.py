"""End to end: slash commands, config changes, installation and repository events."""

from __future__ import annotations

from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation
from tests.stack import Stack
from tests.test_e2e import CONFIG, install, open_issues


def small_org(st: FakeState, config: str = CONFIG) -> Installation:
    return st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": config, "AGENTS.md": "x",
                                      "catalog-info.yaml": "spec:\n  owner: a\n"}},
        {"name": "api", "files": {}, "workflow_permissions": "write"},
        {"name": "web", "files": {"AGENTS.md": "ok", "catalog-info.yaml": "spec:\n  owner: b\n"}},
    ])


async def comment(stack: Stack, st: FakeState, user: str, body: str,
                  user_type: str = "User") -> int:
    issue = st.add_issue("acme/api", "Question", user_login="someone")
    made = st.add_issue_comment("acme/api", issue.number, user, body, user_type=user_type)
    status, _ = await stack.deliver("issue_comment", hooks.issue_comment(st, made))
    assert status == 202
    await stack.drain()
    return int(made["id"])


async def test_rescan_command_from_a_writer(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = small_org(st)
    await install(stack, st, inst)
    st.set_file("acme/api", "AGENTS.md", "# now present\n")  # no push webhook
    st.set_permission("acme/api", "alice", "write")
    scans_before = len(await stack.scans())

    comment_id = await comment(stack, st, "alice", "Please check again:\n/policy rescan\n")

    assert [r.content for r in st.reactions(comment_id)] == ["eyes"]
    reply = st.comments("acme/api", st.comment(comment_id).issue_number)[-1]
    assert reply.user.login == fake_github.bot_login
    assert "| Require AGENTS.md | ✅ pass |" in (reply.body or "")
    assert "| Read-only workflow token | ❌ fail |" in (reply.body or "")
    assert "Require AGENTS.md" not in open_issues(st, "acme/api")  # the rescan closed it
    scans = await stack.scans()
    assert len(scans) == scans_before + 1
    assert (scans[-1].kind, scans[-1].trigger, scans[-1].status) == ("repo", "command:alice", "ok")
    assert scans[-1].violations_resolved == 1


async def test_rescan_command_refused_for_a_reader(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = small_org(st)
    await install(stack, st, inst)
    st.set_permission("acme/api", "bob", "read")
    st.clear_log()

    comment_id = await comment(stack, st, "bob", "/policy rescan")

    assert [r.content for r in st.reactions(comment_id)] == ["confused"]
    reply = st.comments("acme/api", st.comment(comment_id).issue_number)[-1]
    assert "needs write permission" in (reply.body or "") and "`read`" in (reply.body or "")
    assert st.count_requests("POST", "/graphql") == 0  # nothing was scanned
    assert st.count_requests("GET", "/repos/acme/api/actions") == 0


async def test_bot_and_edited_comments_are_ignored(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = small_org(st)
    await install(stack, st, inst)
    st.clear_log()
    bot_comment = await comment(stack, st, "ci[bot]", "/policy rescan", user_type="Bot")
    issue = st.add_issue("acme/api", "Edited", user_login="someone")
    made = st.add_issue_comment("acme/api", issue.number, "alice", "/policy rescan")
    await stack.deliver("issue_comment", hooks.issue_comment(st, made, "edited",
                                                             previous_body="hi"))
    await stack.drain()
    assert st.reactions(bot_comment) == [] and st.reactions(int(made["id"])) == []
    assert st.count_requests("POST") == 0


async def test_broken_config_keeps_the_last_valid_one(stack: Stack,
                                                      fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = small_org(st)
    await install(stack, st, inst)
    assert set(open_issues(st, "acme/api")) == {"Require AGENTS.md", "Require catalog-info.yaml",
                                                "Read-only workflow token"}
    broken = CONFIG.replace("action: create_issue", "action: create-isue")
    push = hooks.commit_and_push(st, "acme/.github", {"config.yaml": broken})
    assert (await stack.deliver("push", push))[0] == 202
    await stack.drain()
    row = await stack.installation(inst.id)
    assert row is not None and row.config_status == "invalid"
    assert row.config_error is not None
    assert "config.yaml:12: policies[1].action" in row.config_error
    assert "last valid config stays in force" in row.config_error
    # Still enforced with the previous config: fixing a repository still closes its issue.
    push = hooks.commit_and_push(st, "acme/api", {"AGENTS.md": "# hi\n"})
    await stack.deliver("push", push)
    await stack.drain()
    assert "Require AGENTS.md" not in open_issues(st, "acme/api")

    # A valid config that drops policies resolves their violations and closes the issues.
    slim = CONFIG.split("  - name: Require catalog-info.yaml")[0]
    push = hooks.commit_and_push(st, "acme/.github", {"config.yaml": slim})
    await stack.deliver("push", push)
    await stack.drain()
    row = await stack.installation(inst.id)
    assert row is not None and (row.config_status, row.config_error) == ("valid", None)
    assert open_issues(st, "acme/api") == {}


async def test_missing_config_enforces_nothing(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [{"name": "api", "files": {}}])
    await install(stack, st, inst)
    row = await stack.installation(inst.id)
    assert row is not None and row.config_status == "missing"
    assert st.issues("acme/api") == []


async def test_installation_lifecycle(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = small_org(st)
    await install(stack, st, inst)

    # Repositories added to the installation are scanned; removed ones are marked removed.
    extra = st.add_repo("acme", "new-svc", files={}, installed=False)
    st.add_repo_to_installation("acme/new-svc", inst.id)
    await stack.deliver("installation_repositories",
                        hooks.installation_repositories(st, inst, "added", [extra]))
    await stack.drain()
    assert "Require AGENTS.md" in open_issues(st, "acme/new-svc")
    st.remove_repo_from_installation("acme/web")
    await stack.deliver("installation_repositories",
                        hooks.installation_repositories(st, inst, "removed",
                                                        [st.repo("acme/web")]))
    await stack.drain()
    present = {r.full_name: r.present for r in await stack.repositories()}
    assert present["acme/web"] is False and present["acme/new-svc"] is True

    # Renames are followed; archiving stops scanning.
    st.rename_repo("acme/api", "api-v2")
    await stack.deliver("repository", hooks.repository(st, st.repo("acme/api-v2"), "renamed",
                                                       old_name="api"))
    await stack.drain()
    names = {r.full_name for r in await stack.repositories()}
    assert "acme/api-v2" in names and "acme/api" not in names

    # Suspended: deliveries are recorded but nothing is scanned.
    st.suspend_installation(inst.id)
    await stack.deliver("installation", hooks.installation(st, inst, "suspend"))
    await stack.drain()
    row = await stack.installation(inst.id)
    assert row is not None and (row.active, row.suspended) == (False, True)
    scans = len(await stack.scans())
    st.unsuspend_installation(inst.id)
    push = hooks.commit_and_push(st, "acme/api-v2", {"README.md": "x"})
    await stack.deliver("push", push)
    await stack.drain()
    assert len(await stack.scans()) == scans

    await stack.deliver("installation", hooks.installation(st, inst, "unsuspend"))
    await stack.drain()
    row = await stack.installation(inst.id)
    assert row is not None and row.active
    assert len(await stack.scans()) > scans

    await stack.deliver("installation", hooks.installation(st, inst, "deleted"))
    await stack.drain()
    row = await stack.installation(inst.id)
    assert row is not None and row.active is False


async def test_archive_repo_files_the_issue_first(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    config = """\
policies:
  - name: Must have AGENTS.md
    type: has_agents_md
    action: [archive-repo, create-issue]
    archive_after_days: 0  # no grace period (tests/test_archiving.py has those)
"""
    inst = small_org(st, config)
    await install(stack, st, inst)
    repo = st.repo("acme/api")
    assert repo.archived
    (issue,) = st.issues("acme/api")
    assert issue.state == "open" and "Must have AGENTS.md" in issue.title
    log = [(a.repository, a.action, a.status) for a in await stack.action_log()]
    assert log.index(("acme/api", "create-issue", "success")) < \
        log.index(("acme/api", "archive-repo", "success"))
    assert not st.repo("acme/web").archived
