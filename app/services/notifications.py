"""Sending the `notify:` outbox: the cron's fan-out and the per-channel send job.

Every minute `queue_due` queues one `send_notifications` job per (installation, channel)
whose digest interval has run out since its oldest unsent event (fixed job ids: a channel
already queued, or waiting to retry, is not queued twice). `send_channel` posts batches
and marks them sent. A failure records the error on the batch and asks for a retry after
an exponential backoff; a batch still failing NOTIFY_GIVE_UP_HOURS after it was due is
given up, which the dashboard and the log say. Nothing here is called by scanning or
reconciling, so a channel that fails or hangs never holds them up.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config.models import NotifyChannel, OrgConfig
from app.db.models import Installation, Notification, Repository, Violation, utcnow
from app.notify import outbox, transport
from app.notify.channels import ChannelUnavailable, describe_destination, resolve_target
from app.notify.events import Batch, Event
from app.notify.outbox import record_events
from app.notify.slack import slack_payload
from app.notify.webhook import webhook_body, webhook_headers
from app.services.config import config_for
from app.services.context import Services
from app.services.queue import exclusive

log = logging.getLogger(__name__)

SEND_FUNCTION = "send_notifications"
# Events per message: Slack shows counts and the first lines, so one message can stand
# for many; a webhook receiver gets every event, in bodies of a sensible size.
BATCH_SIZE = {"slack": 1000, "webhook": 100}
# Batches one run sends; the rest wait for the next run (a minute later).
MAX_BATCHES = 20
# A batch is given up only after this many tries, however old its events (a worker that
# was down for a day still tries before giving up).
MIN_TRIES = 3
MAX_BACKOFF = 3600.0
RETENTION = timedelta(days=30)


class SendLater(Exception):
    """The channel failed: run the send job again in `delay` seconds. The text is safe."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay


def send_job_id(installation_id: int, channel: str) -> str:
    return f"notify:{installation_id}:{channel}"


def backoff(attempt: int, base: float, retry_after: float | None = None) -> float:
    """Seconds before try `attempt + 1`: base, twice that, 4 times, … up to an hour, or
    longer when the receiver asked (Retry-After, also capped at an hour)."""
    delay = min(MAX_BACKOFF, base * 2.0 ** max(0, attempt - 1))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_BACKOFF))
    return delay


async def queue_due(svc: Services, now: datetime | None = None) -> int:
    """Cron: queue a send job for each channel whose events are due. Returns how many
    jobs were queued (a channel whose job is queued already counts nothing)."""
    now = now or utcnow()
    async with svc.db() as db:
        pending = await outbox.pending_channels(db)
        ids = {p.installation_id for p in pending}
        insts = {i.id: i for i in await db.scalars(
            select(Installation).where(Installation.id.in_(ids)))} if ids else {}
    queued = 0
    for p in pending:
        inst = insts.get(p.installation_id)
        cfg = config_for(inst) if inst is not None else None
        channel = cfg.notify_channel(p.channel) if cfg is not None else None
        # A channel gone from the config is due at once: its job gives its events up.
        digest = channel.digest_minutes if channel is not None else 0
        if not p.in_flight and p.oldest + timedelta(minutes=digest) > now:
            continue
        job = await svc.redis.enqueue_job(SEND_FUNCTION, p.installation_id, p.channel,
                                          _job_id=send_job_id(p.installation_id, p.channel))
        queued += job is not None
    return queued


@dataclass
class SendOutcome:
    batches: int = 0
    events: int = 0
    given_up: int = 0
    more: bool = False  # MAX_BATCHES were sent and events remain (the next run sends them)


def _batch(inst: Installation, channel: str, rows: list[Notification]) -> Batch:
    return Batch(
        delivery_id=outbox.delivery_id(inst.id, channel, rows),
        installation_id=inst.id, org=inst.account_login, channel=channel,
        attempt=max(r.attempts for r in rows) + 1,
        events=tuple(Event(id=f"{inst.id}-{r.id}", event=r.event, repository=r.repository,
                           policy=r.policy, message=r.message, at=r.created_at)
                     for r in rows))


async def _post(svc: Services, channel: NotifyChannel, batch: Batch) -> None:
    settings = svc.settings
    target = resolve_target(channel, batch.org, settings)
    dashboard = f"{settings.PUBLIC_URL}/orgs/{batch.org}" if settings.PUBLIC_URL else None
    if target.type == "slack":
        body = json.dumps(slack_payload(batch, github_url=settings.GITHUB_URL,
                                        dashboard_url=dashboard)).encode()
        headers = {"Content-Type": "application/json"}
    else:
        if target.secret is None:  # the config model requires secret_env
            raise ChannelUnavailable("a webhook channel needs secret_env")
        body = webhook_body(batch, timestamp=int(time.time()), app_name=settings.APP_NAME,
                            github_url=settings.GITHUB_URL, dashboard_url=dashboard)
        headers = webhook_headers(batch, body, target.secret)
    headers["User-Agent"] = f"{settings.APP_NAME}-notify"
    await transport.post(target.url, body, headers,
                         allow_private=settings.NOTIFY_ALLOW_PRIVATE_NETWORKS,
                         redact=target.redact)


