"""`notify:` channels end to end: a real receiver on a socket, the real worker, the fake
GitHub. Webhook bodies are verified as a receiver would (docs/configuration.md); a
receiver that fails gets the same batch again after a backoff and nothing twice; a channel
that hangs holds up no issue; private addresses are refused; secrets stay out of logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select, update

from app.config import ConfigError, parse_config
from app.db.models import Notification, utcnow
from app.notify import transport
from app.notify.channels import channel_problems, masked_values, resolve_target
from app.notify.events import Batch, Event
from app.notify.slack import slack_payload
from app.services import notifications
from app.services.withdrawals import REPO_ARCHIVED, withdraw
from app.settings import Settings
from tasks import jobs
from tasks.worker import create_worker, worker_settings
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation
from tests.stack import Stack, dashboard_stack, services_for
from tests.test_dashboard import sign_in

SIEM_SECRET = "siem-hmac-key-4f1c2b9d7e0a"
SLACK_PATH = "/services/T0001/B0002/slackwebhooksecret0123"
SIGNATURE = "X-Policy-Enforcer-Signature-256"
DELIVERY = "X-Policy-Enforcer-Delivery"
AGENTS, CATALOG = "Require AGENTS.md", "Require catalog-info.yaml"
OWNER = "olivia"

CONFIG = """\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
  - name: Require catalog-info.yaml
    type: has_catalog_info_yaml
    action: create-issue
notify:
  - name: siem
    type: webhook
    url: {receiver}/siem
    secret_env: NOTIFY_TEST_SIEM_SECRET
  - name: security-slack
    type: slack
    url_env: NOTIFY_TEST_SLACK
    digest_minutes: 60
    events: [opened]
    policies: [Require AGENTS.md]
"""
# What the first scan opens: svc-a lacks both files, svc-b the catalog entry.
FIRST_OPENED = {("opened", "acme/svc-a", AGENTS), ("opened", "acme/svc-a", CATALOG),
                ("opened", "acme/svc-b", CATALOG)}


# ----------------------------------------------------------------------------- receiver
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server that records every POST; answers `answers` in order, then 200.
    While `release` is clear it takes requests and answers none."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    answered: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, dict(request.headers), await request.read(),
                                      time.monotonic()))
        await self.release.wait()
        status, text = self.answers.pop(0) if self.answers else (200, "ok")
        self.answered += 1
        return web.Response(status=status, text=text)

    def at_path(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    rec.release.set()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)  # its paths hold the Slack "secret"
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        rec.release.set()
        await runner.cleanup()


def verify(secret: bytes, body: bytes, header: str, max_age: float = 300) -> dict[str, Any]:
    """What a receiver does (docs/configuration.md): the HMAC of the raw body, compared in
    constant time, then the timestamp inside the signed body."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, header):
        raise ValueError("bad signature")
    payload: dict[str, Any] = json.loads(body)
    if abs(time.time() - payload["timestamp"]) > max_age:
        raise ValueError("too old")
    return payload


def events_of(payload: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["event"], e["repository"], e["policy"]) for e in payload["events"]}


# ----------------------------------------------------------------------------- the stack
@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str, any_database_url: str,
                receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    monkeypatch.setenv("NOTIFY_TEST_SIEM_SECRET", SIEM_SECRET)
    monkeypatch.setenv("NOTIFY_TEST_SLACK", receiver.url + SLACK_PATH)
    async with dashboard_stack(
            fake_github, redis_url, any_database_url,
            # The receiver is on 127.0.0.1 over http; retries 50 ms apart, doubling.
            NOTIFY_ALLOW_PRIVATE_NETWORKS=True, NOTIFY_RETRY_SECONDS=0.05) as s:
        yield s


def build(st: FakeState, config: str) -> Installation:
    both = {"AGENTS.md": "# Agents\n", "catalog-info.yaml": "spec:\n  owner: group:a\n"}
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": config, **both}},
        {"name": "svc-a", "files": {"README.md": "a\n"}},
        {"name": "svc-b", "files": {"AGENTS.md": "# Agents\n"}},
        {"name": "svc-c", "files": both},
    ])
    inst.permissions["members"] = "read"
    st.add_org_member("acme", OWNER, "admin")
    return inst


