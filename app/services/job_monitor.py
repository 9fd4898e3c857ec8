"""The job monitor's records: what is queued, running, recently finished, and failed.

arq keeps a queue and per-job keys, but no registry of running or finished jobs (results
are not kept here, so job ids can be reused). Each job run is therefore recorded by the
worker's wrapper (tasks/monitor.py):
- running jobs in the Redis hash RUNNING_KEY (an entry older than STALE_SECONDS belongs to
  a worker that died and is shown as such);
- finished runs (success, retry, failure) in the capped Redis list RECENT_KEY;
- jobs that failed for good in the database (`failed_jobs`), with their arguments, so
  "Retry" can queue them again; pruned by age and count.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import deserialize_job
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import FailedJob, utcnow
from app.services.queue import due_ms

RUNNING_KEY = "pe:jobs:running"
RECENT_KEY = "pe:jobs:recent"
RECENT_MAX = 500
# A running entry this old outlived the job timeout: its worker died.
STALE_SECONDS = 2 * 3600
FORGET_STALE_SECONDS = 24 * 3600
FAILED_KEEP_DAYS = 30
FAILED_KEEP_ROWS = 2000
# Arguments larger than this are stored as their size only (the job cannot be retried).
MAX_STORED_BYTES = 1024 * 1024
# Positional argument names, for display (the job functions' signatures in tasks/jobs.py).
ARG_NAMES: dict[str, tuple[str, ...]] = {
    "handle_webhook": ("delivery_id", "event", "action", "installation_id", "body"),
    "scan_installation": ("installation_id",),
    "scan_repo": ("installation_id", "repo_id"),
    "scan_batch": ("installation_id", "scan_id", "repo_ids"),
    "reconcile_violation": ("installation_id", "violation_id"),
    "fix_violation": ("installation_id", "violation_id"),
    "send_notifications": ("installation_id", "channel"),
    "run_command": ("installation_id", "repo_id", "full_name", "issue_number", "comment_id",
                    "user", "command", "args"),
    "check_pull": ("installation_id", "repo_id", "number"),
    "check_merge_group": ("installation_id", "repo_id", "head_sha"),
}


def installation_of(function: str, args: tuple[Any, ...] | list[Any]) -> int | None:
    """The installation a job works for (None for the cron and unknown shapes)."""
    names = ARG_NAMES.get(function, ())
    if "installation_id" not in names:
        return None
    index = names.index("installation_id")
    value = args[index] if index < len(args) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def shown_args(function: str, args: tuple[Any, ...] | list[Any]) -> dict[str, str]:
    """The arguments as short text for the page: bytes by size, long lists cut."""
    names = ARG_NAMES.get(function, ())
    out: dict[str, str] = {}
    for i, value in enumerate(args):
        name = names[i] if i < len(names) else f"arg{i}"
        if isinstance(value, bytes | bytearray):
            text = f"<{len(value):,} bytes>"
        elif isinstance(value, list | tuple) and len(value) > 5:
            text = json.dumps(list(value[:5]))[:-1] + f", … {len(value)} in all]"
        else:
            text = json.dumps(value) if not isinstance(value, str) else value
        out[name] = text if len(text) <= 200 else text[:197] + "…"
    return out


def _stored_args(args: tuple[Any, ...]) -> list[Any]:
    """JSON for the database; bytes as base64 (or their size when too large to keep)."""
    out: list[Any] = []
    for value in args:
        if isinstance(value, bytes | bytearray):
            if len(value) <= MAX_STORED_BYTES:
                out.append({"__bytes__": base64.b64encode(bytes(value)).decode()})
            else:
                out.append({"__bytes_len__": len(value)})
        else:
            out.append(value)
    return out


def _loaded_args(stored: list[Any]) -> list[Any] | None:
    """The arguments to queue again, or None when they were too large to keep."""
    out: list[Any] = []
    for value in stored:
        if isinstance(value, dict) and "__bytes__" in value:
            out.append(base64.b64decode(value["__bytes__"]))
        elif isinstance(value, dict) and "__bytes_len__" in value:
            return None
        else:
            out.append(value)
    return out


@dataclass
class JobRun:
    job_id: str
    function: str
    args: dict[str, str]
    installation_id: int | None
    tries: int
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None = None
    outcome: str = "running"  # running / stale / success / retry / failed / cancelled
    error: str | None = None

    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _run_from(data: dict[str, Any]) -> JobRun:
    return JobRun(
        job_id=str(data["job_id"]), function=str(data["function"]),
        args=dict(data.get("args") or {}), installation_id=data.get("installation_id"),
        tries=int(data.get("tries") or 1), enqueued_at=_ts(data.get("enqueued")),
        started_at=_ts(data.get("started")), finished_at=_ts(data.get("finished")),
        outcome=str(data.get("outcome") or "running"), error=data.get("error"))


# ----------------------------------------------------------------------------- recording
KEY_TTL = 7 * 24 * 3600


async def job_started(redis: ArqRedis, job_id: str, function: str, args: tuple[Any, ...],
                      tries: int, enqueued: float | None, started: float) -> None:
    entry = {"job_id": job_id, "function": function, "args": shown_args(function, args),
             "installation_id": installation_of(function, args), "tries": tries,
             "enqueued": enqueued, "started": started}
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(RUNNING_KEY, job_id, json.dumps(entry))
        # Every key has a TTL; a job that starts keeps the hash alive (stale entries are
        # forgotten after a day, see running()).
        pipe.expire(RUNNING_KEY, KEY_TTL)
        await pipe.execute()


async def job_finished(redis: ArqRedis, job_id: str, function: str, args: tuple[Any, ...],
                       tries: int, enqueued: float | None, started: float, outcome: str,
                       error: str | None) -> None:
    entry = {"job_id": job_id, "function": function, "args": shown_args(function, args),
             "installation_id": installation_of(function, args), "tries": tries,
             "enqueued": enqueued, "started": started, "finished": time.time(),
             "outcome": outcome, "error": (error or "")[:2000] or None}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(RUNNING_KEY, job_id)
        pipe.lpush(RECENT_KEY, json.dumps(entry))
        pipe.ltrim(RECENT_KEY, 0, RECENT_MAX - 1)
        pipe.expire(RECENT_KEY, KEY_TTL)
        await pipe.execute()


async def record_failure(db: AsyncSession, job_id: str, function: str, args: tuple[Any, ...],
                         tries: int, enqueued: float | None, started: float,
                         error: str) -> None:
    db.add(FailedJob(job_id=job_id[:255], function=function[:64],
                     args={"args": _stored_args(args)},
                     installation_id=installation_of(function, args), tries=tries,
                     enqueued_at=_ts(enqueued), started_at=_ts(started) or utcnow(),
                     failed_at=utcnow(), error=error[:8000]))


async def prune_failures(db: AsyncSession) -> None:
    await db.execute(delete(FailedJob).where(
        FailedJob.failed_at < utcnow() - timedelta(days=FAILED_KEEP_DAYS)))
    cutoff = await db.scalar(select(FailedJob.id).order_by(FailedJob.id.desc())
                             .offset(FAILED_KEEP_ROWS).limit(1))
    if cutoff is not None:
        await db.execute(delete(FailedJob).where(FailedJob.id <= cutoff))


# ----------------------------------------------------------------------------- reading
@dataclass
class QueuedJob:
    job_id: str
    function: str
    args: dict[str, str]
    installation_id: int | None
    tries: int
    enqueued_at: datetime | None
    due_at: datetime | None


async def queued(redis: ArqRedis, limit: int = 100) -> tuple[list[QueuedJob], int]:
    """The next `limit` jobs of arq's queue (soonest due first) and how many there are."""
    total = int(await redis.zcard(default_queue_name))
    entries = await redis.zrange(default_queue_name, 0, limit - 1, withscores=True)
    if not entries:
        return [], total
    ids = [e[0].decode() if isinstance(e[0], bytes) else str(e[0]) for e in entries]
    raw = await redis.mget([job_key_prefix + i for i in ids])
    out: list[QueuedJob] = []
    for (job_id, (_, score)), data in zip(zip(ids, entries, strict=True), raw, strict=True):
        if data is None:
            continue  # taken by a worker meanwhile
        try:
            job = deserialize_job(data, deserializer=redis.job_deserializer)
        except Exception:  # a job written by another version: shown by id only
            out.append(QueuedJob(job_id, "?", {}, None, 0, None, _ts(due_ms(score) / 1000)))
            continue
        out.append(QueuedJob(job_id, job.function, shown_args(job.function, job.args),
                             installation_of(job.function, job.args), job.job_try or 1,
                             job.enqueue_time, _ts(due_ms(score) / 1000)))
    return out, total


