"""Housekeeping that keeps the records honest after workers die: scans nobody will finish
are closed, and a nightly scan missed while no worker ran is caught up."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, or_, select, update

from app.cron import Schedule
from app.db.models import Installation, Scan, utcnow
from app.services.context import Services
from app.services.scan_requests import request_full_scan

log = logging.getLogger(__name__)

# A full scan of 10,000 repositories takes minutes, and a rate-limit wait at most an hour;
# a scan still queued or running after this was left behind by a worker that died and
# whose jobs were lost.
STALE_SCAN_AGE = timedelta(hours=6)
CATCH_UP_TRIGGER = "cron:catch-up"
ABANDONED = "abandoned"


async def close_stale_scans(svc: Services) -> int:
    """Mark scans left queued or running for STALE_SCAN_AGE as errored; returns how many."""
    cutoff = utcnow() - STALE_SCAN_AGE
    async with svc.db() as db, db.begin():
        result = await db.execute(
            update(Scan).where(Scan.status.in_(("queued", "running")), Scan.started_at < cutoff)
            .values(status="errored", finished_at=utcnow(),
                    detail=f"{ABANDONED}: not finished within 6 hours (a worker stopped while "
                           "running it); the next scan starts afresh"))
        count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        log.warning("closed %d scans left running by stopped workers", count)
    return count


async def catch_up(svc: Services, schedule: Schedule) -> list[int]:
    """Queue a full scan of each active installation whose last full scan started before
    the schedule's last run (the worker was down then). Returns those installations."""
    now = utcnow()
    due = schedule.previous(now)
    if due is None:
        return []
    async with svc.db() as db:
        latest = {inst_id: at for inst_id, at in await db.execute(
            select(Scan.installation_id, func.max(Scan.started_at))
            # A scan that a dead worker abandoned did not cover its night.
            .where(Scan.kind == "full", or_(Scan.detail.is_(None),
                                            ~Scan.detail.startswith(ABANDONED)))
            .group_by(Scan.installation_id))}
        active = list(await db.scalars(select(Installation.id).where(
            Installation.active.is_(True), Installation.created_at < due)))
    missed = [i for i in active if latest.get(i) is None or latest[i] < due]
    for inst_id in missed:
        await request_full_scan(svc, inst_id, CATCH_UP_TRIGGER)
    if missed:
        log.warning("the scheduled scan of %s did not run (no worker was up); caught up for "
                    "%d installations", due.isoformat(timespec="minutes"), len(missed))
    return missed