async def install(stack: Stack, st: FakeState, inst: Installation) -> None:
    status, _ = await stack.deliver("installation", hooks.installation(st, inst))
    assert status == 202
    await stack.drain()


async def rows(stack: Stack, channel: str | None = None) -> list[Notification]:
    async with stack.db() as db:
        query = select(Notification).order_by(Notification.id)
        if channel is not None:
            query = query.where(Notification.channel == channel)
        return list(await db.scalars(query))


def open_issue_titles(st: FakeState, full_name: str) -> set[str]:
    return {i.title for i in st.issues(full_name) if i.state == "open"}


# ----------------------------------------------------------------------------- tests
async def test_signed_webhook_and_slack_digest(stack: Stack, fake_github: FakeGitHub,
                                               receiver: Receiver,
                                               caplog: pytest.LogCaptureFixture) -> None:
    st = fake_github.state
    inst = build(st, CONFIG.format(receiver=receiver.url))
    await install(stack, st, inst)
    svc = services_for(stack)

    # The scan wrote the outbox (one row per event and channel that wants it) and sent
    # nothing itself; its issues are filed.
    assert {(r.event, r.repository, r.policy) for r in await rows(stack, "siem")} == FIRST_OPENED
    assert [(r.event, r.repository, r.policy) for r in await rows(stack, "security-slack")] \
        == [("opened", "acme/svc-a", AGENTS)]
    assert receiver.received == []
    assert len(open_issue_titles(st, "acme/svc-a")) == 2

    # The webhook channel is due at once; Slack waits for its hour. (The cron's function.)
    assert await jobs.notify_due({"services": svc}) == "1 channels queued"
    await stack.drain()
    (siem,) = receiver.received
    assert siem.path == "/siem" and siem.headers["Content-Type"] == "application/json"
    payload = verify(SIEM_SECRET.encode(), siem.body, siem.headers[SIGNATURE])
    with pytest.raises(ValueError, match="bad signature"):
        verify(SIEM_SECRET.encode(), siem.body.replace(b"svc-a", b"svc-z"), siem.headers[SIGNATURE])
    with pytest.raises(ValueError, match="bad signature"):
        verify(b"another key", siem.body, siem.headers[SIGNATURE])
    assert siem.headers[DELIVERY] == payload["delivery_id"]
    assert (payload["org"], payload["channel"], payload["attempt"]) == ("acme", "siem", 1)
    assert events_of(payload) == FIRST_OPENED
    assert all(e["repository_url"] == f"{fake_github.url}/{e['repository']}"
               for e in payload["events"])
    assert len({e["id"] for e in payload["events"]}) == 3
    assert all(r.sent_at is not None and r.last_error is None for r in await rows(stack, "siem"))

    assert await notifications.queue_due(svc, now=utcnow() + timedelta(minutes=59)) == 0
    assert await notifications.queue_due(svc, now=utcnow() + timedelta(minutes=61)) == 1
    await stack.drain()
    (slack,) = receiver.at_path(SLACK_PATH)
    assert SIGNATURE not in slack.headers  # Slack checks no signature
    message = slack.json()
    assert message["text"] == "Policy enforcer · acme: 1 violation opened"
    assert f"<{fake_github.url}/acme/svc-a|acme/svc-a>" in json.dumps(message["blocks"])

    # Fixing svc-a resolves a violation: the webhook hears it (Slack wants openings only).
    push = hooks.commit_and_push(st, "acme/svc-a", {"AGENTS.md": "# Agents\n"})
    assert (await stack.deliver("push", push))[0] == 202
    await stack.drain()
    assert await notifications.queue_due(svc, now=utcnow() + timedelta(minutes=61)) == 1
    await stack.drain()
    assert len(receiver.received) == 3
    second = receiver.received[-1]
    payload2 = verify(SIEM_SECRET.encode(), second.body, second.headers[SIGNATURE])
    assert events_of(payload2) == {("resolved", "acme/svc-a", AGENTS)}
    assert payload2["delivery_id"] != payload["delivery_id"]
    assert await notifications.queue_due(svc, now=utcnow() + timedelta(days=1)) == 0

    # The channels' secrets reached no log record.
    assert SIEM_SECRET not in caplog.text and SLACK_PATH not in caplog.text