async def running(redis: ArqRedis) -> list[JobRun]:
    now = time.time()
    runs, gone = [], []
    for job_id, value in (await redis.hgetall(RUNNING_KEY)).items():  # type: ignore[misc]
        run = _run_from(json.loads(value))
        age = now - run.started_at.timestamp() if run.started_at is not None else 0.0
        if age > FORGET_STALE_SECONDS:
            gone.append(job_id)  # a dead worker's, shown for a day: enough
            continue
        if age > STALE_SECONDS:
            run.outcome = "stale"
        runs.append(run)
    if gone:
        await redis.hdel(RUNNING_KEY, *gone)  # type: ignore[misc]
    return sorted(runs, key=lambda r: r.started_at or datetime.min.replace(tzinfo=UTC))


async def recent(redis: ArqRedis, limit: int = RECENT_MAX) -> list[JobRun]:
    return [_run_from(json.loads(v)) for v in await redis.lrange(RECENT_KEY, 0, limit - 1)]  # type: ignore[misc]


async def failures(db: AsyncSession, installations: frozenset[int] | None,
                   limit: int = 200) -> list[FailedJob]:
    """Failed jobs, newest first; `installations` None means every installation's."""
    query = select(FailedJob)
    if installations is not None:
        query = query.where(FailedJob.installation_id.in_(list(installations)))
    return list(await db.scalars(query.order_by(FailedJob.id.desc()).limit(limit)))


def failure_args(job: FailedJob) -> dict[str, str]:
    values: list[Any] = []
    for value in job.args.get("args") or []:
        if isinstance(value, dict) and "__bytes__" in value:
            values.append(base64.b64decode(value["__bytes__"]))
        elif isinstance(value, dict) and "__bytes_len__" in value:
            values.append(f"<{value['__bytes_len__']:,} bytes, not kept>")
        else:
            values.append(value)
    return shown_args(job.function, values)


async def retry(db: AsyncSession, redis: ArqRedis, failure_id: int,
                installations: frozenset[int] | None, login: str) -> str | None:
    """Queue a failed job again (once per press; a second press of an already retried
    failure queues nothing). Returns the new job id, or None when it cannot be retried."""
    job = await db.get(FailedJob, failure_id)
    if job is None or (installations is not None and job.installation_id not in installations):
        return None
    if job.retry_job_id is not None:
        return job.retry_job_id
    args = _loaded_args(list(job.args.get("args") or []))
    if args is None:
        return None
    new_id = f"retry:{job.id}"
    await redis.enqueue_job(job.function, *args, _job_id=new_id)
    job.retried_at, job.retried_by, job.retry_job_id = utcnow(), login[:255], new_id
    return new_id

