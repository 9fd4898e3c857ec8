"""The fake GitHub as webhook sender: subscriptions, the delivery log and its API, redelivery.

A small aiohttp receiver on a real socket stands in for the App's web server.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_jwt
from yarl import URL

from tests.fakegithub import hooks, webhooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import Installation

SECRET = "hooks-test-secret"
DAY = 86400.0
NOT_FOUND_DOC = "https://docs.github.com/rest/apps/webhooks"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (then 202), recording what came."""

    script: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.script.pop(0) if self.script else 202
        return web.json_response({"ok": 200 <= status < 300}, status=status,
                                 headers={"X-Receiver": "test"})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/api/github/webhooks", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/github/webhooks"
    yield rec
    await runner.cleanup()


@pytest.fixture
async def gh(fake_github: FakeGitHub, receiver: Receiver) -> FakeGitHub:
    fake_github.state.hook.url = receiver.url
    fake_github.state.webhook_secret = SECRET
    return fake_github


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def app_auth(gh: FakeGitHub) -> dict[str, str]:
    jwt = get_jwt(app_id=str(gh.app_id), private_key=gh.private_key_pem)
    return {"Authorization": f"Bearer {jwt}"}


async def call(session: aiohttp.ClientSession, gh: FakeGitHub, method: str, path: str,
               headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    url = path if path.startswith("http") else gh.url + path
    async with session.request(method, url, headers=app_auth(gh) if headers is None
                               else headers) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None, dict(resp.headers)


def push(gh: FakeGitHub, inst: Installation, n: int = 0) -> dict[str, Any]:
    repo = inst.repos[0]
    return webhooks.commit_and_push(gh.state, repo.full_name, {f"f{n}.txt": str(n)})


def next_link(headers: dict[str, str]) -> str | None:
    m = re.search(r'<([^>]+)>; rel="next"', headers.get("Link", ""))
    return m.group(1) if m else None


# ----------------------------------------------------------------------------- sending
async def test_only_subscribed_events_are_sent_and_logged(gh: FakeGitHub,
                                                          receiver: Receiver) -> None:
    st = gh.state
    inst = st.add_installation("acme", 1, events=["push"])
    issue = st.add_issue("acme/repo-000", "Hello", user_login="octocat")
    comment = st.add_issue_comment("acme/repo-000", issue.number, "octocat", "hi")

    assert await gh.send_event("issue_comment", webhooks.issue_comment(st, comment["id"])) is None
    assert receiver.received == [] and st.hook.log() == []

    sent = await gh.send_event("push", push(gh, inst))
    assert sent is not None and sent.ok and sent.event == "push"
    assert sent.installation_id == inst.id and sent.repository_id == inst.repos[0].id
    # Installation events reach every App, subscribed or not.
    created = await gh.send_event("installation", webhooks.installation(st, inst))
    assert created is not None and created.action == "created"
    assert [r.headers["X-GitHub-Event"] for r in receiver.received] == ["push", "installation"]

    # A suspended installation's events are not delivered; its installation events are.
    st.suspend_installation(inst.id)
    assert await gh.send_event("push", push(gh, inst, 1)) is None
    assert await gh.send_event("installation",
                               webhooks.installation(st, inst, "suspend")) is not None
    assert [d.event for d in st.hook.log()] == ["push", "installation", "installation"]

    # An inactive hook sends nothing; a payload of no installation is a test's mistake.
    st.hook.active = False
    assert await gh.send_event("installation", webhooks.installation(st, inst)) is None
    st.hook.active = True
    with pytest.raises(ValueError):
        await gh.send_event("push", {"ref": "refs/heads/main"})
    assert len(receiver.received) == 3


async def test_requests_carry_githubs_headers_and_signature(gh: FakeGitHub,
                                                            receiver: Receiver) -> None:
    st = gh.state
    inst = st.add_installation("acme", 1)
    payload = push(gh, inst)
    sent = await gh.send_event("push", payload)
    assert sent is not None
    got = receiver.received[0]
    assert got.body == webhooks.encode(payload)
    assert got.headers["X-GitHub-Delivery"] == sent.guid
    assert got.headers["X-GitHub-Event"] == "push"
    assert got.headers["X-GitHub-Hook-ID"] == str(webhooks.HOOK_ID)
    assert got.headers["X-GitHub-Hook-Installation-Target-Type"] == "integration"
    assert got.headers["X-GitHub-Hook-Installation-Target-ID"] == str(gh.app_id)
    assert got.headers["X-Hub-Signature-256"] == webhooks.sign(got.body, SECRET)
    assert got.headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert got.headers["Content-Type"] == "application/json"

    # Without a secret GitHub signs nothing.
    st.webhook_secret = None
    await gh.send_event("push", push(gh, inst, 1))
    assert "X-Hub-Signature-256" not in receiver.received[1].headers


async def test_the_log_records_outcomes(gh: FakeGitHub, receiver: Receiver,
                                        session: aiohttp.ClientSession) -> None:
    st = gh.state
    inst = st.add_installation("acme", 1)
    receiver.script = [503, 202]
    failed = await gh.send_event("push", push(gh, inst))
    ok = await gh.send_event("push", push(gh, inst, 1))
    assert failed is not None and ok is not None and ok.id > failed.id
    assert st.hook.attempts == {failed.guid: 1, ok.guid: 1}

    status, items, _ = await call(session, gh, "GET", "/app/hook/deliveries")
    assert status == 200
    assert [i["id"] for i in items] == [ok.id, failed.id]  # newest first
    assert items[0]["status"] == "OK" and items[0]["status_code"] == 202
    assert items[1]["status"] == "Invalid HTTP Response: 503" and items[1]["status_code"] == 503
    assert set(items[1]) == {
        "id", "guid", "delivered_at", "redelivery", "duration", "status", "status_code",
        "event", "action", "installation_id", "repository_id", "throttled_at"}
    assert items[1]["redelivery"] is False and items[1]["event"] == "push"
    assert items[1]["action"] is None and items[1]["installation_id"] == inst.id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", items[1]["delivered_at"])

    status, full, _ = await call(session, gh, "GET", f"/app/hook/deliveries/{failed.id}")
    assert status == 200 and full["guid"] == failed.guid and full["url"] == receiver.url
    assert full["request"]["headers"]["X-GitHub-Delivery"] == failed.guid
    assert full["request"]["payload"] == json.loads(receiver.received[0].body)
    assert full["response"]["headers"]["X-Receiver"] == "test"
    assert json.loads(full["response"]["payload"]) == {"ok": False}

    # No HTTP answer: nothing listening, or an answer slower than the hook's timeout.
    st.hook.url = "http://127.0.0.1:9/api/github/webhooks"
    refused = await gh.send_event("push", push(gh, inst, 2))
    assert refused is not None
    assert (refused.status, refused.status_code) == (hooks.STATUS_CONNECT_FAILED, 0)
    assert refused.response_headers is None
    st.hook.url, st.hook.timeout, receiver.delay = receiver.url, 0.2, 1.0
    slow = await gh.send_event("push", push(gh, inst, 3))
    assert slow is not None and (slow.status, slow.status_code) == (hooks.STATUS_TIMED_OUT, 0)

    # status filters by status_code range: 200-399 and 400-599 (0 is in neither).
    status, items, _ = await call(session, gh, "GET", "/app/hook/deliveries?status=failure")
    assert status == 200 and [i["id"] for i in items] == [failed.id]
    _, items, _ = await call(session, gh, "GET", "/app/hook/deliveries?status=success")
    assert [i["id"] for i in items] == [ok.id]
    status, body, _ = await call(session, gh, "GET", "/app/hook/deliveries?status=failed")
    assert status == 422 and body["message"] == "Validation Failed"


async def test_cursor_pagination_covers_every_delivery_once(
        gh: FakeGitHub, session: aiohttp.ClientSession) -> None:
    st = gh.state
    inst = st.add_installation("acme", 1)
    sent = [await gh.send_event("push", push(gh, inst, n)) for n in range(7)]
    ids = [d.id for d in reversed(sent) if d is not None]
    assert len(ids) == 7

    seen: list[int] = []
    url: str | None = "/app/hook/deliveries?per_page=2"
    pages = 0
    while url:
        status, items, headers = await call(session, gh, "GET", url)
        assert status == 200 and len(items) <= 2
        assert 'rel="last"' not in headers.get("Link", "")
        seen += [i["id"] for i in items]
        url = next_link(headers)
        if url:
            query = URL(url).query
            assert query["per_page"] == "2" and query["cursor"] and "page" not in query
        pages += 1
    assert seen == ids and pages == 4

    # The second page links back to the first.
    _, _, first_headers = await call(session, gh, "GET", "/app/hook/deliveries?per_page=2")
    link = next_link(first_headers)
    assert link is not None
    _, _, second_headers = await call(session, gh, "GET", link)
    prev = re.search(r'<([^>]+)>; rel="prev"', second_headers["Link"])
    assert prev is not None
    _, items, _ = await call(session, gh, "GET", prev.group(1))
    assert [i["id"] for i in items] == ids[:2]

    # A delivery made while paging does not shift the pages after it.
    await gh.send_event("push", push(gh, inst, 99))
    _, items, _ = await call(session, gh, "GET", link)
    assert [i["id"] for i in items] == ids[2:4]

    # gidgethub follows the same links (the app pages the log with getiter).
    api = GitHubAPI(session, "hooks-test", base_url=gh.url)
    jwt = get_jwt(app_id=str(gh.app_id), private_key=gh.private_key_pem)
    walked = [int(i["id"]) async for i in api.getiter("/app/hook/deliveries?per_page=3",
                                                       jwt=jwt)]
    assert walked[1:] == ids and len(set(walked)) == 8

    status, body, _ = await call(session, gh, "GET", "/app/hook/deliveries?cursor=v1_made-up")
    assert status == 400 and body["status"] == "400"


async def test_per_page_rules(gh: FakeGitHub, session: aiohttp.ClientSession) -> None:
    st = gh.state
    inst = st.add_installation("acme", 1)
    for n in range(101):
        await gh.send_event("push", push(gh, inst, n))
    _, items, headers = await call(session, gh, "GET", "/app/hook/deliveries?per_page=500")
    assert len(items) == 100 and next_link(headers) is not None
    for bad in ("0", "-3", "x"):
        _, items, headers = await call(session, gh, "GET", f"/app/hook/deliveries?per_page={bad}")
        assert len(items) == 30 and "per_page=30" in (next_link(headers) or "")


async def test_the_api_needs_the_app_jwt(gh: FakeGitHub, session: aiohttp.ClientSession) -> None:
    st = gh.state
    inst = st.add_installation("acme", 1)
    sent = await gh.send_event("push", push(gh, inst))
    assert sent is not None
    token = gh.installation_token(inst.id)
    for method, path in (("GET", "/app/hook/deliveries"),
                         ("GET", f"/app/hook/deliveries/{sent.id}"),
                         ("POST", f"/app/hook/deliveries/{sent.id}/attempts")):
        for headers in ({"Authorization": f"token {token}"},
                        {"Authorization": f"Bearer {token}"}, {}):
            status, body, _ = await call(session, gh, method, path, headers)
            assert status == 401 and body["status"] == "401", (method, path, headers)
    assert st.hook.redelivery_requests.total() == 0 and st.hook.attempts[sent.guid] == 1


async def test_redelivery_resends_the_same_guid_and_body(
        gh: FakeGitHub, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    st = gh.state
    inst = st.add_installation("acme", 1)
    receiver.script = [503]
    failed = await gh.send_event("push", push(gh, inst))
    assert failed is not None and not failed.ok

    status, body, _ = await call(session, gh, "POST", f"/app/hook/deliveries/{failed.id}/attempts")
    assert (status, body) == (202, {})
    await gh.hooks_idle()

    assert len(receiver.received) == 2
    first, again = receiver.received
    assert again.headers["X-GitHub-Delivery"] == first.headers["X-GitHub-Delivery"] == failed.guid
    assert again.body == first.body
    assert again.headers["X-Hub-Signature-256"] == webhooks.sign(again.body, SECRET)
    assert st.hook.attempts[failed.guid] == 2
    assert st.hook.redelivery_requests == {failed.guid: 1}

    _, items, _ = await call(session, gh, "GET", "/app/hook/deliveries")
    assert [(i["guid"], i["redelivery"], i["status"]) for i in items] == [
        (failed.guid, True, "OK"), (failed.guid, False, "Invalid HTTP Response: 503")]
    assert items[0]["id"] > failed.id
    _, only, _ = await call(session, gh, "GET", "/app/hook/deliveries?redelivery=true")
    assert [i["id"] for i in only] == [items[0]["id"]]

    # GitHub does not retry by itself: nothing more arrives.
    await asyncio.sleep(0.1)
    await gh.hooks_idle()
    assert len(receiver.received) == 2


async def test_three_day_limit(gh: FakeGitHub, receiver: Receiver,
                               session: aiohttp.ClientSession) -> None:
    st = gh.state
    inst = st.add_installation("acme", 1)
    receiver.script = [500, 500]
    recent = await gh.send_event("push", push(gh, inst), delivered_at=time.time() - 2.9 * DAY)
    assert recent is not None
    status, _, _ = await call(session, gh, "POST", f"/app/hook/deliveries/{recent.id}/attempts")
    assert status == 202
    await gh.hooks_idle()

    # Shown a little longer than it can be redelivered (the window is GitHub's 3 days).
    st.hook.retention_seconds = 4 * DAY
    old = await gh.send_event("push", push(gh, inst, 1), delivered_at=time.time() - 3 * DAY - 60)
    assert old is not None
    status, body, _ = await call(session, gh, "POST", f"/app/hook/deliveries/{old.id}/attempts")
    assert status == 422 and body["message"] == "Validation Failed"
    await gh.hooks_idle()
    assert st.hook.attempts[old.guid] == 1 and st.hook.redelivery_requests[old.guid] == 0

    # Past the retention a delivery is gone: not listed, not found, not redeliverable.
    st.hook.retention_seconds = hooks.RETENTION_SECONDS
    st.hook.age(0.2 * DAY)
    _, items, _ = await call(session, gh, "GET", "/app/hook/deliveries")
    assert old.id not in [i["id"] for i in items] and recent.id not in [i["id"] for i in items]
    assert len(items) == 1 and items[0]["redelivery"] is True
    for method, path in (("GET", f"/app/hook/deliveries/{old.id}"),
                         ("POST", f"/app/hook/deliveries/{recent.id}/attempts")):
        status, body, _ = await call(session, gh, method, path)
        assert status == 404 and body["message"] == "Not Found"


async def test_not_found_shapes(gh: FakeGitHub, session: aiohttp.ClientSession) -> None:
    for method, path in (("GET", "/app/hook/deliveries/123"),
                         ("GET", "/app/hook/deliveries/abc"),
                         ("POST", "/app/hook/deliveries/123/attempts")):
        status, body, _ = await call(session, gh, method, path)
        assert status == 404
        assert body["message"] == "Not Found" and body["status"] == "404"
        assert body["documentation_url"].startswith(NOT_FOUND_DOC)
    assert gh.state.hook.redelivery_requests.total() == 0