async def test_retried_with_backoff_nothing_lost_nothing_twice(
        stack: Stack, fake_github: FakeGitHub, receiver: Receiver) -> None:
    st = fake_github.state
    inst = build(st, CONFIG.format(receiver=receiver.url))
    await install(stack, st, inst)
    svc = services_for(stack)
    receiver.answers = [(500, "boom"), (503, "busy")]
    assert await notifications.queue_due(svc) == 1
    await stack.drain()

    tries = receiver.at_path("/siem")
    assert len(tries) == 3
    payloads = [verify(SIEM_SECRET.encode(), t.body, t.headers[SIGNATURE]) for t in tries]
    # The same batch each time, under the same delivery id, after a growing backoff.
    assert {t.headers[DELIVERY] for t in tries} == {payloads[0]["delivery_id"]}
    assert [p["attempt"] for p in payloads] == [1, 2, 3]
    assert all(p["events"] == payloads[0]["events"] for p in payloads)
    assert events_of(payloads[0]) == FIRST_OPENED
    assert tries[1].at - tries[0].at >= 0.045 and tries[2].at - tries[1].at >= 0.095
    sent = await rows(stack, "siem")
    assert all(r.sent_at is not None and r.attempts == 3 and r.last_error is None for r in sent)

    # The job running again (arq delivers at least once) and the cron send nothing more.
    for n in range(2):
        await stack.redis.enqueue_job("send_notifications", inst.id, "siem", _job_id=f"again{n}")
    await stack.drain()
    assert await notifications.queue_due(svc) == 0
    await stack.drain()
    assert len(receiver.at_path("/siem")) == 3

    # A try that posted and died before marking the batch sent: the batch goes again, as
    # the same delivery, which the receiver can drop.
    async with stack.db() as db, db.begin():
        await db.execute(update(Notification).where(Notification.channel == "siem")
                         .values(sent_at=None))
    assert await notifications.queue_due(svc) == 1
    await stack.drain()
    again = receiver.at_path("/siem")[-1]
    assert again.headers[DELIVERY] == payloads[0]["delivery_id"]
    assert verify(SIEM_SECRET.encode(), again.body, again.headers[SIGNATURE])["attempt"] == 4


@contextlib.asynccontextmanager
async def background_worker(stack: Stack) -> AsyncIterator[None]:
    worker = create_worker(stack.settings, str(stack.settings.REDIS_URL), burst=False,
                           poll_delay=0.02, handle_signals=False, startup_sync=False,
                           cron_jobs=[])
    task = asyncio.create_task(worker.async_run())
    try:
        yield
    finally:
        worker.allow_pick_jobs = False
        if worker.tasks:
            await asyncio.wait(list(worker.tasks.values()), timeout=20)
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(ready: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while not ready():
        assert time.monotonic() - started < within, f"{what}: not within {within} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_hanging_channel_does_not_delay_issue_filing(
        stack: Stack, fake_github: FakeGitHub, receiver: Receiver) -> None:
    st = fake_github.state
    inst = build(st, CONFIG.format(receiver=receiver.url))
    svc = services_for(stack)
    receiver.release.clear()  # takes the POST and answers nothing until released
    async with background_worker(stack):
        assert (await stack.deliver("installation", hooks.installation(st, inst)))[0] == 202
        await until(lambda: len(open_issue_titles(st, "acme/svc-a")) == 2
                    and len(open_issue_titles(st, "acme/svc-b")) == 1, 60, "first issues")
        assert await notifications.queue_due(svc) == 1
        await until(lambda: len(receiver.received) == 1, 20, "the notification's POST")

        # While that POST hangs, a push that breaks svc-c has its issue filed.
        push = hooks.commit_and_push(st, "acme/svc-c", {"AGENTS.md": None})
        assert (await stack.deliver("push", push))[0] == 202
        took = await until(lambda: len(open_issue_titles(st, "acme/svc-c")) == 1, 10,
                           "svc-c's issue")
        assert receiver.answered == 0 and took < 10
        assert [r.sent_at for r in await rows(stack, "siem")] == [None] * 4

        # Answered, the run goes on to the event that came in meanwhile.
        receiver.release.set()
        await until(lambda: receiver.answered == 2, 20, "both answers")
        for _ in range(200):
            if all(r.sent_at is not None for r in await rows(stack, "siem")):
                break
            await asyncio.sleep(0.05)
    assert all(r.sent_at is not None for r in await rows(stack, "siem"))
    first, second = (verify(SIEM_SECRET.encode(), r.body, r.headers[SIGNATURE])
                     for r in receiver.received)
    assert events_of(first) == FIRST_OPENED
    assert events_of(second) == {("opened", "acme/svc-c", AGENTS)}