async def send_channel(svc: Services, installation_id: int, channel_name: str) -> SendOutcome:
    """Send the channel's due events, a batch at a time. Raises SendLater when a batch
    failed (its rows keep the error and are tried again, as the same batch)."""
    out = SendOutcome()
    # Two runs for one channel (arq's at-least-once, a manual retry) never post the same
    # batch side by side.
    async with exclusive(svc.redis, send_job_id(installation_id, channel_name)):
        async with svc.db() as db:
            inst = await db.get(Installation, installation_id)
        if inst is None or not inst.active:
            return out  # suspended or uninstalled: the events wait
        cfg = config_for(inst)
        channel = cfg.notify_channel(channel_name) if cfg is not None else None
        if channel is None:
            async with svc.db() as db, db.begin():
                out.given_up = await outbox.give_up_channel(
                    db, installation_id, channel_name,
                    f"the channel {channel_name!r} is no longer in the config")
            log.warning("installation %s: notify channel %r is no longer in the config; "
                        "%d unsent events dropped", installation_id, channel_name, out.given_up)
            return out
        for _ in range(MAX_BATCHES):
            async with svc.db() as db, db.begin():
                rows = await outbox.next_batch(db, installation_id, channel_name,
                                               BATCH_SIZE[channel.type])
                if not rows:
                    return out
                batch = _batch(inst, channel_name, rows)
                ids = [r.id for r in rows]
                oldest = min(r.created_at for r in rows)
                # Counted before the POST: a try that dies after posting is still a try,
                # and the batch stays "in flight" (sent again as it is).
                await outbox.start_attempt(db, ids)
            try:
                await _post(svc, channel, batch)
            except (transport.DeliveryError, ChannelUnavailable) as exc:
                await _failed(svc, channel, batch, ids, oldest, exc, out)
                continue  # given up: on to the next batch (_failed raised otherwise)
            async with svc.db() as db, db.begin():
                await outbox.mark_sent(db, ids)
            out.batches += 1
            out.events += len(ids)
            log.info("installation %s: notify channel %r: sent %d events (delivery %s, "
                     "try %d)", installation_id, channel_name, len(ids), batch.delivery_id,
                     batch.attempt)
        out.more = True
    return out


async def _failed(svc: Services, channel: NotifyChannel, batch: Batch, ids: list[int],
                  oldest: datetime, exc: Exception, out: SendOutcome) -> None:
    """Record the failure; give the batch up past the bound, else raise SendLater."""
    reason = str(exc)
    due = oldest + timedelta(minutes=channel.digest_minutes)
    late = utcnow() - due > timedelta(hours=svc.settings.NOTIFY_GIVE_UP_HOURS)
    if batch.attempt >= MIN_TRIES and late:
        async with svc.db() as db, db.begin():
            await outbox.give_up(db, ids, f"after {batch.attempt} tries: {reason}")
        out.given_up += len(ids)
        log.error("installation %s: notify channel %r: gave up on %d events after %d tries "
                  "(delivery %s): %s", batch.installation_id, channel.name, len(ids),
                  batch.attempt, batch.delivery_id, reason)
        return
    async with svc.db() as db, db.begin():
        await outbox.mark_send_failed(db, ids, reason)
    retry_after = exc.retry_after if isinstance(exc, transport.DeliveryError) else None
    delay = backoff(batch.attempt, svc.settings.NOTIFY_RETRY_SECONDS, retry_after)
    log.warning("installation %s: notify channel %r: try %d of delivery %s failed (%s); "
                "retry in %.0f s", batch.installation_id, channel.name, batch.attempt,
                batch.delivery_id, reason, delay)
    raise SendLater(delay, reason)


@dataclass(frozen=True)
class ChannelStatus:
    """A channel as the config page shows it."""

    name: str
    type: str
    destination: str
    digest_minutes: int
    events: tuple[str, ...]
    policies: tuple[str, ...] | None
    state: outbox.ChannelState


async def channel_statuses(db: AsyncSession, installation_id: int,
                           cfg: OrgConfig) -> list[ChannelStatus]:
    return [ChannelStatus(name=c.name, type=c.type, destination=describe_destination(c),
                          digest_minutes=c.digest_minutes, events=tuple(c.events),
                          policies=c.policies,
                          state=await outbox.channel_state(db, installation_id, c.name))
            for c in cfg.notify]


async def prune_notifications(svc: Services) -> int:
    """Nightly: forget events sent (or given up) more than RETENTION ago."""
    async with svc.db() as db, db.begin():
        return await outbox.prune(db, RETENTION)


async def record_withdrawn(db: AsyncSession, installation_id: int,
                           violations: Sequence[Violation]) -> int:
    """The outbox rows for violations resolved without a scan (their repository was
    archived, removed or deleted), in the caller's transaction."""
    inst = await db.get(Installation, installation_id)
    cfg = config_for(inst) if inst is not None else None
    if cfg is None or not cfg.notify or not violations:
        return 0
    names = {int(rid): str(name) for rid, name in (await db.execute(
        select(Repository.id, Repository.full_name).where(
            Repository.id.in_({v.repository_id for v in violations})))).all()}
    return sum(record_events(db, installation_id, cfg, names.get(v.repository_id, "?"),
                             [("resolved", v.policy, v.message)]) for v in violations)
