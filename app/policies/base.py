"""What a policy is: a declaration of the data it needs and a pure evaluate()."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

# Files larger than this are not downloaded (RepoSnapshot.too_large); GitHub's contents
# API inlines files up to this size, so one request reads any file below it.
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Needs:
    """Data a policy reads; the snapshot layer fetches the union once per repository."""

    files: frozenset[str] = frozenset()
    workflow_permissions: bool = False

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            files=self.files | other.files,
            workflow_permissions=self.workflow_permissions or other.workflow_permissions,
        )


@dataclass(frozen=True)
class RepoSnapshot:
    """Everything known about one repository at scan time. Policies see only this."""

    id: int
    full_name: str
    default_branch: str
    archived: bool = False
    fork: bool = False
    visibility: str = "public"
    # path -> file text on the default branch; None when the file does not exist.
    files: Mapping[str, str | None] = field(default_factory=dict)
    # "read" / "write"; None when Actions is disabled for the repository.
    workflow_permissions: str | None = None
    # path -> size in bytes, for files over MAX_FILE_BYTES: not downloaded, so in `files`
    # they are present with empty text. A policy that reads content checks here first.
    too_large: Mapping[str, int] = field(default_factory=dict)

    def file(self, path: str) -> str | None:
        if path not in self.files:
            raise KeyError(f"{path!r} was not fetched: declare it in the policy's needs")
        return self.files[path]


@dataclass(frozen=True)
class SettingRemedy:
    """The fix is a repository setting: `name` set to `value` (app/actions/fix.py)."""

    name: str
    value: str


@dataclass(frozen=True)
class FileRemedy:
    """The fix is a file added at `path`, from a template (app/actions/fix.py)."""

    path: str


Remedy = SettingRemedy | FileRemedy


def remedy_of(policy: object) -> Remedy | None:
    """A policy's `remedy` (optional: a policy without one has no automatic fix)."""
    found = getattr(policy, "remedy", None)
    return found if isinstance(found, SettingRemedy | FileRemedy) else None


@dataclass(frozen=True)
class Result:
    passed: bool
    # What is wrong and how to fix it; shown in issues, comments and logs.
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class Policy(Protocol):
    type: ClassVar[str]
    title: ClassVar[str]
    needs: ClassVar[Needs]

    def evaluate(self, snapshot: RepoSnapshot) -> Result: ...