async def test_a_failing_channel_is_given_up_and_shown(
        stack: Stack, fake_github: FakeGitHub, receiver: Receiver,
        caplog: pytest.LogCaptureFixture) -> None:
    st = fake_github.state
    inst = build(st, CONFIG.format(receiver=receiver.url))
    await install(stack, st, inst)
    receiver.answers = [(500, "internal error")] * 10
    # Given up once a batch has failed 3 times and is more than half a second overdue.
    stack.settings = stack.settings.model_copy(update={"NOTIFY_GIVE_UP_HOURS": 0.5 / 3600})
    svc = services_for(stack)
    svc.settings = stack.settings

    with pytest.raises(notifications.SendLater) as later:
        await notifications.send_channel(svc, inst.id, "siem")
    assert later.value.delay == pytest.approx(0.05)
    failing = await rows(stack, "siem")
    assert all(r.sent_at is None and r.attempts == 1 for r in failing)
    assert {r.last_error for r in failing} == {"the receiver answered HTTP 500: internal error"}

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await sign_in(http, stack, fake_github, OWNER)
        async with http.get(f"{stack.base_url}/orgs/acme/config") as resp:
            html = await resp.text()
        assert resp.status == 200
        assert "data-channel-failing" in html and "HTTP 500: internal error" in html
        assert "URL from NOTIFY_TEST_SLACK" in html and SLACK_PATH not in html

        await asyncio.sleep(0.6)
        assert await notifications.queue_due(svc) == 1
        await stack.drain()
        assert len(receiver.at_path("/siem")) == 3
        given_up = await rows(stack, "siem")
        assert all(r.sent_at is not None for r in given_up)
        assert {r.last_error for r in given_up} == {
            "gave up: after 3 tries: the receiver answered HTTP 500: internal error"}
        assert any("gave up on 3 events after 3 tries" in r.getMessage()
                   for r in caplog.records if r.levelname == "ERROR")
        assert await notifications.queue_due(svc) == 0

        async with http.get(f"{stack.base_url}/orgs/acme/config") as resp:
            html = await resp.text()
        assert "data-channel-given-up" in html and "3 events given up" in html
        assert "data-channel-failing" not in html


