"""The dashboard in a real browser: headless chromium driven by Playwright against the web
app and the fake GitHub on real sockets, with a real arq worker, Redis and database.

Sign-in through the fake github.com's form, filter as you type, Scan Now followed live by
Server-Sent Events to the page's reload, and Retry on the job monitor. Every page visited
is saved as a full-page screenshot (tests/browser.py: ARTIFACTS_DIR). Without chromium
these tests skip (REQUIRE_BROWSER=1: they fail).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect
from sqlalchemy import select

from app.db.models import FailedJob, Scan
from tests.browser import (
    CHROMIUM_ARGS,
    SSE_RECORDER,
    VIEWPORT,
    background_worker,
    require_chromium,
    screenshot,
    sign_in,
    submit_github_sign_in,
)
from tests.fakegithub import pulls
from tests.fakegithub.server import FakeGitHub
from tests.stack import Stack, dashboard_stack
from tests.test_dashboard import OWNER, fail_a_full_scan, install, installed_org, setup_org
from tests.test_e2e import CONFIG as E2E_CONFIG

# Playwright's waits: long enough for a slow CI machine, short enough to fail fast.
TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = require_chromium()  # skips (or fails, REQUIRE_BROWSER=1) without chromium
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                            headless=True, timeout=30_000)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser profile (cookies, storage) per test."""
    context = await browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    await context.add_init_script(SSE_RECORDER)
    opened = await context.new_page()
    # Uncaught exceptions, and what the browser logs as an error (a script or style the
    # CSP blocks, a resource that failed to load, but for the favicon neither server has):
    # each fails the test.
    errors: list[str] = []

    def console(msg: ConsoleMessage) -> None:
        url = str(msg.location.get("url", ""))
        if msg.type == "error" and not url.endswith("/favicon.ico"):
            errors.append(f"{url}: {msg.text}")

    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("console", console)
    try:
        yield opened
    finally:
        await context.close()
    assert not errors, f"errors in the browser: {errors}"


@pytest.fixture
async def dash(fake_github: FakeGitHub, redis_url: str,
               database_url: str) -> AsyncIterator[Stack]:
    """The app with sign-in configured (as tests/test_dashboard.py's), on SQLite: these
    tests are about the pages, the storage tests cover PostgreSQL."""
    async with dashboard_stack(fake_github, redis_url, database_url) as s:
        yield s


async def filtered(page: Page, query: str) -> list[str]:
    """Once the table is the one app.js fetched for `query` (it marks #repo-results with
    the query it shows), the repositories it lists, in order."""
    await expect(page.locator("#repo-results")).to_have_attribute("data-query", query)
    names: list[str] = await page.locator("tr[data-repo]").evaluate_all(
        "rows => rows.map(r => r.dataset.repo)")
    return names


# ----------------------------------------------------------------------------- sign-in
async def test_sign_in_with_github_and_visit_every_page(page: Page, dash: Stack,
                                                        fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github, n=6)
    await page.goto(f"{dash.base_url}/")
    await page.get_by_role("link", name="Sign in with GitHub").click()
    # The fake github.com asks who we are, then sends us back through the OAuth callback.
    await submit_github_sign_in(page, fake_github.url, OWNER)
    await expect(page).to_have_url(f"{dash.base_url}/orgs/acme")
    await expect(page.locator("[data-user]")).to_have_text(OWNER)
    await expect(page.locator("[data-compliance]")).to_have_text(re.compile(r"^\d+\.\d%$"))
    await expect(page.locator("[data-by-policy]")).to_contain_text("Require AGENTS.md")
    await screenshot(page, "overview")
    # Every page of the organization, through the navigation bar.
    nav = page.locator("header.top")
    await nav.get_by_role("link", name="Repositories").click()
    await expect(page.get_by_role("heading", name="Repositories")).to_be_visible()
    await expect(page.locator("tr[data-repo]")).to_have_count(9)
    await screenshot(page, "repositories")
    await page.get_by_role("link", name="acme/svc-00", exact=True).click()
    await expect(page).to_have_url(f"{dash.base_url}/orgs/acme/repos/svc-00")
    await expect(page.locator("[data-state]")).to_have_text("violating")
    await expect(page.locator("[data-violations]")).to_contain_text("Require AGENTS.md")
    await screenshot(page, "repository")
    await nav.get_by_role("link", name="Scans").click()
    await expect(page.locator("[data-scans] tbody tr")).to_have_count(1)
    await expect(page.locator("[data-scans]")).to_contain_text("webhook:installation.created")
    await screenshot(page, "scans")
    await nav.get_by_role("link", name="Action log").click()
    await expect(page.locator("[data-action-log]")).to_contain_text("create-issue")
    await screenshot(page, "actions")
    await nav.get_by_role("link", name="Config").click()
    await expect(page.locator("[data-config-status]")).to_contain_text("valid")
    await expect(page.locator("[data-config-text]")).to_contain_text("has_agents_md")
    await screenshot(page, "config")


