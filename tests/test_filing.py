"""A first scan that finds far more violations than GitHub lets an App file in an hour
files them all, paced by the content limits: exactly one issue each, not one
secondary-limit answer, progress on the scan record, and interactive work (a slash
command) served ahead of the filing.

The fake GitHub enforces the content limits with its windows shrunk and the hourly limit
lowered (20 an "hour" of 2 s, so 300 violations take 15 "hours", as 2,000 take 4 real
hours at GitHub's 500), and the App's governor is told the same. The repositories have
the App's label already, so each violation is one content request. bench/filing.py runs
the same with 2,000 violations and GitHub's own numbers scaled in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.actions.base import marker
from app.db.models import Scan
from app.web.scan_pages import filing_text
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation, Issue
from tests.stack import Stack, running_stack

REPOS = 300
CONFIG = """\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
"""
CONTENT_PER_HOUR, HOUR_SECONDS = 20, 2.0



def governor_limits(*, minute: float, hour: float, per_minute: int, per_hour: int,
                    bulk_wait: float) -> str:
    """GITHUB_RATE_LIMITS for the App: the fake's content limits, other budgets open."""
    return ("points_per_minute=1000000,graphql_points_per_minute=1000000,"
            f"content_per_minute={per_minute},content_per_hour={per_hour},"
            f"minute_seconds={minute},hour_seconds={hour},bulk_max_inline_wait={bulk_wait}")


def filing_org(st: FakeState, repos: int, *, minute: float, hour: float, per_minute: int,
               per_hour: int) -> tuple[Installation, Issue]:
    """`repos` repositories without AGENTS.md (labelled already), the fake's content limits
    on, and `acme/talk` (compliant) with an issue where alice may run commands."""
    st.secondary.enabled = True
    st.secondary.retry_after = max(1, round(minute))
    st.secondary.points_per_minute = 1_000_000
    st.secondary.minute_seconds, st.secondary.hour_seconds = minute, hour
    st.secondary.content_per_minute, st.secondary.content_per_hour = per_minute, per_hour
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": CONFIG, "AGENTS.md": "x"}},
        {"name": "talk", "files": {"AGENTS.md": "x"}},
        *(f"svc-{i:04d}" for i in range(repos))])
    # GitHub's primary budget for an installation on many repositories: 5,000 an hour plus
    # 50 per repository over 20, capped at 12,500.
    st.rate_limit.installation_limits[inst.id] = min(12_500, 5000 + 50 * max(0, repos - 20))
    st.rate_limit.reset_after_seconds = hour
    for i in range(repos):
        st.add_label(f"acme/svc-{i:04d}", "policy-enforcer")
    st.set_permission("acme/talk", "alice", "write")
    return inst, st.add_issue("acme/talk", "Question", user_login="alice")


def issues_filed(st: FakeState, repos: int) -> tuple[int, int]:
    """(repositories with the policy's issue, extra issues beyond one each)."""
    filed = duplicates = 0
    for i in range(repos):
        ours = [x for x in st.issues(f"acme/svc-{i:04d}")
                if marker("Require AGENTS.md") in (x.body or "")]
        filed += bool(ours)
        duplicates += max(0, len(ours) - 1)
    return filed, duplicates


@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str,
                any_database_url: str) -> AsyncIterator[Stack]:
    async with running_stack(github_url=fake_github.url, app_id=fake_github.app_id,
                             private_key=fake_github.private_key_pem, redis_url=redis_url,
                             database_url=any_database_url,
                             GITHUB_RATE_LIMITS=governor_limits(
                                 minute=0.5, hour=HOUR_SECONDS, per_minute=80,
                                 per_hour=CONTENT_PER_HOUR, bulk_wait=0.05)) as s:
        yield s


async def full_scan(stack: Stack) -> Scan:
    (scan,) = [s for s in await stack.scans() if s.kind == "full"]
    return scan


async def test_a_large_first_scan_files_everything_within_the_content_limits(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, question = filing_org(st, REPOS, minute=0.5, hour=HOUR_SECONDS, per_minute=80,
                                per_hour=CONTENT_PER_HOUR)

    status, _ = await stack.deliver("installation", hooks.installation(st, inst))
    assert status == 202
    drain = asyncio.create_task(stack.drain())

    # Watch the scan record while the issues go out.
    seen_midway: list[str] = []
    command_answered_at: int | None = None
    comment_id: int | None = None
    while not drain.done():
        await asyncio.sleep(0.2)
        scans = [s for s in await stack.scans() if s.kind == "full"]
        if not scans:
            continue
        scan = scans[0]
        if 0 < scan.filing_done < scan.filing_total and scan.filing_next_at is not None:
            seen_midway.append(filing_text(scan))
        if comment_id is None and scan.filing_done >= REPOS // 5:
            # Mid filing, someone asks for a rescan: the command goes ahead of the queue.
            made = st.add_issue_comment("acme/talk", question.number, "alice", "/policy rescan")
            comment_id = int(made["id"])
            assert (await stack.deliver("issue_comment", hooks.issue_comment(st, made)))[0] \
                == 202
        if comment_id is not None and command_answered_at is None and st.reactions(comment_id):
            command_answered_at = scan.filing_done
    await drain

    # Exactly one issue per violation, and GitHub never had to say "slow down".
    assert st.secondary_limit_responses == 0
    assert issues_filed(st, REPOS) == (REPOS, 0)

    # Progress was visible while it ran, and the record ends complete.
    assert seen_midway, "the scan record never showed filing in progress"
    assert any("next batch at" in text for text in seen_midway), seen_midway
    scan = await full_scan(stack)
    assert (scan.filing_total, scan.filing_done) == (REPOS, REPOS)
    assert filing_text(scan) == f"filed {REPOS:,} of {REPOS:,}"
    assert scan.filing_next_at is None

    # The command was answered while most of the filing was still to come.
    assert comment_id is not None and command_answered_at is not None
    assert [r.content for r in st.reactions(comment_id)] == ["eyes"]
    assert command_answered_at < REPOS // 2, command_answered_at
