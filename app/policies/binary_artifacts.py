"""No compiled binaries are committed to the default branch.

A binary in the repository cannot be reviewed and may differ from what its source would
build; after OpenSSF Scorecard's Binary-Artifacts check.

Judged by file extension only: the `tree` source lists paths and sizes, not contents, so
magic bytes (ELF, PE, Mach-O headers) cannot be checked here. A binary under another name
is missed, and a text file with a binary's extension is flagged (allow it by path).
"""

from __future__ import annotations

import builtins
import fnmatch
import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, field_validator

from app.policies.base import DOCS_URL, Needs, Params, PolicyBase, Remedy, RepoSnapshot, Result
from app.sources.tree import SOURCE

LIMIT = 20
# Scorecard's extensions, and a few more compiled or packaged formats.
DEFAULT_EXTENSIONS = (
    "a", "aab", "apk", "bin", "class", "com", "crx", "deb", "dex", "dey", "dll", "dylib",
    "ear", "elf", "exe", "ipa", "jar", "ko", "lib", "macho", "msi", "nupkg", "o", "obj",
    "pyc", "pyd", "pyo", "rpm", "so", "swf", "sys", "war", "wasm",
)
_EXTENSION = re.compile(r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*")
# Versioned shared libraries: libssl.so.3, libfoo.so.1.2.
_SO_VERSION = re.compile(r"\.so(?:\.\d+)+$")
SYMLINK = "120000"


def _glob(glob: str) -> str:
    if not glob.strip() or glob != glob.strip() or glob.startswith("/") or len(glob) > 200:
        raise ValueError(f"{glob!r} is not a path glob (relative to the repository root, no "
                         "surrounding spaces, at most 200 characters)")
    return glob


def _extension(ext: str) -> str:
    norm = ext.lower().removeprefix(".")
    if not _EXTENSION.fullmatch(norm):
        raise ValueError(f"{ext!r} is not a file extension (like `jar` or `tar.gz`)")
    return norm


class BinaryArtifactsParams(Params):
    # Path globs allowed, e.g. "gradle/wrapper/gradle-wrapper.jar".
    allow: tuple[Annotated[str, AfterValidator(_glob)], ...] = Field(default=(), max_length=100)
    # Replaces DEFAULT_EXTENSIONS when given ("jar" or ".jar"; case-insensitive).
    extensions: tuple[Annotated[str, AfterValidator(_extension)], ...] | None = Field(
        default=None, max_length=200)

    @field_validator("extensions")
    @classmethod
    def _some(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("extensions must name at least one extension (leave it out "
                             "for the default list)")
        return value


def is_binary(path: str, extensions: frozenset[str]) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    parts = name.split(".")
    # Every suffix, so `tar.gz` matches as well as `gz`; a dot-file (`.so`) is a name.
    if any(".".join(parts[i:]) in extensions for i in range(1, len(parts)) if parts[0] or i > 1):
        return True
    return "so" in extensions and bool(_SO_VERSION.search(name))


class BinaryArtifacts(PolicyBase):
    type: ClassVar[str] = "binary_artifacts"
    title: ClassVar[str] = "No binaries are committed"
    Params: ClassVar[builtins.type[Params]] = BinaryArtifactsParams
    example: ClassVar[dict[str, Any]] = {"allow": ["gradle/wrapper/gradle-wrapper.jar",
                                                   "tests/fixtures/**"]}
    needs: ClassVar[Needs] = Needs(sources=frozenset({"tree"}))
    remedy: ClassVar[Remedy | None] = None

    def evaluate(self, snapshot: RepoSnapshot, params: Any = None) -> Result:
        params = params if isinstance(params, BinaryArtifactsParams) \
            else BinaryArtifactsParams()
        tree = SOURCE.of(snapshot)
        if tree.sha is None:
            return Result(True, "The repository is empty; nothing to check.")
        extensions = frozenset(params.extensions or DEFAULT_EXTENSIONS)
        found = sorted(
            e.path for e in tree.entries
            if e.mode != SYMLINK and is_binary(e.path, extensions)
            and not any(fnmatch.fnmatchcase(e.path, glob) for glob in params.allow))
        partial = ("GitHub listed only part of the tree (it is very large), so only that "
                   "part was checked.") if tree.truncated else ""
        details: dict[str, Any] = {"paths": found[:LIMIT], "count": len(found),
                                   "truncated": tree.truncated}
        if not found:
            return Result(True, " ".join(filter(None, ["No binary files found.", partial])),
                          details)
        # Paths are repository text going into an issue: kept inside their code span.
        lines = ["- `" + path.replace("`", "'").replace("\n", " ")[:200] + "`"
                 for path in found[:LIMIT]]
        if len(found) > LIMIT:
            lines.append(f"- and {len(found) - LIMIT} more.")
        message = "\n\n".join(filter(None, [
            f"`{snapshot.full_name}` has {len(found)} binary file(s) on its default branch "
            f"(`{snapshot.default_branch}`), judged by extension:", "\n".join(lines),
            "Binaries cannot be reviewed and may not match their source. Remove them and "
            "build them from source in CI, or publish them as release assets or packages. "
            "If one is intended (a verified Gradle wrapper, a test fixture), add its path "
            "to the policy's `allow` list.", partial,
            f"See {DOCS_URL}#{self.type}."]))
        return Result(False, message, details)


POLICY = BinaryArtifacts()
