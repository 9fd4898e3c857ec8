"""Coalesced jobs: a burst of requests for one key runs once, and none is lost.

A job for `key` gets the id `key@gen`, where `gen` is a counter the job increments as it
starts. Requests made before the job starts share its id (and are coalesced by arq);
a request made after it started reads the new counter and queues one more run.
A Redis lock keeps two runs for the same key from overlapping.

Notes (which full scan or trigger asked) move from the key to the job that took them and
are dropped only when that job finishes, so a job that is cancelled, crashes or is retried
still has them when arq runs it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio.lock import Lock

# Scans and reconciliations wait for workers up to a week (arq's default is a day); the
# nightly scan covers anything older.
COALESCED_JOB_EXPIRY = 7 * 24 * 3600


# Interactive jobs (webhook handling, pull-request checks, command replies) are scored this
# far in the past: arq runs the lowest score first, so they go ahead of every bulk job
# already waiting (thousands of filings after a first scan), and stay first-in first-out
# among themselves. arq's only ordering is the score, so this is its priority lane.
PRIORITY_LEAD_MS = 20 * 365 * 86400 * 1000
# Scores below this (2015-01-01) are interactive jobs' (no real time is that early).
_INTERACTIVE_BELOW_MS = 1_420_070_400_000


def interactive_score(now_ms: int) -> int:
    return now_ms - PRIORITY_LEAD_MS


def ahead_of_bulk() -> datetime:
    """`_defer_until` for an interactive job queued with arq's own enqueue_job (which then
    needs an explicit `_expires`: it would derive a negative one from this score)."""
    return datetime.fromtimestamp(interactive_score(int(time.time() * 1000)) / 1000, UTC)


def due_ms(score: float) -> float:
    """When a queued job is due, from its score (undoing the interactive lead)."""
    return score + PRIORITY_LEAD_MS if score < _INTERACTIVE_BELOW_MS else score


def _gen_key(key: str) -> str:
    return f"pe:gen:{key}"


def _notes_key(key: str) -> str:
    return f"pe:notes:{key}"


async def enqueue_coalesced(redis: ArqRedis, function: str, key: str, *args: Any,
                            note: dict[str, Any] | None = None,
                            defer_by: float | None = None, interactive: bool = False) -> bool:
    """Queue `function(*args)` unless a run for `key` that has not started yet is queued.

    `note` is attached to whichever run picks the request up (e.g. which full scan or
    trigger asked for it). An `interactive` job (not deferred) goes ahead of bulk work.
    Returns True when a new job was queued.
    """
    if note is not None:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.sadd(_notes_key(key), json.dumps(note, sort_keys=True))
            pipe.expire(_notes_key(key), NOTES_TTL)
            await pipe.execute()
    gen = int(await redis.get(_gen_key(key)) or 0)
    ahead = ahead_of_bulk() if interactive and not defer_by else None
    job = await redis.enqueue_job(function, *args, _job_id=f"{key}@{gen}",
                                  _defer_by=None if ahead else defer_by, _defer_until=ahead,
                                  _expires=COALESCED_JOB_EXPIRY)
    return job is not None


NOTES_TTL = 7 * 24 * 3600
# A lock outlives the longest job that holds it (tasks.monitor.JOB_TIMEOUT_SECONDS), and a
# killed worker's lock frees itself as soon as arq hands its job to another worker.
LOCK_HOLD = 600.0
# A key's run counter only has to outlive the jobs queued with it (COALESCED_JOB_EXPIRY).
GEN_TTL = 8 * 24 * 3600


def _job_notes_key(key: str, job_id: str) -> str:
    return f"pe:notes:{key}:job:{job_id}"


async def start_coalesced(redis: ArqRedis, key: str, job_id: str) -> list[dict[str, Any]]:
    """Call first thing in the job: later requests get a new run. Returns the notes of
    every request this run serves (including those of an earlier, interrupted try)."""
    mine = _job_notes_key(key, job_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(_gen_key(key))
        pipe.expire(_gen_key(key), GEN_TTL)
        pipe.sunionstore(mine, [mine, _notes_key(key)])
        pipe.delete(_notes_key(key))
        pipe.expire(mine, NOTES_TTL)
        pipe.smembers(mine)
        *_, members = await pipe.execute()
    return [json.loads(m) for m in sorted(members)]


async def note_job(redis: ArqRedis, key: str, job_id: str, note: dict[str, Any]) -> None:
    """Add a note to a running job's own notes (e.g. the record it created), so a retry of
    the job finds it."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.sadd(_job_notes_key(key, job_id), json.dumps(note, sort_keys=True))
        pipe.expire(_job_notes_key(key, job_id), NOTES_TTL)
        await pipe.execute()


async def finish_coalesced(redis: ArqRedis, key: str, job_id: str) -> None:
    """The job is done with its notes (its counts are recorded)."""
    await redis.delete(_job_notes_key(key, job_id))


async def pending_notes(redis: ArqRedis, key: str) -> list[dict[str, Any]]:
    """Notes of requests no run has taken yet."""
    members = await redis.smembers(_notes_key(key))  # type: ignore[misc]
    return [json.loads(m) for m in sorted(members)]


@asynccontextmanager
async def exclusive(redis: ArqRedis, key: str, hold: float = LOCK_HOLD,
                    wait: float = LOCK_HOLD) -> AsyncIterator[None]:
    """Hold the lock for `key`; a second run for the same key waits its turn."""
    lock = Lock(redis, _lock_key(key), timeout=hold, blocking_timeout=wait)
    if not await lock.acquire():
        raise TimeoutError(f"lock {key} still held after {wait} s")
    try:
        yield
    finally:
        # The lock may have expired; then there is nothing left to release.
        with suppress(Exception):
            await lock.release()


def _lock_key(key: str) -> str:
    return f"pe:lock:{key}"


# Deletes the lock only while it still holds our token (as redis-py's Lock.release does).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def try_lock_many(redis: ArqRedis, keys: Sequence[str], token: str,
                        hold: float = LOCK_HOLD) -> list[bool]:
    """Take, without waiting, each of the locks `exclusive` takes for these keys.

    Returns, per key, whether it is ours: free, or still held with `token` by an earlier
    try of the same job (a worker killed mid-batch leaves its locks behind until `hold`
    runs out; the re-run of that job reclaims them instead of waiting).
    """
    if not keys:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.set(_lock_key(key), token, nx=True, px=int(hold * 1000))
        got = [bool(x) for x in await pipe.execute()]
    missing = [i for i, ok in enumerate(got) if not ok]
    if missing:
        held = await redis.mget([_lock_key(keys[i]) for i in missing])
        async with redis.pipeline(transaction=False) as pipe:
            for i, value in zip(missing, held, strict=True):
                if _text(value) == token:
                    got[i] = True
                    pipe.pexpire(_lock_key(keys[i]), int(hold * 1000))
            await pipe.execute()
    return got


async def release_many(redis: ArqRedis, keys: Sequence[str], token: str) -> None:
    if not keys:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.eval(_RELEASE, 1, _lock_key(key), token)
        await pipe.execute()
