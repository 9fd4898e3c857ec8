"""Repository settings (visibility, default branch, merge methods, features, description,
topics) are as the organization requires."""

from __future__ import annotations

import builtins
import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from app.policies.base import (
    DOCS_URL,
    Needs,
    Params,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
)
from app.sources.settings import SOURCE, RepoSettings

TYPE = "repo_settings"
# GitHub's rule for topics: lowercase letters, digits and hyphens, at most 50 characters.
TOPIC = re.compile(r"[a-z0-9][a-z0-9-]{0,49}")
# GitHub allows 20 topics on a repository.
MAX_TOPICS = 20

_GENERAL = "Settings → General"
_PULLS = f"{_GENERAL} → Pull Requests"
_FEATURES = f"{_GENERAL} → Features"
_ABOUT = "the ⚙️ next to **About** on the repository's main page"
# Boolean settings: (name as in GitHub's REST API, label in GitHub's UI, where it is).
_TOGGLES: tuple[tuple[str, str, str], ...] = (
    ("delete_branch_on_merge", "Automatically delete head branches", _PULLS),
    ("allow_merge_commit", "Allow merge commits", _PULLS),
    ("allow_squash_merge", "Allow squash merging", _PULLS),
    ("allow_rebase_merge", "Allow rebase merging", _PULLS),
    ("has_wiki", "Wikis", _FEATURES),
    ("has_issues", "Issues", _FEATURES),
    ("has_projects", "Projects", _FEATURES),
)
CHECKED = ("visibility", "default_branch", *(t[0] for t in _TOGGLES), "require_description",
           "required_topics")


def _on(value: bool) -> str:
    return "on" if value else "off"


class RepoSettingsParams(Params):
    # Allowed visibilities (one of them).
    visibility: tuple[Literal["public", "private", "internal"], ...] | None = Field(
        default=None, min_length=1)
    default_branch: str | None = None
    delete_branch_on_merge: bool | None = None
    allow_merge_commit: bool | None = None
    allow_squash_merge: bool | None = None
    allow_rebase_merge: bool | None = None
    has_wiki: bool | None = None
    has_issues: bool | None = None
    has_projects: bool | None = None
    require_description: bool = False
    # Every one of these topics.
    required_topics: tuple[str, ...] | None = Field(default=None, min_length=1,
                                                    max_length=MAX_TOPICS)

    @field_validator("visibility")
    @classmethod
    def _visibility(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a visibility is listed more than once")
        return value

    @field_validator("default_branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value != value.strip()
                                  or any(c.isspace() for c in value)):
            raise ValueError(f"a branch name has no spaces and is not empty, got {value!r}")
        return value

    @field_validator("required_topics")
    @classmethod
    def _topics(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for topic in value or ():
            if TOPIC.fullmatch(topic) is None:
                raise ValueError(f"topic {topic!r} is not a GitHub topic: lowercase letters, "
                                 "digits and hyphens, starting with a letter or digit, at "
                                 "most 50 characters")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a topic is listed more than once")
        return value

    @model_validator(mode="after")
    def _something(self) -> RepoSettingsParams:
        if not self.require_description and all(
                getattr(self, name) is None for name in CHECKED if name != "require_description"):
            raise ValueError("give at least one setting to check: " + ", ".join(CHECKED))
        return self


def differences(s: RepoSettings, params: RepoSettingsParams) -> list[tuple[str, str, str]]:
    """(setting, what differs: current → wanted, where to change it), in CHECKED order."""
    out: list[tuple[str, str, str]] = []
    if params.visibility is not None and s.visibility not in params.visibility:
        wanted = " or ".join(f"`{v}`" for v in params.visibility)
        out.append(("visibility", f"`{s.visibility}` → {wanted}",
                    f"{_GENERAL} → Danger Zone → Change repository visibility"))
    if params.default_branch is not None and s.default_branch != params.default_branch:
        out.append(("default_branch", f"`{s.default_branch}` → `{params.default_branch}`",
                    f"{_GENERAL} → Default branch (create the branch first if needed)"))
    for name, label, where in _TOGGLES:
        wanted_on: bool | None = getattr(params, name)
        current: bool = getattr(s, name)
        if wanted_on is not None and current != wanted_on:
            out.append((name, f"{_on(current)} → {_on(wanted_on)}",
                        f"{where} → **{label}**"))
    if params.require_description and not (s.description or "").strip():
        out.append(("description", "none → a description", f"{_ABOUT} → Description"))
    missing = sorted(set(params.required_topics or ()) - set(s.topics))
    if missing:
        out.append(("topics", "missing " + ", ".join(f"`{t}`" for t in missing),
                    f"{_ABOUT} → Topics"))
    return out


class RepoSettingsPolicy(PolicyBase):
    type: ClassVar[str] = TYPE
    title: ClassVar[str] = "Repository settings are as required"
    Params: ClassVar[builtins.type[Params]] = RepoSettingsParams
    example: ClassVar[dict[str, Any]] = {
        "visibility": ["private", "internal"],
        "delete_branch_on_merge": True,
        "allow_merge_commit": False,
        "has_wiki": False,
        "require_description": True,
        "required_topics": ["team-platform"],
    }
    needs: ClassVar[Needs] = Needs(sources=frozenset({"settings"}))
    remedy: ClassVar[Remedy | None] = None

    def evaluate(self, snapshot: RepoSnapshot, params: RepoSettingsParams | None = None
                 ) -> Result:
        if params is None:
            raise TypeError(f"{TYPE} needs its params: it has no defaults")
        found = differences(SOURCE.of(snapshot), params)
        if not found:
            return Result(True, "Repository settings are as required.")
        lines = "\n".join(f"- **{name}**: {change}. Change it in {where}."
                          for name, change, where in found)
        return Result(
            False,
            f"`{snapshot.full_name}` has {len(found)} setting{'s' if len(found) > 1 else ''} "
            f"that differ{'' if len(found) > 1 else 's'} from the policy (current → "
            f"wanted):\n\n{lines}\n\nSee {DOCS_URL}#{TYPE}.",
            {"differences": {name: change for name, change, _ in found}},
        )


POLICY = RepoSettingsPolicy()
