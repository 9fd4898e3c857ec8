"""Requests for scanning work: the job keys and the calls that queue scans and
reconciliations (coalesced, so a burst of requests runs once). Callers that only ask for
work (webhooks, the dashboard, commands) import this, not the scanning itself."""

from __future__ import annotations

from typing import Any

from redis.asyncio.lock import Lock

from app.db.models import Scan
from app.services.context import Services
from app.services.dashboard import latest_full_scan
from app.services.queue import enqueue_coalesced


def scan_key(installation_id: int, repo_id: int) -> str:
    return f"scan-repo:{installation_id}:{repo_id}"


def reconcile_key(violation_id: int) -> str:
    return f"reconcile:{violation_id}"


async def request_repo_scan(svc: Services, installation_id: int, repo_id: int, *,
                            trigger: str | None = None, scan_id: int | None = None) -> bool:
    note: dict[str, Any] = {"scan": scan_id} if scan_id is not None else {"trigger": trigger}
    # Event-triggered scans are debounced: a burst of pushes joins one queued scan.
    debounce = svc.settings.SCAN_DEBOUNCE_SECONDS if scan_id is None else 0
    return await enqueue_coalesced(svc.redis, "scan_repo", scan_key(installation_id, repo_id),
                                   installation_id, repo_id, note=note,
                                   defer_by=debounce or None)


def full_scan_key(installation_id: int) -> str:
    return f"scan-installation:{installation_id}"


async def request_full_scan(svc: Services, installation_id: int, trigger: str) -> bool:
    """Queue a full scan (config reload, repository sync, fan-out); bursts coalesce."""
    return await enqueue_coalesced(svc.redis, "scan_installation", full_scan_key(installation_id),
                                   installation_id, note={"trigger": trigger})


async def request_user_scan(svc: Services, installation_id: int, login: str) -> tuple[int, bool]:
    """Scan Now: the installation's full scan that is queued or running, else a new one,
    queued with its record made at once so the page can follow it. Returns (scan id,
    whether a new scan was queued). A short Redis lock makes two presses at once queue one.
    """
    trigger = f"user:{login}"[:255]
    async with Lock(svc.redis, f"pe:lock:scan-now:{installation_id}", timeout=30,
                    blocking_timeout=10), svc.db() as db, db.begin():
        current = await latest_full_scan(db, installation_id, ("queued", "running"))
        if current is not None:
            return current.id, False
        scan = Scan(installation_id=installation_id, kind="full", status="queued",
                    trigger=trigger, total=0)
        db.add(scan)
        await db.flush()
        # Queued before the record commits: a record is never left without its job.
        await enqueue_coalesced(svc.redis, "scan_installation",
                                full_scan_key(installation_id), installation_id,
                                note={"trigger": trigger, "scan": scan.id})
        return scan.id, True


async def request_reconcile(svc: Services, installation_id: int, violation_id: int) -> bool:
    return await enqueue_coalesced(svc.redis, "reconcile_violation",
                                   reconcile_key(violation_id), installation_id, violation_id)


def batch_job_id(scan_id: int, index: int) -> str:
    return f"scan-batch:{scan_id}:{index}"
