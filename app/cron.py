"""SCAN_CRON: a five-field cron expression (UTC), read by cronsim.

arq's scheduler ANDs every field, while cron ORs day-of-month with day-of-week when both are
restricted, and arq knows nothing of `L`, `5#2` or names. So arq only ticks at the
expression's minutes and hours in its months (a superset of the schedule), and the job asks
`Schedule.matches` whether this minute really is one of the expression's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError

# Catch-up looks this far back for the last scheduled run; a yearly schedule still works.
_LOOKBACK = timedelta(days=400)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True)
class Schedule:
    expr: str
    _probe: CronSim = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = self.expr.split()
        if len(parts) != 5:
            raise ValueError("must have five fields: minute hour day-of-month month "
                             "day-of-week")
        try:
            probe = CronSim(self.expr, datetime(2000, 1, 1, tzinfo=UTC))
            next(probe)  # an expression that can never match (e.g. 30 Feb) fails here
        except (CronSimError, StopIteration) as exc:
            raise ValueError(str(exc) or "never matches") from None
        object.__setattr__(self, "_probe", probe)

    def arq_fields(self) -> dict[str, Any]:
        """Keyword arguments for arq's cron(): when arq should wake the job up."""
        p = self._probe
        return {"minute": set(p.minutes), "hour": set(p.hours), "month": set(p.months),
                "second": 0}

    def next_after(self, now: datetime) -> datetime:
        """The first scheduled time strictly after `now` (UTC)."""
        return next(CronSim(self.expr, _utc(now).replace(second=0, microsecond=0)))

    def previous(self, now: datetime) -> datetime | None:
        """The last scheduled time at or before `now`, within about a year."""
        start = _utc(now).replace(second=0, microsecond=0) + timedelta(minutes=1)
        it = CronSim(self.expr, start - timedelta(seconds=1), reverse=True)
        found = next(it, None)
        if found is None or found < _utc(now) - _LOOKBACK:
            return None
        return found

    def matches(self, at: datetime) -> bool:
        """Whether the minute of `at` is one of the schedule's."""
        minute = _utc(at).replace(second=0, microsecond=0)
        return self.previous(minute) == minute


def parse_schedule(expr: str) -> Schedule:
    """`Schedule` for the expression; raises ValueError saying what is wrong."""
    return Schedule(expr.strip())
