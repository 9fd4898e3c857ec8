"""CODEOWNERS: which of its three places holds it, and the errors GitHub finds in it.

Both come with the batched GraphQL query: the file is looked up in `.github/`, the root and
`docs/` (the order GitHub searches), and `Repository.codeowners { errors }` gives GitHub's
own errors for the default branch. At another ref (a pull request's head) the errors come
from `GET /repos/{o}/{r}/codeowners/errors?ref=` (conditional), asked only when a file exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

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
        if ref == "HEAD":
            fields.append("coErrors: codeowners { errors { line kind message } }")
        return "\n  ".join(fields), {f"co{i}": f"{ref}:{p}" for i, p in enumerate(LOCATIONS)}

    def owns(self, alias: str) -> bool:
        return alias == "coErrors"

    def parse(self, node: Mapping[str, Any], needs: Needs) -> Codeowners | str:
        """The file found, with its errors when GraphQL gave them; else (a pull request's
        head) the path, whose errors REST gives."""
        path = next((p for i, p in enumerate(LOCATIONS) if isinstance(node.get(f"co{i}"), dict)),
                    None)
        if path is None:
            return Codeowners(None)
        if "coErrors" not in node:
            return path
        found = node.get("coErrors")
        return Codeowners(path, _errors(found.get("errors") if isinstance(found, dict)
                                        else None))

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> Codeowners | Unreadable:
        if isinstance(view, Codeowners):
            return view
        path = view if isinstance(view, str) else await self._path(reader, repo)
        if path is None:
            return Codeowners(None)
        at = "" if repo.ref == "HEAD" else f"?ref={quote(repo.ref, safe='')}"
        got = await reader.get(f"codeowners/errors{at}", expect=(403, 404))
        if got.status == 403:
            return Unreadable("GitHub refused to list the CODEOWNERS errors (403)")
        return Codeowners(path, _errors(got.body.get("errors")
                                        if isinstance(got.body, dict) else None))

    async def _path(self, reader: Reader, repo: RepoRef) -> str | None:
        """Where the file is at a ref GraphQL did not look at (REST contents)."""
        at = repo.default_branch if repo.ref == "HEAD" else repo.ref
        for path in LOCATIONS:
            got = await reader.get(f"contents/{quote(path)}?ref={quote(at, safe='')}")
            if got.status == 200:
                return path
        return None


def _errors(items: Any) -> tuple[CodeownersError, ...]:
    return tuple(CodeownersError(int(e.get("line") or 0), str(e.get("kind") or "error"),
                                 str(e.get("message") or e.get("kind") or "error"))
                 for e in items or [] if isinstance(e, dict))


SOURCE = CodeownersSource()
