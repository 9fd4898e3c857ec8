"""Every job function runs inside `monitored`: the job monitor sees it run, finish, retry
or fail (app/services/job_monitor.py), and its log lines carry the job and installation."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry
from arq.typing import WorkerCoroutine

from app.github.errors import describe_error
from app.logs import log_context
from app.metrics import observe_job
from app.services import job_monitor
from app.services.context import Services

log = logging.getLogger(__name__)

Job = Callable[..., Awaitable[Any]]
# arq's job timeout (tasks/worker.py). A job is stopped a little before it, so the stop is
# an ordinary TimeoutError the monitor records as a failure (with Retry), not arq's silent
# cancellation.
# arq keeps a started job "in progress" for its longest timeout plus 10 s: no other worker
# takes it over before that, so this bounds how long the work of a killed worker waits
# (under 10 minutes). Jobs that wait on GitHub's limits defer themselves instead.
JOB_TIMEOUT_SECONDS = 570
TIMEOUT_MARGIN_SECONDS = 30


def monitored(function: Job) -> WorkerCoroutine:
    name = function.__name__

    @functools.wraps(function)
    async def run(ctx: dict[str, Any], *args: Any) -> Any:
        svc: Services = ctx["services"]
        job_id = str(ctx.get("job_id"))
        tries = int(ctx.get("job_try") or 1)
        enqueued = ctx.get("enqueue_time")
        enqueued_ts = enqueued.timestamp() if enqueued is not None else None
        started = time.time()
        with log_context(job_id=job_id,
                         installation_id=job_monitor.installation_of(name, args)):
            return await _run(function, ctx, args, svc, job_id, name, tries, enqueued_ts,
                              started)

    return run


async def _run(function: Job, ctx: dict[str, Any], args: tuple[Any, ...], svc: Services,
               job_id: str, name: str, tries: int, enqueued_ts: float | None,
               started: float) -> Any:
    await _quietly(job_monitor.job_started(svc.redis, job_id, name, args, tries,
                                           enqueued_ts, started))
    outcome, error = "success", None
    try:
        async with asyncio.timeout(JOB_TIMEOUT_SECONDS - TIMEOUT_MARGIN_SECONDS):
            return await function(ctx, *args)
    except Retry as exc:
        outcome = "retry"
        error = describe_error(exc.__cause__) if exc.__cause__ is not None else None
        raise
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    except Exception as exc:
        outcome, error = "failed", describe_error(exc)
        if isinstance(exc, TimeoutError) and not str(exc):
            error = f"TimeoutError: the job ran for {time.time() - started:.0f} s and was stopped"
        await _quietly(_record_failure(svc, job_id, name, args, tries, enqueued_ts,
                                       started, error))
        raise
    finally:
        observe_job(name, time.time() - started, outcome)
        await _quietly(job_monitor.job_finished(svc.redis, job_id, name, args, tries,
                                                enqueued_ts, started, outcome, error))


async def _record_failure(svc: Services, job_id: str, name: str, args: tuple[Any, ...],
                          tries: int, enqueued: float | None, started: float,
                          error: str) -> None:
    async with svc.db() as db, db.begin():
        await job_monitor.record_failure(db, job_id, name, args, tries, enqueued, started,
                                         error)


async def _quietly(work: Awaitable[None]) -> None:
    """The monitor's own trouble (Redis or the database down) never fails the job."""
    try:
        await asyncio.shield(work)
    except Exception as exc:
        log.warning("job monitor: could not record (%s: %s)", type(exc).__name__, exc)
