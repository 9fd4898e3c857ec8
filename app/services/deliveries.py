"""Missed-delivery recovery: GitHub never redelivers a failed webhook by itself.

Every DELIVERY_RECOVERY_INTERVAL seconds the worker pages the App's delivery log
(`GET /app/hook/deliveries`, newest first, cursor pagination) back to its checkpoint. A
delivery GUID is *settled* once it was processed (its job ran: any outcome recorded but
"received" or a failure), once a redelivery was asked for it, or once it is older than
GitHub's 3-day redelivery window. For each GUID that no attempt delivered and that was
never processed, and for each GUID whose job failed for good, it asks GitHub once for a
redelivery (`POST /app/hook/deliveries/{id}/attempts`); the web process and the job
process the redelivery exactly once (the delivery marker and the delivery record).

The checkpoint is the newest id below which everything is settled, so a delivery accepted
but still queued is looked at again next time, and a long outage is covered up to the
3-day window. When no delivery has succeeded for WEBHOOK_STALE_HOURS while GitHub reports
failures, the webhook path itself is broken; the installations concerned get a full scan.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import gidgethub
from arq.constants import in_progress_key_prefix, job_key_prefix
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app.db.models import Installation, RedeliveryRequest, WebhookDelivery, utcnow
from app.github.errors import RateLimited
from app.services.context import Services
from app.services.scan_requests import request_full_scan

log = logging.getLogger(__name__)

# The web process's marker: a delivery id that is queued or processed. A job that fails
# for good removes it, so a redelivery of that id is accepted again.
DELIVERY_MARKER_PREFIX = "pe:delivery:"
DELIVERY_MARKER_TTL = 7 * 24 * 3600
# GitHub redelivers only deliveries from the last 3 days; keep an hour's margin.
REDELIVERY_WINDOW = timedelta(days=3) - timedelta(hours=1)
CHECKPOINT_KEY = "pe:recovery:checkpoint"
LAST_OK_KEY = "pe:recovery:last-ok"
STATE_TTL = 30 * 24 * 3600
# The most redeliveries asked for in one run (GitHub counts them against the App's limit).
MAX_REDELIVERIES_PER_RUN = 500
# Outcomes of a job that failed for good start with this.
FAILED = "failed"
# An accepted delivery whose job is neither recorded nor in the queue after this long was
# lost (its webhook job retries for about 40 minutes before it is recorded as failed).
LOST_AFTER = timedelta(hours=1)


def delivery_marker_key(delivery_id: str) -> str:
    return f"{DELIVERY_MARKER_PREFIX}{delivery_id}"


def webhook_job_id(delivery_id: str) -> str:
    """The arq job id of a delivery's handle_webhook job."""
    return f"webhook:{delivery_id}"


def processed(outcome: str | None) -> bool:
    """Whether a delivery record's outcome means its job ran to an end."""
    return outcome is not None and outcome != "received" and not outcome.startswith(FAILED)


async def mark_failed(svc: Services, delivery_id: str, reason: str) -> None:
    """A delivery's job failed for good: its record says so and its marker goes, so GitHub's
    redelivery (asked by the recovery or by a person) is accepted and handled again."""
    # The marker first: a failed record whose marker stayed would be redelivered and then
    # refused as a duplicate.
    await svc.redis.delete(delivery_marker_key(delivery_id))
    async with svc.db() as db, db.begin():
        row = await db.get(WebhookDelivery, delivery_id)
        if row is not None:
            row.outcome = f"{FAILED}: {reason}"[:255]


@dataclass
class RecoveryResult:
    listed: int = 0
    redelivered: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    stale_scans: list[int] = field(default_factory=list)
    checkpoint: int = 0


async def _job_exists(svc: Services, guid: str) -> bool:
    """Whether arq still holds the delivery's job (queued, deferred or running)."""
    job_id = webhook_job_id(guid)
    return bool(await svc.redis.exists(job_key_prefix + job_id,
                                       in_progress_key_prefix + job_id))


def _when(item: dict[str, Any]) -> datetime:
    text = str(item.get("delivered_at") or "")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def _ok(item: dict[str, Any]) -> bool:
    code = item.get("status_code")
    return isinstance(code, int) and 200 <= code < 300


async def _listed_since(svc: Services, checkpoint: int, oldest: datetime
                        ) -> list[dict[str, Any]]:
    app = svc.github.app()
    items: list[dict[str, Any]] = []
    async for item in app.getiter("/app/hook/deliveries?per_page=100"):
        if int(item.get("id") or 0) <= checkpoint or _when(item) < oldest:
            break  # newest first: everything from here on is settled or out of reach
        items.append(dict(item))
    return items


async def _known(svc: Services, guids: Iterable[str]
                 ) -> tuple[dict[str, str], set[str]]:
    """Recorded outcomes by GUID, and the GUIDs a redelivery was asked for already."""
    wanted = list(guids)
    outcomes: dict[str, str] = {}
    asked: set[str] = set()
    async with svc.db() as db:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            for row in await db.execute(select(WebhookDelivery.delivery_id,
                                               WebhookDelivery.outcome)
                                        .where(WebhookDelivery.delivery_id.in_(chunk))):
                outcomes[row[0]] = row[1]
            asked.update(await db.scalars(select(RedeliveryRequest.guid)
                                          .where(RedeliveryRequest.guid.in_(chunk))))
    return outcomes, asked


