"""Helpers of the browser tests (tests/test_browser.py): finding Debian's chromium, launching
it for Playwright, screenshots as test artefacts, signing in on the fake github.com, and an
arq worker running in the background of a test.

Playwright's own browser download is not used: the tests drive the system's chromium
(`apt-get install chromium`). Without it they skip, unless REQUIRE_BROWSER=1 (CI), where
they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
from arq.worker import Worker
from playwright.async_api import Page, ViewportSize, expect

from tasks.worker import create_worker
from tests.stack import Stack

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_HINT = "apt-get install chromium"

# Headless chromium as root on a machine without network: no sandbox (root), no GPU, and
# none of the background requests (updates, sync, QUIC probes) that stall on a closed
# network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# One size for every screenshot, so they can be reused (docs, reviews) and compared.
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


def chromium_path() -> str | None:
    """/usr/bin/chromium, else `chromium` on PATH, else None (the Makefile looks the same
    way)."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def browser_required() -> bool:
    return os.environ.get("REQUIRE_BROWSER", "") == "1"


def require_chromium() -> str:
    """The chromium to launch; skips the test without one, or fails it when
    REQUIRE_BROWSER=1."""
    path = chromium_path()
    if path is not None:
        return path
    if browser_required():
        pytest.fail(f"REQUIRE_BROWSER=1 but chromium is not installed ({INSTALL_HINT})",
                    pytrace=False)
    pytest.skip(f"browser tests: chromium not installed ({INSTALL_HINT}; "
                "REQUIRE_BROWSER=1 makes this a failure)")


def artifacts_dir() -> Path:
    """Where screenshots go: $ARTIFACTS_DIR, else test-artifacts/screenshots in the repo."""
    configured = os.environ.get("ARTIFACTS_DIR")
    path = Path(configured) if configured else REPO_ROOT / "test-artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot `<name>.png` of the page as it is now, once it has loaded."""
    await page.wait_for_load_state("load")
    path = artifacts_dir() / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


async def sign_in(page: Page, stack: Stack, github_url: str, login: str,
                  next_path: str = "/") -> None:
    """Sign in through the App's OAuth flow, typing `login` into the fake github.com's
    sign-in form, and wait to be back on the app."""
    await page.goto(f"{stack.base_url}/login?{urlencode({'next': next_path})}")
    await submit_github_sign_in(page, github_url, login)
    await expect(page).to_have_url(re.compile("^" + re.escape(stack.base_url) + "/"))
    await expect(page.locator("[data-user]")).to_have_text(login)


async def submit_github_sign_in(page: Page, github_url: str, login: str) -> None:
    """On the fake github.com's sign-in form: type the login and press "Sign in"."""
    await expect(page).to_have_url(re.compile("^" + re.escape(github_url) + "/login"))
    await page.get_by_label("Username or email address").fill(login)
    await page.get_by_role("button", name="Sign in").click()


@asynccontextmanager
async def background_worker(stack: Stack) -> AsyncIterator[Worker]:
    """An arq worker (burst=False) running as a task of this event loop until the block
    ends; a crash of the worker is raised when the block ends."""
    worker = create_worker(stack.settings, str(stack.settings.REDIS_URL), burst=False,
                           poll_delay=0.02, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        # Pick nothing new, let jobs in flight end (arq's close() cancels them, and its
        # gather then raises CancelledError), then stop the loop and release the pool.
        worker.allow_pick_jobs = False
        if worker.tasks:
            await asyncio.wait(list(worker.tasks.values()), timeout=10)
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # re-raises what made the worker crash, if it did
        stack.jobs_run += worker.jobs_complete + worker.jobs_failed + worker.jobs_retried


# Installed before any script of every page: records each Server-Sent Event the page's
# EventSource receives, and at `done` what the page shows (app.js then reloads it), in
# sessionStorage, which survives that reload. Our listeners are added first, so they run
# before app.js's. The number of events recorded is also put on <html data-sse-events>
# for Playwright's expect() to wait on (the app's CSP forbids wait_for_function's eval).
SSE_RECORDER = """
(() => {
  const Native = window.EventSource;
  if (!Native) return;
  const KEY = "sse-log";
  const log = (entry) => {
    const all = JSON.parse(sessionStorage.getItem(KEY) || "[]");
    all.push(entry);
    sessionStorage.setItem(KEY, JSON.stringify(all));
    document.documentElement.dataset.sseEvents = String(all.length);
  };
  const shown = (name) => {
    const node = document.querySelector("[data-scan] [data-" + name + "]");
    return node ? node.textContent : null;
  };
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      log({ kind: "open", url: String(url) });
      this.addEventListener("progress", (e) => log({ kind: "progress", data: JSON.parse(e.data) }));
      this.addEventListener("done", (e) => log({
        kind: "done", data: JSON.parse(e.data),
        shown: { status: shown("status"), done: shown("done"), total: shown("total") },
      }));
    }
  };
})();
"""