# ----------------------------------------------------------------------------- filter
async def test_repositories_filter_as_you_type(page: Page, dash: Stack,
                                               fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github, n=12)
    await sign_in(page, dash, fake_github.url, OWNER, "/orgs/acme/repos")
    await expect(page.locator("tr[data-repo]")).to_have_count(15)
    # A mark on this document: it survives only if the page is not loaded again.
    await page.evaluate("window.__sameDocument = true")
    name = page.get_by_label("Name")
    async with page.expect_response(lambda r: "partial=1" in r.url and "q=svc-1" in r.url):
        await name.press_sequentially("svc-1")  # key by key, no Enter
    assert await filtered(page, "q=svc-1&sort=name") == ["acme/svc-10", "acme/svc-11"]
    await expect(page).to_have_url(f"{dash.base_url}/orgs/acme/repos?q=svc-1&sort=name")
    await expect(page.locator("[data-count]")).to_have_text("2 repositories")
    await screenshot(page, "repositories-filtered")
    # Other filters too: clear the name, pick a state.
    await name.fill("")
    await page.get_by_label("State").select_option("exempt")
    assert await filtered(page, "state=exempt&sort=name") == ["acme/forked", "acme/old"]
    await expect(page).to_have_url(f"{dash.base_url}/orgs/acme/repos?state=exempt&sort=name")
    await name.press_sequentially("nothing-like-this")
    assert await filtered(page, "q=nothing-like-this&state=exempt&sort=name") == []
    await expect(page.locator("#repo-results")).to_contain_text("No repository matches.")
    assert await page.evaluate("window.__sameDocument") is True


# ----------------------------------------------------------------------------- scan now
async def test_scan_now_follows_live_progress_to_the_end(page: Page, dash: Stack,
                                                         fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github, n=6)
    await sign_in(page, dash, fake_github.url, OWNER)
    await expect(page).to_have_url(f"{dash.base_url}/orgs/acme")
    await page.get_by_role("button", name="Scan now").click()
    await expect(page).to_have_url(re.compile(r"/orgs/acme/scans/\d+$"))
    scan_id = int(page.url.rsplit("/", 1)[1])
    live = page.locator("[data-scan]")
    await expect(live).to_have_attribute("data-live", "yes")
    await expect(live.locator("[data-status]")).to_have_text("queued")
    # The event stream is open and has said "queued": only now does a worker start, so
    # the scan's end can only reach the page through the stream.
    await expect(page.locator("html")).to_have_attribute("data-sse-events", "2")  # open, queued
    async with background_worker(dash):
        # app.js reloads the page on `done`; the reloaded page is no longer live.
        await expect(live).to_have_attribute("data-live", "no")
        await expect(live.locator("[data-status]")).to_have_text("ok")
        await expect(live.locator("[data-done]")).to_have_text("7")
        await expect(live.locator("[data-total]")).to_have_text("7")
        await expect(page.locator("progress[data-progress]")).to_have_attribute("value", "7")
        await screenshot(page, "scan")
    events: list[dict[str, Any]] = await page.evaluate(
        "JSON.parse(sessionStorage.getItem('sse-log'))")
    assert events[0] == {"kind": "open", "url": f"/orgs/acme/scans/{scan_id}/events"}
    progress = [e["data"] for e in events if e["kind"] == "progress"]
    assert progress[0]["status"] == "queued" and progress[-1]["status"] == "ok"
    (done,) = [e for e in events if e["kind"] == "done"]
    assert done["data"]["done"] == done["data"]["total"] == 7
    # Before the reload, app.js had already put the stream's figures on the page.
    assert done["shown"] == {"status": "ok", "done": "7", "total": "7"}
    async with dash.db() as db:
        scan = await db.get(Scan, scan_id)
    assert scan is not None and scan.status == "ok" and scan.trigger == f"user:{OWNER}"


# ----------------------------------------------------------------------------- jobs
# Started in the page with the number of scan_installation runs the monitor showed; marks
# <body data-jobs-settled> once /jobs shows one more and nothing queued or running.
SETTLED_POLL = """(before) => {
  const settled = async () => {
    const response = await fetch("/jobs", { credentials: "same-origin" });
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const ran = [...doc.querySelectorAll("[data-succeeded] tbody tr")]
      .filter((tr) => tr.textContent.includes("scan_installation")).length;
    return ran > before
      && doc.querySelector("[data-queued]").textContent.includes("Nothing queued")
      && doc.querySelector("[data-running]").textContent.includes("Nothing running");
  };
  const check = () => settled().then(
    (yes) => { if (yes) document.body.dataset.jobsSettled = "yes"; else setTimeout(check, 200); },
    () => setTimeout(check, 200));
  check();
}"""