async def _ask_redelivery(svc: Services, guid: str, attempt: dict[str, Any]) -> str:
    """requested / refused / taken (another worker asked first)."""
    try:
        async with svc.db() as db, db.begin():
            db.add(RedeliveryRequest(guid=guid, hook_delivery_id=int(attempt["id"]),
                                     event=str(attempt.get("event") or "")[:64],
                                     installation_id=attempt.get("installation_id")))
    except IntegrityError:
        return "taken"
    status, detail = "requested", ""
    try:
        await svc.github.app().post(f"/app/hook/deliveries/{int(attempt['id'])}/attempts",
                                    data={})
    except gidgethub.BadRequest as exc:
        # 4xx: GitHub will not redeliver it (past the window, hook gone): asked once, done.
        status, detail = "refused", f"{exc.status_code}: {exc}"[:2000]
    except BaseException:
        # Not asked after all (GitHub down, rate limited): the next run asks again.
        async with svc.db() as db, db.begin():
            await db.execute(delete(RedeliveryRequest).where(RedeliveryRequest.guid == guid))
        raise
    if status != "requested":
        async with svc.db() as db, db.begin():
            row = await db.get(RedeliveryRequest, guid)
            if row is not None:
                row.status, row.detail = status, detail
    return status


async def recover_deliveries(svc: Services, now: datetime | None = None) -> RecoveryResult:
    now = now or utcnow()
    result = RecoveryResult()
    checkpoint = int(await svc.redis.get(CHECKPOINT_KEY) or 0)
    items = await _listed_since(svc, checkpoint, now - REDELIVERY_WINDOW)
    result.listed = len(items)
    result.checkpoint = checkpoint
    if not items:
        return result
    by_guid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_guid[str(item.get("guid") or "")].append(item)
    by_guid.pop("", None)
    outcomes, asked = await _known(svc, by_guid)

    unsettled: list[int] = []
    for guid, attempts in by_guid.items():
        latest = attempts[0]  # newest first
        outcome = outcomes.get(guid)
        delivered = any(_ok(a) for a in attempts)
        job_failed = outcome is not None and outcome.startswith(FAILED)
        if processed(outcome) or guid in asked:
            continue
        if (delivered and not job_failed) or outcome == "received":
            # Accepted and queued (or running): not settled until its job has run, unless
            # its job is gone from Redis (lost with a Redis that kept no AOF): then the
            # marker goes too, so the redelivery is accepted.
            if now - _when(latest) < LOST_AFTER or await _job_exists(svc, guid):
                unsettled.append(min(int(a["id"]) for a in attempts))
                continue
            await svc.redis.delete(delivery_marker_key(guid))
        if len(result.redelivered) >= MAX_REDELIVERIES_PER_RUN:
            unsettled.append(min(int(a["id"]) for a in attempts))
            continue
        try:
            status = await _ask_redelivery(svc, guid, latest)
        except RateLimited:
            unsettled.append(min(int(a["id"]) for a in attempts))
            break
        if status == "requested":
            result.redelivered.append(guid)
        elif status == "refused":
            result.refused.append(guid)

    newest = max(int(i["id"]) for i in items)
    result.checkpoint = (min(unsettled) - 1) if unsettled else newest
    await svc.redis.set(CHECKPOINT_KEY, result.checkpoint, ex=STATE_TTL)
    await _check_stale(svc, items, now, result)
    if result.redelivered or result.refused:
        log.warning("delivery recovery: %d failed deliveries redelivered, %d refused by GitHub",
                    len(result.redelivered), len(result.refused))
    return result


async def _check_stale(svc: Services, items: list[dict[str, Any]], now: datetime,
                       result: RecoveryResult) -> None:
    ok_times = [_when(i) for i in items if _ok(i)]
    if ok_times:
        await svc.redis.set(LAST_OK_KEY, max(ok_times).timestamp(), ex=STATE_TTL)
    failures = [i for i in items if not _ok(i)]
    if not failures:
        return
    raw = await svc.redis.get(LAST_OK_KEY)
    since = datetime.fromtimestamp(float(raw), UTC) if raw else min(_when(i) for i in failures)
    stale_for = svc.settings.WEBHOOK_STALE_HOURS * 3600
    if (now - since).total_seconds() < stale_for:
        return
    installations = {int(i["installation_id"]) for i in failures
                     if isinstance(i.get("installation_id"), int)}
    async with svc.db() as db:
        active = set(await db.scalars(select(Installation.id).where(
            Installation.id.in_(installations), Installation.active.is_(True))))
    for inst_id in sorted(active):
        # Once per stale period and installation, however often the recovery runs.
        if await svc.redis.set(f"pe:recovery:stale-scan:{inst_id}", 1, nx=True,
                               ex=int(stale_for)):
            await request_full_scan(svc, inst_id, "recovery:webhooks-stale")
            result.stale_scans.append(inst_id)
    if result.stale_scans:
        log.warning("no webhook delivery has reached this server since %s while GitHub reports "
                    "failed ones; full scans queued for installations %s. Check the App's "
                    "webhook URL, secret and any proxy in front of the web process.",
                    since.isoformat(timespec="minutes"), result.stale_scans)


async def prune_redelivery_requests(svc: Services, older_than: timedelta) -> None:
    async with svc.db() as db, db.begin():
        await db.execute(delete(RedeliveryRequest).where(
            RedeliveryRequest.requested_at < utcnow() - older_than))
