"""Reminders on issues without activity: after N days, never on quiet days, never twice for
one period, lengthened (never shortened or disabled) by the repository's own
`.github/policy-enforcer.yaml`. End to end through the hourly cron job and the worker; time
passes by moving the issue's `updated_at` in the fake GitHub (and the violation's first
sighting in the database) into the past.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from arq import cron
from sqlalchemy import update

from app.config import parse_config
from app.db.models import Repository, Violation, utcnow
from app.services.reminders import effective_days, parse_overrides
from app.settings import Settings
from tasks import jobs
from tasks.monitor import monitored
from tasks.worker import REMINDER_MINUTE, worker_settings
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation, Issue
from tests.stack import Stack, dashboard_stack
from tests.test_dashboard import OWNER, browser, sign_in, text
from tests.test_e2e import open_issues

DAY = 24 * 3600


def config(days: int = 3, quiet: str = "") -> str:
    return (f"defaults:\n  remind_after_days: {days}\n{quiet}"
            "policies:\n  - name: Require AGENTS.md\n    type: has_agents_md\n"
            "    action: create-issue\n")


@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str,
                any_database_url: str) -> AsyncIterator[Stack]:
    async with dashboard_stack(fake_github, redis_url, any_database_url) as s:
        yield s


async def installed(stack: Stack, st: FakeState, cfg: str,
                    extra: list[dict[str, object]] | None = None) -> Installation:
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": cfg, "AGENTS.md": "x"}},
        {"name": "api", "files": {}},
        *(extra or []),
    ])
    inst.permissions["members"] = "read"
    st.add_org_member("acme", OWNER, "admin")
    status, _ = await stack.deliver("installation", hooks.installation(st, inst))
    assert status == 202
    await stack.drain()
    return inst


async def age(stack: Stack, st: FakeState, full_name: str, days: float) -> Issue:
    """The repository's issue was filed, and last touched, `days` ago."""
    issue = open_issues(st, full_name)["Require AGENTS.md"]
    issue.updated_at = time.time() - days * DAY
    async with stack.db() as db, db.begin():
        repo_id = st.repo(full_name).id
        await db.execute(update(Violation).where(Violation.repository_id == repo_id)
                         .values(first_seen_at=utcnow() - timedelta(days=days)))
    return issue


async def run_cron(stack: Stack) -> None:
    """One run of the hourly cron job, and the jobs it queues."""
    await stack.drain(cron_jobs=[cron(monitored(jobs.queue_reminders), name="queue_reminders",
                                      run_at_startup=True)])


def reminders(issue: Issue) -> list[str]:
    return [c.body for c in issue.comments if "policy-enforcer:reminder:" in (c.body or "")]


def issue_reads(st: FakeState, full_name: str, issue: Issue) -> int:
    return st.count_requests("GET", f"/repos/{full_name}/issues/{issue.number}")


# ----------------------------------------------------------------------------- end to end
async def test_a_reminder_after_n_days_once_per_period(stack: Stack,
                                                      fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, st, config(days=3))
    issue = await age(stack, st, "acme/api", days=2)
    await run_cron(stack)
    assert reminders(issue) == []  # two days: not yet

    issue = await age(stack, st, "acme/api", days=4)
    stale = issue.updated_at
    await run_cron(stack)
    (text_,) = reminders(issue)
    assert "no activity for 3 days" in text_ and "**acme/api** still violates" in text_
    (v,) = await stack.violations("open")
    assert v.reminded_at is not None
    assert [a.action for a in await stack.action_log()][-1] == "reminder"

    # The next runs ask GitHub nothing: the database knows it was just reminded.
    reads = issue_reads(st, "acme/api", issue)
    await run_cron(stack)
    await run_cron(stack)
    assert len(reminders(issue)) == 1 and issue_reads(st, "acme/api", issue) == reads

    # A run that posted and died before recording it runs again, and GitHub still shows the
    # old updated_at: the hidden marker of that period stops a second reminder.
    issue.updated_at = stale
    async with stack.db() as db, db.begin():
        await db.execute(update(Violation).values(reminded_at=None))
    await stack.redis.enqueue_job("send_reminders", v.installation_id, _job_id="again-1")
    await stack.redis.enqueue_job("send_reminders", v.installation_id, _job_id="again-2")
    await stack.drain()
    assert len(reminders(issue)) == 1

    # Activity restarts the clock; a new period of inactivity gets a new reminder.
    st.add_issue_comment("acme/api", issue.number, "dev", "working on it")
    issue.updated_at = time.time() - 3.5 * DAY  # (that comment, made half a day later)
    async with stack.db() as db, db.begin():
        await db.execute(update(Violation).values(
            reminded_at=utcnow() - timedelta(days=5)))
    await stack.redis.delete(*await stack.redis.keys("pe:remind-next:*") or ["-"])
    await run_cron(stack)
    assert len(reminders(issue)) == 2


