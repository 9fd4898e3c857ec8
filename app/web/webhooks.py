"""POST /api/github/webhooks: verify, deduplicate, enqueue one arq job, answer.

Nothing here calls GitHub. The contract with the worker is one job per accepted delivery:

    handle_webhook(delivery_id: str, event: str, action: str | None,
                   installation_id: int | None, body: bytes | None)

with arq job id ``webhook:{delivery_id}``. ``body`` is the raw JSON payload (UTF-8 bytes) for
the events in HANDLED_EVENTS and None for every other event: the job then only records the
delivery as ignored. A form-encoded delivery (``payload=<json>``) is decoded here, so the
worker always receives JSON.

Redis round trips per delivery: one. A Lua script (app.web.enqueue) checks the delivery
marker and writes the arq job as ``enqueue_job`` would, atomically.

Nothing is read from the socket before it must be: the secret, the signature header's
shape, the event and delivery headers and the Content-Length are checked first, so a
request that cannot succeed is answered before its body is read (aiohttp then discards
the rest). The body is then read as it arrives into the HMAC, up to MAX_BODY_BYTES, and
answered 413 as soon as it goes over, with or without a Content-Length; one that stops
coming is answered 408 after BODY_READ_TIMEOUT_SECONDS, one that cannot be read (broken
chunked framing or compression) 400. Bad input never gets a 5xx: only Redis trouble does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web
from aiohttp.http import HttpProcessingError
from redis.exceptions import RedisError

from app.logs import bind_log_fields, log_context
from app.metrics import observe_webhook
from app.services.deliveries import DELIVERY_MARKER_TTL, delivery_marker_key, webhook_job_id
from app.services.webhooks import HANDLERS
from app.web.enqueue import DUPLICATE, QUEUED
from app.web.state import STATE, WebState

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/github/webhooks"
# GitHub caps webhook payloads at 25 MB; anything bigger cannot come from GitHub.
MAX_BODY_BYTES = 25 * 1024 * 1024
# GitHub gives up on a delivery after 10 seconds: a body still coming after that is not
# worth waiting for (aiohttp itself sets no limit, and a broken chunk can stall it).
BODY_READ_TIMEOUT_SECONDS = 10.0
JOB_FUNCTION = "handle_webhook"
# Events whose body the job needs; for the others only the delivery is recorded.
HANDLED_EVENTS = frozenset(HANDLERS)
RETRY_AFTER_SECONDS = 60
# Delivery ids are GUIDs and event names short words; both fit the 64-character DB columns.
MAX_HEADER_LEN = 64
# Bodies above this are parsed in a worker thread so the event loop keeps answering.
_THREAD_PARSE_BYTES = 1024 * 1024
_FORM = "application/x-www-form-urlencoded"
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def sign(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    # hmac.digest: OpenSSL's one-shot HMAC, without the Python-level hmac.HMAC object.
    return "sha256=" + hmac.digest(secret.encode(), body, hashlib.sha256).hex()


# What GitHub sends: "sha256=" and the lowercase hex HMAC. Anything else cannot match, and
# is refused before the body is read. (The SHA-1 header is never consulted.)
_SIGNATURE_SHAPE = re.compile(r"sha256=[0-9a-f]{64}")


class _TooLarge(Exception):
    """The body went over MAX_BODY_BYTES while it was being read."""


class _TooSlow(Exception):
    """The body did not arrive within BODY_READ_TIMEOUT_SECONDS."""


async def read_body(request: web.Request, key: bytes) -> tuple[bytes, bytes]:
    """The body and its HMAC-SHA256 under `key`, read as it arrives and never past
    MAX_BODY_BYTES (raises _TooLarge the moment it goes over, Content-Length or not),
    nor for longer than BODY_READ_TIMEOUT_SECONDS (raises _TooSlow).

    Raises RequestPayloadError, HttpProcessingError or OSError when the body cannot be
    read (broken chunked framing or compression, or the client went away)."""
    content = request.content
    first = b""
    if content.is_eof():
        # The common case: the body came with the headers and is all here. No timer,
        # one-shot HMAC, no copy.
        first = await content.readany()
        if content.at_eof():
            if len(first) > MAX_BODY_BYTES:
                raise _TooLarge
            return first, hmac.digest(key, first, "sha256")
    mac = hmac.new(key, digestmod="sha256")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_SECONDS):
            chunk = first or await content.readany()
            while chunk:  # readany answers b"" only at the end of the body
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _TooLarge
                mac.update(chunk)
                chunks.append(chunk)
                chunk = await content.readany()
    except TimeoutError:
        raise _TooSlow from None
    return b"".join(chunks), mac.digest()


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
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson is stricter than the json module (lone surrogate escapes, integers past
        # 64 bits, NaN, nesting past 1024 levels): whatever json accepts is still accepted.
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
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
    # The signature and the headers checked out: `event` is GitHub's (a bounded vocabulary).
    verified: bool = False


def _header(request: web.Request, name: str) -> str:
    return request.headers.get(name, "").strip()


def _printable(value: str) -> str:
    text = value[:MAX_HEADER_LEN]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


# Outcomes that end in ":<exception class>" in the log line.
_OUTCOMES_WITH_CLASS = ("unavailable:", "rejected:unreadable-body:")

# The common answers, serialised once.
_QUEUED_BODY = json.dumps({"status": "queued"}).encode()
_IGNORED_BODY = json.dumps({"status": "ignored"}).encode()
_DUPLICATE_BODY = json.dumps({"status": "duplicate"}).encode()


def _answer(status: int, body: bytes) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


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
    # Every line logged while handling the delivery carries its id (LOG_FORMAT=json), and
    # its installation once the payload is read. Unauthenticated: cut short like the line.
    with log_context(delivery_id=delivery.delivery_id[:MAX_HEADER_LEN] or None):
        response = await _process(request, state, delivery)
        ms = (time.perf_counter() - started) * 1000
        level = logging.INFO if response.status < 400 else logging.WARNING
        if response.status >= 500:
            level = logging.ERROR
        log.log(
            level,
            "webhook delivery=%s event=%s action=%s installation=%s outcome=%s status=%d "
            "ms=%.1f",
            _printable(delivery.delivery_id) or "-",
            _printable(delivery.event) or "-",
            _printable(delivery.action) if delivery.action is not None else "-",
            delivery.installation_id if delivery.installation_id is not None else "-",
            delivery.outcome,
            response.status,
            ms,
        )
    outcome = delivery.outcome
    # Bounded labels: an unauthenticated event name could be anything, and "unavailable"
    # and "unreadable-body" carry the exception's class in the log line only.
    if outcome.startswith(_OUTCOMES_WITH_CLASS):
        outcome = outcome.rpartition(":")[0]
    observe_webhook(delivery.event if delivery.verified else "-", outcome)
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

    # Everything the headers can tell is checked before a byte of the body is read.
    signature = request.headers.get("X-Hub-Signature-256")
    if not signature:
        delivery.outcome = "rejected:no-signature"
        return _error(401, "missing X-Hub-Signature-256 header")
    if not _SIGNATURE_SHAPE.fullmatch(signature):
        delivery.outcome = "rejected:bad-signature"
        return _error(401, "invalid X-Hub-Signature-256 signature")
    for name, value in (("X-GitHub-Event", delivery.event),
                        ("X-GitHub-Delivery", delivery.delivery_id)):
        if not value:
            delivery.outcome = "rejected:bad-headers"
            return _error(400, f"missing {name} header")
        if len(value) > MAX_HEADER_LEN or not value.isprintable():
            delivery.outcome = "rejected:bad-headers"
            return _error(400, f"malformed {name} header")
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        delivery.outcome = "rejected:too-large"
        return _error(413, f"body exceeds {MAX_BODY_BYTES} bytes")

    try:
        body, digest = await read_body(request, secret.encode())
    except _TooLarge:
        delivery.outcome = "rejected:too-large"
        return _error(413, f"body exceeds {MAX_BODY_BYTES} bytes")
    except _TooSlow:
        delivery.outcome = "rejected:too-slow"
        return _error(408, f"body not received within {BODY_READ_TIMEOUT_SECONDS:g} seconds")
    except (web.RequestPayloadError, HttpProcessingError, OSError) as exc:
        delivery.outcome = f"rejected:unreadable-body:{type(exc).__name__}"
        return _error(400, "the request body could not be read")
    if not hmac.compare_digest(digest, bytes.fromhex(signature[7:])):
        delivery.outcome = "rejected:bad-signature"
        return _error(401, "invalid X-Hub-Signature-256 signature")
    # Authenticated from here on.
    delivery.verified = True

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
    if delivery.installation_id is not None:
        bind_log_fields(installation_id=delivery.installation_id)
    handled = delivery.event in HANDLED_EVENTS

    try:
        result = await _dedupe_and_enqueue(state, delivery, raw if handled else None)
    except REDIS_ERRORS as exc:
        delivery.outcome = f"unavailable:{type(exc).__name__}"
        return _error(
            503,
            "job queue unavailable; redeliver later",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    if result != QUEUED:
        # JOB_EXISTS: the marker had expired or was lost, but arq still holds the job.
        delivery.outcome = "duplicate" if result == DUPLICATE else "duplicate:job-exists"
        return _answer(200, _DUPLICATE_BODY)
    if delivery.event == "ping":
        delivery.outcome = "ping"
        zen = payload.get("zen")
        return web.json_response({"ok": True, "zen": zen if isinstance(zen, str) else None})
    delivery.outcome = "queued" if handled else "ignored"
    return _answer(202, _QUEUED_BODY if handled else _IGNORED_BODY)


async def _dedupe_and_enqueue(state: WebState, delivery: _Delivery, body: bytes | None) -> int:
    """QUEUED, DUPLICATE or JOB_EXISTS, in one Redis round trip; raises on Redis trouble
    (TimeoutError after enqueue.REDIS_TIMEOUT_SECONDS).

    The script is atomic and writes its marker last: when it fails (or its answer is lost)
    there is either nothing in Redis or the whole job, never a marker alone, so GitHub's
    redelivery is accepted, or answered "duplicate" with the job already queued.
    """
    return await state.delivery_queue().dedupe_and_enqueue(
        delivery_marker_key(delivery.delivery_id),
        DELIVERY_MARKER_TTL,
        webhook_job_id(delivery.delivery_id),
        JOB_FUNCTION,
        delivery.delivery_id,
        delivery.event,
        delivery.action,
        delivery.installation_id,
        body,
    )
