"""What a policy is: its parameters, a declaration of the data it needs, and a pure
evaluate()."""

from __future__ import annotations

import abc
import builtins
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from app.sources.base import Needs, SourceUnreadable

__all__ = [
    "DOCS_URL",
    "MAX_FILE_BYTES",
    "FileRemedy",
    "Needs",
    "NoParams",
    "Params",
    "Policy",
    "PolicyBase",
    "Remedy",
    "RepoSnapshot",
    "Result",
    "SettingRemedy",
    "SourceUnreadable",
    "remedy_of",
]

# Where each policy type's reference lives; messages link to `DOCS_URL#<type>`.
DOCS_URL = ("https://github.com/policy-enforcer/policy-enforcer/blob/main/docs/"
            "configuration.md")

# Files larger than this are not downloaded (RepoSnapshot.too_large); GitHub's contents
# API inlines files up to this size, so one request reads any file below it.
MAX_FILE_BYTES = 1024 * 1024


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
    # Source name -> its view (app/sources/*.py), for the sources the policies declared;
    # read through the source (`SOURCE.of(snapshot)`).
    data: Mapping[str, Any] = field(default_factory=dict)
    # When the snapshot was taken (epoch seconds): policies about time compare to this,
    # never to the clock, so they stay pure.
    taken_at: float = field(default_factory=time.time)

    def file(self, path: str) -> str | None:
        if path not in self.files:
            raise KeyError(f"{path!r} was not fetched: declare it in the policy's needs")
        return self.files[path]


def inline_code(text: str, limit: int = 200) -> str:
    """`text` as a Markdown code span on one line that no backtick, newline or @mention in
    it escapes: repository text (file contents, names admins chose, reasons) goes into
    issues and check runs, where it must neither render nor notify anyone."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[:limit] + "…"
    longest = max((len(m) for m in re.findall("`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


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
    # The policy could not judge (GitHub would not give the data): its violation, if any,
    # stays as it was; `message` says why.
    unknown: bool = False


class Params(BaseModel):
    """A policy type's parameters (`params:` in the config): typed, and a misspelt key is
    an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    """For types without parameters."""


NO_PARAMS = NoParams()


class Policy(Protocol):
    type: ClassVar[str]
    title: ClassVar[str]
    Params: ClassVar[builtins.type[Params]]
    # Parameters for the docs' example (valid for Params).
    example: ClassVar[dict[str, Any]]

    def needs_for(self, params: Any) -> Needs: ...

    def evaluate(self, snapshot: RepoSnapshot, params: Any = ...) -> Result: ...

    def judge(self, snapshot: RepoSnapshot, params: Any) -> Result: ...


class PolicyBase(abc.ABC):
    """Defaults for a policy type: no parameters, fixed needs (`needs`); a type defines
    evaluate()."""

    Params: ClassVar[type[Params]] = NoParams
    example: ClassVar[dict[str, Any]] = {}
    needs: ClassVar[Needs] = Needs()

    def needs_for(self, params: Any) -> Needs:
        """What to fetch for these parameters (types whose needs depend on them override)."""
        return self.needs

    @abc.abstractmethod
    def evaluate(self, snapshot: RepoSnapshot, params: Any = None) -> Result:
        """The result for this snapshot: pure, no I/O."""

    def judge(self, snapshot: RepoSnapshot, params: Any) -> Result:
        """evaluate(), with a source GitHub would not give turned into an unknown result."""
        try:
            result = self.evaluate(snapshot, params)
        except SourceUnreadable as exc:
            return Result(True, f"Not checked: {exc}.", {"unreadable": str(exc)}, unknown=True)
        return result
