"""arq worker settings: job functions, the nightly cron and the shared services."""

from __future__ import annotations

import logging
import time
from datetime import UTC
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from arq.worker import Worker

from app.cron import parse_schedule
from app.db.migrate import require_migrated
from app.db.session import dispose_all, sessionmaker
from app.github.client import GitHub
from app.services.context import Services
from app.settings import Settings
from tasks import jobs
from tasks.monitor import JOB_TIMEOUT_SECONDS, monitored

log = logging.getLogger(__name__)

# Results are not kept: job ids must be reusable as soon as a job finishes. arq's
# max_tries is only a backstop; the jobs bound their own failures (jobs.MAX_TRIES) and
# rate-limit deferrals do not count.
# Every function runs inside `monitored`, which records it for the job monitor.
FUNCTIONS = [
    func(monitored(jobs.handle_webhook), name="handle_webhook", keep_result=0, max_tries=1000),
    func(monitored(jobs.scan_installation), name="scan_installation", keep_result=0,
         max_tries=1000),
    func(monitored(jobs.scan_repo), name="scan_repo", keep_result=0, max_tries=1000),
    func(monitored(jobs.scan_batch), name="scan_batch", keep_result=0, max_tries=1000),
    func(monitored(jobs.reconcile_violation), name="reconcile_violation", keep_result=0,
         max_tries=1000),
    func(monitored(jobs.run_command), name="run_command", keep_result=0, max_tries=50),
    func(monitored(jobs.fix_violation), name="fix_violation", keep_result=0, max_tries=1000),
    func(monitored(jobs.check_pull), name="check_pull", keep_result=0, max_tries=1000),
    func(monitored(jobs.check_merge_group), name="check_merge_group", keep_result=0,
         max_tries=1000),
    func(monitored(jobs.check_config), name="check_config", keep_result=0, max_tries=1000),
    func(monitored(jobs.sync_installations), name="sync_installations", keep_result=0,
         max_tries=1000),
    func(monitored(jobs.send_reminders), name="send_reminders", keep_result=0,
         max_tries=1000),
    # Bounded by its own give-up time (NOTIFY_GIVE_UP_HOURS), not by arq's tries.
    func(monitored(jobs.send_notifications), name="send_notifications", keep_result=0,
         max_tries=1000),
]
# Minute of each hour the reminders run (away from the other hourly jobs).
REMINDER_MINUTE = 23
# A worker that starts queues one installation sync and catch-up; workers that start while
# it is queued or running share it.
STARTUP_JOB_PREFIX = "startup-sync:"


# notify_due runs every minute and only queues send jobs: a minute is all it may take.
NOTIFY_DUE_TIMEOUT = 60

def recovery_fields(interval: int) -> dict[str, Any]:
    """arq cron fields for "every `interval` seconds" (a whole number of minutes that
    divides an hour, as the settings check)."""
    step = interval // 60
    return {"minute": set(range(0, 60, step)), "second": 0}


def worker_settings(settings: Settings, redis_url: str, *,
                    startup_sync: bool = True) -> dict[str, Any]:
    """`startup_sync=False` leaves out the installation sync and catch-up a starting worker
    queues (tests that start a burst worker per step ask for them explicitly)."""
    async def startup(ctx: dict[str, Any]) -> None:
        await require_migrated(settings.DATABASE_URL)
        github = GitHub(api_url=settings.GITHUB_API_URL, redis=ctx["redis"],
                        app_id=settings.APP_ID,
                        private_key=settings.private_key_pem() if settings.PRIVATE_KEY else None,
                        limits=settings.rate_limits())
        ctx["services"] = Services(settings=settings, db=sessionmaker(settings.DATABASE_URL),
                                   github=github, redis=ctx["redis"])
        if startup_sync:
            minute = int(time.time() // 60)
            job = await ctx["redis"].enqueue_job("sync_installations",
                                                 _job_id=f"{STARTUP_JOB_PREFIX}{minute}")
            log.info("startup: installation sync %s",
                     "queued" if job else "already queued by another worker")

    async def shutdown(ctx: dict[str, Any]) -> None:
        services: Services | None = ctx.get("services")
        if services is not None:
            await services.github.close()
        await dispose_all()

    return {
        "functions": FUNCTIONS,
        # unique=True (arq's default) makes one worker run the cron even with several.
        # keep_result: the finished cron's id stays taken, so a worker that polls late
        # cannot run the same night's scan again.
        "cron_jobs": [
            cron(monitored(jobs.nightly_scan), name="nightly_scan", unique=True,
                 run_at_startup=False, keep_result=3600,
                 **parse_schedule(settings.SCAN_CRON).arq_fields()),
            cron(monitored(jobs.recover_deliveries), name="recover_deliveries", unique=True,
                 run_at_startup=False, keep_result=60,
                 **recovery_fields(settings.DELIVERY_RECOVERY_INTERVAL)),
            # Every minute: `notify:` channels whose digest interval has run out. Not
            # `monitored`: 1,440 runs a day would push every other job out of the job
            # monitor's recent list; it catches its own errors, and the send jobs it queues
            # are monitored.
            cron(jobs.notify_due, name="notify_due", unique=True, run_at_startup=False,
                 keep_result=50, second=0, timeout=NOTIFY_DUE_TIMEOUT),
            # Hourly: archive dates that have come (a date is a UTC day; the nightly scan
            # is the backstop).
            cron(monitored(jobs.archive_sweep), name="archive_sweep", unique=True,
                 run_at_startup=False, keep_result=600, minute=7, second=0),
            # Hourly: reminders on issues without activity (fanned out per installation).
            cron(monitored(jobs.queue_reminders), name="queue_reminders", unique=True,
                 run_at_startup=False, keep_result=600, minute=REMINDER_MINUTE, second=0),
        ],
        "timezone": UTC,  # SCAN_CRON is in UTC whatever the host's zone
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": RedisSettings.from_dsn(redis_url),
        "max_jobs": 20,
        # A little longer than monitored's own limit, which stops jobs first.
        "job_timeout": JOB_TIMEOUT_SECONDS,
        "keep_result": 0,
        "retry_jobs": True,
        "handle_signals": True,
    }


def create_worker(settings: Settings, redis_url: str, *, startup_sync: bool = True,
                  **overrides: Any) -> Worker:
    return Worker(**{**worker_settings(settings, redis_url, startup_sync=startup_sync),
                     **overrides})
