"""arq job functions: thin wrappers that hand the work to the services.

arq delivers at least once and retries only what raises `Retry`, so every job turns a
transient failure into a deferred retry (a bounded number of times) and a rate-limit
wait into a deferral that does not count against that bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from arq import Retry
from sqlalchemy import delete, select, update

from app.cron import parse_schedule
from app.db.models import Installation, Scan, WebhookDelivery, utcnow
from app.github.errors import RateLimited, describe_error
from app.services import (
    archiving,
    commands,
    config_checks,
    deliveries,
    filing,
    fixes,
    installations,
    job_monitor,
    maintenance,
    notifications,
    pull_checks,
    pull_events,
    reconcile,
    recording,
    reminders,
    scan_requests,
    scanning,
    webhooks,
)
from app.services.context import Services
from app.services.queue import exclusive, finish_coalesced, note_job, start_coalesced
from app.services.store import bump_scan

log = logging.getLogger(__name__)

Ctx = dict[str, Any]
T = TypeVar("T")
# Failures (not rate-limit waits) a job may have before it gives up.
MAX_TRIES = 6
# Tries of a config check (app/services/config_checks.py) that GitHub keeps failing.
CONFIG_CHECK_TRIES = 3
# A delivery exists only in its job: it outlasts a longer outage (the backoff is capped at
# 5 minutes, so about 40 minutes) before it is recorded as failed for the recovery.
WEBHOOK_MAX_TRIES = 12
DELIVERY_RETENTION = timedelta(days=30)
# Reading the config and listing an org's repositories takes seconds (a minute at 10,000
# repositories); past this the full scan's job gives up on this try.
SCAN_SETUP_TIMEOUT = 480.0


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


async def _retry_or_raise(ctx: Ctx, what: str, exc: Exception,
                          max_tries: int | None = None) -> Retry:
    """A Retry to raise for a transient failure; re-raises once the tries are spent
    (`max_tries`, MAX_TRIES by default)."""
    failures = await _failures(ctx)
    if failures >= (MAX_TRIES if max_tries is None else max_tries):
        log.error("%s failed for good after %d tries: %s", what, failures, exc)
        raise exc
    delay = float(min(300, 2 * 3 ** (failures - 1)))
    log.warning("%s failed (%s: %s); retry in %.0f s", what, type(exc).__name__, exc, delay)
    return Retry(defer=delay)


def _pending_wait_key(job_id: str) -> str:
    return f"pe:waiting:{job_id}"


async def _start_waiting(svc: Services, job_id: str, scan_ids: list[int], count: int,
                         until: float) -> None:
    """The job's `count` repositories wait for the rate limit: shown on its scans."""
    await svc.redis.set(_pending_wait_key(job_id), count, ex=7 * 24 * 3600)
    async with svc.db() as db, db.begin():
        await db.execute(update(Scan).where(Scan.id.in_(scan_ids)).values(
            waiting=Scan.waiting + count, detail=_waiting_text(until)))


async def _stop_waiting(svc: Services, job_id: str, scan_ids: list[int]) -> None:
    """The job runs again: its repositories no longer wait."""
    async with svc.redis.pipeline(transaction=True) as pipe:
        pipe.get(_pending_wait_key(job_id))
        pipe.delete(_pending_wait_key(job_id))
        raw, _ = await pipe.execute()
    if not raw:
        return
    async with svc.db() as db, db.begin():
        await db.execute(update(Scan).where(Scan.id.in_(scan_ids)).values(
            waiting=Scan.waiting - int(raw)))
        for sid in scan_ids:
            row = await db.get(Scan, sid, populate_existing=True)
            if row is not None and row.waiting <= 0 and row.detail \
                    and row.detail.startswith("waiting"):
                row.detail = None


async def _run(ctx: Ctx, what: str, work: Callable[[], Awaitable[T]],
               max_tries: int | None = None) -> T:
    try:
        return await work()
    except RateLimited as exc:
        raise await _defer_for_rate_limit(ctx, exc) from exc
    except Exception as exc:
        raise await _retry_or_raise(ctx, what, exc, max_tries) from exc


