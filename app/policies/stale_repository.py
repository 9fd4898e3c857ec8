"""The repository was pushed to within the last `max_days_inactive` days."""

from __future__ import annotations

import builtins
import datetime as _dt
from typing import Any, ClassVar

from pydantic import Field

from app.policies.base import (
    DOCS_URL,
    Needs,
    Params,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
    SourceUnreadable,
)
from app.sources.settings import SOURCE

TYPE = "stale_repository"
DAY = 86400


class StaleRepositoryParams(Params):
    # A century bounds the arithmetic; nothing real waits longer.
    max_days_inactive: int = Field(default=365, ge=1, le=36500)


DEFAULTS = StaleRepositoryParams()


def pushed_time(pushed_at: str) -> _dt.datetime:
    """GitHub's ISO 8601 time ('2024-05-01T12:00:00Z'), in UTC."""
    try:
        when = _dt.datetime.fromisoformat(pushed_at)
    except ValueError:
        # Not a judgement to make on data that cannot be read: `unknown`, not a violation.
        raise SourceUnreadable(f"GitHub gave a last-push time that is not ISO 8601: "
                               f"{pushed_at[:40]!r}") from None
    return when.replace(tzinfo=_dt.UTC) if when.tzinfo is None else when


class StaleRepository(PolicyBase):
    type: ClassVar[str] = TYPE
    title: ClassVar[str] = "Repository is not stale"
    Params: ClassVar[builtins.type[Params]] = StaleRepositoryParams
    example: ClassVar[dict[str, Any]] = {"max_days_inactive": 365}
    needs: ClassVar[Needs] = Needs(sources=frozenset({"settings"}))
    remedy: ClassVar[Remedy | None] = None

    def evaluate(self, snapshot: RepoSnapshot, params: StaleRepositoryParams = DEFAULTS
                 ) -> Result:
        limit = params.max_days_inactive
        if snapshot.archived:
            return Result(True, "The repository is archived.")
        pushed_at = SOURCE.of(snapshot).pushed_at
        fix = ("If it is no longer maintained, archive it (the `archive-repo` action does "
               "that); if it is, push to it.")
        see = f"See {DOCS_URL}#{TYPE}."
        if pushed_at is None:
            return Result(False, f"`{snapshot.full_name}` has never been pushed to, so it "
                                 f"has been inactive for more than {limit} days. {fix} {see}",
                          {"pushed_at": None, "max_days_inactive": limit})
        when = pushed_time(pushed_at)
        days = int((snapshot.taken_at - when.timestamp()) // DAY)
        if snapshot.taken_at - when.timestamp() <= limit * DAY:
            return Result(True, f"Last pushed {max(days, 0)} days ago, on "
                                f"{when.date().isoformat()}.")
        # The day count stays out of the message and details: it grows every day, and a
        # changed message rewrites the violation's issue at every scan.
        return Result(
            False,
            f"`{snapshot.full_name}` has had no push since {when.date().isoformat()}, more "
            f"than {limit} days ago (the policy's limit). {fix} {see}",
            {"pushed_at": when.isoformat(), "max_days_inactive": limit},
        )


POLICY = StaleRepository()
