"""POST /api/github/webhooks: verify, deduplicate, enqueue one arq job, answer.

Nothing here calls GitHub. The contract with the worker is one job per accepted delivery:

    handle_webhook(delivery_id: str, event: str, action: str | None,
                   installation_id: int | None, body: bytes | None)

with arq job id ``webhook:{delivery_id}``. ``body`` is the raw JSON payload (UTF-8 bytes) for
the events in HANDLED_EVENTS and None for every other event: the job then only records the
delivery as ignored. A form-encoded delivery (``payload=<json>``) is decoded here, so the
worker always receives JSON.

Redis round trips per delivery: one ``SET NX EX`` for deduplication plus arq's enqueue.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from app.web.state import STATE, WebState

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/github/webhooks"
# GitHub caps webhook payloads at 25 MB; anything bigger cannot come from GitHub.
MAX_BODY_BYTES = 25 * 1024 * 1024
JOB_FUNCTION = "handle_webhook"
HANDLED_EVENTS = frozenset(
    {"installation", "installation_repositories", "repository", "push", "issue_comment"}
)
DEDUPE_KEY_PREFIX = "pe:delivery:"
DEDUPE_TTL_SECONDS = 7 * 24 * 3600
# Upper bound on the Redis work of one delivery; past it GitHub gets a 503.
REDIS_TIMEOUT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 60
# Delivery ids are GUIDs and event names short words; both fit the 64-character DB columns.
MAX_HEADER_LEN = 64
# Bodies above this are parsed in a worker thread so the event loop keeps answering.
_THREAD_PARSE_BYTES = 1024 * 1024
_FORM = "application/x-www-form-urlencoded"
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def job_id_for(delivery_id: str) -> str:
    return f"webhook:{delivery_id}"


def dedupe_key(delivery_id: str) -> str:
    return f"{DEDUPE_KEY_PREFIX}{delivery_id}"


def sign(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_is_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of X-Hub-Signature-256. The SHA-1 header is never consulted."""
    if not header:
        return False
    # Compare bytes: compare_digest refuses non-ASCII str, and a header may contain anything.
    return hmac.compare_digest(sign(secret, body).encode(), header.encode("utf-8", "replace"))


class BadPayload(ValueError):
    """The (authenticated) body is not a JSON object; the message is safe to return."""


