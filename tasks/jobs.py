"""arq job functions: thin wrappers that hand the work to the services.

arq delivers at least once and retries only what raises `Retry`, so every job turns a
transient failure into a deferred retry (a bounded number of times) and a rate-limit
wait into a deferral that does not count against that bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from arq import Retry
from sqlalchemy import delete, select

from app.db.models import Installation, Scan, WebhookDelivery, utcnow
from app.github.errors import RateLimited
from app.services import commands, reconcile, scanning, webhooks
from app.services.context import Services
from app.services.queue import exclusive, finish_coalesced, start_coalesced
from app.services.store import bump_scan

log = logging.getLogger(__name__)

Ctx = dict[str, Any]
T = TypeVar("T")
# Failures (not rate-limit waits) a job may have before it gives up.
MAX_TRIES = 6
DELIVERY_RETENTION = timedelta(days=30)


def _svc(ctx: Ctx) -> Services:
    svc: Services = ctx["services"]
    return svc


def _waits_key(ctx: Ctx) -> str:
    return f"pe:waits:{ctx.get('job_id')}"


def _waiting_text(until: float) -> str:
    return "waiting for rate limit until " + time.strftime("%H:%M UTC", time.gmtime(until))


async def _failures(ctx: Ctx) -> int:
    """Tries that ended in an error: arq's count less the rate-limit deferrals."""
    waits = int(await _svc(ctx).redis.get(_waits_key(ctx)) or 0)
    return int(ctx.get("job_try", 1)) - waits


async def _defer_for_rate_limit(ctx: Ctx, exc: RateLimited) -> Retry:
    key = _waits_key(ctx)
    await _svc(ctx).redis.incr(key)
    await _svc(ctx).redis.expire(key, 7 * 24 * 3600)
    return Retry(defer=max(1.0, exc.until - time.time()))


async def _retry_or_raise(ctx: Ctx, what: str, exc: Exception) -> Retry:
    """A Retry to raise for a transient failure; re-raises once the tries are spent."""
    failures = await _failures(ctx)
    if failures >= MAX_TRIES:
        log.error("%s failed for good after %d tries: %s", what, failures, exc)
        raise exc
    delay = float(min(300, 2 * 3 ** (failures - 1)))
    log.warning("%s failed (%s: %s); retry in %.0f s", what, type(exc).__name__, exc, delay)
    return Retry(defer=delay)


async def _run(ctx: Ctx, what: str, work: Callable[[], Awaitable[T]]) -> T:
    try:
        return await work()
    except RateLimited as exc:
        raise await _defer_for_rate_limit(ctx, exc) from exc
    except Exception as exc:
        raise await _retry_or_raise(ctx, what, exc) from exc


async def handle_webhook(ctx: Ctx, delivery_id: str, event: str, action: str | None,
                         installation_id: int | None, body: bytes | None) -> str:
    return await _run(ctx, f"delivery {delivery_id} ({event})", lambda: webhooks.handle_webhook(
        _svc(ctx), delivery_id, event, action, installation_id, body))


async def scan_installation(ctx: Ctx, installation_id: int) -> int | None:
    svc = _svc(ctx)
    key = scanning.full_scan_key(installation_id)
    job_id = str(ctx.get("job_id"))
    notes = await start_coalesced(svc.redis, key, job_id)
    trigger = ",".join(sorted({str(n["trigger"]) for n in notes if n.get("trigger")})) \
        or "unknown"

    async def work() -> int | None:
        async with exclusive(svc.redis, key):
            return await scanning.scan_installation(svc, installation_id, trigger)

    result = await _run(ctx, f"full scan of installation {installation_id}", work)
    await finish_coalesced(svc.redis, key, job_id)
    return result


async def scan_repo(ctx: Ctx, installation_id: int, repo_id: int) -> str:
    svc = _svc(ctx)
    key = scanning.scan_key(installation_id, repo_id)
    job_id = str(ctx.get("job_id"))
    notes = await start_coalesced(svc.redis, key, job_id)
    scan_ids = sorted({int(n["scan"]) for n in notes if n.get("scan") is not None})
    if not scan_ids:
        # Not part of a full scan: the repository scan gets a record of its own, noted
        # like any other request so a re-run of this job counts into the same record.
        triggers = sorted({str(n["trigger"]) for n in notes if n.get("trigger")})
        async with svc.db() as db, db.begin():
            scan = Scan(installation_id=installation_id, kind="repo", total=1,
                        repository_id=repo_id, trigger=",".join(triggers) or "retry")
            db.add(scan)
            await db.flush()
            scan_ids = [scan.id]
        await svc.redis.sadd(f"pe:notes:{key}:job:{job_id}",  # type: ignore[misc]
                             f'{{"scan": {scan_ids[0]}}}')
    try:
        async with exclusive(svc.redis, key):
            result = await scanning.scan_repository(svc, installation_id, repo_id)
    except RateLimited as exc:
        async with svc.db() as db, db.begin():
            for sid in scan_ids:
                row = await db.get(Scan, sid)
                if row is not None:
                    row.detail = _waiting_text(exc.until)
        raise await _defer_for_rate_limit(ctx, exc) from exc
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        await scanning.record_repo_error(svc, repo_id, reason)
        if await _failures(ctx) < MAX_TRIES:
            raise await _retry_or_raise(ctx, f"scan of repository {repo_id}", exc) from exc
        log.error("scan of repository %s failed for good: %s", repo_id, reason)
        async with svc.db() as db, db.begin():
            for sid in scan_ids:
                await bump_scan(db, sid, ok=False)
        await finish_coalesced(svc.redis, key, job_id)
        return f"errored: {reason}"
    async with svc.db() as db, db.begin():
        for sid in scan_ids:
            await bump_scan(db, sid, ok=True, opened=result.opened, resolved=result.resolved)
            row = await db.get(Scan, sid)
            if row is not None and row.detail and row.detail.startswith("waiting"):
                row.detail = None
    await finish_coalesced(svc.redis, key, job_id)
    return result.status


async def reconcile_violation(ctx: Ctx, installation_id: int, violation_id: int) -> int:
    svc = _svc(ctx)
    key = scanning.reconcile_key(violation_id)
    job_id = str(ctx.get("job_id"))
    await start_coalesced(svc.redis, key, job_id)

    async def work() -> int:
        async with exclusive(svc.redis, key):
            return await reconcile.reconcile_violation(svc, installation_id, violation_id)

    result = await _run(ctx, f"reconcile of violation {violation_id}", work)
    await finish_coalesced(svc.redis, key, job_id)
    return result


async def run_command(ctx: Ctx, installation_id: int, repo_id: int, full_name: str,
                      issue_number: int, comment_id: int, user: str, command: str,
                      args: str) -> str:
    req = commands.CommandRequest(installation_id, repo_id, full_name, issue_number,
                                  comment_id, user, command, args)
    return await _run(ctx, f"/policy {command} in {full_name}",
                      lambda: commands.run_command(_svc(ctx), req))


async def nightly_scan(ctx: Ctx) -> int:
    """Cron: a full scan of every active installation; old delivery records are pruned."""
    svc = _svc(ctx)
    async with svc.db() as db, db.begin():
        ids = list(await db.scalars(select(Installation.id).where(Installation.active.is_(True))))
        await db.execute(delete(WebhookDelivery).where(
            WebhookDelivery.received_at < utcnow() - DELIVERY_RETENTION))
    for inst_id in ids:
        await scanning.request_full_scan(svc, inst_id, "cron")
    log.info("nightly scan queued for %d installations", len(ids))
    return len(ids)
