"""Errors the GitHub layer raises to its callers."""

from __future__ import annotations


class RateLimited(Exception):
    """The installation's budget is spent until `until` (epoch seconds); retry then."""

    def __init__(self, until: float, reason: str) -> None:
        super().__init__(f"{reason}; waiting until {until:.0f}")
        self.until = until
        self.reason = reason


class NotConfigured(Exception):
    """The App's credentials (APP_ID, PRIVATE_KEY) are not set."""


def describe_error(exc: BaseException) -> str:
    """`BadRequest 403: Forbidden`: the class, GitHub's status when there is one, the text."""
    status = getattr(exc, "status_code", None)
    code = f" {int(status)}" if status is not None else ""
    return f"{type(exc).__name__}{code}: {exc}"
