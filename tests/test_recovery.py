"""Nothing lost, nothing silently off: missed deliveries, missed installations, a config that
cannot be read, issues that would be orphaned, missed nightly runs, stale records.

The fake GitHub sends the webhooks itself here (st.hook), keeps the delivery log the
recovery reads, and never redelivers anything unasked, as GitHub.
"""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy import text as sql

from app.actions.base import marker
from app.db.models import ActionLog, FailedJob, Installation, Scan, WebhookDelivery, utcnow
from app.services import deliveries
from app.services.deliveries import delivery_marker_key
from app.web.webhooks import WEBHOOK_PATH
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState
from tests.fakegithub.state import Installation as FakeInstallation
from tests.stack import WEBHOOK_SECRET, Stack, services_for
from tests.test_dashboard import OWNER, browser, dash, installed_org, sign_in, text
from tests.test_e2e import CONFIG, open_issues
from tests.test_e2e_events import small_org

__all__ = ["dash"]  # the dashboard's stack fixture, used here too


def dead_url() -> str:
    """A local URL nothing listens on: GitHub's delivery fails to connect."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{WEBHOOK_PATH}"


def hook_to(stack: Stack, fake: FakeGitHub) -> None:
    fake.state.hook.url = stack.base_url + WEBHOOK_PATH
    fake.state.webhook_secret = WEBHOOK_SECRET


async def installed(stack: Stack, fake: FakeGitHub, config: str = CONFIG) -> FakeInstallation:
    """small_org, installed through a delivery GitHub sends."""
    hook_to(stack, fake)
    inst = small_org(fake.state, config)
    sent = await fake.send_event("installation", hooks.installation(fake.state, inst))
    assert sent is not None and sent.status_code == 202
    await stack.drain()
    return inst


async def recover(stack: Stack, fake: FakeGitHub) -> deliveries.RecoveryResult:
    """One run of the recovery job, then what GitHub redelivers is handled."""
    result = await deliveries.recover_deliveries(services_for(stack))
    await fake.hooks_idle()
    await stack.drain()
    return result


async def outcomes(stack: Stack) -> dict[str, str]:
    async with stack.db() as db:
        return {d.delivery_id: d.outcome for d in await db.scalars(select(WebhookDelivery))}


# ----------------------------------------------------------------------------- deliveries
async def test_failed_deliveries_are_redelivered_once_and_processed_once(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = small_org(st)
    st.hook.url, st.webhook_secret = dead_url(), WEBHOOK_SECRET
    lost = await fake_github.send_event("installation", hooks.installation(st, inst))
    push = await fake_github.send_event(
        "push", hooks.commit_and_push(st, "acme/web", {"AGENTS.md": None}))
    assert lost is not None and push is not None
    assert (lost.status_code, push.status_code) == (0, 0)
    assert await stack.installation(inst.id) is None  # nothing reached the app

    hook_to(stack, fake_github)
    result = await recover(stack, fake_github)

    assert sorted(result.redelivered) == sorted([lost.guid, push.guid])
    assert st.hook.redelivery_requests == {lost.guid: 1, push.guid: 1}
    row = await stack.installation(inst.id)
    assert row is not None and row.active and row.config_status == "valid"
    assert set(open_issues(st, "acme/api")) == {"Require AGENTS.md", "Require catalog-info.yaml",
                                                "Read-only workflow token"}
    assert "Require AGENTS.md" in open_issues(st, "acme/web")  # the push was handled too
    done = await outcomes(stack)
    assert deliveries.processed(done[lost.guid]) and deliveries.processed(done[push.guid])

    # Everything is settled: the next runs ask for nothing, and nothing is filed twice.
    issues_before = sum(len(st.issues(r)) for r in ("acme/api", "acme/web"))
    again = await recover(stack, fake_github)
    assert again.redelivered == [] and st.hook.redelivery_requests.total() == 2
    assert sum(len(st.issues(r)) for r in ("acme/api", "acme/web")) == issues_before
    # A delivery GitHub redelivers anyway (a person pressed Redeliver) is a duplicate.
    attempt = st.hook.by_guid(lost.guid)[-1]
    async with stack.http.post(stack.base_url + WEBHOOK_PATH, data=attempt.body,
                               headers=attempt.request_headers) as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "duplicate"})
    assert again.checkpoint >= max(d.id for d in st.hook.log())


async def test_a_delivery_whose_job_failed_for_good_is_redelivered(
        stack: Stack, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks import jobs

    st = fake_github.state
    await installed(stack, fake_github)
    issue = open_issues(st, "acme/api")["Require AGENTS.md"]
    st.close_issue("acme/api", issue.number, by="mallory")

    # The job's database is in trouble (a table it reads is gone): it gives up.
    monkeypatch.setattr(jobs, "WEBHOOK_MAX_TRIES", 1)
    async with stack.db() as db, db.begin():
        await db.execute(sql("ALTER TABLE violations RENAME TO violations_away"))
    sent = await fake_github.send_event("issues", hooks.issues(st, issue, "closed"))
    assert sent is not None and sent.status_code == 202  # GitHub's log says "OK"
    await stack.drain()
    assert (await outcomes(stack))[sent.guid].startswith("failed")
    assert await stack.redis.exists(delivery_marker_key(sent.guid)) == 0
    async with stack.db() as db:
        assert [f.function for f in await db.scalars(select(FailedJob))] == ["handle_webhook"]
    assert issue.state == "closed"

    async with stack.db() as db, db.begin():
        await db.execute(sql("ALTER TABLE violations_away RENAME TO violations"))
    result = await recover(stack, fake_github)

    assert result.redelivered == [sent.guid]
    redelivered = st.hook.by_guid(sent.guid)[-1]
    assert redelivered.redelivery and redelivered.response_body is not None
    assert "queued" in str(redelivered.response_body)  # accepted, not "duplicate"
    assert deliveries.processed((await outcomes(stack))[sent.guid])
    assert issue.state == "open"  # the person's close was undone, with a comment
    assert "@mallory closed this issue" in (st.comments("acme/api", issue.number)[-1].body
                                            or "")
    assert (await recover(stack, fake_github)).redelivered == []


async def test_webhooks_that_never_arrive_for_a_day_bring_a_full_scan(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = small_org(st)
    status, _ = await stack.deliver("installation", hooks.installation(st, inst))
    assert status == 202
    await stack.drain()
    st.hook.url, st.webhook_secret = dead_url(), WEBHOOK_SECRET
    for hours in (30, 26, 1):
        await fake_github.send_event(
            "push", hooks.commit_and_push(st, "acme/web", {"README.md": str(hours)}),
            delivered_at=time.time() - hours * 3600)
    scans = len(await stack.scans())

    result = await recover(stack, fake_github)

    assert result.stale_scans == [inst.id]
    assert len(result.redelivered) == 3  # asked, though they fail again: the URL is wrong
    new = (await stack.scans())[scans:]
    assert [s.trigger for s in new if s.kind == "full"] == ["recovery:webhooks-stale"]
    # Once per stale period, however often the recovery runs.
    await fake_github.send_event(
        "push", hooks.commit_and_push(st, "acme/web", {"README.md": "again"}))
    assert (await recover(stack, fake_github)).stale_scans == []


# ----------------------------------------------------------------------------- webhooks jobs
async def test_webhook_jobs_never_expire_and_app_keys_all_expire(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = small_org(st)
    status, _ = await stack.deliver("installation", hooks.installation(st, inst),
                                    delivery_id="held")
    assert status == 202
    # Queued with no expiry: it waits for a worker however long none runs.
    assert await stack.redis.pttl("arq:job:webhook:held") == -1
    await stack.drain()
    await stack.deliver("push", hooks.commit_and_push(st, "acme/api", {"AGENTS.md": "x"}))
    await stack.drain()
    keys = [k.decode() async for k in stack.redis.scan_iter(match="pe:*")]
    assert keys  # markers, counters, locks, caches, the job monitor...
    without = [k for k in keys if await stack.redis.ttl(k) == -1]
    assert without == []


# ----------------------------------------------------------------------------- installations
async def test_installation_sync_finds_missed_renamed_and_gone_installations(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = small_org(st)  # installed on GitHub; the installation.created never came

    await stack.drain(startup_sync=True)  # a worker starts

    row = await stack.installation(inst.id)
    assert row is not None and row.active and row.config_status == "valid"
    assert [s.trigger for s in await stack.scans() if s.kind == "full"] == ["sync:installations"]
    assert "Require AGENTS.md" in open_issues(st, "acme/api")

    st.rename_account("acme", "acme-corp")
    await stack.drain(startup_sync=True)
    row = await stack.installation(inst.id)
    assert row is not None and (row.account_login, row.renamed_from) == ("acme-corp", "acme")
    assert row.config_status == "valid"  # read from acme-corp/.github
    assert "acme-corp/api" in {r.full_name for r in await stack.repositories()}

    st.remove_installation(inst.id)
    await stack.drain(startup_sync=True)
    row = await stack.installation(inst.id)
    assert row is not None and not row.active and row.gone_at is not None


async def test_renamed_account_event(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = await installed(stack, fake_github)
    st.rename_account("acme", "acme-labs")
    sent = await fake_github.send_event("installation_target",
                                        hooks.installation_target(st, inst, "acme"))
    assert sent is not None and sent.status_code == 202
    await stack.drain()
    row = await stack.installation(inst.id)
    assert row is not None and (row.account_login, row.renamed_from) == ("acme-labs", "acme")
    assert row.config_status == "valid"
    full = [s for s in await stack.scans() if s.kind == "full"]
    assert full[-1].trigger == "webhook:installation_target.renamed" and full[-1].status == "ok"


# ----------------------------------------------------------------------------- config
async def test_a_config_that_cannot_be_read_stays_in_force(
        stack: Stack, fake_github: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    st = fake_github.state
    await installed(stack, fake_github)
    filed = set(open_issues(st, "acme/api"))

    # GitHub fails on the config (5xx after its retries).
    rule = st.fail_next(1000, 502, path_prefix="/repos/acme/.github/contents")
    await fake_github.send_event("push", hooks.commit_and_push(st, "acme/.github",
                                                               {"README.md": "x"}))
    st.set_file("acme/web", "AGENTS.md", "")  # still enforced meanwhile?
    st.delete_file("acme/web", "AGENTS.md")
    await fake_github.send_event("push", hooks.commit_and_push(st, "acme/web",
                                                               {"README.md": "y"}))
    await stack.drain()
    row = await stack.installation(inst_id(st))
    assert row is not None and row.config_status == "unreadable"
    assert "502" in (row.config_error or "") and "stays in force" in (row.config_error or "")
    assert "cannot be read" in caplog.text
    assert set(open_issues(st, "acme/api")) == filed
    assert "Require AGENTS.md" in open_issues(st, "acme/web")
    rule.remaining = 0

    # The .github repository is taken out of the installation's repositories.
    st.remove_repo_from_installation("acme/.github")
    await stack.drain()
    await services_scan(stack, st)
    row = await stack.installation(inst_id(st))
    assert row is not None and row.config_status == "unreadable"
    assert "cannot read acme/.github" in (row.config_error or "")
    assert set(open_issues(st, "acme/api")) == filed  # nothing was closed


def inst_id(st: FakeState) -> int:
    (inst,) = list(st.installations.values())
    return inst.id


async def services_scan(stack: Stack, st: FakeState) -> None:
    await stack.redis.enqueue_job("scan_installation", inst_id(st))
    await stack.drain()


async def test_deleting_the_config_ends_enforcement_and_closes_issues(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, fake_github)
    filed = {r: open_issues(st, r) for r in ("acme/api", "acme/web")}
    assert filed["acme/api"]

    st.delete_file("acme/.github", "config.yaml")
    # A force-push: GitHub lists no commits, so nothing says config.yaml changed.
    push = hooks.push(st, st.repo("acme/.github"), commits=[])
    push["forced"] = True
    await fake_github.send_event("push", push)
    await stack.drain()

    row = await stack.installation(inst_id(st))
    assert row is not None and row.config_status == "missing"
    assert "was deleted" in (row.config_error or "")
    for full_name, issues in filed.items():
        assert open_issues(st, full_name) == {}
        for issue in issues.values():
            assert "config.yaml was deleted from acme/.github" in (
                st.comments(full_name, issue.number)[-1].body or "")
    assert await stack.violations("open") == []


async def test_removed_action_and_policy_close_their_issues(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, fake_github)
    issues = open_issues(st, "acme/api")
    agents, token = issues["Require AGENTS.md"], issues["Read-only workflow token"]

    config = CONFIG.replace("""  - name: Read-only workflow token
    type: correct_workflow_permissions
    action: [create-issue, log-only]
