"""The dashboard end to end: sign-in with the fake GitHub's OAuth flow, access by org role
and team, every route refused when signed out, CSRF, the pages, Scan Now to completion,
exports, badges and the job monitor's Retry. Real web server, worker, Redis and database.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from app.db.models import ComplianceDay, FailedJob, Installation, Scan
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FailRule, FakeState
from tests.stack import Stack, dashboard_stack, running_stack
from tests.test_e2e import build_org

TEAM = "acme/platform"
OWNER, MEMBER, OUTSIDER, BYSTANDER = "olivia", "tom", "mallory", "bea"


@pytest.fixture
async def dash(fake_github: FakeGitHub, redis_url: str,
               any_database_url: str) -> AsyncIterator[Stack]:
    async with dashboard_stack(fake_github, redis_url, any_database_url,
                               ADMIN_LOGINS="root-operator") as s:
        yield s


def setup_org(st: FakeState, n: int = 12) -> None:
    inst, _ = build_org(st, n)
    inst.permissions["members"] = "read"
    st.add_org_member("acme", OWNER, "admin")
    st.add_org_member("acme", MEMBER, "member")
    st.add_org_member("acme", BYSTANDER, "member")  # a member, but not in the team
    st.add_team("acme", "platform", [MEMBER])
    st.user(OUTSIDER)


async def install(stack: Stack, st: FakeState) -> None:
    (inst,) = list(st.installations.values())
    status, _ = await stack.deliver("installation", hooks.installation(st, inst))
    assert status == 202
    await stack.drain()


async def installed_org(stack: Stack, fake: FakeGitHub, n: int = 12) -> FakeState:
    """setup_org's org, installed and scanned."""
    setup_org(fake.state, n)
    await install(stack, fake.state)
    return fake.state


async def fail_a_full_scan(stack: Stack, st: FakeState,
                           monkeypatch: pytest.MonkeyPatch) -> FailRule:
    """A full scan whose repository listing GitHub refuses, with one try allowed: it fails
    for good. Setting the returned rule's `remaining` to 0 lets GitHub answer again."""
    from tasks import jobs

    (inst,) = list(st.installations.values())
    monkeypatch.setattr(jobs, "MAX_TRIES", 1)
    rule = st.fail_next(1000, 403, path_prefix="/installation/repositories")
    await stack.redis.enqueue_job("scan_installation", inst.id, _job_id="boom")
    await stack.drain()
    return rule


def browser() -> aiohttp.ClientSession:
    # One cookie jar for both servers (both on 127.0.0.1), like a browser's.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(http: aiohttp.ClientSession, stack: Stack, fake: FakeGitHub,
                  login: str, next_path: str = "/") -> aiohttp.ClientResponse:
    """Sign in on the fake github.com, then through the App's OAuth flow; the response is
    the page the flow lands on."""
    async with http.post(f"{fake.url}/session", data={"login": login, "return_to": "/"},
                         allow_redirects=False) as resp:
        assert resp.status in (302, 303)
    resp = await http.get(f"{stack.base_url}/login", params={"next": next_path})
    await resp.read()
    return resp


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def text(http: aiohttp.ClientSession, url: str, status: int = 200,
               **kwargs: Any) -> str:
    async with http.get(url, **kwargs) as resp:
        body = await resp.text()
        assert resp.status == status, (url, resp.status, body[:500])
        return body


