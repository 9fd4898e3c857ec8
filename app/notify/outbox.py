"""The `notifications` outbox: rows added with the change, sent in batches, marked.

A row's state, from its columns:
- pending: `sent_at` NULL and `attempts` 0;
- in flight: `sent_at` NULL and `attempts` > 0: its batch was tried (and may have reached
  the receiver). The next try sends exactly that batch again, under the same delivery id;
- sent: `sent_at` set, `last_error` NULL;
- given up: `sent_at` set and `last_error` set (it starts with GAVE_UP).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config.models import OrgConfig
from app.db.models import Installation, Notification, utcnow

# A violation's message is a paragraph or two; a notification needs its gist.
MESSAGE_MAX = 1000
GAVE_UP = "gave up: "
# Delivery ids are UUIDs derived from the batch, so every try of a batch has the same one.
_DELIVERY_NAMESPACE = uuid.UUID("6f9d3f4e-4f7b-4d43-9a57-2d3c1e0b7a51")


def record_events(db: AsyncSession, installation_id: int, cfg: OrgConfig, repository: str,
                  changes: Iterable[tuple[str, str, str]]) -> int:
    """Add one row per (change, channel that wants it) to the caller's transaction.
    `changes`: (event, policy name, message). Returns how many rows were added."""
    added = 0
    if not cfg.notify:
        return 0
    for event, policy, message in changes:
        for channel in cfg.notify:
            if channel.wants(event, policy):
                db.add(Notification(installation_id=installation_id, channel=channel.name,
                                    event=event, repository=repository[:255],
                                    policy=policy[:255], message=message[:MESSAGE_MAX],
                                    created_at=utcnow(), attempts=0))
                added += 1
    return added


@dataclass(frozen=True)
class PendingChannel:
    installation_id: int
    channel: str
    oldest: datetime  # the oldest unsent row's created_at
    in_flight: bool


async def pending_channels(db: AsyncSession) -> list[PendingChannel]:
    """Every channel of an active installation that has unsent rows."""
    rows = await db.execute(
        select(Notification.installation_id, Notification.channel,
               func.min(Notification.created_at), func.max(Notification.attempts))
        .join(Installation, Installation.id == Notification.installation_id)
        .where(Notification.sent_at.is_(None), Installation.active.is_(True))
        .group_by(Notification.installation_id, Notification.channel)
        .order_by(Notification.installation_id, Notification.channel))
    return [PendingChannel(int(i), str(c), oldest, int(a or 0) > 0)
            for i, c, oldest, a in rows.all()]


def _unsent(installation_id: int, channel: str) -> ColumnElement[bool]:
    return and_(Notification.installation_id == installation_id,
                Notification.channel == channel, Notification.sent_at.is_(None))


async def next_batch(db: AsyncSession, installation_id: int, channel: str,
                     limit: int) -> list[Notification]:
    """The batch in flight when there is one (sent again as it was), else the oldest
    `limit` pending rows."""
    query = (select(Notification).where(_unsent(installation_id, channel))
             .order_by(Notification.id).limit(limit))
    rows = list(await db.scalars(query.where(Notification.attempts > 0)))
    if rows:
        return rows
    return list(await db.scalars(query))


def delivery_id(installation_id: int, channel: str, rows: Sequence[Notification]) -> str:
    key = f"{installation_id}:{channel}:" + ",".join(str(r.id) for r in rows)
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, key))


async def start_attempt(db: AsyncSession, ids: Sequence[int]) -> None:
    await db.execute(update(Notification).where(Notification.id.in_(list(ids)))
                     .values(attempts=Notification.attempts + 1))


async def mark_sent(db: AsyncSession, ids: Sequence[int]) -> None:
    await db.execute(update(Notification).where(Notification.id.in_(list(ids)),
                                                Notification.sent_at.is_(None))
                     .values(sent_at=utcnow(), last_error=None))


async def mark_send_failed(db: AsyncSession, ids: Sequence[int], error: str) -> None:
    await db.execute(update(Notification).where(Notification.id.in_(list(ids)))
                     .values(last_error=error[:2000]))


async def give_up(db: AsyncSession, ids: Sequence[int], error: str) -> None:
    await db.execute(update(Notification).where(Notification.id.in_(list(ids)),
                                                Notification.sent_at.is_(None))
                     .values(sent_at=utcnow(), last_error=(GAVE_UP + error)[:2000]))


async def give_up_channel(db: AsyncSession, installation_id: int, channel: str,
                          error: str) -> int:
    """Every unsent row of the channel (it is gone from the config): given up at once."""
    result = await db.execute(update(Notification).where(_unsent(installation_id, channel))
                              .values(sent_at=utcnow(), last_error=(GAVE_UP + error)[:2000]))
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class ChannelState:
    """What the dashboard shows of a channel."""

    pending: int
    last_sent_at: datetime | None
    failing_since: datetime | None  # the oldest event of a batch that failed and waits
    attempts: int
    last_error: str | None
    given_up: int  # rows given up in the last GIVEN_UP_SHOWN
    last_given_up: str | None


GIVEN_UP_SHOWN = timedelta(days=7)


async def channel_state(db: AsyncSession, installation_id: int, channel: str) -> ChannelState:
    mine = (Notification.installation_id == installation_id, Notification.channel == channel)
    unsent = (*mine, Notification.sent_at.is_(None))
    pending = int(await db.scalar(select(func.count()).where(*unsent)) or 0)
    last_sent = await db.scalar(select(func.max(Notification.sent_at)).where(
        *mine, Notification.sent_at.is_not(None), Notification.last_error.is_(None)))
    flight = (await db.execute(
        select(Notification.created_at, Notification.attempts, Notification.last_error)
        .where(*unsent, Notification.attempts > 0, Notification.last_error.is_not(None))
        .order_by(Notification.id).limit(1))).first()
    since = utcnow() - GIVEN_UP_SHOWN
    given_up = int(await db.scalar(select(func.count()).where(
        *mine, Notification.sent_at > since, Notification.last_error.is_not(None))) or 0)
    last_given_up = await db.scalar(
        select(Notification.last_error).where(*mine, Notification.sent_at > since,
                                              Notification.last_error.is_not(None))
        .order_by(Notification.id.desc()).limit(1)) if given_up else None
    return ChannelState(
        pending=pending, last_sent_at=last_sent,
        failing_since=flight[0] if flight is not None else None,
        attempts=int(flight[1]) if flight is not None else 0,
        last_error=flight[2] if flight is not None else None,
        given_up=given_up, last_given_up=last_given_up)


async def prune(db: AsyncSession, older_than: timedelta) -> int:
    """Delete rows sent (or given up) longer ago than `older_than`."""
    result = await db.execute(delete(Notification).where(
        Notification.sent_at.is_not(None), Notification.sent_at < utcnow() - older_than))
    return int(getattr(result, "rowcount", 0) or 0)