async def handle_webhook(ctx: Ctx, delivery_id: str, event: str, action: str | None,
                         installation_id: int | None, body: bytes | None) -> str:
    try:
        return await _run(ctx, f"delivery {delivery_id} ({event})",
                          lambda: webhooks.handle_webhook(_svc(ctx), delivery_id, event, action,
                                                          installation_id, body),
                          WEBHOOK_MAX_TRIES)
    except Retry:
        raise
    except Exception as exc:
        # Failed for good (its tries spent): recorded as failed and redeliverable (the
        # recovery asks GitHub). Not when Redis itself is away: arq runs the job again once
        # its in-progress mark expires, and the delivery was never lost.
        try:
            gave_up = await _failures(ctx) >= WEBHOOK_MAX_TRIES
        except Exception:
            gave_up = False
        if gave_up:
            await deliveries.mark_failed(_svc(ctx), delivery_id, describe_error(exc))
        raise


async def scan_installation(ctx: Ctx, installation_id: int) -> int | None:
    svc = _svc(ctx)
    key = scan_requests.full_scan_key(installation_id)
    job_id = str(ctx.get("job_id"))
    notes = await start_coalesced(svc.redis, key, job_id)
    trigger = ",".join(sorted({str(n["trigger"]) for n in notes if n.get("trigger")})) \
        or ("retry" if job_id.startswith("retry:") else "unknown")

    # A try that was interrupted after creating its scan record continues that record.
    earlier = [int(n["scan"]) for n in notes if n.get("scan") is not None]

    async def created(scan_id: int) -> None:
        earlier.append(scan_id)
        await note_job(svc.redis, key, job_id, {"scan": scan_id})

    async def work() -> int | None:
        # Bounded within the job, so a scan that hangs fails here, where its record is
        # closed, not in the wrapper around the job.
        async with asyncio.timeout(SCAN_SETUP_TIMEOUT), exclusive(svc.redis, key):
            return await scanning.scan_installation(
                svc, installation_id, trigger, scan_id=max(earlier) if earlier else None,
                on_created=created)

    try:
        result = await _run(ctx, f"full scan of installation {installation_id}", work)
    except Retry:
        raise
    except Exception as exc:
        # Failed for good: its record says so (a Scan Now is not held up by a scan that
        # will never finish), and the job monitor keeps the job for a Retry.
        if earlier:
            await scanning.fail_scan(svc, max(earlier), describe_error(exc))
        await finish_coalesced(svc.redis, key, job_id)
        raise
    await finish_coalesced(svc.redis, key, job_id)
    return result


async def scan_repo(ctx: Ctx, installation_id: int, repo_id: int) -> str:
    svc = _svc(ctx)
    key = scan_requests.scan_key(installation_id, repo_id)
    job_id = str(ctx.get("job_id"))
    notes = await start_coalesced(svc.redis, key, job_id)
    scan_ids = sorted({int(n["scan"]) for n in notes if n.get("scan") is not None})
    if not scan_ids:
        # Not part of a full scan: the repository scan gets a record of its own, noted
        # like any other request so a re-run of this job counts into the same record.
        triggers = sorted({str(n["trigger"]) for n in notes if n.get("trigger")})
        async with svc.db() as db, db.begin():
            scan = Scan(installation_id=installation_id, kind="repo", total=1,
                        repository_id=repo_id,
                        trigger=(",".join(triggers) or "retry")[:255])
            db.add(scan)
            await db.flush()
            scan_ids = [scan.id]
        await note_job(svc.redis, key, job_id, {"scan": scan_ids[0]})
    await _stop_waiting(svc, job_id, scan_ids)
    try:
        async with exclusive(svc.redis, key):
            result = await scanning.scan_repository(svc, installation_id, repo_id)
    except RateLimited as exc:
        await _start_waiting(svc, job_id, scan_ids, 1, exc.until)
        raise await _defer_for_rate_limit(ctx, exc) from exc
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        await recording.record_repo_error(svc, repo_id, reason)
        if await _failures(ctx) < MAX_TRIES:
            raise await _retry_or_raise(ctx, f"scan of repository {repo_id}", exc) from exc
        log.error("scan of repository %s failed for good: %s", repo_id, reason)
        async with svc.db() as db, db.begin():
            for sid in scan_ids:
                await bump_scan(db, sid, ok=False)
        await finish_coalesced(svc.redis, key, job_id)
        raise  # failed for good: the job monitor keeps it, with Retry
    stopped = result.status == "stopped"
    async with svc.db() as db, db.begin():
        for sid in scan_ids:
            record = await db.get(Scan, sid) if stopped else None
            if record is not None:
                record.detail = result.reason
            await bump_scan(db, sid, ok=not stopped, opened=result.opened,
                            resolved=result.resolved)
    await finish_coalesced(svc.redis, key, job_id)
    return result.status


