"""The config's check run on the `.github` repository, end to end: a push of an invalid
config fails its commit with one annotation per error (the last valid config stays in
force), a valid one passes with a summary, and a pull request that changes config.yaml gets
a preview of what it would change, computed from stored snapshots without acting."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from app.services.config_checks import CONFIG_CHECK
from tests.fakegithub import pull_webhooks as events
from tests.fakegithub import pulls
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import Installation
from tests.stack import MANIFEST, Stack, hooked_stack, send

CONFIG = """\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
"""


@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str,
                any_database_url: str) -> AsyncIterator[Stack]:
    async with hooked_stack(fake_github, redis_url, any_database_url) as s:
        yield s



async def installed(stack: Stack, fake: FakeGitHub) -> Installation:
    inst = fake.state.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": CONFIG, "AGENTS.md": "x"}},
        {"name": "svc-a", "files": {"README.md": "a\n"}},
        {"name": "svc-b", "files": {"AGENTS.md": "# Agents\n"}},
        {"name": "svc-c", "files": {}},
    ], events=MANIFEST["default_events"], permissions=MANIFEST["default_permissions"])
    await send(stack, fake, "installation", hooks.installation(fake.state, inst))
    return inst


async def test_a_pushed_config_is_checked_on_its_commit(stack: Stack,
                                                        fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = await installed(stack, fake_github)
    assert {v.state for v in await stack.violations()} == {"open"}  # svc-a, svc-c

    broken = CONFIG + "    params: {pathz: [x]}\n  - name: Second\n    type: nope\n" \
                      "    action: log-only\n"
    push = hooks.commit_and_push(st, "acme/.github", {"config.yaml": broken})
    await send(stack, fake_github, "push", push)
    (run,) = pulls.check_runs(st, "acme/.github", push["after"], CONFIG_CHECK)
    assert run.conclusion == "failure"
    assert run.title == "config.yaml is invalid: 2 errors"
    assert "The last valid config stays in force" in (run.summary or "")
    assert [(a["start_line"], a["annotation_level"]) for a in run.annotations] == \
        [(5, "failure"), (7, "failure")]
    assert "unknown key 'pathz'" in run.annotations[0]["message"]
    assert "unknown policy type 'nope'" in run.annotations[1]["message"]
    row = await stack.installation(inst.id)
    assert row is not None and row.config_status == "invalid" and row.config_text == CONFIG
    # The config in force still acts: nothing was resolved.
    assert {v.state for v in await stack.violations()} == {"open"}

    good = CONFIG + "  - name: License\n    type: file_exists\n    action: log-only\n" \
                    "    params: {any_of: [LICENSE, LICENSE.md]}\n    exclude: [svc-c]\n"
    push = hooks.commit_and_push(st, "acme/.github", {"config.yaml": good})
    await send(stack, fake_github, "push", push)
    (run,) = pulls.check_runs(st, "acme/.github", push["after"], CONFIG_CHECK)
    assert (run.conclusion, run.title) == ("success", "config.yaml is valid: 2 policies")
    assert "| License | `file_exists` | log-only | except svc-c |" in (run.summary or "")
    assert run.annotations == []

    # The same delivery again writes nothing more (the run is found by name).
    await send(stack, fake_github, "push", push)
    (again,) = pulls.check_runs(st, "acme/.github", push["after"], CONFIG_CHECK)
    assert again.id == run.id and again.updates == 0


async def test_a_config_pull_request_gets_a_preview(stack: Stack,
                                                    fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, fake_github)
    issues_before = sum(len(st.issues(f"acme/{n}")) for n in ("svc-a", "svc-b", "svc-c"))
    soon = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=7)).isoformat()
    proposed = f"""\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
    exclude: [svc-a]
  - name: Agents file
    type: file_exists
    action: create-issue
    params: {{paths: [AGENTS.md]}}
  - name: License
    type: file_exists
    action: create-issue
    params: {{paths: [LICENSE]}}
exemptions:
  - repos: [svc-c]
    policies: [Agents file]
    reason: being archived
    expires: {soon}
"""
    pulls.create_branch(st, "acme/.github", "tighten")
    pulls.commit(st, "acme/.github", "tighten", {"config.yaml": proposed})
    pr = pulls.open_pull(st, "acme/.github", "tighten")
    await send(stack, fake_github, "pull_request", events.pull_request(st, pr, "opened"))

    (run,) = pulls.check_runs(st, "acme/.github", pr.head_sha, CONFIG_CHECK)
    assert run.conclusion == "success"
    assert run.title == "Preview: 1 would newly violate, 1 would newly comply"
    summary = run.summary or ""
    # svc-a leaves the AGENTS.md policy (excluded), and svc-c is exempt from the new one.
    assert "| Require AGENTS.md | 0 | 1 | 0 |" in summary
    assert "**Require AGENTS.md** would newly comply in: `acme/svc-a`" in summary
    assert "| Agents file | 1 | 0 | 0 |" in summary
    assert "**Agents file** would newly violate in: `acme/svc-a`" in summary
    # LICENSE was never read: not previewed, rather than guessed.
    assert "| License | 0 | 0 | 4 |" in summary
    assert f"- `svc-c` from Agents file: expires {soon}" in summary
    # svc-c newly complies with Require AGENTS.md? No: it is still failing, still open.
    assert "`acme/svc-c`" not in summary.split("Exemptions expiring")[0]
    # A preview acts on nothing.
    assert sum(len(st.issues(f"acme/{n}")) for n in ("svc-a", "svc-b", "svc-c")) == \
        issues_before

    # A pull request that leaves config.yaml alone gets no config check.
    pulls.create_branch(st, "acme/.github", "docs")
    pulls.commit(st, "acme/.github", "docs", {"README.md": "docs\n"})
    other = pulls.open_pull(st, "acme/.github", "docs")
    await send(stack, fake_github, "pull_request", events.pull_request(st, other, "opened"))
    assert pulls.check_runs(st, "acme/.github", other.head_sha, CONFIG_CHECK) == []


async def test_a_pull_request_from_outside_gets_no_preview(stack: Stack,
                                                          fake_github: FakeGitHub) -> None:
    """A preview names repositories (private ones too) and runs the proposed rules over
    stored data: a fork's pull request by someone outside the organization gets only the
    config's validity."""
    st = fake_github.state
    await installed(stack, fake_github)
    pulls.fork(st, "acme/.github", "mallory")
    pulls.create_branch(st, "mallory/.github", "probe")
    pulls.commit(st, "mallory/.github", "probe", {"config.yaml": CONFIG.replace(
        "create-issue", "log-only")})
    pr = pulls.open_pull(st, "acme/.github", "probe", head_repo="mallory/.github",
                         user="mallory")
    await send(stack, fake_github, "pull_request", events.pull_request(st, pr, "opened"))
    (run,) = pulls.check_runs(st, "acme/.github", pr.head_sha, CONFIG_CHECK)
    assert (run.conclusion, run.title) == ("success", "config.yaml is valid: 1 policy")
    assert (run.summary or "").startswith("No preview:")
    assert "acme/svc-" not in (run.summary or "")