# ----------------------------------------------------------------------------- sign-in
async def test_owner_signs_in_and_sees_the_overview(dash: Stack,
                                                    fake_github: FakeGitHub) -> None:
    st = await installed_org(dash, fake_github)
    async with browser() as http:
        landed = await sign_in(http, dash, fake_github, OWNER)
        # One installation visible: the home page goes straight to it.
        assert landed.status == 200 and landed.url.path == "/orgs/acme"
        html = await landed.text()
        assert OWNER in html and "Compliance" in html
        # The percentage is compliant ÷ evaluated, from the stored results.
        totals = re.search(r"data-compliance>([^<]+)<", html)
        assert totals is not None and totals.group(1).strip().endswith("%")
        assert "Require AGENTS.md" in html  # open violations per policy
        by_policy = re.findall(r"</code></td><td>(\d+)</td></tr>", html)
        opened = re.search(r"data-open>(\d+)<", html)
        assert opened is not None and by_policy
        assert int(opened.group(1)) == sum(map(int, by_policy)) == len(
            await dash.violations("open"))
        assert "<svg" in html and "Compliance over the last 30 days" in html
        # The session cookie is HttpOnly and SameSite=Lax, and holds no token.
        (cookie,) = [c for c in http.cookie_jar if c.key == "pe_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax"
        assert "ghu_" not in cookie.value
    assert st.oauth_tokens_issued == 1


async def test_team_member_allowed_bystander_and_outsider_refused(
        dash: Stack, fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github)
    async with browser() as http:
        await sign_in(http, dash, fake_github, MEMBER)
        html = await text(http, f"{dash.base_url}/orgs/acme/repos")
        assert "acme/svc-00" in html
    for login in (BYSTANDER, OUTSIDER):
        async with browser() as http:
            landed = await sign_in(http, dash, fake_github, login)
            assert landed.url.path == "/"
            home = await landed.text()
            assert "acme/svc" not in home
            for path in ("/orgs/acme", "/orgs/acme/repos", "/orgs/acme/repos/svc-00",
                         "/orgs/acme/config", "/orgs/acme/scans", "/orgs/acme/actions",
                         "/orgs/acme/repos?format=csv"):
                body = await text(http, f"{dash.base_url}{path}", status=403)
                # The refusal names the team to ask for, and nothing of the org's data.
                assert TEAM in body, path
                assert "svc-0" not in body and "config.yaml" not in body
                assert "Require AGENTS.md" not in body and "authorized_team:" not in body


async def test_membership_is_checked_with_github_and_cached_briefly(
        dash: Stack, fake_github: FakeGitHub) -> None:
    st = await installed_org(dash, fake_github)
    async with browser() as http:
        await sign_in(http, dash, fake_github, MEMBER)
        before = st.count_requests("GET", "/orgs/acme/teams/platform/memberships/tom")
        await text(http, f"{dash.base_url}/orgs/acme")
        await text(http, f"{dash.base_url}/orgs/acme/repos")
        # Cached: the second page asks GitHub nothing more.
        assert st.count_requests("GET", "/orgs/acme/teams/platform/memberships/tom") == before
        # Removed from the team: refused once the cache entry is gone (not trusted from
        # the cookie).
        st.remove_team_member("acme", "platform", MEMBER)
        await dash.redis.delete(*[k async for k in dash.redis.scan_iter("pe:access:*")])
        await text(http, f"{dash.base_url}/orgs/acme", status=403)


async def test_wrong_state_is_refused(dash: Stack, fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github)
    async with browser() as http:
        async with http.post(f"{fake_github.url}/session",
                             data={"login": OWNER, "return_to": "/"},
                             allow_redirects=False):
            pass
        # Start the flow, but come back with another state value.
        async with http.get(f"{dash.base_url}/login", allow_redirects=False) as resp:
            authorize = resp.headers["Location"]
        async with http.get(authorize, allow_redirects=False) as resp:
            callback = resp.headers["Location"]
        forged = re.sub(r"state=[^&]+", "state=forged", callback)
        body = await text(http, forged, status=400)
        assert "not from this browser" in body
        # Not signed in: the org's pages still send the browser to sign in.
        async with http.get(f"{dash.base_url}/orgs/acme", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/login")
        # The refused attempt used its state up: even the genuine callback now fails.
        await text(http, callback, status=400)
        # A fresh attempt signs in; replaying its callback afterwards is refused.
        async with http.get(f"{dash.base_url}/login", allow_redirects=False) as resp:
            authorize = resp.headers["Location"]
        async with http.get(authorize, allow_redirects=False) as resp:
            callback = resp.headers["Location"]
        good = await text(http, callback)
        assert OWNER in good
        body = await text(http, callback, status=400)
        assert "Sign in again" in body


async def test_signed_out_every_route_is_redirected_or_refused(
        dash: Stack, fake_github: FakeGitHub) -> None:
    st = await installed_org(dash, fake_github)
    (inst,) = list(st.installations.values())
    async with dash.db() as db:
        scan_id = await db.scalar(select(Scan.id).limit(1))
    paths = ["/orgs/acme", "/orgs/acme/repos", "/orgs/acme/repos/svc-00",
             "/orgs/acme/repos?format=json", "/orgs/acme/scans",
             f"/orgs/acme/scans/{scan_id}", f"/orgs/acme/scans/{scan_id}/events",
             "/orgs/acme/actions", "/orgs/acme/actions?format=csv", "/orgs/acme/config",
             "/jobs", "/badge/acme/svc-00.svg"]
    async with browser() as http:
        home = await text(http, f"{dash.base_url}/")
        assert "Sign in with GitHub" in home and "acme" not in home
        for path in paths:
            async with http.get(f"{dash.base_url}{path}", allow_redirects=False) as resp:
                body = await resp.text()
                assert resp.status in (303, 401, 404), (path, resp.status)
                assert "svc-0" not in body and "acme/" not in body, path
        for path in ("/orgs/acme/scans", "/orgs/acme/repos/svc-00/scans",
                     "/orgs/acme/config/check", "/jobs/failed/1/retry", "/logout"):
            async with http.post(f"{dash.base_url}{path}", data={"csrf": "x"},
                                 allow_redirects=False) as resp:
                assert resp.status in (303, 401, 403), (path, resp.status)
        for path in ("/healthz", "/readyz"):
            async with http.get(f"{dash.base_url}{path}") as resp:
                assert resp.status in (200, 503)
        async with http.get(f"{dash.base_url}/metrics") as resp:
            assert resp.status == 404  # METRICS_TOKEN unset: off
    async with dash.db() as db:
        assert await db.scalar(select(Scan.id).where(Scan.trigger.like("user:%"))) is None
    assert inst.id


async def test_post_without_csrf_token_is_refused(dash: Stack, fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github)
    async with browser() as http:
        await sign_in(http, dash, fake_github, OWNER)
        for token in (None, "not-the-token"):
            data = {} if token is None else {"csrf": token}
            async with http.post(f"{dash.base_url}/orgs/acme/scans", data=data,
                                 allow_redirects=False) as resp:
                assert resp.status == 403
                assert "expired" in await resp.text()
    async with dash.db() as db:
        assert await db.scalar(select(Scan.id).where(Scan.status == "queued")) is None


# ----------------------------------------------------------------------------- pages
async def test_repositories_filter_sort_paginate_and_export(
        dash: Stack, fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github, n=12)
    async with browser() as http:
        await sign_in(http, dash, fake_github, OWNER)
        base = f"{dash.base_url}/orgs/acme/repos"
        html = await text(http, base, params={"q": "svc-1"})
        names = re.findall(r'data-repo="([^"]+)"', html)
        assert names == ["acme/svc-10", "acme/svc-11"]
        html = await text(http, base, params={"state": "compliant"})
        compliant = re.findall(r'data-repo="([^"]+)"', html)
        assert "acme/.github" in compliant and "acme/svc-00" not in compliant
        html = await text(http, base, params={"policy": "Require AGENTS.md"})
        assert re.findall(r'data-repo="([^"]+)"', html) == [
            "acme/svc-00", "acme/svc-03", "acme/svc-06", "acme/svc-09"]
        html = await text(http, base, params={"state": "exempt"})
        assert set(re.findall(r'data-repo="([^"]+)"', html)) == {"acme/old", "acme/forked"}
        html = await text(http, base, params={"sort": "violations", "order": "desc",
                                              "per_page": "3"})
        first = re.findall(r'data-repo="([^"]+)"', html)
        assert len(first) == 3 and first[0] == "acme/svc-00"  # 3 open: the most
        assert "Page 1 of" in html and 'rel="next"' in html
        html = await text(http, base, params={"q": "svc", "partial": "1"})
        assert "<html" not in html and "data-repos" in html  # the table alone, for JS
        # A filter that is a LIKE wildcard matches literally.
        html = await text(http, base, params={"q": "%"})
        assert re.findall(r'data-repo="([^"]+)"', html) == []
        exported = await text(http, base, params={"format": "csv", "state": "violating"})
        rows = list(csv.DictReader(io.StringIO(exported)))
        assert rows and all(r["state"] == "violating" for r in rows)
        assert {"acme/svc-00"} <= {r["full_name"] for r in rows}
        data = json.loads(await text(http, base, params={"format": "json", "q": "svc-00"}))
        assert data[0]["full_name"] == "acme/svc-00" and data[0]["open_violations"] == 3


async def test_repository_detail_shows_results_issue_and_history(
        dash: Stack, fake_github: FakeGitHub) -> None:
    st = await installed_org(dash, fake_github, n=3)
    async with browser() as http:
        await sign_in(http, dash, fake_github, OWNER)
        html = await text(http, f"{dash.base_url}/orgs/acme/repos/svc-00")
        assert "violating" in html and "Require AGENTS.md" in html
        issue = next(i for i in st.issues("acme/svc-00") if "AGENTS" in i.title)
        assert f"/acme/svc-00/issues/{issue.number}" in html
        assert "create-issue" in html  # the action history
        # Rescan: queued from the page, run by the worker, recorded as the user's.
        csrf = csrf_of(html)
        async with http.post(f"{dash.base_url}/orgs/acme/repos/svc-00/scans",
                             data={"csrf": csrf}, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].endswith("?rescan=queued")
        await dash.drain()
        async with dash.db() as db:
            scan = await db.scalar(select(Scan).where(Scan.trigger == f"user:{OWNER}"))
        assert scan is not None and scan.kind == "repo" and scan.status == "ok"
        await text(http, f"{dash.base_url}/orgs/acme/repos/nope", status=404)


async def test_scan_now_runs_to_completion_with_live_progress(
        dash: Stack, fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github, n=6)
    async with browser() as http:
        html = (await sign_in(http, dash, fake_github, OWNER))
        overview = await html.text()
        csrf = csrf_of(overview)
        async with http.post(f"{dash.base_url}/orgs/acme/scans", data={"csrf": csrf},
                             allow_redirects=False) as resp:
            assert resp.status == 303
            target = resp.headers["Location"]
        assert re.fullmatch(r"/orgs/acme/scans/\d+", target)
        # Pressing it again while the scan is queued lands on the same scan, queues nothing.
        async with http.post(f"{dash.base_url}/orgs/acme/scans", data={"csrf": csrf},
                             allow_redirects=False) as resp:
            assert resp.headers["Location"] == target
        page = await text(http, f"{dash.base_url}{target}")
        assert "queued" in page and "data-live=\"yes\"" in page
        # The event stream reports progress and ends with `done` once a worker ran it.
        events: list[tuple[str, dict[str, Any]]] = []

        async def listen() -> None:
            async with http.get(f"{dash.base_url}{target}/events") as resp:
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                event = ""
                async for raw in resp.content:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        events.append((event, json.loads(line.split(":", 1)[1])))
                        if event == "done":
                            return

        import asyncio

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.3)
        await dash.drain()
        await asyncio.wait_for(listener, 10)
        assert events[0][0] == "progress" and events[0][1]["status"] == "queued"
        assert events[-1][0] == "done" and events[-1][1]["status"] == "ok"
        assert events[-1][1]["done"] == events[-1][1]["total"] == 7
        async with dash.db() as db:
            full = list(await db.scalars(select(Scan).where(Scan.kind == "full")
                                         .order_by(Scan.id)))
            days = list(await db.scalars(select(ComplianceDay)))
        assert [s.trigger for s in full] == ["webhook:installation.created", f"user:{OWNER}"]
        assert len(days) == 1 and days[0].evaluated == 7
        page = await text(http, f"{dash.base_url}{target}")
        assert "data-live=\"no\"" in page and ">ok<" in page


async def test_action_log_filters_and_exports(dash: Stack, fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github, n=6)
    async with browser() as http:
        await sign_in(http, dash, fake_github, MEMBER)
        base = f"{dash.base_url}/orgs/acme/actions"
        html = await text(http, base, params={"action": "log-only"})
        assert "log-only" in html and "Read-only workflow token" in html
        assert "Require AGENTS.md" not in html.split("data-action-log")[1]
        rows = list(csv.DictReader(io.StringIO(
            await text(http, base, params={"format": "csv", "action": "create-issue"}))))
        assert rows and {r["action"] for r in rows} == {"create-issue"}
        assert all(r["url"].startswith(fake_github.url) for r in rows if r["url"])
        data = json.loads(await text(http, base, params={"format": "json",
                                                         "repository": "svc-00"}))
        assert data and {d["repository"] for d in data} == {"acme/svc-00"}


async def test_config_page_and_onboarding(dash: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("lonely", [{"name": ".github", "files": {}}, "app"],
                               permissions={"members": "read", "contents": "read",
                                            "metadata": "read", "issues": "write"})
    st.add_org_member("lonely", OWNER, "admin")
    await dash.deliver("installation", hooks.installation(st, inst))
    await dash.drain()
    async with browser() as http:
        await sign_in(http, dash, fake_github, OWNER)
        html = await text(http, f"{dash.base_url}/orgs/lonely/config")
        assert "data-onboarding" in html and "has_agents_md" in html
        assert "correct_workflow_permissions" in html
        # The starter is a working config: put it in place and check again.
        starter = re.search(r"<pre data-starter>(.*?)</pre>", html, re.S)
        assert starter is not None
        import html as html_lib

        st.set_file("lonely/.github", "config.yaml", html_lib.unescape(starter.group(1)))
        async with http.post(f"{dash.base_url}/orgs/lonely/config/check",
                             data={"csrf": csrf_of(html)}, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].endswith("?checking=1")
        await dash.drain()
        html = await text(http, f"{dash.base_url}/orgs/lonely/config")
        assert "data-onboarding" not in html and ">valid<" in html
        assert "Require AGENTS.md" in html
        # A broken push keeps the last valid config and shows the error with its line.
        st.set_file("lonely/.github", "config.yaml", "policies:\n  - name: x\n    typo: 1\n")
        row_inst = await dash.installation(inst.id)
        assert row_inst is not None
        from app.services.scan_requests import request_full_scan
        from tests.stack import services_for

        await request_full_scan(services_for(dash), inst.id, "test")
        await dash.drain()
        html = await text(http, f"{dash.base_url}/orgs/lonely/config")
        assert "config.yaml:3" in html and "stays in force" in html


async def test_badge_only_for_public_repositories_when_enabled(
        dash: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    setup_org(st, n=3)
    st.repo("acme/svc-01").visibility = "private"
    await install(dash, st)
    async with browser() as http:
        await text(http, f"{dash.base_url}/badge/acme/svc-00.svg", status=404)
        cfg = st.repo("acme/.github").files["config.yaml"]
        st.set_file("acme/.github", "config.yaml", "public_badges: true\n" + cfg)
        from app.services.scan_requests import request_full_scan
        from tests.stack import services_for

        (inst,) = list(st.installations.values())
        await request_full_scan(services_for(dash), inst.id, "test")
        await dash.drain()
        async with http.get(f"{dash.base_url}/badge/acme/svc-00.svg") as resp:
            assert resp.status == 200 and resp.content_type == "image/svg+xml"
            svg = await resp.text()
        assert "violations" in svg and "<svg" in svg
        await text(http, f"{dash.base_url}/badge/acme/svc-01.svg", status=404)  # private
        await text(http, f"{dash.base_url}/badge/acme/nope.svg", status=404)


# ----------------------------------------------------------------------------- jobs
async def test_job_monitor_shows_a_failure_and_retry_runs_it(
        dash: Stack, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    st = await installed_org(dash, fake_github, n=2)
    (inst,) = list(st.installations.values())
    rule = await fail_a_full_scan(dash, st, monkeypatch)
    async with dash.db() as db:
        failed = list(await db.scalars(select(FailedJob)))
    assert [(f.function, f.job_id, f.installation_id) for f in failed] == [
        ("scan_installation", "boom", inst.id)]
    assert "403" in failed[0].error
    async with dash.db() as db:
        stuck = await db.scalar(select(Scan).order_by(Scan.id.desc()).limit(1))
    # Its scan record is closed as errored: it does not hold up a later Scan Now.
    assert stuck is not None and stuck.status == "errored" and "403" in (stuck.detail or "")
    rule.remaining = 0
    async with browser() as http:
        await sign_in(http, dash, fake_github, MEMBER)  # a team member is no operator
        await text(http, f"{dash.base_url}/jobs", status=403)
    async with browser() as http:
        await sign_in(http, dash, fake_github, OWNER)
        html = await text(http, f"{dash.base_url}/jobs")
        assert "data-failed-job" in html and "403" in html
        assert f"installation_id={inst.id}" in html
        assert "scan_installation" in html.split('id="failed"')[1]
        fid = failed[0].id
        async with http.post(f"{dash.base_url}/jobs/failed/{fid}/retry",
                             data={"csrf": csrf_of(html)}, allow_redirects=False) as resp:
            assert resp.status == 303
        await dash.drain()
        html = await text(http, f"{dash.base_url}/jobs")
        assert "retried" in html
        assert re.search(rf'data-failed-job="{fid}".*?retried', html, re.S)
    async with dash.db() as db:
        row = await db.get(FailedJob, failed[0].id)
        assert row is not None and row.retried_by == OWNER
        assert await db.scalar(select(Installation.id)) == inst.id


# ----------------------------------------------------------------------------- sessions
async def test_switching_between_installations_and_signing_out(
        dash: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    setup_org(st, n=2)
    other = st.add_installation("globex", [{"name": ".github", "files": {}}],
                                permissions={"members": "read", "contents": "read",
                                             "metadata": "read", "issues": "write"})
    st.add_org_member("globex", OWNER, "admin")
    for inst in st.installations.values():
        await dash.deliver("installation", hooks.installation(st, inst))
    await dash.drain()
    async with browser() as http:
        landed = await sign_in(http, dash, fake_github, OWNER)
        home = await landed.text()
        # Two organizations: the home page lists both, and every page has the switcher.
        assert landed.url.path == "/" and "/orgs/acme" in home and "/orgs/globex" in home
        page = await text(http, f"{dash.base_url}/orgs/acme/repos")
        assert '<option value="globex"' in page and '<option value="acme" selected' in page
        async with http.get(f"{dash.base_url}/", params={"org": "globex"}) as resp:
            assert resp.url.path == "/orgs/globex"
            assert "globex" in await resp.text()
        async with http.post(f"{dash.base_url}/logout", data={"csrf": csrf_of(page)}) as resp:
            assert "Sign in with GitHub" in await resp.text()
        async with http.get(f"{dash.base_url}/orgs/acme", allow_redirects=False) as resp:
            assert resp.status == 303
    assert other.id


async def test_expired_or_tampered_session_is_signed_out(dash: Stack,
                                                         fake_github: FakeGitHub) -> None:
    import time as time_mod

    from app.web.access import _fernet

    st = await installed_org(dash, fake_github, n=2)
    user = st.user(OWNER)
    secret = dash.settings.require_session_secret()
    now = int(time_mod.time())
    old_sign_in = now - dash.settings.SESSION_MAX_AGE - 60

    def session(at: int) -> bytes:
        return json.dumps({"created": now, "session": {"uid": user.id, "login": OWNER,
                                                       "csrf": "t", "at": at}}).encode()

    fernet = _fernet(secret)
    fresh = fernet.encrypt(session(now)).decode()
    stale = fernet.encrypt_at_time(session(now), old_sign_in).decode()
    # Re-issued lately (a visit to /login re-saves the cookie), but signed in too long ago.
    renewed = fernet.encrypt(session(old_sign_in)).decode()
    async with aiohttp.ClientSession() as http:
        for cookie, signed_in in ((fresh, True), (stale, False), (renewed, False),
                                  (fresh[:-4] + "AAAA", False)):
            async with http.get(f"{dash.base_url}/orgs/acme", allow_redirects=False,
                                headers={"Cookie": f"pe_session={cookie}"}) as resp:
                assert (resp.status == 200) is signed_in, resp.status


async def test_cookie_is_secure_behind_https_and_no_secret_reaches_pages_or_logs(
        fake_github: FakeGitHub, redis_url: str, database_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    st = fake_github.state
    st.web_url = fake_github.url
    setup_org(st, n=2)
    async with running_stack(
            github_url=fake_github.url, app_id=fake_github.app_id,
            private_key=fake_github.private_key_pem, redis_url=redis_url,
            database_url=database_url, GITHUB_URL=fake_github.url,
            GITHUB_CLIENT_ID=st.client_id, GITHUB_CLIENT_SECRET=st.client_secret,
            PUBLIC_URL="https://enforcer.example.com") as stack:
        await install(stack, st)
        async with browser() as http:
            async with http.get(f"{stack.base_url}/login", allow_redirects=False) as resp:
                set_cookie = resp.headers["Set-Cookie"]
                authorize = resp.headers["Location"]
            assert "Secure" in set_cookie and "HttpOnly" in set_cookie
            assert "SameSite=Lax" in set_cookie
            # The OAuth callback is PUBLIC_URL's, whatever Host the request had.
            from urllib.parse import unquote

            assert "redirect_uri=https://enforcer.example.com/login/callback" \
                in unquote(authorize)
    async with running_stack(
            github_url=fake_github.url, app_id=fake_github.app_id,
            private_key=fake_github.private_key_pem, redis_url=redis_url,
            database_url=database_url, GITHUB_URL=fake_github.url,
            GITHUB_CLIENT_ID=st.client_id, GITHUB_CLIENT_SECRET=st.client_secret) as stack:
        await install(stack, st)
        caplog.set_level("DEBUG")
        pages = []
        async with browser() as http:
            await sign_in(http, stack, fake_github, OWNER)
            for path in ("/orgs/acme", "/orgs/acme/repos", "/orgs/acme/config",
                         "/orgs/acme/scans", "/orgs/acme/actions", "/jobs"):
                pages.append(await text(http, f"{stack.base_url}{path}"))
        issued = list(st.user_tokens)
        assert issued and all(t.startswith("ghu_") for t in issued)
        logged = "\n".join(r.getMessage() for r in caplog.records)
        secrets_ = [*issued, st.client_secret, stack.settings.require_session_secret(),
                    "PRIVATE KEY", *(c.code for c in st.oauth_codes.values())]
        for secret in secrets_:
            assert secret not in logged
            assert all(secret not in p for p in pages)


async def test_every_route_has_an_access_level(dash: Stack) -> None:
    """A route added without a level is refused; HEAD is allowed where GET is."""
    async with aiohttp.ClientSession() as http:
        async with http.head(f"{dash.base_url}/healthz") as resp:
            assert resp.status == 200
        async with http.head(f"{dash.base_url}/orgs/acme", allow_redirects=False) as resp:
            assert resp.status == 303


async def test_next_cannot_leave_the_site(dash: Stack, fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github, n=2)
    for target in ("//evil.example/x", "/\t/evil.example", "/\n/evil.example",
                   "https://evil.example/", "/\\evil.example"):
        async with browser() as http:
            landed = await sign_in(http, dash, fake_github, OWNER, next_path=target)
            assert landed.url.host == "127.0.0.1" and landed.url.path == "/orgs/acme", target
    async with browser() as http:
        landed = await sign_in(http, dash, fake_github, OWNER, next_path="/orgs/acme/config")
        assert landed.url.path == "/orgs/acme/config"


async def test_out_of_range_numbers_and_get_logout(dash: Stack, fake_github: FakeGitHub) -> None:
    await installed_org(dash, fake_github, n=2)
    async with browser() as http:
        await sign_in(http, dash, fake_github, OWNER)
        huge = "9" * 25
        await text(http, f"{dash.base_url}/orgs/acme/scans/{huge}", status=404)
        for path in ("/orgs/acme/repos", "/orgs/acme/actions", "/orgs/acme/scans"):
            await text(http, f"{dash.base_url}{path}", params={"page": huge})
        # A GET of /logout (a link from anywhere) only asks; the POST signs out.
        body = await text(http, f"{dash.base_url}/logout")
        assert "data-signout" in body
        await text(http, f"{dash.base_url}/orgs/acme")


async def test_an_outsider_costs_no_membership_checks(dash: Stack,
                                                      fake_github: FakeGitHub) -> None:
    st = await installed_org(dash, fake_github, n=2)
    async with browser() as http:
        landed = await sign_in(http, dash, fake_github, OUTSIDER)
        assert "no organization" in (await landed.text())
        await text(http, f"{dash.base_url}/")
    assert st.count_requests("GET", "/orgs/acme/memberships") == 0


async def test_a_full_scan_that_times_out_fails_visibly(
        dash: Stack, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped by the time limit: recorded as a failure with Retry, and its record closed,
    so the next Scan Now queues a new scan."""
    from tasks import jobs

    st = await installed_org(dash, fake_github, n=2)
    (inst,) = list(st.installations.values())
    monkeypatch.setattr(jobs, "MAX_TRIES", 1)
    monkeypatch.setattr(jobs, "SCAN_SETUP_TIMEOUT", 0.3)
    st.latency = 0.5
    async with browser() as http:
        page = await (await sign_in(http, dash, fake_github, OWNER)).text()
        async with http.post(f"{dash.base_url}/orgs/acme/scans", data={"csrf": csrf_of(page)},
                             allow_redirects=False) as resp:
            first = resp.headers["Location"]
        await dash.drain()
        st.latency = 0
        async with dash.db() as db:
            failed = list(await db.scalars(select(FailedJob)))
            scan = await db.get(Scan, int(first.rsplit("/", 1)[1]))
        assert [f.function for f in failed] == ["scan_installation"]
        assert "TimeoutError" in failed[0].error
        assert scan is not None and scan.status == "errored"
        async with http.post(f"{dash.base_url}/orgs/acme/scans", data={"csrf": csrf_of(page)},
                             allow_redirects=False) as resp:
            assert resp.headers["Location"] != first
    assert inst.id


async def test_a_job_past_the_time_limit_is_a_recorded_failure(
        dash: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from tasks import monitor
    from tests.stack import services_for

    monkeypatch.setattr(monitor, "JOB_TIMEOUT_SECONDS", monitor.TIMEOUT_MARGIN_SECONDS + 0.2)

    async def scan_repo(ctx: dict[str, Any], installation_id: int, repo_id: int) -> None:
        await asyncio.sleep(5)  # a job that hangs

    job = monitor.monitored(scan_repo)
    ctx = {"services": services_for(dash), "job_id": "hung", "job_try": 1}
    with pytest.raises(TimeoutError):
        await job(ctx, 7, 8)
    async with dash.db() as db:
        (failed,) = list(await db.scalars(select(FailedJob)))
    assert (failed.function, failed.installation_id) == ("scan_repo", 7)
    assert "stopped" in failed.error
    assert await dash.redis.hlen("pe:jobs:running") == 0  # type: ignore[misc]
