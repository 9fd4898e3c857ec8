"""URL paths of GitHub resources, with every segment that comes from data percent-encoded.

GitHub restricts owner and repository names to letters, digits, `.`, `_` and `-`, but file
paths, branches, labels and team slugs from a config or a payload may hold `%`, `#`, `?`,
spaces or unicode; quoting every segment means none can change which resource is asked.
"""

from __future__ import annotations

from urllib.parse import quote


def segment(value: str) -> str:
    """One path segment: `/` is encoded too."""
    return quote(value, safe="")


def repo_path(full_name: str) -> str:
    """`/repos/{owner}/{repo}` for an `owner/repo` full name."""
    owner, _, name = full_name.partition("/")
    return f"/repos/{segment(owner)}/{segment(name)}"
