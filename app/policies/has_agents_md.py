"""AGENTS.md exists at the repository root on the default branch."""

from __future__ import annotations

from typing import ClassVar

from app.policies.base import (
    NO_PARAMS,
    FileRemedy,
    Needs,
    NoParams,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
)

PATH = "AGENTS.md"


class HasAgentsMd(PolicyBase):
    type: ClassVar[str] = "has_agents_md"
    title: ClassVar[str] = "Repository has an AGENTS.md file"
    needs: ClassVar[Needs] = Needs(files=frozenset({PATH}))
    remedy: ClassVar[Remedy | None] = FileRemedy(PATH)

    def evaluate(self, snapshot: RepoSnapshot, params: NoParams = NO_PARAMS) -> Result:
        if snapshot.file(PATH) is not None:
            return Result(True, f"`{PATH}` is present.")
        return Result(
            False,
            f"`{snapshot.full_name}` has no `{PATH}` at the root of its default branch "
            f"(`{snapshot.default_branch}`). Add an `{PATH}` that tells coding agents how to "
            "build, test and contribute to this repository.",
            {"path": PATH},
        )


POLICY = HasAgentsMd()