""", "").replace("""    type: has_agents_md
    action: create-issue""", """    type: has_agents_md
    action: log-only""")
    assert config != CONFIG
    await fake_github.send_event("push", hooks.commit_and_push(st, "acme/.github",
                                                               {"config.yaml": config}))
    await stack.drain()

    assert agents.state == "closed" and token.state == "closed"
    assert "`create-issue` was removed from the actions of the policy" in (
        st.comments("acme/api", agents.number)[-1].body or "")
    assert "was removed from the organization's config" in (
        st.comments("acme/api", token.number)[-1].body or "")
    # The AGENTS.md violation is still open (log-only still enforces it).
    open_policies = {v.policy for v in await stack.violations("open")
                     if v.repository_id == st.repo("acme/api").id}
    assert "Require AGENTS.md" in open_policies and "Read-only workflow token" not in open_policies

    # Putting create-issue back reopens the same issue rather than filing another.
    await fake_github.send_event("push", hooks.commit_and_push(st, "acme/.github",
                                                               {"config.yaml": CONFIG}))
    await stack.drain()
    assert open_issues(st, "acme/api")["Require AGENTS.md"].number == agents.number


async def test_archived_repository_ends_its_violations(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    await installed(stack, fake_github)
    filed = open_issues(st, "acme/api")
    st.archive_repo("acme/api")
    st.clear_log()
    await fake_github.send_event("repository", hooks.repository(st, st.repo("acme/api"),
                                                                "archived"))
    await stack.drain()

    api = st.repo("acme/api").id
    assert [v for v in await stack.violations("open") if v.repository_id == api] == []
    async with stack.db() as db:
        logged = list(await db.scalars(select(ActionLog).where(
            ActionLog.repository_id == api, ActionLog.status == "skipped")))
    assert {f"issue #{i.number} left as it is" for i in filed.values()} <= \
        {entry.detail.split(":")[0] for entry in logged}
    assert all("archived" in entry.detail for entry in logged)
    # No write was even tried: GitHub refuses every write to an archived repository.
    assert st.count_requests("PATCH", "/repos/acme/api") == 0
    assert st.count_requests("POST", "/repos/acme/api") == 0


@pytest.mark.parametrize("respect", [False, True])
async def test_an_issue_a_person_closes_is_reopened_unless_respected(
        stack: Stack, fake_github: FakeGitHub, respect: bool) -> None:
    st = fake_github.state
    config = CONFIG.replace("      labels: [compliance, agents]\n",
                            "      labels: [compliance, agents]\n"
                            + ("    respect_manual_close: true\n" if respect else ""))
    await installed(stack, fake_github, config)
    issue = open_issues(st, "acme/api")["Require AGENTS.md"]
    st.close_issue("acme/api", issue.number, by="dana")
    await fake_github.send_event("issues", hooks.issues(st, issue, "closed"))
    await stack.drain()

    if respect:
        assert issue.state == "closed"
        assert (await outcomes(stack))[st.hook.log()[-1].guid].endswith(
            "stays closed (respect_manual_close)")
        # A later config change (an archive date to announce in the issue) does not
        # reopen it, nor file another.
        changed = config.replace("    type: has_agents_md\n    action: create-issue\n",
                                 "    type: has_agents_md\n    action: [create-issue, "
                                 "archive-repo]\n    archive_after_days: 30\n")
        assert changed != config
        await fake_github.send_event("push", hooks.commit_and_push(
            st, "acme/.github", {"config.yaml": changed}))
        await stack.drain()
        assert issue.state == "closed"
        assert [i.number for i in st.issues("acme/api")
                if marker("Require AGENTS.md") in (i.body or "")] == [issue.number]
        config = changed
    else:
        assert issue.state == "open"
        assert "@dana closed this issue" in (st.comments("acme/api", issue.number)[-1].body
                                             or "")
    # The App's own close (once the repository complies) is not taken for a person's.
    st.set_file("acme/api", "AGENTS.md", "# ok\n")
    await fake_github.send_event("push", hooks.commit_and_push(st, "acme/api",
                                                               {"AGENTS.md": "# ok\n"}))
    await stack.drain()
    assert issue.state == "closed"
    closes = [d for d in st.hook.log() if d.event == "issues"]
    assert len(closes) == 1  # the fake sends no issues events by itself


async def test_a_marker_in_someone_elses_issue_changes_nothing(
        stack: Stack, fake_github: FakeGitHub) -> None:
    """Anyone can paste the App's hidden marker into an issue of their own: closing that
    issue must not attach it to a violation (which the App would then rewrite or close)."""
    st = fake_github.state
    await installed(stack, fake_github)
    ours = open_issues(st, "acme/api")["Require AGENTS.md"]
    forged = st.add_issue("acme/web", "Unrelated", user_login="mallory",
                          body=f"hi\n{marker('Require AGENTS.md')}")
    also = st.add_issue("acme/api", "Also unrelated", user_login="mallory",
                        body=f"hi\n{marker('Require AGENTS.md', st.repo('acme/api').id)}")
    before = {(v.repository_id, v.policy): (v.issue_number, v.issue_repository)
              for v in await stack.violations()}
    for issue, repo in ((forged, "acme/web"), (also, "acme/api")):
        st.close_issue(repo, issue.number, by="mallory")
        await fake_github.send_event("issues", hooks.issues(st, issue, "closed"))
    await stack.drain()

    outcome = await outcomes(stack)
    assert all(outcome[d.guid] == "ignored: not an issue of this App"
               for d in st.hook.log() if d.event == "issues")
    assert {(v.repository_id, v.policy): (v.issue_number, v.issue_repository)
            for v in await stack.violations()} == before
    assert ours.state == "open" and forged.state == "closed" and also.state == "closed"
    assert (forged.body or "").startswith("hi") and (also.body or "").startswith("hi")


# ----------------------------------------------------------------------------- schedule
async def test_worker_start_closes_abandoned_scans_and_catches_up_a_missed_night(
        stack: Stack, fake_github: FakeGitHub) -> None:
    inst = await installed(stack, fake_github)
    long_ago = utcnow() - timedelta(days=2)
    async with stack.db() as db, db.begin():
        await db.execute(update(Installation).values(created_at=long_ago - timedelta(days=1)))
        await db.execute(update(Scan).values(started_at=long_ago, finished_at=long_ago))
        abandoned = Scan(installation_id=inst.id, kind="full", trigger="cron", status="running",
                         started_at=utcnow() - timedelta(hours=7))
        db.add(abandoned)
    scans = len(await stack.scans())

    await stack.drain(startup_sync=True)

    rows = await stack.scans()
    assert next(s for s in rows if s.id == abandoned.id).status == "errored"
    new = [s for s in rows[scans:] if s.kind == "full"]
    assert [(s.trigger, s.status) for s in new] == [("cron:catch-up", "ok")]
    # Once: the next worker to start finds the night covered.
    await stack.drain(startup_sync=True)
    assert len([s for s in await stack.scans() if s.kind == "full"]) == \
        len([s for s in rows if s.kind == "full"])


async def test_nightly_job_runs_only_on_the_schedule(stack: Stack,
                                                     fake_github: FakeGitHub) -> None:
    from tasks import jobs

    await installed(stack, fake_github)
    svc = services_for(stack)
    now = utcnow()
    off_day = (now.isoweekday() + 2) % 7  # cron counts Sunday as 0
    svc.settings.SCAN_CRON = f"* * * * {off_day}"
    assert await jobs.nightly_scan({"services": svc, "job_id": "cron:x"}) == -1
    svc.settings.SCAN_CRON = "* * * * *"
    assert await jobs.nightly_scan({"services": svc, "job_id": "cron:y"}) == 1
    await stack.drain()
    assert (await stack.scans())[-1].trigger == "cron"
    await svc.github.close()


async def test_the_dashboard_says_why_the_config_cannot_be_read(
        dash: Stack, fake_github: FakeGitHub) -> None:
    st = await installed_org(dash, fake_github)
    st.fail_next(1000, 502, path_prefix="/repos/acme/.github/contents")
    await services_scan(dash, st)
    async with browser() as http:
        landed = await sign_in(http, dash, fake_github, OWNER)
        html = await landed.text()
        assert landed.url.path == "/orgs/acme" and "data-config-unreadable" in html
        assert "the last valid one stays in force" in html and "502" in html
        page = await text(http, f"{dash.base_url}/orgs/acme/config")
        assert "config.yaml cannot be read." in page and "data-config-text" in page


async def test_an_accepted_delivery_whose_job_was_lost_is_redelivered(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = small_org(st)
    hook_to(stack, fake_github)
    sent = await fake_github.send_event("installation", hooks.installation(st, inst))
    assert sent is not None and sent.status_code == 202
    # Redis lost the job (no AOF) but not the marker; no worker ever saw it.
    await stack.redis.delete(f"arq:job:webhook:{sent.guid}")
    await stack.redis.zrem("arq:queue", f"webhook:{sent.guid}")

    # Within the hour it may still be queued somewhere: nothing is asked.
    assert (await recover(stack, fake_github)).redelivered == []
    st.hook.age(2 * 3600)
    result = await recover(stack, fake_github)

    assert result.redelivered == [sent.guid]
    row = await stack.installation(inst.id)
    assert row is not None and row.config_status == "valid"
    assert "Require AGENTS.md" in open_issues(st, "acme/api")
