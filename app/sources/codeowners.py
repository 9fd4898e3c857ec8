"""CODEOWNERS: which of its three places holds it, and the errors GitHub finds in it.

The file is looked up in the batched GraphQL query (`.github/`, the root, `docs/`, the
order GitHub searches); the errors come from `GET /repos/{o}/{r}/codeowners/errors`
(conditional), asked only when a file exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from app.sources.base import Needs, Reader, RepoRef, Source, Unreadable

LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")


@dataclass(frozen=True)
class CodeownersError:
    line: int
    kind: str
    message: str


@dataclass(frozen=True)
class Codeowners:
    # The file GitHub uses (the first of LOCATIONS that exists); None: there is none.
    path: str | None
    errors: tuple[CodeownersError, ...] = ()


class CodeownersSource(Source[Codeowners]):
    name: ClassVar[str] = "codeowners"
    stale_on: ClassVar[frozenset[str]] = frozenset({"push", "member", "team"})
    cache: ClassVar[str] = "etag"

    def graphql(self, needs: Needs, ref: str = "HEAD") -> tuple[str, dict[str, str]]:
        fields = [f"co{i}: object(expression: $co{i}) {{ ... on Blob {{ oid }} }}"
                  for i in range(len(LOCATIONS))]
        return "\n  ".join(fields), {f"co{i}": f"{ref}:{p}" for i, p in enumerate(LOCATIONS)}

    def parse(self, node: Mapping[str, Any], needs: Needs) -> Codeowners:
        for i, path in enumerate(LOCATIONS):
            if isinstance(node.get(f"co{i}"), dict):
                return Codeowners(path)
        return Codeowners(None)

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> Codeowners | Unreadable:
        if not isinstance(view, Codeowners) or view.path is None:
            return Codeowners(None)
        got = await reader.get("codeowners/errors", expect=(403, 404))
        if got.status == 403:
            return Unreadable("GitHub refused to list the CODEOWNERS errors (403)")
        errors = got.body.get("errors") if isinstance(got.body, dict) else None
        return Codeowners(view.path, tuple(
            CodeownersError(int(e.get("line") or 0), str(e.get("kind") or "error"),
                            str(e.get("message") or e.get("kind") or "error"))
            for e in errors or [] if isinstance(e, dict)))


SOURCE = CodeownersSource()