async def test_no_reminder_on_a_quiet_day(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    today = utcnow().strftime("%A").lower()
    other = "monday" if today != "monday" else "tuesday"
    await installed(stack, st, config(days=3, quiet=f"  quiet_days: [{today}, {other}]\n"))
    issue = await age(stack, st, "acme/api", days=10)
    await run_cron(stack)
    assert reminders(issue) == []
    assert issue_reads(st, "acme/api", issue) == 0  # decided without asking GitHub

    # Not quiet today any more: the reminder goes out at the next run.
    push = hooks.commit_and_push(st, "acme/.github", {
        "config.yaml": config(days=3, quiet=f"  quiet_days: [{other}]\n")})
    await stack.deliver("push", push)
    await stack.drain()
    issue = await age(stack, st, "acme/api", days=10)
    await run_cron(stack)
    assert len(reminders(issue)) == 1


async def test_no_reminder_in_dry_run(stack: Stack, fake_github: FakeGitHub) -> None:
    """A policy switched to dry-run (to trial a change) posts no reminder on its issues."""
    st = fake_github.state
    await installed(stack, st, config(days=3))
    push = hooks.commit_and_push(st, "acme/.github", {
        "config.yaml": "enforcement: dry-run\n" + config(days=3)})
    await stack.deliver("push", push)
    await stack.drain()
    issue = await age(stack, st, "acme/api", days=10)
    writes = sum(1 for r in st.log if r.method != "GET" and r.path != "/graphql"
                 and "/access_tokens" not in r.path)
    await run_cron(stack)
    assert reminders(issue) == []
    assert sum(1 for r in st.log if r.method != "GET" and r.path != "/graphql"
               and "/access_tokens" not in r.path) == writes


async def test_the_repository_file_lengthens_but_never_shortens_or_disables(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    longer = "remind_after_days: 30\nenforcement: off\n"
    shorter = "remind_after_days: 1\n"
    await installed(stack, st, config(days=7), extra=[
        {"name": "slow", "files": {".github/policy-enforcer.yaml": longer}},
        {"name": "eager", "files": {".github/policy-enforcer.yaml": shorter}},
        {"name": "broken", "files": {".github/policy-enforcer.yaml": "remind_after_days: 0\n"}},
    ])
    # Enforcement is not the repository's to turn off: its issue was filed all the same.
    assert "Require AGENTS.md" in open_issues(st, "acme/slow")
    rows = {r.full_name: r.overrides for r in await stack.repositories()}
    slow_file, eager_file, broken_file = rows["acme/slow"], rows["acme/eager"], \
        rows["acme/broken"]
    assert slow_file is not None and eager_file is not None and broken_file is not None
    assert slow_file["remind_after_days"] == 30
    assert any("'enforcement'" in n and "cannot turn enforcement off" in n
               for n in slow_file["notes"])
    assert any("shorter than the organization's 7" in n for n in eager_file["notes"])
    assert "remind_after_days" not in broken_file
    assert rows["acme/api"] is None

    slow = await age(stack, st, "acme/slow", days=10)
    eager = await age(stack, st, "acme/eager", days=3)  # its own 1 is ignored: 7 applies
    broken = await age(stack, st, "acme/broken", days=10)  # 0 cannot switch reminders off
    api = await age(stack, st, "acme/api", days=10)
    await run_cron(stack)
    assert (len(reminders(slow)), len(reminders(eager)), len(reminders(broken)),
            len(reminders(api))) == (0, 0, 1, 1)

    slow = await age(stack, st, "acme/slow", days=31)
    await stack.redis.delete(*await stack.redis.keys("pe:remind-next:*") or ["-"])
    await run_cron(stack)
    assert len(reminders(slow)) == 1 and "no activity for 30 days" in reminders(slow)[0]

    async with browser() as http:
        await sign_in(http, stack, fake_github, OWNER)
        page = await text(http, f"{stack.base_url}/orgs/acme/repos/slow")
    assert "data-override-notes" in page and "cannot turn enforcement off" in page
    assert "reminders every\n  30 days" in page


# ----------------------------------------------------------------------------- units
def test_overrides_parse_and_apply() -> None:
    cfg = parse_config(config(days=7))
    assert parse_overrides(None, cfg) is None
    assert parse_overrides("remind_after_days: 14\n", cfg) == {"remind_after_days": 14,
                                                              "notes": []}
    for bad in ("remind_after_days: false\n", "remind_after_days: null\n",
                "remind_after_days: '30'\n", "remind_after_days: 9999\n"):
        parsed = parse_overrides(bad, cfg)
        assert parsed is not None and "remind_after_days" not in parsed
        assert "cannot turn reminders off" in parsed["notes"][0]
    broken = parse_overrides("remind_after_days: [\n", cfg)
    assert broken is not None and broken["notes"][0].startswith(".github/policy-enforcer.yaml:")
    listing = parse_overrides("- 1\n", cfg)
    assert listing is not None and "must be a mapping" in listing["notes"][0]
    off = parse_overrides("remind_after_days: 30\n", parse_config(
        "policies:\n  - name: P\n    type: has_agents_md\n    action: create-issue\n"))
    assert off is not None and "reminders are off" in off["notes"][0]
    assert effective_days(7, {"remind_after_days": 30}) == 30
    assert effective_days(7, {"remind_after_days": 1}) == 7
    assert effective_days(None, {"remind_after_days": 30}) is None
    assert effective_days(7, None) == 7


def test_the_reminder_cron_is_hourly_and_unique() -> None:
    ws = worker_settings(Settings(_env_file=None), "redis://x:1")
    (job,) = [c for c in ws["cron_jobs"] if c.name == "queue_reminders"]
    assert job.unique and job.minute == REMINDER_MINUTE and job.hour is None
    assert "send_reminders" in {f.name for f in ws["functions"]}


async def test_repository_overrides_column_is_plain_json(stack: Stack,
                                                        fake_github: FakeGitHub) -> None:
    """What the dashboard reads back is what the scan stored (JSON on both databases)."""
    st = fake_github.state
    await installed(stack, st, config(), extra=[
        {"name": "slow", "files": {".github/policy-enforcer.yaml": "remind_after_days: 20\n"}}])
    async with stack.db() as db:
        row = await db.get(Repository, st.repo("acme/slow").id)
        assert row is not None and row.overrides == {"remind_after_days": 20, "notes": []}
