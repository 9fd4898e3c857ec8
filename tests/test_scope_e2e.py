"""Targeting and exemptions end to end: config pushes through the real web app and workers
change which repositories a policy judges, exempt failures close their issues as "not
planned" with the reason, an expired exemption reopens them, and a repository's own
exemptions file counts only when the org allows it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from app.actions.base import marker
from app.services.judging import REPO_EXEMPTIONS_PATH
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Issue
from tests.stack import MANIFEST, Stack, hooked_stack, send

POLICY = "Require AGENTS.md"
BASE = f"""\
policies:
  - name: {POLICY}
    type: has_agents_md
    action: create-issue
"""


@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str,
                any_database_url: str) -> AsyncIterator[Stack]:
    async with hooked_stack(fake_github, redis_url, any_database_url) as s:
        yield s



async def push_config(stack: Stack, fake: FakeGitHub, text: str) -> None:
    await send(stack, fake, "push",
               hooks.commit_and_push(fake.state, "acme/.github", {"config.yaml": text}))


def issue_of(st: FakeState, repo: str) -> Issue:
    (issue,) = [i for i in st.issues(f"acme/{repo}") if marker(POLICY) in (i.body or "")]
    return issue


async def states(stack: Stack, st: FakeState) -> dict[str, str]:
    names = {st.repo(f"acme/{n}").id: n for n in ("svc-a", "svc-b", "legacy-x")}
    return {names[v.repository_id]: v.state for v in await stack.violations()
            if v.repository_id in names}


async def test_targeting_and_exemptions_follow_the_config(stack: Stack,
                                                         fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": BASE, "AGENTS.md": "x"}},
        {"name": "svc-a", "files": {"README.md": "a\n"}},
        {"name": "svc-b", "files": {"README.md": "b\n"}},
        {"name": "legacy-x", "files": {"README.md": "x\n"}},
    ], events=MANIFEST["default_events"], permissions=MANIFEST["default_permissions"])
    await send(stack, fake_github, "installation", hooks.installation(st, inst))
    assert await states(stack, st) == {"svc-a": "open", "svc-b": "open", "legacy-x": "open"}

    today = dt.datetime.now(dt.UTC).date()
    until = (today + dt.timedelta(days=30)).isoformat()
    scoped = BASE + f"""\
    exclude: [svc-b]
exemptions:
  - repos: [legacy-*]
    policies: [{POLICY}]
    reason: retired at the end of the quarter
    expires: {until}
    approved_by: alice
"""
    await push_config(stack, fake_github, scoped)
    assert await states(stack, st) == {"svc-a": "open", "svc-b": "resolved",
                                       "legacy-x": "exempt"}
    exempt = issue_of(st, "legacy-x")
    assert (exempt.state, exempt.state_reason) == ("closed", "not_planned")
    assert (f"**{POLICY}** is exempt for this repository until {until}, approved by "
            "`alice`: `retired at the end of the quarter`.") in exempt.comments[-1].body
    left = issue_of(st, "svc-b")
    assert left.state == "closed"
    assert "no longer applies to this repository: ``matched by `exclude` (svc-b)``" in \
        left.comments[-1].body
    (v,) = [v for v in await stack.violations() if v.state == "exempt"]
    assert v.details["exemption"]["expires"] == until
    assert v.details["exemption"]["approved_by"] == "alice"

    # The same exemption, expired yesterday: it stops applying by itself.
    expired = scoped.replace(until, (today - dt.timedelta(days=1)).isoformat())
    await push_config(stack, fake_github, expired)
    assert (await states(stack, st))["legacy-x"] == "open"
    reopened = issue_of(st, "legacy-x")
    assert reopened.number == exempt.number and reopened.state == "open"


async def test_a_repository_exempts_itself_only_when_allowed(stack: Stack,
                                                             fake_github: FakeGitHub) -> None:
    st = fake_github.state
    until = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=10)).isoformat()
    own = (f"exemptions:\n  - policies: [{POLICY}]\n    reason: \"new repo @acme/everyone\"\n"
           f"    expires: {until}\n")
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": BASE, "AGENTS.md": "x"}},
        {"name": "svc-a", "files": {REPO_EXEMPTIONS_PATH: own}},
        {"name": "svc-b", "files": {}},
        {"name": "legacy-x", "files": {"AGENTS.md": "x"}},
    ], events=MANIFEST["default_events"], permissions=MANIFEST["default_permissions"])
    await send(stack, fake_github, "installation", hooks.installation(st, inst))
    # Not allowed: the file is not even read, and svc-a gets its issue.
    assert await states(stack, st) == {"svc-a": "open", "svc-b": "open"}
    assert issue_of(st, "svc-a").state == "open"

    await push_config(stack, fake_github, BASE + "allow_repo_exemptions: true\n")
    assert await states(stack, st) == {"svc-a": "exempt", "svc-b": "open"}
    closed = issue_of(st, "svc-a")
    assert closed.state_reason == "not_planned"
    # The repository's own words go into the issue as code: nobody is mentioned.
    assert "exempt for this repository until" in closed.comments[-1].body
    assert ": `new repo @acme/everyone`." in closed.comments[-1].body
    (v,) = [v for v in await stack.violations() if v.state == "exempt"]
    assert v.details["exemption"] == {
        "reason": "new repo @acme/everyone", "expires": until, "approved_by": None,
        "source": REPO_EXEMPTIONS_PATH,
        "text": f"exempt (new repo @acme/everyone, until {until})"}

    # A self-exemption beyond a year is ignored, with a note on the repository's page.
    far = own.replace(until, "2099-01-01")
    await send(stack, fake_github, "push",
               hooks.commit_and_push(st, "acme/svc-a", {REPO_EXEMPTIONS_PATH: far}))
    assert (await states(stack, st))["svc-a"] == "open"
    (repo,) = [r for r in await stack.repositories() if r.full_name == "acme/svc-a"]
    assert repo.overrides is not None
    assert any("more than 366 days ahead" in n for n in repo.overrides["notes"])


async def test_forks_are_judged_only_when_a_policy_opts_them_in(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": BASE + "    fork: true\n",
                                      "AGENTS.md": "x"}},
        {"name": "svc-a", "files": {"AGENTS.md": "x"}},
        {"name": "copy", "fork": True, "files": {}},
    ], events=MANIFEST["default_events"], permissions=MANIFEST["default_permissions"])
    await send(stack, fake_github, "installation", hooks.installation(st, inst))
    fork = st.repo("acme/copy")
    (v,) = [v for v in await stack.violations("open") if v.repository_id == fork.id]
    assert issue_of(st, "copy").state == "open"

    # A push to the fork rescans it (it is in scope).
    await send(stack, fake_github, "push",
               hooks.commit_and_push(st, "acme/copy", {"AGENTS.md": "x"}))
    assert [x.state for x in await stack.violations() if x.id == v.id] == ["resolved"]
    await send(stack, fake_github, "push",
               hooks.commit_and_push(st, "acme/copy", {"AGENTS.md": None}))
    assert [x.state for x in await stack.violations() if x.id == v.id] == ["open"]

    # No policy takes in forks any more: what the fork held ends, with the reason.
    await push_config(stack, fake_github, BASE)
    (after,) = [x for x in await stack.violations() if x.id == v.id]
    assert after.state == "resolved" and "takes in forks" in (after.closed_reason or "")
    assert issue_of(st, "copy").state == "closed"
