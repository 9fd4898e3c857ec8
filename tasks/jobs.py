"""arq job functions: thin wrappers that hand the work to the services."""

from __future__ import annotations

import logging
import time
from typing import Any

from arq import Retry
from sqlalchemy import select

from app.db.models import Installation, Scan, utcnow
from app.github.errors import RateLimited
from app.services import commands, reconcile, scanning, webhooks
from app.services.context import Services
from app.services.queue import exclusive, start_coalesced
from app.services.store import bump_scan

log = logging.getLogger(__name__)

Ctx = dict[str, Any]
MAX_TRIES = 5


def _svc(ctx: Ctx) -> Services:
    svc: Services = ctx["services"]
    return svc


def _backoff(ctx: Ctx) -> float:
    return float(min(300, 5 * 3 ** (int(ctx.get("job_try", 1)) - 1)))


def _waiting_text(until: float) -> str:
    return "waiting for rate limit until " + time.strftime("%H:%M UTC", time.gmtime(until))


async def _put_back(svc: Services, key: str, notes: list[dict[str, Any]]) -> None:
    import json

    if notes:
        await svc.redis.sadd(f"pe:notes:{key}",  # type: ignore[misc]
                             *[json.dumps(n, sort_keys=True) for n in notes])


async def handle_webhook(ctx: Ctx, delivery_id: str, event: str, action: str | None,
                         installation_id: int | None, body: bytes | None) -> str:
    return await webhooks.handle_webhook(_svc(ctx), delivery_id, event, action,
                                         installation_id, body)


async def scan_installation(ctx: Ctx, installation_id: int) -> int | None:
    svc = _svc(ctx)
    key = scanning.full_scan_key(installation_id)
    notes = await start_coalesced(svc.redis, key)
    trigger = ",".join(sorted({str(n.get("trigger")) for n in notes if n.get("trigger")})) \
        or "unknown"
    try:
        async with exclusive(svc.redis, key):
            return await scanning.scan_installation(svc, installation_id, trigger)
    except RateLimited as exc:
        await _put_back(svc, key, notes)
        raise Retry(defer=max(1.0, exc.until - time.time())) from exc
    except Exception:
        await _put_back(svc, key, notes)
        if int(ctx.get("job_try", 1)) >= MAX_TRIES:
            raise
        log.exception("full scan of installation %s failed; retrying", installation_id)
        raise Retry(defer=_backoff(ctx)) from None


async def scan_repo(ctx: Ctx, installation_id: int, repo_id: int) -> str:
    svc = _svc(ctx)
    key = scanning.scan_key(installation_id, repo_id)
    notes = await start_coalesced(svc.redis, key)
    scan_ids = sorted({int(n["scan"]) for n in notes if n.get("scan") is not None})
    triggers = sorted({str(n["trigger"]) for n in notes if n.get("trigger")})
    if not scan_ids:
        async with svc.db() as db, db.begin():
            scan = Scan(installation_id=installation_id, kind="repo", total=1,
                        repository_id=repo_id, trigger=",".join(triggers) or "retry")
            db.add(scan)
            await db.flush()
            scan_ids = [scan.id]
            notes = [{"scan": scan.id}]
    try:
        async with exclusive(svc.redis, key):
            result = await scanning.scan_repository(svc, installation_id, repo_id)
    except RateLimited as exc:
        await _put_back(svc, key, notes)
        async with svc.db() as db, db.begin():
            for sid in scan_ids:
                scan_row = await db.get(Scan, sid)
                if scan_row is not None:
                    scan_row.detail = _waiting_text(exc.until)
        raise Retry(defer=max(1.0, exc.until - time.time())) from exc
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        await scanning.record_repo_error(svc, repo_id, reason)
        if int(ctx.get("job_try", 1)) < MAX_TRIES:
            await _put_back(svc, key, notes)
            log.warning("scan of repository %s failed (%s); retrying", repo_id, reason)
            raise Retry(defer=_backoff(ctx)) from None
        log.error("scan of repository %s failed for good: %s", repo_id, reason)
        async with svc.db() as db, db.begin():
            for sid in scan_ids:
                await bump_scan(db, sid, ok=False)
        return f"errored: {reason}"
    async with svc.db() as db, db.begin():
        for sid in scan_ids:
            await bump_scan(db, sid, ok=True, opened=result.opened, resolved=result.resolved)
            scan_row = await db.get(Scan, sid)
            if scan_row is not None and scan_row.detail and scan_row.detail.startswith("waiting"):
                scan_row.detail = None
    return result.status


async def reconcile_violation(ctx: Ctx, installation_id: int, violation_id: int) -> int:
    svc = _svc(ctx)
    key = scanning.reconcile_key(violation_id)
    await start_coalesced(svc.redis, key)
    try:
        async with exclusive(svc.redis, key):
            return await reconcile.reconcile_violation(svc, installation_id, violation_id)
    except RateLimited as exc:
        raise Retry(defer=max(1.0, exc.until - time.time())) from exc
    except reconcile.ActionFailed:
        if int(ctx.get("job_try", 1)) >= MAX_TRIES:
            raise
        raise Retry(defer=_backoff(ctx)) from None


async def run_command(ctx: Ctx, installation_id: int, repo_id: int, full_name: str,
                      issue_number: int, comment_id: int, user: str, command: str,
                      args: str) -> str:
    req = commands.CommandRequest(installation_id, repo_id, full_name, issue_number,
                                  comment_id, user, command, args)
    try:
        return await commands.run_command(_svc(ctx), req)
    except RateLimited as exc:
        raise Retry(defer=max(1.0, exc.until - time.time())) from exc


async def nightly_scan(ctx: Ctx) -> int:
    """Cron: a full scan of every active installation."""
    svc = _svc(ctx)
    async with svc.db() as db:
        ids = list(await db.scalars(select(Installation.id).where(Installation.active.is_(True))))
    for inst_id in ids:
        await scanning.request_full_scan(svc, inst_id, "cron")
    log.info("nightly scan queued for %d installations at %s", len(ids), utcnow().isoformat())
    return len(ids)
