"""Paging and the numbers and patterns that come from a page's URL."""

from __future__ import annotations

PER_PAGE = 50
MAX_PER_PAGE = 200
# Exports stream at most this many rows (an org has at most tens of thousands).
EXPORT_LIMIT = 100_000


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Larger numbers from a URL are no page or id of ours (and overflow the databases' integers).
MAX_NUMBER = 10**9


def positive_number(value: object, default: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        return default
    return number if 0 < number <= MAX_NUMBER else default


def path_id(text: str) -> int | None:
    """A record id from the path, or None when it cannot be one."""
    number = positive_number(text, 0)
    return number or None
