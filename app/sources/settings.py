"""Repository settings, from the batched GraphQL query (no REST call): visibility, the
default branch, merge methods, features, description, topics and the last push."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from app.sources.base import Needs, Source, Unreadable


@dataclass(frozen=True)
class RepoSettings:
    # Names as GitHub's REST API spells them (and the config's parameters do).
    visibility: str
    default_branch: str
    description: str | None
    topics: tuple[str, ...]
    has_issues: bool
    has_wiki: bool
    has_projects: bool
    delete_branch_on_merge: bool
    allow_merge_commit: bool
    allow_squash_merge: bool
    allow_rebase_merge: bool
    # ISO 8601; None when nothing was ever pushed.
    pushed_at: str | None


FIELDS = ("description hasWikiEnabled hasProjectsEnabled deleteBranchOnMerge mergeCommitAllowed "
          "squashMergeAllowed rebaseMergeAllowed repositoryTopics(first: 100) "
          "{ nodes { topic { name } } }")


class SettingsSource(Source[RepoSettings]):
    name: ClassVar[str] = "settings"
    stale_on: ClassVar[frozenset[str]] = frozenset({
        "repository.edited", "repository.renamed", "repository.publicized",
        "repository.privatized", "push"})
    cache: ClassVar[str] = "version"

    def graphql(self, needs: Needs, ref: str = "HEAD") -> tuple[str, dict[str, str]]:
        return FIELDS, {}

    def parse(self, node: Mapping[str, Any], needs: Needs) -> RepoSettings:
        topics = node.get("repositoryTopics") or {}
        names = tuple(str(n["topic"]["name"]) for n in topics.get("nodes") or []
                      if isinstance(n, dict) and isinstance(n.get("topic"), dict))
        ref = node.get("defaultBranchRef")
        vis = node.get("visibility")
        return RepoSettings(
            visibility=str(vis).lower() if vis else "public",
            default_branch=str(ref["name"]) if isinstance(ref, dict) and ref.get("name")
            else "main",
            description=node.get("description") or None,
            topics=names,
            has_issues=bool(node.get("hasIssuesEnabled")),
            has_wiki=bool(node.get("hasWikiEnabled")),
            has_projects=bool(node.get("hasProjectsEnabled")),
            delete_branch_on_merge=bool(node.get("deleteBranchOnMerge")),
            allow_merge_commit=bool(node.get("mergeCommitAllowed")),
            allow_squash_merge=bool(node.get("squashMergeAllowed")),
            allow_rebase_merge=bool(node.get("rebaseMergeAllowed")),
            pushed_at=node.get("pushedAt") or None,
        )

    def to_json(self, view: RepoSettings | Unreadable) -> Any:
        return None if isinstance(view, Unreadable) else asdict(view)

    def from_json(self, data: Any) -> RepoSettings:
        return RepoSettings(**{**data, "topics": tuple(data["topics"])})


SOURCE = SettingsSource()