def parse_payload(body: bytes, content_type: str) -> tuple[dict[str, Any], bytes]:
    """The payload object and its JSON bytes, from a JSON or form-encoded body."""
    raw = body
    if content_type == _FORM:
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise BadPayload("form body is not valid UTF-8 url-encoded data") from None
        values = form.get("payload")
        if not values:
            raise BadPayload("form body has no 'payload' field") from None
        raw = values[0].encode("utf-8")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadPayload("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadPayload("body is not a JSON object") from None
    return payload, raw


@dataclass
class _Delivery:
    """What one log line says about a delivery. Header values are unauthenticated until the
    signature checks out, so they are cut short and stripped of control characters."""

    delivery_id: str
    event: str
    action: str | None = None
    installation_id: int | None = None
    outcome: str = "?"


def _header(request: web.Request, name: str) -> str:
    return request.headers.get(name, "").strip()


def _printable(value: str) -> str:
    text = value[:MAX_HEADER_LEN]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _action(payload: dict[str, Any]) -> str | None:
    action = payload.get("action")
    return action if isinstance(action, str) else None


def _installation_id(payload: dict[str, Any]) -> int | None:
    installation = payload.get("installation")
    if not isinstance(installation, dict):
        return None
    ident = installation.get("id")
    return ident if isinstance(ident, int) and not isinstance(ident, bool) else None


async def handle_webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    state = request.app[STATE]
    delivery = _Delivery(
        delivery_id=_header(request, "X-GitHub-Delivery"), event=_header(request, "X-GitHub-Event")
    )
    response = await _process(request, state, delivery)
    ms = (time.perf_counter() - started) * 1000
    level = logging.INFO if response.status < 400 else logging.WARNING
    if response.status >= 500:
        level = logging.ERROR
    log.log(
        level,
        "webhook delivery=%s event=%s action=%s installation=%s outcome=%s status=%d ms=%.1f",
        _printable(delivery.delivery_id) or "-",
        _printable(delivery.event) or "-",
        _printable(delivery.action) if delivery.action is not None else "-",
        delivery.installation_id if delivery.installation_id is not None else "-",
        delivery.outcome,
        response.status,
        ms,
    )
    return response


async def _process(request: web.Request, state: WebState, delivery: _Delivery) -> web.Response:
    secret = state.settings.webhook_secret()
    if not secret:  # None or empty: an empty HMAC key would let anyone sign.
        delivery.outcome = "rejected:no-webhook-secret"
        if not state.missing_secret_logged:
            state.missing_secret_logged = True
            log.error(
                "WEBHOOK_SECRET is not configured: every webhook delivery is refused with 401. "
                "Set WEBHOOK_SECRET to the GitHub App's webhook secret and restart."
            )
        return _error(
            401,
            "webhook secret is not configured on this server; "
            "set WEBHOOK_SECRET to the GitHub App's webhook secret and restart",
        )

    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        delivery.outcome = "rejected:too-large"
        return _error(413, f"body exceeds {MAX_BODY_BYTES} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        delivery.outcome = "rejected:too-large"
        return _error(413, f"body exceeds {MAX_BODY_BYTES} bytes")

    signature = request.headers.get("X-Hub-Signature-256")
    if not signature:
        delivery.outcome = "rejected:no-signature"
        return _error(401, "missing X-Hub-Signature-256 header")
    if not signature_is_valid(secret, body, signature):
        delivery.outcome = "rejected:bad-signature"
        return _error(401, "invalid X-Hub-Signature-256 signature")

    # Authenticated from here on.
    for name, value in (("X-GitHub-Event", delivery.event),
                        ("X-GitHub-Delivery", delivery.delivery_id)):
        if not value:
            delivery.outcome = "rejected:bad-headers"
            return _error(400, f"missing {name} header")
        if len(value) > MAX_HEADER_LEN or not value.isprintable():
            delivery.outcome = "rejected:bad-headers"
            return _error(400, f"malformed {name} header")

    try:
        if len(body) > _THREAD_PARSE_BYTES:
            payload, raw = await asyncio.to_thread(parse_payload, body, request.content_type)
        else:
            payload, raw = parse_payload(body, request.content_type)
    except BadPayload as exc:
        delivery.outcome = "rejected:bad-payload"
        return _error(400, str(exc))

    delivery.action = _action(payload)
    delivery.installation_id = _installation_id(payload)
    handled = delivery.event in HANDLED_EVENTS

    try:
        enqueued = await _dedupe_and_enqueue(state, delivery, raw if handled else None)
    except REDIS_ERRORS as exc:
        delivery.outcome = f"unavailable:{type(exc).__name__}"
        return _error(
            503,
            "job queue unavailable; redeliver later",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    if not enqueued:
        delivery.outcome = "duplicate"
        return web.json_response({"status": "duplicate"}, status=200)
    if delivery.event == "ping":
        delivery.outcome = "ping"
        zen = payload.get("zen")
        return web.json_response({"ok": True, "zen": zen if isinstance(zen, str) else None})
    delivery.outcome = "queued" if handled else "ignored"
    return web.json_response({"status": delivery.outcome}, status=202)


async def _dedupe_and_enqueue(state: WebState, delivery: _Delivery, body: bytes | None) -> bool:
    """False when the delivery id was seen before; raises on Redis trouble."""
    redis = state.arq()
    key = dedupe_key(delivery.delivery_id)
    async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
        first = await redis.set(key, 1, nx=True, ex=DEDUPE_TTL_SECONDS)
    if not first:
        return False
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            job = await redis.enqueue_job(
                JOB_FUNCTION,
                delivery.delivery_id,
                delivery.event,
                delivery.action,
                delivery.installation_id,
                body,
                _job_id=job_id_for(delivery.delivery_id),
            )
    except BaseException:
        # Without the job, the marker would turn GitHub's redelivery into a "duplicate".
        await _forget(redis, key)
        raise
    # None: arq still holds a job or result under this id (the marker had expired or was lost).
    return job is not None


async def _forget(redis: ArqRedis, key: str) -> None:
    try:
        async with asyncio.timeout(1.0):
            await redis.delete(key)
    except REDIS_ERRORS:
        log.warning("could not remove the dedupe marker %s after a failed enqueue", key)