async def scan_batch(ctx: Ctx, installation_id: int, scan_id: int, repo_ids: list[int]) -> str:
    """Up to 100 repositories of a full scan (job id `scan-batch:{scan}:{index}`).

    Runs again safely: what an earlier try recorded is skipped. Repositories that error go
    to scan_repo jobs of their own; those waiting for the rate limit defer this job (which
    then does only them). A batch that keeps failing as a whole hands every repository it
    has not done to its own scan_repo job.
    """
    svc = _svc(ctx)
    job_id = str(ctx.get("job_id"))
    await _stop_waiting(svc, job_id, [scan_id])
    try:
        out = await scanning.scan_batch(svc, installation_id, scan_id, repo_ids, token=job_id)
    except RateLimited as exc:  # (the batch reports waits itself; this is a backstop)
        await _start_waiting(svc, job_id, [scan_id], len(repo_ids), exc.until)
        raise await _defer_for_rate_limit(ctx, exc) from exc
    except Exception as exc:
        if await _failures(ctx) < MAX_TRIES:
            raise await _retry_or_raise(ctx, f"batch {job_id}", exc) from exc
        moved = await scanning.hand_off_batch(svc, installation_id, scan_id, repo_ids)
        log.error("batch %s failed for good (%s: %s); %d repositories go to jobs of their own",
                  job_id, type(exc).__name__, exc, moved)
        return f"handed off {moved}"
    if out.waiting:
        until = out.retry_at or time.time() + 60
        await _start_waiting(svc, job_id, [scan_id], len(out.waiting), until)
        raise await _defer_for_rate_limit(ctx, RateLimited(until, "rate limit")) from None
    return (f"{out.done} done ({out.reused} unchanged), {out.handed_off} handed off, "
            f"{out.opened} opened, {out.resolved} resolved")


async def reconcile_violation(ctx: Ctx, installation_id: int, violation_id: int) -> int:
    svc = _svc(ctx)
    key = scan_requests.reconcile_key(violation_id)
    job_id = str(ctx.get("job_id"))
    await start_coalesced(svc.redis, key, job_id)

    async def work() -> int:
        async with exclusive(svc.redis, key):
            try:
                return await reconcile.reconcile_violation(svc, installation_id, violation_id)
            except RateLimited as exc:
                await filing.waiting(svc, violation_id, exc.until)
                raise

    try:
        result = await _run(ctx, f"reconcile of violation {violation_id}", work)
    except Retry:
        raise
    except Exception:
        await filing.settled(svc, violation_id)  # failed for good: no longer pending
        raise
    await filing.settled(svc, violation_id)
    await finish_coalesced(svc.redis, key, job_id)
    return result


