"""The GitHub Actions workflow files (`.github/workflows/*.yml` and `*.yaml`), as text.

The directory and its blobs come with the batched GraphQL query (one Tree object); a blob
GraphQL truncates (over ~512 KB) is read through the contents API.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from app.sources.base import Needs, Reader, RepoRef, Source, Unreadable

DIRECTORY = ".github/workflows"
# Larger workflow files are not read (no workflow is anywhere near this).
MAX_WORKFLOW_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Workflows:
    # path -> text; None when the file is over MAX_WORKFLOW_BYTES or binary.
    files: Mapping[str, str | None] = field(default_factory=dict)


def is_workflow(name: str) -> bool:
    return name.endswith((".yml", ".yaml"))


class WorkflowsSource(Source[Workflows]):
    name: ClassVar[str] = "workflows"
    stale_on: ClassVar[frozenset[str]] = frozenset({"push"})
    cache: ClassVar[str] = "version"

    def graphql(self, needs: Needs, ref: str = "HEAD") -> tuple[str, dict[str, str]]:
        return ("wf: object(expression: $wf) { ... on Tree { entries { name type "
                "object { ... on Blob { text byteSize isTruncated } } } } }",
                {"wf": f"{ref}:{DIRECTORY}"})

    def parse(self, node: Mapping[str, Any], needs: Needs) -> dict[str, Any]:
        tree = node.get("wf")
        entries = tree.get("entries") if isinstance(tree, dict) else None
        out: dict[str, Any] = {}
        for entry in entries or []:
            if not isinstance(entry, dict) or entry.get("type") != "blob" \
                    or not is_workflow(str(entry.get("name"))):
                continue
            path = f"{DIRECTORY}/{entry['name']}"
            raw = entry.get("object")
            blob: dict[str, Any] = raw if isinstance(raw, dict) else {}
            if int(blob.get("byteSize") or 0) > MAX_WORKFLOW_BYTES or \
                    (blob.get("text") is None and not blob.get("isTruncated")):
                out[path] = None
            elif blob.get("isTruncated"):
                out[path] = ...  # read through REST in complete()
            else:
                out[path] = str(blob["text"])
        return out

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> Workflows | Unreadable:
        files: dict[str, str | None] = {}
        at = repo.default_branch if repo.ref == "HEAD" else repo.ref
        for path, text in sorted((view or {}).items()):
            if text is ...:
                got = await reader.get(f"contents/{quote(path)}?ref={quote(at, safe='')}")
                body = got.body if isinstance(got.body, dict) else {}
                content = body.get("content")
                files[path] = base64.b64decode(content).decode("utf-8", errors="replace") \
                    if isinstance(content, str) else None
            else:
                files[path] = text
        return Workflows(files)

    def to_json(self, view: Workflows | Unreadable) -> Any:
        return None if isinstance(view, Unreadable) else dict(view.files)

    def from_json(self, data: Any) -> Workflows:
        return Workflows(dict(data))


SOURCE = WorkflowsSource()
