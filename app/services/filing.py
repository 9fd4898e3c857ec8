"""Filing progress: how many of the issues a full scan asked for are filed, and when the
next batch goes out.

GitHub allows about 80 content-creating requests a minute and 500 an hour, so the first
scan of a large organization files its issues over hours. The scan record says how far it
is ("filed 640 of 2,000; next batch at 14:05"). The counts are Redis sets of violation ids,
so a job that runs twice counts once; the scan row gets their sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import case, update

from app.db.models import Scan
from app.services.context import Services

TTL = 7 * 24 * 3600
# The scan row is written at most this often per scan while filing runs (and always at
# the end), so thousands of reconciliations do not queue on one row.
WRITE_INTERVAL_MS = 1000


def _all(scan_id: int) -> str:
    return f"pe:filing:{scan_id}:all"


def _done(scan_id: int) -> str:
    return f"pe:filing:{scan_id}:done"


def _owner(violation_id: int) -> str:
    # The scan that last asked for this violation's filing (a later scan takes it over).
    return f"pe:filing:v:{violation_id}"


async def _write(svc: Services, scan_id: int, *, force: bool,
                 next_at: datetime | None = None) -> None:
    async with svc.redis.pipeline(transaction=False) as pipe:
        pipe.scard(_all(scan_id))
        pipe.scard(_done(scan_id))
        pipe.set(f"pe:filing:{scan_id}:w", 1, px=WRITE_INTERVAL_MS, nx=True)
        total, done, first = await pipe.execute()
    finished = int(done) >= int(total)
    if not (force or finished or first):
        return
    # Writers race (batches plan at once): a count only ever goes up.
    values: dict[str, object] = {
        "filing_total": case((Scan.filing_total < int(total), int(total)),
                             else_=Scan.filing_total),
        "filing_done": case((Scan.filing_done < int(done), int(done)), else_=Scan.filing_done),
    }
    if finished:
        values["filing_next_at"] = None
    elif next_at is not None:
        values["filing_next_at"] = next_at
    async with svc.db() as db, db.begin():
        await db.execute(update(Scan).where(Scan.id == scan_id).values(**values))


async def planned(svc: Services, scan_id: int, violation_ids: Sequence[int]) -> None:
    """The scan queued the reconciliation of these violations."""
    if not violation_ids:
        return
    async with svc.redis.pipeline(transaction=False) as pipe:
        pipe.sadd(_all(scan_id), *violation_ids)
        pipe.expire(_all(scan_id), TTL)
        for vid in violation_ids:
            pipe.set(_owner(vid), scan_id, ex=TTL)
        await pipe.execute()
    await _write(svc, scan_id, force=True)


async def _scan_of(svc: Services, violation_id: int) -> int | None:
    raw = await svc.redis.get(_owner(violation_id))
    return int(raw) if raw is not None else None


async def settled(svc: Services, violation_id: int) -> None:
    """The violation's reconciliation ended (done, or failed for good)."""
    scan_id = await _scan_of(svc, violation_id)
    if scan_id is None:
        return
    async with svc.redis.pipeline(transaction=False) as pipe:
        pipe.sadd(_done(scan_id), violation_id)
        pipe.expire(_done(scan_id), TTL)
        pipe.delete(_owner(violation_id))
        await pipe.execute()
    await _write(svc, scan_id, force=False)


async def waiting(svc: Services, violation_id: int, until: float) -> None:
    """The violation's reconciliation waits for the content budget until `until`."""
    scan_id = await _scan_of(svc, violation_id)
    if scan_id is not None:
        await _write(svc, scan_id, force=False,
                     next_at=datetime.fromtimestamp(until, UTC))
