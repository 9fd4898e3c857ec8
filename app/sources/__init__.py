"""Data sources, one module each. A module defines SOURCE; the registry finds it by itself.

The `files` and workflow-permission data every policy may read are built into the snapshot
layer (app/services/snapshot.py); everything else is a source here.
"""

from __future__ import annotations

from app.plugins import discover
from app.sources.base import Needs, Reader, Reply, RepoRef, Source, SourceUnreadable, Unreadable

__all__ = [
    "SOURCES",
    "Needs",
    "Reader",
    "Reply",
    "RepoRef",
    "Source",
    "SourceUnreadable",
    "Unreadable",
    "stale_events",
]

SOURCES: dict[str, Source] = dict(sorted(  # type: ignore[type-arg]
    (source.name, source) for source in discover(__name__, __path__, "SOURCE")))

# What the built-in data goes stale on: files on the default branch change with a push; the
# workflow permissions are read at every scan (a free 304 while unchanged).
BUILT_IN_STALE_ON = frozenset({"push"})


def stale_events(needs: Needs) -> frozenset[str]:
    """The webhook events (`event` or `event.action`) after which a repository's data for
    `needs` may be out of date."""
    out = set(BUILT_IN_STALE_ON)
    for name in needs.sources:
        out |= SOURCES[name].stale_on
    return frozenset(out)