async def fix_violation(ctx: Ctx, installation_id: int, violation_id: int) -> str:
    """A maintainer's one-shot fix from the dashboard (app/services/fixes.py)."""
    svc = _svc(ctx)
    key = fixes.fix_key(violation_id)
    job_id = str(ctx.get("job_id"))
    await start_coalesced(svc.redis, key, job_id)

    async def work() -> str:
        report = await fixes.fix_once(svc, installation_id, violation_id)
        return f"{report.status}: {report.detail}"

    result = await _run(ctx, f"fix of violation {violation_id}", work)
    await finish_coalesced(svc.redis, key, job_id)
    return result


async def check_pull(ctx: Ctx, installation_id: int, repo_id: int, number: int) -> str:
    """Judge a pull request's head; report it (check runs, the sticky comment)."""
    svc = _svc(ctx)
    key = pull_events.pull_key(repo_id, number)
    job_id = str(ctx.get("job_id"))
    await start_coalesced(svc.redis, key, job_id)
    result = await _run(ctx, f"check of pull request #{number} of repository {repo_id}",
                        lambda: pull_checks.check_pull(svc, installation_id, repo_id, number))
    await finish_coalesced(svc.redis, key, job_id)
    return result


async def check_config(ctx: Ctx, installation_id: int, repo_id: int, sha: str,
                       pull_number: int | None = None, base_sha: str | None = None,
                       preview: bool = True) -> str:
    """Report config.yaml at a commit of the `.github` repository as a check run (with a
    preview of the change for a pull request)."""
    # A report, not enforcement (the scan records an unreadable config on its own): a few
    # tries, and the next push reports again.
    return await _run(ctx, f"config check of {sha[:7]} in repository {repo_id}",
                      lambda: config_checks.check_config(_svc(ctx), installation_id, repo_id,
                                                         sha, pull_number, base_sha, preview),
                      max_tries=CONFIG_CHECK_TRIES)


async def check_merge_group(ctx: Ctx, installation_id: int, repo_id: int, head_sha: str
                            ) -> str:
    """Judge a merge queue's commit; report it as check runs."""
    svc = _svc(ctx)
    return await _run(ctx, f"check of merge group {head_sha[:7]} of repository {repo_id}",
                      lambda: pull_checks.check_merge_group(svc, installation_id, repo_id,
                                                            head_sha))


async def run_command(ctx: Ctx, installation_id: int, repo_id: int, full_name: str,
                      issue_number: int, comment_id: int, user: str, command: str,
                      args: str) -> str:
    req = commands.CommandRequest(installation_id, repo_id, full_name, issue_number,
                                  comment_id, user, command, args)
    return await _run(ctx, f"/policy {command} in {full_name}",
                      lambda: commands.run_command(_svc(ctx), req))


async def nightly_scan(ctx: Ctx) -> int:
    """Cron: arq wakes it at SCAN_CRON's hours and minutes; on the schedule's days it syncs
    the installations with GitHub's list, queues a full scan of every active one, and prunes
    old records. Returns how many scans were queued (-1: not one of the schedule's days)."""
    svc = _svc(ctx)
    now = utcnow()
    if not parse_schedule(svc.settings.SCAN_CRON).matches(now):
        return -1
    return await _scan_all(svc, "cron")


async def _scan_all(svc: Services, trigger: str) -> int:
    await _sync_installations_quietly(svc)
    async with svc.db() as db, db.begin():
        ids = list(await db.scalars(select(Installation.id).where(Installation.active.is_(True))))
        await db.execute(delete(WebhookDelivery).where(
            WebhookDelivery.received_at < utcnow() - DELIVERY_RETENTION))
        await job_monitor.prune_failures(db)
    await deliveries.prune_redelivery_requests(svc, DELIVERY_RETENTION)
    await notifications.prune_notifications(svc)
    await maintenance.close_stale_scans(svc)
    for inst_id in ids:
        await scan_requests.request_full_scan(svc, inst_id, trigger)
    log.info("full scan (%s) queued for %d installations", trigger, len(ids))
    return len(ids)


