"""What a message carries: the events of one batch, as plain data for the formatters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Event:
    """A violation that opened or resolved. `id` is stable across retries (per row)."""

    id: str
    event: str  # opened / resolved
    repository: str  # owner/name
    policy: str
    message: str
    at: datetime


@dataclass(frozen=True)
class Batch:
    """One message's worth of events for one channel. `delivery_id` is the same on every
    try of the same batch, so a receiver can drop a duplicate."""

    delivery_id: str
    installation_id: int
    org: str
    channel: str
    attempt: int
    events: tuple[Event, ...]

    def count(self, event: str) -> int:
        return sum(1 for e in self.events if e.event == event)
