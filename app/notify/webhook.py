"""The generic JSON webhook: the body for a batch and its HMAC-SHA256 signature.

Like GitHub's `X-Hub-Signature-256`, the header `X-Policy-Enforcer-Signature-256` is
`sha256=` and the hex HMAC of the raw body, keyed with the channel's secret. The body holds
a `timestamp` (so a receiver can refuse old replays) and the `delivery_id`, which is the
same on every try of a batch (so a receiver can drop a duplicate: delivery is at least
once). docs/configuration.md shows how a receiver checks both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from app.notify.events import Batch

SIGNATURE_HEADER = "X-Policy-Enforcer-Signature-256"
DELIVERY_HEADER = "X-Policy-Enforcer-Delivery"
EVENT_HEADER = "X-Policy-Enforcer-Event"
EVENT_NAME = "violations"


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def webhook_body(batch: Batch, *, timestamp: int, app_name: str, github_url: str,
                 dashboard_url: str | None) -> bytes:
    payload: dict[str, Any] = {
        "delivery_id": batch.delivery_id,
        "timestamp": timestamp,
        "attempt": batch.attempt,
        "app": app_name,
        "installation_id": batch.installation_id,
        "org": batch.org,
        "channel": batch.channel,
        "dashboard_url": dashboard_url,
        "events": [{
            "id": e.id,
            "event": e.event,
            "repository": e.repository,
            "repository_url": f"{github_url}/{e.repository}",
            "policy": e.policy,
            "message": e.message,
            "at": e.at.isoformat().replace("+00:00", "Z"),
        } for e in batch.events],
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def webhook_headers(batch: Batch, body: bytes, secret: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, body),
        DELIVERY_HEADER: batch.delivery_id,
        EVENT_HEADER: EVENT_NAME,
    }