async def _sync_installations_quietly(svc: Services) -> None:
    """The sync is a safety net: when GitHub cannot list installations now, the scans of
    the known ones still go ahead."""
    if svc.settings.APP_ID is None or svc.settings.PRIVATE_KEY is None:
        return
    try:
        await installations.sync_installations(svc)
    except Exception as exc:
        log.warning("installation sync failed (%s); scanning the installations known",
                    describe_error(exc))


async def notify_due(ctx: Ctx) -> str:
    """Cron (every minute): one send job per `notify:` channel whose events are due."""
    try:
        queued = await notifications.queue_due(_svc(ctx))
    except Exception as exc:
        # Only queueing failed; the events wait in the outbox for the next minute.
        log.warning("queueing notifications failed (%s)", describe_error(exc))
        return f"failed: {describe_error(exc)}"
    return f"{queued} channels queued"


async def send_notifications(ctx: Ctx, installation_id: int, channel: str) -> str:
    """Post a channel's due events (job id notifications.send_job_id). A failure waits its
    backoff as a deferred retry; it never touches scanning or reconciling."""
    try:
        out = await notifications.send_channel(_svc(ctx), installation_id, channel)
    except notifications.SendLater as exc:
        raise Retry(defer=exc.delay) from exc
    return (f"{out.events} events in {out.batches} messages, {out.given_up} given up"
            + (", more to send" if out.more else ""))


async def recover_deliveries(ctx: Ctx) -> str:
    """Cron (DELIVERY_RECOVERY_INTERVAL): redeliver what GitHub failed to deliver."""
    svc = _svc(ctx)
    if svc.settings.APP_ID is None or svc.settings.PRIVATE_KEY is None:
        return "skipped: the App's credentials are not set"
    try:
        result = await deliveries.recover_deliveries(svc)
    except Exception as exc:
        # The next run (an interval later) starts from the same checkpoint.
        log.warning("delivery recovery failed (%s); trying again at the next run",
                    describe_error(exc))
        return f"failed: {describe_error(exc)}"
    return (f"{result.listed} listed, {len(result.redelivered)} redelivered, "
            f"{len(result.refused)} refused, {len(result.stale_scans)} stale-webhook scans")


async def queue_reminders(ctx: Ctx) -> str:
    """Cron (hourly): one send_reminders job per configured installation."""
    try:
        queued = await reminders.queue_reminders(_svc(ctx))
    except Exception as exc:
        # Nothing is lost: the next hour's run picks the same reminders.
        log.warning("queueing reminders failed (%s)", describe_error(exc))
        return f"failed: {describe_error(exc)}"
    return f"{queued} installations queued"


async def send_reminders(ctx: Ctx, installation_id: int) -> str:
    """Reminders on the installation's issues that had no activity for their interval
    (job id reminders.reminders_job_id: one per installation and hour)."""
    posted = await _run(ctx, f"reminders of installation {installation_id}",
                        lambda: reminders.send_reminders(_svc(ctx), installation_id))
    return f"{posted} reminders posted"


async def archive_sweep(ctx: Ctx) -> str:
    """Cron (hourly): archive dates that are due get a confirming scan (archive-repo
    archives only a violation still open on its date); out-of-date ones are rescheduled."""
    result = await archiving.sweep(_svc(ctx))
    return (f"{result.rescheduled} rescheduled, {result.confirming} confirming scans, "
            f"{result.archiving} to archive")


async def sync_installations(ctx: Ctx) -> str:
    """At worker start: installations GitHub lists that we do not know are added and
    scanned; a nightly run missed while no worker ran is caught up once."""
    svc = _svc(ctx)
    if svc.settings.APP_ID is not None and svc.settings.PRIVATE_KEY is not None:
        result = await _run(ctx, "installation sync",
                            lambda: installations.sync_installations(svc))
        synced = f"{result.listed} listed, {len(result.added)} added, {len(result.gone)} gone"
    else:
        synced = "no App credentials"
    await maintenance.close_stale_scans(svc)
    caught_up = await maintenance.catch_up(svc, parse_schedule(svc.settings.SCAN_CRON))
    return f"{synced}; {len(caught_up)} missed nightly scans caught up"
