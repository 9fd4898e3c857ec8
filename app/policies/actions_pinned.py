"""Third-party actions and reusable workflows are pinned to a full commit SHA.

A tag or branch can be moved to other code by whoever controls the action's repository;
a 40-hex commit SHA cannot. Local actions (`./…`) are the repository's own code; a Docker
image is pinned by its `sha256` digest.
"""

from __future__ import annotations

import builtins
import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field

from app.policies.base import DOCS_URL, Needs, Params, PolicyBase, Remedy, RepoSnapshot, Result
from app.policies.workflow_yaml import code, matches_any, not_checked, parse_workflows
from app.sources.workflows import SOURCE

LIMIT = 20
_SHA = re.compile(r"[0-9a-fA-F]{40}")
_DIGEST = re.compile(r"@sha256:[0-9a-fA-F]{64}")
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")


def _owner(owner: str) -> str:
    if not _OWNER.fullmatch(owner):
        raise ValueError(f"{owner!r} is not a GitHub user or organization name")
    return owner.lower()  # GitHub's names are case-insensitive


def _glob(glob: str) -> str:
    if "/" not in glob or "@" in glob or glob != glob.strip() or len(glob) > 200:
        raise ValueError(f"{glob!r} is not an `owner/repo[/path]` glob (no `@ref`, no "
                         "surrounding spaces, at most 200 characters)")
    return glob.lower()


class ActionsPinnedParams(Params):
    # Owners whose actions may use tags (case-insensitive): GitHub's own by default.
    allow_owners: tuple[Annotated[str, AfterValidator(_owner)], ...] = Field(
        default=("actions", "github"), max_length=100)
    # `owner/repo[/path]` globs (case-insensitive) allowed unpinned.
    allow: tuple[Annotated[str, AfterValidator(_glob)], ...] = Field(default=(), max_length=100)


def unpinned(uses: str, params: ActionsPinnedParams) -> bool:
    """Whether a `uses:` value needs a SHA it lacks."""
    if uses.startswith("./"):
        return False
    if uses.startswith("docker://"):
        return not _DIGEST.search(uses)
    name, _, ref = uses.partition("@")
    if _SHA.fullmatch(ref):
        return False
    name = name.lower()
    return not (name.split("/")[0] in params.allow_owners or matches_any(name, params.allow))


class ActionsPinned(PolicyBase):
    type: ClassVar[str] = "actions_pinned"
    title: ClassVar[str] = "Actions are pinned to a commit SHA"
    Params: ClassVar[builtins.type[Params]] = ActionsPinnedParams
    example: ClassVar[dict[str, Any]] = {
        "allow_owners": ["actions", "github", "my-org"],
        "allow": ["docker/*"],
    }
    needs: ClassVar[Needs] = Needs(sources=frozenset({"workflows"}))
    remedy: ClassVar[Remedy | None] = None

    def evaluate(self, snapshot: RepoSnapshot, params: Any = None) -> Result:
        params = params if isinstance(params, ActionsPinnedParams) else ActionsPinnedParams()
        parsed = parse_workflows(SOURCE.of(snapshot))
        found: dict[tuple[str, str, str], None] = {}  # ordered and without repeats
        for workflow in parsed.workflows:
            for job in workflow.jobs:
                uses = [job.uses] + [step.uses for step in job.steps]
                for value in uses:
                    if value is not None and unpinned(value, params):
                        found[(workflow.path, job.id, value)] = None
        items = sorted(found)
        skipped = not_checked(parsed.unparsed)
        details: dict[str, Any] = {
            "unpinned": [{"file": f, "job": j, "uses": u[:200]} for f, j, u in items[:LIMIT]],
            "count": len(items),
            "not_checked": [{"file": p, "reason": r} for p, r in parsed.unparsed[:LIMIT]]}
        if not items:
            return Result(True, " ".join(filter(None, [
                f"Every action in {len(parsed.workflows)} workflow(s) is pinned.", skipped])),
                details)
        lines = [f"- {code(f)}, job {code(j, 60)}: {code(u)}" for f, j, u in items[:LIMIT]]
        if len(items) > LIMIT:
            lines.append(f"- and {len(items) - LIMIT} more.")
        message = "\n\n".join(filter(None, [
            f"`{snapshot.full_name}` uses actions by a tag or branch, which their owners can "
            "move to other code:", "\n".join(lines),
            "Pin each to the full commit SHA of the release, with the version as a comment: "
            "`uses: owner/repo@<40-character sha> # vX.Y` (Dependabot and Renovate keep "
            "such pins up to date). Pin a Docker image by digest: "
            "`docker://image@sha256:<digest>`.", skipped,
            f"See {DOCS_URL}#{self.type}."]))
        return Result(False, message, details)


POLICY = ActionsPinned()
