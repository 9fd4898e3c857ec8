"""GitHub as the sender of the App's webhooks, and the delivery log it keeps.

GitHub sends an installation only the events it subscribed to (plus the installation events
every App gets), signs each POST with the App's webhook secret, records every attempt in the
App's delivery log (GET /app/hook/deliveries, kept for 3 days) and never retries a failed
delivery by itself: only POST /app/hook/deliveries/{id}/attempts sends it again, with the
same X-GitHub-Delivery GUID and body, as a new log entry marked `redelivery`.

Tests point the hook at a server (`st.hook.url = ...`, secret in `st.webhook_secret`), send
events with `send_event` (or `FakeGitHub.send_event`) and wait for requested redeliveries
with `await st.hook.idle()` (or `FakeGitHub.hooks_idle()`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import aiohttp

from tests.fakegithub.state import FakeState, Installation, iso
from tests.fakegithub.webhooks import encode, headers_for

# Every App gets these, whatever the installation subscribed to.
ALWAYS_DELIVERED = frozenset(
    {"installation", "installation_repositories", "installation_target",
     "github_app_authorization"}
)
# Sent when the hook is set up; it belongs to no installation.
HOOK_EVENTS = frozenset({"ping"})
DAY = 86400.0
# GitHub keeps deliveries for 3 days, and redelivers only those.
RETENTION_SECONDS = 3 * DAY
REDELIVERY_WINDOW_SECONDS = 3 * DAY
DELIVERY_TIMEOUT = 10.0  # GitHub gives the receiver 10 seconds
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
# Delivery ids are past 2**32 on github.com; a 32-bit column would overflow.
FIRST_DELIVERY_ID = 90_000_000_001
# The delivery log's status for deliveries that got no HTTP answer (status_code 0).
STATUS_TIMED_OUT = "timed out"
STATUS_CONNECT_FAILED = "failed to connect to host"
STATUS_FILTERS = {"success": (200, 399), "failure": (400, 599)}


class HookApiError(Exception):
    """An API answer other than success; the server renders it in GitHub's error shape."""

    def __init__(self, status: int, message: str,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


@dataclass(eq=False)
class HookDelivery:
    """One attempt to deliver an event: an entry of the App's delivery log."""

    id: int
    guid: str
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    redelivery: bool
    url: str
    body: bytes  # exactly what was POSTed (and signed)
    request_headers: dict[str, str]
    delivered_at: float = 0.0  # a test may move it back to age the entry
    duration: float = 0.0
    status: str = ""
    status_code: int = 0  # 0: no HTTP answer (refused, timed out)
    response_headers: dict[str, str] | None = None
    response_body: str | None = None
    throttled_at: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def payload(self) -> Any:
        """The event payload as sent (form bodies carry it in `payload`)."""
        if self.request_headers.get("Content-Type") == "application/x-www-form-urlencoded":
            return json.loads(parse_qs(self.body.decode())["payload"][0])
        return json.loads(self.body)

    def summary(self) -> dict[str, Any]:
        """The list shape (hook-delivery-item): no request or response."""
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": iso(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": iso(self.throttled_at) if self.throttled_at is not None else None,
        }

    def full(self) -> dict[str, Any]:
        """The single-delivery shape (hook-delivery)."""
        return {
            **self.summary(),
            "url": self.url,
            "request": {"headers": dict(self.request_headers), "payload": self.payload()},
            "response": {"headers": self.response_headers, "payload": self.response_body},
        }


@dataclass
class DeliveryPage:
    items: list[HookDelivery]
    next_cursor: str | None
    prev_cursor: str | None


