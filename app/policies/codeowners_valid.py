"""A CODEOWNERS file exists where GitHub looks for one, and GitHub finds no errors in it."""

from __future__ import annotations

from typing import ClassVar

from app.policies.base import (
    DOCS_URL,
    NO_PARAMS,
    Needs,
    NoParams,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
)
from app.sources.codeowners import LOCATIONS, SOURCE, CodeownersError

TYPE = "codeowners_valid"
MAX_LISTED = 20
# Longest error message quoted; GitHub's run to a few lines with the offending text.
MAX_MESSAGE = 200


def _inline(text: str) -> str:
    """One line of GitHub's message as inline code: its first line carries the reason,
    and code keeps the `@owner` it quotes from notifying anyone when this becomes an
    issue."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = first.replace("`", "'")
    if len(first) > MAX_MESSAGE:
        first = first[:MAX_MESSAGE] + "…"
    return f"`{first}`" if first else "(no message)"


def _sorted(errors: tuple[CodeownersError, ...]) -> list[CodeownersError]:
    return sorted(errors, key=lambda e: (e.line, e.kind, e.message))


class CodeownersValid(PolicyBase):
    type: ClassVar[str] = TYPE
    title: ClassVar[str] = "CODEOWNERS exists and is valid"
    needs: ClassVar[Needs] = Needs(sources=frozenset({"codeowners"}))
    remedy: ClassVar[Remedy | None] = None

    def evaluate(self, snapshot: RepoSnapshot, params: NoParams = NO_PARAMS) -> Result:
        # Unreadable (GitHub refused the errors): SourceUnreadable, judged `unknown`.
        view = SOURCE.of(snapshot)
        repo, see = snapshot.full_name, f"See {DOCS_URL}#{TYPE}."
        if view.path is None:
            org = repo.split("/", 1)[0]
            places = ", ".join(f"`{p}`" for p in LOCATIONS)
            return Result(
                False,
                f"`{repo}` has no CODEOWNERS file on its default branch "
                f"(`{snapshot.default_branch}`); GitHub looks in {places}. Add "
                f"`{LOCATIONS[0]}` naming who reviews changes, for example the line "
                f"`* @{org}/your-team` to make a team the owner of every file. {see}",
                {"path": None},
            )
        if not view.errors:
            return Result(True, f"`{view.path}` is valid.")
        errors = _sorted(view.errors)
        lines = [f"- line {e.line}: {_inline(e.message)}" if e.line > 0
                 else f"- {_inline(e.message)}" for e in errors[:MAX_LISTED]]
        if len(errors) > MAX_LISTED:
            lines.append(f"- and {len(errors) - MAX_LISTED} more")
        count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
        return Result(
            False,
            f"GitHub finds {count} in `{view.path}` of `{repo}`; it skips what it cannot "
            "read, so those owners are not asked to review:\n\n" + "\n".join(lines)
            + "\n\nFix each line: make sure every owner is a user or team with write access "
            f"to the repository, and every pattern is valid CODEOWNERS syntax. {see}",
            {"path": view.path, "count": len(errors),
             "errors": [{"line": e.line, "kind": e.kind, "message": e.message[:MAX_MESSAGE]}
                        for e in errors[:MAX_LISTED]]},
        )


POLICY = CodeownersValid()