async def test_job_monitor_retry_queues_and_runs_a_failed_job(
        page: Page, dash: Stack, fake_github: FakeGitHub,
        monkeypatch: pytest.MonkeyPatch) -> None:
    st = await installed_org(dash, fake_github, n=2)
    rule = await fail_a_full_scan(dash, st, monkeypatch)
    rule.remaining = 0
    async with dash.db() as db:
        (failed,) = list(await db.scalars(select(FailedJob)))
    await sign_in(page, dash, fake_github.url, OWNER, "/jobs")
    await expect(page).to_have_url(f"{dash.base_url}/jobs")
    row = page.locator(f'tr[data-failed-job="{failed.id}"]')
    await expect(row).to_contain_text("scan_installation")
    await expect(row).to_contain_text("403")
    succeeded = page.locator("[data-succeeded] tbody tr", has_text="scan_installation")
    succeeded_before = await succeeded.count()
    await row.get_by_role("button", name="Retry").click()
    await expect(page.locator("[data-retried]")).to_have_text(
        f"Failed job {failed.id} was queued again.")
    await expect(row).to_contain_text(re.compile(rf"retried .+ by {OWNER}"))
    await expect(row.get_by_role("button", name="Retry")).to_have_count(0)
    await expect(page.locator("[data-queued]")).to_contain_text(f"retry:{failed.id}")
    async with background_worker(dash) as worker:
        # The page reads the monitor again every 200 ms until the retried scan has run
        # and nothing is left queued or running (a full scan queues its batches first).
        await page.evaluate(SETTLED_POLL, succeeded_before)
        await expect(page.locator("body")).to_have_attribute("data-jobs-settled", "yes")
        assert worker.jobs_failed == 0
    await page.reload()
    await expect(succeeded).to_have_count(succeeded_before + 1)
    await expect(row).to_contain_text(f"by {OWNER}")
    await screenshot(page, "jobs")
    async with dash.db() as db:
        after = await db.get(FailedJob, failed.id)
        scans = list(await db.scalars(select(Scan).order_by(Scan.id)))
    assert after is not None and after.retried_by == OWNER
    assert [(s.trigger, s.status) for s in scans] == [
        ("webhook:installation.created", "ok"), ("unknown", "errored"), ("retry", "ok")]


# ----------------------------------------------------------------------------- fix now
async def test_fix_now_opens_the_fix_pull_request(page: Page, dash: Stack,
                                                  fake_github: FakeGitHub) -> None:
    st = fake_github.state
    setup_org(st, 2)
    (inst,) = list(st.installations.values())
    inst.permissions.update({"contents": "write", "pull_requests": "write"})
    st.set_file("acme/.github", "templates/AGENTS.md", "# Agents\n")
    await install(dash, st)
    await sign_in(page, dash, fake_github.url, OWNER, "/orgs/acme/repos/svc-00")
    await expect(page).to_have_url(f"{dash.base_url}/orgs/acme/repos/svc-00")
    await page.locator('[data-fix-now="Require AGENTS.md"]').click()
    await expect(page).to_have_url(f"{dash.base_url}/orgs/acme/repos/svc-00?fix=queued")
    await expect(page.locator("[data-fix-queued]")).to_be_visible()
    async with background_worker(dash):
        for _ in range(200):  # the job runs in this event loop; give it the turns it needs
            if pulls.pulls_of(st, st.repo("acme/svc-00")):
                break
            await asyncio.sleep(0.05)
    (pr,) = pulls.pulls_of(st, st.repo("acme/svc-00"))
    await page.reload()
    await expect(page.locator("[data-actions]")).to_contain_text(
        f"opened pull request #{pr.number} adding `AGENTS.md`")
    await screenshot(page, "fix-now")


# ----------------------------------------------------------------------------- exemptions
async def test_an_exempt_failure_shows_its_reason_and_date(page: Page, dash: Stack,
                                                           fake_github: FakeGitHub) -> None:
    st = fake_github.state
    setup_org(st, 3)
    st.set_file("acme/.github", "config.yaml", E2E_CONFIG + (
        "exemptions:\n  - repos: [svc-00]\n    policies: [Require AGENTS.md]\n"
        "    reason: moving to the monorepo\n    expires: 2099-12-31\n"
        "    approved_by: alice\n"))
    await install(dash, st)
    await sign_in(page, dash, fake_github.url, OWNER, "/orgs/acme/repos/svc-00")
    row = page.locator("[data-violations] tr", has_text="Require AGENTS.md")
    await expect(row.locator("[data-exempt]")).to_have_text(
        "exempt (moving to the monorepo, until 2099-12-31, approved by @alice)")
    await expect(row.locator("[data-violation-state]")).to_have_attribute(
        "data-violation-state", "exempt")
    # Still failing, not silently compliant: the policy's own message is shown with it.
    await expect(row).to_contain_text("has no `AGENTS.md`")
    await screenshot(page, "exempt")
