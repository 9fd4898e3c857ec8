"""The README's screenshots, taken of `python -m app dev` (what `make run` runs) pointed at
the fake GitHub, with a demo org of 40 repositories installed and scanned for real.

The trend's earlier days are seeded (one scan a day for a month cannot be waited for); the
rest of what the pages show comes from the scan. Needs Debian's chromium.

    .venv/bin/python -m tests.readme_screenshots [--out docs/img]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
from playwright.async_api import async_playwright, expect
from sqlalchemy import select

from app.db.models import ComplianceDay, Scan, utcnow
from app.db.session import dispose_all, sessionmaker
from app.embedded_redis import free_port
from app.web.webhooks import sign
from tests.browser import CHROMIUM_ARGS, VIEWPORT, require_chromium, submit_github_sign_in
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.test_e2e import build_org

ROOT = Path(__file__).resolve().parents[1]
OWNER = "olivia"
SECRET = "readme-webhook-secret"


async def wait_for(check: Callable[[], Awaitable[bool]], limit: float = 60.0) -> None:
    """Poll another process's state (a server coming up, a scan finishing)."""
    async with asyncio.timeout(limit):
        while not await check():  # noqa: ASYNC110 - the state is another process's
            await asyncio.sleep(0.2)


async def run(out: Path) -> None:
    chromium = require_chromium()
    tmp = Path(tempfile.mkdtemp())
    db_url = f"sqlite+aiosqlite:///{tmp}/demo.db"
    async with FakeGitHub() as gh:
        st = gh.state
        st.web_url = gh.url
        inst, _ = build_org(st, n=40)
        inst.permissions["members"] = "read"
        st.add_org_member("acme", OWNER, "admin")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
               **gh.env(), "WEBHOOK_SECRET": SECRET, "DATABASE_URL": db_url,
               "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING",
               "SESSION_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
               "SCAN_DEBOUNCE_SECONDS": "0.2"}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "app", "dev",
                                                    cwd=tmp, env=env)
        try:
            async with aiohttp.ClientSession() as http:
                async def up() -> bool:
                    try:
                        async with http.get(f"{base}/healthz") as resp:
                            return resp.status == 200
                    except aiohttp.ClientError:
                        return False

                await wait_for(up)
                body = json.dumps(hooks.installation(st, inst)).encode()
                async with http.post(f"{base}/api/github/webhooks", data=body, headers={
                        "X-GitHub-Event": "installation",
                        "X-GitHub-Delivery": str(uuid.uuid4()),
                        "X-Hub-Signature-256": sign(SECRET, body),
                        "Content-Type": "application/json"}) as resp:
                    assert resp.status == 202, resp.status

            db = sessionmaker(db_url)

            async def scanned() -> bool:
                async with db() as session:
                    scan = await session.scalar(select(Scan).where(Scan.kind == "full"))
                    return scan is not None and scan.status == "ok"

            await wait_for(scanned)
            async with db() as session, session.begin():
                today = await session.scalar(select(ComplianceDay))
                assert today is not None
                for back in range(1, 30):
                    share = max(0.2, today.compliant / max(1, today.evaluated) - back * 0.012)
                    session.add(ComplianceDay(
                        installation_id=inst.id, evaluated=today.evaluated,
                        compliant=round(today.evaluated * share),
                        open_violations=today.open_violations + back,
                        day=(utcnow() - timedelta(days=back)).strftime("%Y-%m-%d")))
            await dispose_all()

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium,
                                                   args=CHROMIUM_ARGS)
                page = await browser.new_page(viewport=VIEWPORT)
                await page.goto(base)
                await page.get_by_role("link", name="Sign in with GitHub").click()
                await submit_github_sign_in(page, gh.url, OWNER)
                await expect(page.locator("[data-compliance]")).to_be_visible()
                await page.screenshot(path=str(out / "overview.png"), full_page=True)
                await page.goto(f"{base}/orgs/acme/repos?sort=violations&order=desc")
                await page.locator("[data-filter-input]").press_sequentially("svc-1")
                await expect(page.locator("#repo-results")).to_have_attribute(
                    "data-query", "q=svc-1&sort=violations&order=desc")
                await page.screenshot(path=str(out / "repos.png"), full_page=True)
                await browser.close()
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 30)
    print(f"screenshots written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(out))


if __name__ == "__main__":
    main()
