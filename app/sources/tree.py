"""Every file in the default branch's tree, with its size: one recursive tree read.

The commit's tree SHA comes with the batched GraphQL query; then
`GET /repos/{o}/{r}/git/trees/{sha}?recursive=1`. A tree is immutable, so a rescan of an
unchanged branch is a free 304. GitHub cuts very large trees (`truncated`; 100,000 entries
or 7 MB), and the view says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from app.sources.base import Needs, Reader, RepoRef, Source, Unreadable


@dataclass(frozen=True)
class TreeEntry:
    path: str
    size: int
    mode: str = "100644"


@dataclass(frozen=True)
class Tree:
    sha: str | None
    entries: tuple[TreeEntry, ...]
    truncated: bool = False


class TreeSource(Source[Tree]):
    name: ClassVar[str] = "tree"
    stale_on: ClassVar[frozenset[str]] = frozenset({"push"})
    cache: ClassVar[str] = "etag"

    def graphql(self, needs: Needs, ref: str = "HEAD") -> tuple[str, dict[str, str]]:
        return "tr: object(expression: $tr) { ... on Commit { tree { oid } } }", {"tr": ref}

    def parse(self, node: Mapping[str, Any], needs: Needs) -> str | None:
        commit = node.get("tr")
        tree = commit.get("tree") if isinstance(commit, dict) else None
        return str(tree["oid"]) if isinstance(tree, dict) and tree.get("oid") else None

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> Tree | Unreadable:
        if not isinstance(view, str):
            return Tree(None, ())
        got = await reader.get(f"git/trees/{view}?recursive=1", expect=(404, 409))
        body = got.body if isinstance(got.body, dict) else {}
        entries = tuple(
            TreeEntry(str(e.get("path")), int(e.get("size") or 0), str(e.get("mode") or ""))
            for e in body.get("tree") or [] if isinstance(e, dict) and e.get("type") == "blob")
        return Tree(view, entries, bool(body.get("truncated")))


SOURCE = TreeSource()
