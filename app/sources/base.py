"""What a data source is: how one kind of repository data is fetched, cached and made stale.

A source declares, and the snapshot layer (app/services/snapshot.py) executes:
- `graphql(needs)`: fields for the repository fragment of the batched query (one query per
  100 repositories, one point), or "" when GraphQL has nothing for it;
- `parse(node, needs)`: its view from the repository's GraphQL answer;
- `complete(reader, repo, view, needs)`: REST reads for what GraphQL lacks, through
  `Reader`, which the snapshot layer implements over the GitHub client (conditional
  requests: an unchanged answer is a free 304);
- `stale_on`: the webhook events after which a repository's view is out of date, so the
  repository is scanned again (app.yml subscribes to them).

Sources import nothing from the GitHub client or the database: policies import their view
types, and stay pure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar


@dataclass(frozen=True)
class Needs:
    """Data a policy reads; the snapshot layer fetches the union once per repository."""

    # Paths read on the default branch (the `files` source, always on).
    files: frozenset[str] = frozenset()
    workflow_permissions: bool = False
    # Names of further sources (app/sources/*.py NAME).
    sources: frozenset[str] = frozenset()
    # Branches whose rules the `branch_rules` source reads, besides the default branch.
    branches: frozenset[str] = frozenset()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            files=self.files | other.files,
            workflow_permissions=self.workflow_permissions or other.workflow_permissions,
            sources=self.sources | other.sources,
            branches=self.branches | other.branches,
        )


@dataclass(frozen=True)
class Reply:
    """A REST answer: its status and JSON body (None for an expected error status)."""

    status: int
    body: Any = None


class Reader(Protocol):
    """REST reads for sources, bound to one repository; every call goes through the
    client's rate governor. A path without a leading `/` is relative to the repository
    (`branches/main/protection` → `/repos/{owner}/{repo}/branches/main/protection`)."""

    async def get(self, path: str, *, expect: tuple[int, ...] = (404,)) -> Reply:
        """GET `path`. A status in `expect` comes back as a Reply with no body; any other
        error status raises."""

    async def get_all(self, path: str, *, expect: tuple[int, ...] = (404,)
                      ) -> tuple[int, list[Any]]:
        """Every page of a list (GitHub's Link header); (status, items). A status in
        `expect` gives (status, [])."""


@dataclass(frozen=True)
class RepoRef:
    """The repository a REST read is for."""

    full_name: str
    default_branch: str
    org: str | None = None
    # Where files are read: HEAD (the default branch) or a commit SHA.
    ref: str = "HEAD"
    # What an organization-wide listing read at this full scan showed of the repository
    # (None: none was read); a source takes what it needs from there instead of asking.
    listed: Mapping[str, Any] | None = field(default=None, compare=False)
    # Shared by every repository of one fetch: organization-wide reads made once (`once`).
    shared: dict[str, Any] = field(default_factory=dict, compare=False)

    async def once(self, key: str, read: Callable[[], Awaitable[Any]]) -> Any:
        """`read()` once for all the repositories of this fetch (concurrent callers wait
        for the first)."""
        lock = self.shared.setdefault(f"{key}:lock", asyncio.Lock())
        async with lock:
            if key not in self.shared:
                self.shared[key] = await read()
        return self.shared[key]


@dataclass(frozen=True)
class Unreadable:
    """A view GitHub would not give: the App lacks a permission (403), or the feature is
    not available for the repository. Policies say so instead of judging."""

    reason: str


class SourceUnreadable(Exception):
    """Raised by `Source.of` for an Unreadable view; the scan leaves the policy's state
    as it was and records the reason."""


V = TypeVar("V")


class Source(Generic[V]):
    """Base of every source; subclasses set `name` and override what they fetch. A module
    app/sources/<name>.py defines SOURCE, an instance; the registry finds it by itself."""

    name: ClassVar[str]
    # Events (`event` or `event.action`) after which the view may be out of date.
    stale_on: ClassVar[frozenset[str]] = frozenset()
    # How a rescan avoids paying again, for the docs and the bench: "version" (kept with
    # the files while the repository's pushed/updated times are unchanged), "etag"
    # (conditional REST requests: a 304 costs nothing), or "tree-sha".
    cache: ClassVar[str] = "version"
    # The source's GraphQL fields go in a query of their own (one per batch, with only
    # them): for a non-null field GitHub may refuse, whose error would otherwise take the
    # whole repository out of the main query (GraphQL's null propagation).
    isolated: ClassVar[bool] = False

    def graphql(self, needs: Needs, ref: str = "HEAD") -> tuple[str, dict[str, str]]:
        """Selections inside the repository fragment, and the String variables they use
        (names unique to the source: the fragment is shared by the whole batch). `ref`:
        HEAD or the commit SHA files are read at."""
        return "", {}

    def parse(self, node: Mapping[str, Any], needs: Needs) -> Any:
        """The view (or the part of it GraphQL gives) from the repository's node."""
        return None

    def owns(self, alias: str) -> bool:
        """Whether a top-level field (alias) of the repository fragment is this source's:
        a GraphQL error under it (e.g. FORBIDDEN) is the source's alone, and the rest of
        the repository's snapshot stands."""
        return False

    def parse_errors(self, node: Mapping[str, Any], needs: Needs,
                     errors: Sequence[Mapping[str, Any]]) -> Any:
        """parse() when GraphQL answered errors for fields this source owns: by default the
        view is Unreadable (sources that can still say something override this)."""
        return Unreadable("; ".join(str(e.get("message")) for e in errors)
                          or "GraphQL refused the data")

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> V | Unreadable:
        """The finished view: REST reads for what GraphQL lacks."""
        return view  # type: ignore[no-any-return]

    def to_json(self, view: V | Unreadable) -> Any:
        """The view as JSON, kept with the snapshot cache while the repository's version is
        unchanged (None: read again at every scan, e.g. a conditional REST read)."""
        return None

    def from_json(self, data: Any) -> V:
        """The view back from what to_json kept. Only a source whose to_json keeps
        something is ever asked, so the two come in pairs."""
        raise TypeError(f"source {self.name!r} keeps nothing (to_json) to read back")

    def of(self, snapshot: Any) -> V:
        """This source's view in a snapshot; raises SourceUnreadable when GitHub would not
        give it, KeyError when the policy did not declare it."""
        data: Mapping[str, Any] = snapshot.data
        if self.name not in data:
            raise KeyError(f"source {self.name!r} was not fetched: declare it in the "
                           "policy's needs")
        view = data[self.name]
        if isinstance(view, Unreadable):
            raise SourceUnreadable(view.reason)
        return view  # type: ignore[no-any-return]