async def test_missing_variables_are_reported_by_name_and_secrets_redacted(
        stack: Stack, fake_github: FakeGitHub, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    st = fake_github.state
    monkeypatch.delenv("NOTIFY_TEST_SIEM_SECRET")
    inst = build(st, CONFIG.format(receiver=receiver.url))
    await install(stack, st, inst)
    svc = services_for(stack)

    row = await stack.installation(inst.id)
    assert row is not None and row.config_notes is not None
    assert "notify channel 'siem': the environment variable NOTIFY_TEST_SIEM_SECRET is not " \
           "set in the App's worker" in row.config_notes
    with pytest.raises(notifications.SendLater):
        await notifications.send_channel(svc, inst.id, "siem")
    assert receiver.received == []
    assert {r.last_error for r in await rows(stack, "siem")} == {
        "the environment variable NOTIFY_TEST_SIEM_SECRET is not set in the App's worker"}

    # Once it is set, the same batch goes out.
    monkeypatch.setenv("NOTIFY_TEST_SIEM_SECRET", SIEM_SECRET)
    await notifications.send_channel(svc, inst.id, "siem")
    (siem,) = receiver.received
    assert verify(SIEM_SECRET.encode(), siem.body, siem.headers[SIGNATURE])["attempt"] == 2

    # Slack answers an error that echoes the webhook's path: stored and logged redacted.
    receiver.answers = [(404, f"no_service for {SLACK_PATH}")]
    with pytest.raises(notifications.SendLater):
        await notifications.send_channel(svc, inst.id, "security-slack")
    (slack_row,) = await rows(stack, "security-slack")
    assert slack_row.last_error == "the receiver answered HTTP 404: no_service for ***"
    assert SLACK_PATH not in caplog.text and SIEM_SECRET not in caplog.text
    # The log formatters mask the channels' values too.
    assert receiver.url + SLACK_PATH in masked_values() and SIEM_SECRET in masked_values()


async def test_private_addresses_and_http_are_refused_unless_allowed(
        stack: Stack, fake_github: FakeGitHub, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    refused = ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.0.1", "169.254.169.254",
               "100.64.0.1", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "224.0.0.1",
               # IPv4 inside IPv6: NAT64 and 6to4 reach the metadata address too.
               "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1"]
    refused.append("0.0.0.0")  # noqa: S104 - refused, not bound
    for address in refused:
        assert transport.address_refusal(address) is not None, address
    assert transport.address_refusal("8.8.8.8") is None
    assert transport.address_refusal("2606:4700:4700::1111") is None
    for url, why in [("http://hooks.example.com/x", "only https"),
                     ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
                     ("https://[::ffff:127.0.0.1]/x", "127.0.0.1"),
                     ("https://10.0.0.7:8443/x", "10.0.0.7")]:
        with pytest.raises(transport.DestinationRefused, match=why):
            transport.check_url(url, allow_private=False)
    assert transport.check_url("https://hooks.example.com/x", allow_private=False).host \
        == "hooks.example.com"
    # Numeric forms that would slip past a naive check are no valid addresses for aiohttp.
    with pytest.raises(transport.DeliveryError):
        await transport.post("https://2130706433/x", b"{}", {}, allow_private=False,
                             redact=str)

    # A host name is checked at connect time, on every address it resolves to.
    port = receiver.url.rsplit(":", 1)[1]
    monkeypatch.setenv("NOTIFY_TEST_HOOK", f"https://localhost:{port}/siem")
    config = CONFIG.format(receiver=receiver.url).replace(
        f"url: {receiver.url}/siem", "url_env: NOTIFY_TEST_HOOK")
    st = fake_github.state
    inst = build(st, config)
    await install(stack, st, inst)
    svc = services_for(stack)
    svc.settings = stack.settings.model_copy(update={"NOTIFY_ALLOW_PRIVATE_NETWORKS": False})
    with pytest.raises(notifications.SendLater):
        await notifications.send_channel(svc, inst.id, "siem")
    (error,) = {r.last_error for r in await rows(stack, "siem")}
    assert error is not None and "is in a private, loopback" in error
    assert port not in error and "localhost" not in error
    # ...and an http:// URL is refused before any connection.
    monkeypatch.setenv("NOTIFY_TEST_HOOK", f"{receiver.url}/siem")
    with pytest.raises(notifications.SendLater):
        await notifications.send_channel(svc, inst.id, "siem")
    (error,) = {r.last_error for r in await rows(stack, "siem")}
    assert error is not None and error.startswith("only https:// URLs are allowed")
    assert receiver.received == []
    # The deployment's own setting allows them (what the other tests use).
    await notifications.send_channel(services_for(stack), inst.id, "siem")
    assert [r.path for r in receiver.received] == ["/siem"]


async def test_withdrawn_violations_are_announced_as_resolved(
        stack: Stack, fake_github: FakeGitHub, receiver: Receiver) -> None:
    st = fake_github.state
    inst = build(st, CONFIG.format(receiver=receiver.url))
    await install(stack, st, inst)
    count = await withdraw(services_for(stack), inst.id, REPO_ARCHIVED,
                           repo_ids=[st.repo("acme/svc-b").id])
    assert count == 1
    resolved = [r for r in await rows(stack) if r.event == "resolved"]
    assert [(r.channel, r.repository, r.policy, r.message) for r in resolved] == [
        ("siem", "acme/svc-b", CATALOG, REPO_ARCHIVED)]


async def test_a_channel_removed_from_the_config_drops_its_events(
        stack: Stack, fake_github: FakeGitHub, receiver: Receiver) -> None:
    st = fake_github.state
    inst = build(st, CONFIG.format(receiver=receiver.url))
    await install(stack, st, inst)
    cfg = st.repo("acme/.github").files["config.yaml"]
    st.set_file("acme/.github", "config.yaml", cfg.split("  - name: security-slack")[0])
    from app.services.scan_requests import request_full_scan

    await request_full_scan(services_for(stack), inst.id, "user")
    await stack.drain()
    svc = services_for(stack)
    assert await notifications.queue_due(svc) == 2  # siem, and the removed channel at once
    await stack.drain()
    (slack_row,) = await rows(stack, "security-slack")
    assert slack_row.sent_at is not None
    assert slack_row.last_error == \
        "gave up: the channel 'security-slack' is no longer in the config"
    assert [r.path for r in receiver.received] == ["/siem"]


# ----------------------------------------------------------------------------- units
BASE = """\
policies:
  - name: A
    type: has_agents_md
    action: log-only
notify:
"""


@pytest.mark.parametrize(("channel", "error"), [
    ("  - {name: s, type: slack, url: 'https://hooks.slack.com/services/T/B/X'}",
     "a Slack incoming-webhook URL is a secret"),
    ("  - {name: s, type: webhook, url_env: PRIVATE_KEY, secret_env: NOTIFY_K}",
     "url_env must name an environment variable of the App that starts with NOTIFY_"),
    ("  - {name: s, type: webhook, url: 'https://x.example', secret_env: WEBHOOK_SECRET}",
     "secret_env must name an environment variable"),
    ("  - {name: s, type: webhook, url: 'https://x.example'}", "needs secret_env"),
    ("  - {name: s, type: webhook, url: 'https://x.example', url_env: NOTIFY_U, "
     "secret_env: NOTIFY_K}", "exactly one of url and url_env"),
    ("  - {name: s, type: webhook, url: 'ftp://x.example', secret_env: NOTIFY_K}",
     "url must be an https:// URL"),
    ("  - {name: s, type: webhook, url: 'https://u:p@x.example', secret_env: NOTIFY_K}",
     "must not carry a user or password"),
    ("  - {name: s, type: slack, url_env: NOTIFY_S, secret_env: NOTIFY_K}",
     "secret_env is for type webhook"),
    ("  - {name: s, type: slack, url_env: NOTIFY_S, policies: [B]}",
     "names policies that are not in the config: 'B'"),
    ("  - {name: s, type: slack, url_env: NOTIFY_S, events: [closed]}",
     "Input should be 'opened' or 'resolved'"),
    ("  - {name: s, type: slack, url_env: NOTIFY_S, digest_minutes: -1}",
     "greater than or equal to 0"),
    ("  - {name: s, type: teams, url_env: NOTIFY_S}", "Input should be 'slack' or 'webhook'"),
    ("  - {name: 's p', type: slack, url_env: NOTIFY_S}", "a channel name is 1-64"),
    ("  - {name: s, type: slack, url_env: NOTIFY_S}\n  - {name: S, type: slack, "
     "url_env: NOTIFY_T}", "duplicate notify channel name 'S'"),
])
def test_notify_config_is_checked(channel: str, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + channel + "\n")
    assert error in str(exc.value)


def test_notify_config_parses_with_defaults() -> None:
    cfg = parse_config(BASE + "  - {name: siem, type: webhook, url: 'https://siem.example/h', "
                              "secret_env: NOTIFY_SIEM_SECRET}\n")
    (channel,) = cfg.notify
    assert (channel.digest_minutes, channel.events, channel.policies) == \
        (0, ("opened", "resolved"), None)
    assert channel.wants("resolved", "anything") and cfg.notify_channel("siem") is channel
    assert parse_config(BASE.removesuffix("notify:\n")).notify == ()


def test_variables_the_config_may_not_use() -> None:
    cfg = parse_config(BASE + "  - {name: s, type: webhook, url_env: NOTIFY_RETRY_SECONDS, "
                              "secret_env: NOTIFY_OTHER_KEY}\n")
    (channel,) = cfg.notify
    env = {"NOTIFY_RETRY_SECONDS": "5", "NOTIFY_OTHER_KEY": "k" * 20,
           "NOTIFY_ACME__URL": "https://x.example/h", "NOTIFY_ACME__KEY": "k" * 20,
           "NOTIFY_ACME_CORP__URL": "https://corp.example/h"}
    settings = Settings(_env_file=None)
    assert channel_problems(channel, "acme", settings, env) == [
        "NOTIFY_RETRY_SECONDS is a setting of the App, not a channel's secret"]
    # One org per set of variables when the deployment asks for it.
    scoped = Settings(_env_file=None, NOTIFY_ENV_PER_ORG=True)
    cfg = parse_config(BASE + "  - {name: s, type: webhook, url_env: NOTIFY_ACME__URL, "
                              "secret_env: NOTIFY_OTHER_KEY}\n")
    (channel,) = cfg.notify
    assert channel_problems(channel, "acme", scoped, env) == [
        "NOTIFY_OTHER_KEY is not allowed: this deployment lets acme use only variables named "
        "NOTIFY_ACME__…"]
    # acme may not reach acme-corp's variables through the shared start of their names.
    corp = parse_config(BASE + "  - {name: s, type: slack, url_env: NOTIFY_ACME_CORP__URL}\n")
    assert channel_problems(corp.notify[0], "acme", scoped, env) == [
        "NOTIFY_ACME_CORP__URL is not allowed: this deployment lets acme use only variables "
        "named NOTIFY_ACME__…"]
    assert channel_problems(corp.notify[0], "acme-corp", scoped, env) == []
    assert channel_problems(channel, "acme", settings, env) == []
    target = resolve_target(channel, "acme", settings, env)
    assert target.url == "https://x.example/h" and target.secret == b"k" * 20
    assert "k" * 20 not in target.redact(f"echo {'k' * 20}")


def test_slack_digest_of_many_events_is_summarised() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    events = tuple(Event(id=f"1-{i}", event="opened" if i % 4 else "resolved",
                         repository=f"acme/svc-{i}", policy="<b>&policy",
                         message="first line\nsecond", at=at) for i in range(50))
    batch = Batch(delivery_id="d", installation_id=1, org="acme", channel="c", attempt=1,
                  events=events)
    message = slack_payload(batch, github_url="https://github.com",
                            dashboard_url="https://enforcer.example/orgs/acme")
    assert message["text"] == "Policy enforcer · acme: 37 violations opened, 13 violations resolved"
    listing = message["blocks"][1]["text"]["text"]
    assert listing.count("\n") == 20 and "…and 30 more on the <https://enforcer.example" in listing
    assert "&lt;b&gt;&amp;policy" in listing and "<b>" not in listing
    assert "second" not in listing


def test_the_worker_runs_the_cron_and_the_send_job() -> None:
    settings = Settings(_env_file=None)
    conf = worker_settings(settings, "redis://localhost:6379")
    assert "notify_due" in {c.name for c in conf["cron_jobs"]}
    assert "send_notifications" in {f.name for f in conf["functions"]}
    assert notifications.backoff(1, 30) == 30 and notifications.backoff(3, 30) == 120
    assert notifications.backoff(30, 30) == 3600 and notifications.backoff(1, 30, 90) == 90