@dataclass(eq=False)
class AppHook:
    """The App's webhook configuration, its delivery log and what tests count on."""

    url: str | None = None  # None: nowhere to send (sending raises: a test forgot to set it)
    content_type: str = "json"  # "json" | "form"
    active: bool = True  # False: GitHub sends nothing and logs nothing
    timeout: float = DELIVERY_TIMEOUT
    retention_seconds: float = RETENTION_SECONDS
    redelivery_window_seconds: float = REDELIVERY_WINDOW_SECONDS
    deliveries: list[HookDelivery] = field(default_factory=list)  # oldest first
    # GUID -> POSTs made for it (first attempt and redeliveries).
    attempts: Counter[str] = field(default_factory=Counter)
    # GUID -> accepted POST /app/hook/deliveries/{id}/attempts; .total() for all of them.
    redelivery_requests: Counter[str] = field(default_factory=Counter)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(FIRST_DELIVERY_ID))
    # Opaque cursor -> (direction, anchor delivery id); only cursors handed out are valid.
    _cursors: dict[str, tuple[str, int]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[HookDelivery]] = field(default_factory=set)

    # ----------------------------------------------------------------- the log
    def next_id(self) -> int:
        return next(self._ids)

    def prune(self, now: float | None = None) -> None:
        """Forget deliveries past the retention (GitHub: 3 days)."""
        oldest = (time.time() if now is None else now) - self.retention_seconds
        self.deliveries = [d for d in self.deliveries if d.delivered_at >= oldest]

    def log(self) -> list[HookDelivery]:
        """The deliveries GitHub still shows, oldest first."""
        self.prune()
        return list(self.deliveries)

    def find(self, delivery_id: int) -> HookDelivery | None:
        self.prune()
        return next((d for d in self.deliveries if d.id == delivery_id), None)

    def by_guid(self, guid: str) -> list[HookDelivery]:
        """Every logged attempt of one event, oldest first."""
        return [d for d in self.log() if d.guid == guid]

    def age(self, seconds: float) -> None:
        """Let `seconds` pass for the log: every entry becomes that much older."""
        for d in self.deliveries:
            d.delivered_at -= seconds
            if d.throttled_at is not None:
                d.throttled_at -= seconds

    def page(self, per_page: int, cursor: str | None = None, *, status: str | None = None,
             redelivery: str | None = None) -> DeliveryPage:
        """One page of GET /app/hook/deliveries, newest first, with its cursors."""
        items = list(reversed(self.log()))
        if status is not None:
            if status not in STATUS_FILTERS:
                raise HookApiError(422, "Validation Failed", [
                    {"resource": "HookDelivery", "field": "status", "code": "invalid"}])
            low, high = STATUS_FILTERS[status]
            items = [d for d in items if low <= d.status_code <= high]
        if redelivery is not None:
            if redelivery not in ("true", "false"):
                raise HookApiError(422, "Validation Failed", [
                    {"resource": "HookDelivery", "field": "redelivery", "code": "invalid"}])
            items = [d for d in items if d.redelivery == (redelivery == "true")]
        if cursor:
            found = self._cursors.get(cursor)
            if found is None:
                raise HookApiError(400, "Bad Request")
            direction, anchor = found
            if direction == "next":
                chunk = [d for d in items if d.id < anchor][:per_page]
            else:
                chunk = [d for d in items if d.id > anchor][-per_page:]
        else:
            chunk = items[:per_page]
        next_cursor = prev_cursor = None
        if chunk and any(d.id < chunk[-1].id for d in items):
            next_cursor = self._cursor("next", chunk[-1].id)
        if chunk and any(d.id > chunk[0].id for d in items):
            prev_cursor = self._cursor("prev", chunk[0].id)
        return DeliveryPage(chunk, next_cursor, prev_cursor)

    def _cursor(self, direction: str, anchor: int) -> str:
        token = "v1_" + secrets.token_urlsafe(12)
        self._cursors[token] = (direction, anchor)
        return token

    # ----------------------------------------------------------------- redelivery
    def request_redelivery(self, st: FakeState, delivery_id: int) -> HookDelivery:
        """What POST /app/hook/deliveries/{id}/attempts does before answering 202: check,
        count, and start the redelivery in the background (await `idle()` for it)."""
        original = self.find(delivery_id)
        if original is None:
            raise HookApiError(404, "Not Found")
        if time.time() - original.delivered_at > self.redelivery_window_seconds:
            raise HookApiError(422, "Validation Failed", [{
                "resource": "HookDelivery", "field": "delivered_at", "code": "custom",
                "message": "Deliveries older than 3 days cannot be redelivered",
            }])
        self.redelivery_requests[original.guid] += 1
        task = asyncio.get_running_loop().create_task(_redeliver(st, original))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return original

    async def idle(self) -> None:
        """Wait until every requested redelivery has been sent (and logged)."""
        while self._tasks:
            results = await asyncio.gather(*list(self._tasks), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(
                        result, asyncio.CancelledError):
                    raise result

    async def aclose(self) -> None:
        """Cancel redeliveries still under way (the fake is shutting down)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._tasks.clear()


# ----------------------------------------------------------------------------- sending
def _installation_of(st: FakeState, payload: Mapping[str, Any],
                     installation: Installation | int | None) -> tuple[int | None,
                                                                     Installation | None]:
    if isinstance(installation, Installation):
        return installation.id, installation
    ident = installation
    if ident is None:
        ref = payload.get("installation")
        ident = ref.get("id") if isinstance(ref, Mapping) else None
    if not isinstance(ident, int):
        return None, None
    return ident, st.installations.get(ident)


def subscribed(inst: Installation | None, event: str) -> bool:
    """Whether GitHub sends `event` of this installation to the App."""
    if event in ALWAYS_DELIVERED or event in HOOK_EVENTS:
        return True
    if inst is None:
        return False
    if inst.suspended_at is not None:
        return False  # a suspended installation's events are not delivered
    return event in inst.events


async def send_event(
    st: FakeState,
    event: str,
    payload: Mapping[str, Any],
    *,
    installation: Installation | int | None = None,
    delivered_at: float | None = None,
    guid: str | None = None,
) -> HookDelivery | None:
    """GitHub sends `event` to the App's hook: None (nothing sent, nothing logged) when the
    installation did not subscribe to it or the hook is inactive; else the logged delivery.

    The installation is `installation` or the payload's `installation.id`. `delivered_at`
    backdates the log entry (the 3-day rules); the POST itself happens now. One attempt
    only: GitHub never retries by itself.
    """
    hook = st.hook
    if not hook.active:
        return None
    inst_id, inst = _installation_of(st, payload, installation)
    if inst_id is None and event not in ALWAYS_DELIVERED | HOOK_EVENTS:
        raise ValueError(f"a {event!r} payload must name the installation it belongs to")
    if not subscribed(inst, event):
        return None
    action = payload.get("action")
    repo = payload.get("repository")
    repo_id = repo.get("id") if isinstance(repo, Mapping) else None
    delivery = await _post(
        st, event=event, body=_body(hook, payload), guid=guid or str(uuid.uuid4()),
        action=action if isinstance(action, str) else None, installation_id=inst_id,
        repository_id=repo_id if isinstance(repo_id, int) else None, redelivery=False,
    )
    if delivered_at is not None:
        delivery.delivered_at = delivered_at
    hook.prune()
    return delivery


def _body(hook: AppHook, payload: Mapping[str, Any]) -> bytes:
    body = encode(payload)
    if hook.content_type == "form":
        return urlencode({"payload": body.decode()}).encode()
    return body


async def _redeliver(st: FakeState, original: HookDelivery) -> HookDelivery:
    # Same GUID and body; sent to the hook's URL and signed with its secret as they are now.
    await asyncio.sleep(0)  # after the 202 has gone out
    return await _post(
        st, event=original.event, body=original.body, guid=original.guid,
        action=original.action, installation_id=original.installation_id,
        repository_id=original.repository_id, redelivery=True,
        content_type=original.request_headers.get("Content-Type"),
    )


async def _post(st: FakeState, *, event: str, body: bytes, guid: str, action: str | None,
                installation_id: int | None, repository_id: int | None, redelivery: bool,
                content_type: str | None = None) -> HookDelivery:
    hook = st.hook
    if hook.url is None:
        raise RuntimeError("the App's webhook has no URL: set st.hook.url first")
    headers = {"Accept": "*/*", **headers_for(event, body, st.webhook_secret, guid,
                                               app_id=st.app_id)}
    if content_type is not None:
        headers["Content-Type"] = content_type
    elif hook.content_type == "form":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    delivery = HookDelivery(
        id=hook.next_id(), guid=guid, event=event, action=action,
        installation_id=installation_id, repository_id=repository_id, redelivery=redelivery,
        url=hook.url, body=body, request_headers=headers, delivered_at=time.time(),
    )
    hook.attempts[guid] += 1
    started = time.perf_counter()
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=hook.timeout)) as http,
            http.post(hook.url, data=body, headers=headers, allow_redirects=False) as resp,
        ):
            delivery.response_body = await resp.text(errors="replace")
            delivery.status_code = resp.status
            delivery.response_headers = dict(resp.headers)
    except TimeoutError:
        delivery.status = STATUS_TIMED_OUT
    except aiohttp.ClientError:
        delivery.status = STATUS_CONNECT_FAILED
    else:
        # Only 2xx counts; GitHub follows no redirects.
        delivery.status = ("OK" if delivery.ok
                           else f"Invalid HTTP Response: {delivery.status_code}")
    delivery.duration = round(time.perf_counter() - started, 3)
    hook.deliveries.append(delivery)
    return delivery
