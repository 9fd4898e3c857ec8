"""Files exist on the default branch: all of `paths`, and at least one of `any_of`."""

from __future__ import annotations

import builtins
from typing import Any, ClassVar

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

TYPE = "file_exists"
# Each path is a field of the batched GraphQL query; a policy needing more is a mistake.
MAX_PATHS = 50
# Longest list quoted in a message or in `details`.
MAX_LISTED = 20


def relative_path(value: str) -> str:
    """A path inside the repository, as GitHub names it: `docs/SECURITY.md`. Raises
    ValueError with the reason (shared with file_contains)."""
    if not value.strip():
        raise ValueError("a path must not be empty")
    if value != value.strip():
        raise ValueError(f"path {value!r} must not start or end with whitespace")
    if value.startswith("/"):
        raise ValueError(f"path {value!r} must be relative to the repository root "
                         "(no leading '/')")
    parts = value.split("/")
    if ".." in parts or "." in parts:
        raise ValueError(f"path {value!r} must not contain '.' or '..' segments")
    if "" in parts:
        # A trailing slash names a directory, and `a//b` nothing GitHub would find.
        raise ValueError(f"path {value!r} must name a file (no empty segments or "
                         "trailing '/')")
    return value


def _paths(value: tuple[str, ...], key: str) -> tuple[str, ...]:
    for path in value:
        relative_path(path)
    seen: set[str] = set()
    for path in value:
        if path in seen:
            raise ValueError(f"path {path!r} is listed more than once in {key}")
        seen.add(path)
    return value


def quoted(paths: list[str] | tuple[str, ...]) -> str:
    """`a`, `b` and `c`: at most MAX_LISTED of them."""
    shown = [f"`{p}`" for p in paths[:MAX_LISTED]]
    if len(paths) > MAX_LISTED:
        shown.append(f"{len(paths) - MAX_LISTED} more")
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " and " + shown[-1]


class FileExistsParams(Params):
    # Every one of these must exist.
    paths: tuple[str, ...] = Field(default=(), max_length=MAX_PATHS)
    # At least one of these must exist (LICENSE / LICENSE.md / LICENSE.txt).
    any_of: tuple[str, ...] = Field(default=(), max_length=MAX_PATHS)

    @field_validator("paths")
    @classmethod
    def _check_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _paths(value, "paths")

    @field_validator("any_of")
    @classmethod
    def _check_any_of(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _paths(value, "any_of")

    @model_validator(mode="after")
    def _something(self) -> FileExistsParams:
        if not self.paths and not self.any_of:
            raise ValueError("give `paths` (files that must all exist) or `any_of` "
                             "(files of which one must exist), or both")
        return self


class FileExists(PolicyBase):
    type: ClassVar[str] = TYPE
    title: ClassVar[str] = "Required files exist"
    Params: ClassVar[builtins.type[Params]] = FileExistsParams
    example: ClassVar[dict[str, Any]] = {
        "paths": ["README.md", "CONTRIBUTING.md"],
        "any_of": ["LICENSE", "LICENSE.md", "LICENSE.txt"],
    }
    remedy: ClassVar[Remedy | None] = None

    def needs_for(self, params: FileExistsParams) -> Needs:
        return Needs(files=frozenset(params.paths) | frozenset(params.any_of))

    def evaluate(self, snapshot: RepoSnapshot, params: FileExistsParams | None = None
                 ) -> Result:
        if params is None:
            raise TypeError(f"{TYPE} needs its params: it has no defaults")
        # A file too large to download is present ("" text): only None means missing.
        missing = sorted(p for p in params.paths if snapshot.file(p) is None)
        none_of = bool(params.any_of) and all(snapshot.file(p) is None for p in params.any_of)
        if not missing and not none_of:
            return Result(True, "Every required file is present.")
        where = f"the default branch (`{snapshot.default_branch}`)"
        problems = []
        if missing:
            also = "them at those paths" if len(missing) > 1 else "it at that path"
            problems.append(f"`{snapshot.full_name}` is missing {quoted(missing)} on {where}. "
                            f"Add {also}.")
        if none_of:
            # The config's order: its first entry is the conventional name.
            problems.append(f"`{snapshot.full_name}` has none of {quoted(params.any_of)} on "
                            f"{where}. Add one of them, for example `{params.any_of[0]}`.")
        details: dict[str, Any] = {"missing": missing[:MAX_LISTED]}
        if none_of:
            details["missing_any_of"] = list(params.any_of[:MAX_LISTED])
        return Result(False, " ".join(problems) + f" See {DOCS_URL}#{TYPE}.", details)


POLICY = FileExists()
