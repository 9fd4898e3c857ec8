"""log-only: the action log records when a violation opens and when it resolves."""

from __future__ import annotations

from typing import ClassVar

from app.actions.base import ActionContext, Outcome
from app.config.scope import EXEMPT


class LogOnly:
    name: ClassVar[str] = "log-only"
    order: ClassVar[int] = 0

    async def reconcile(self, ctx: ActionContext) -> Outcome:
        v = ctx.violation
        if v.state == "open":
            return Outcome("success", f"violation opened: {v.message}")
        if v.state == EXEMPT:
            return Outcome("success", f"violation exempt: {v.closed_reason or v.message}")
        return Outcome("success", "violation resolved")


ACTION = LogOnly()
