"""Every catalog-info.yaml document that has a `spec` names a non-empty `spec.owner`."""

from __future__ import annotations

from typing import ClassVar

from ruamel.yaml.error import YAMLError

from app.policies.base import (
    MAX_FILE_BYTES,
    NO_PARAMS,
    Needs,
    NoParams,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
)
from app.yamlsafe import YAMLBoundsError, describe_error, load_all, size_over

PATH = "catalog-info.yaml"


class CatalogInfoHasOwner(PolicyBase):
    type: ClassVar[str] = "catalog_info_has_owner"
    title: ClassVar[str] = "catalog-info.yaml names an owner"
    needs: ClassVar[Needs] = Needs(files=frozenset({PATH}))
    # No automatic fix: the owning team is a person's choice (`fix` logs that it skipped).
    remedy: ClassVar[Remedy | None] = None

    def evaluate(self, snapshot: RepoSnapshot, params: NoParams = NO_PARAMS) -> Result:
        text = snapshot.file(PATH)
        if text is None:
            # has_catalog_info_yaml reports the missing file; one problem, one issue.
            return Result(True, f"`{PATH}` does not exist; nothing to check.")
        size = snapshot.too_large.get(PATH)
        if size is not None:
            # Not downloaded at all (app/services/snapshot.py); present, so this policy
            # reports it rather than has_catalog_info_yaml.
            over = size_over(size, MAX_FILE_BYTES)
            return Result(
                False,
                f"`{PATH}` in `{snapshot.full_name}` {over}, so it was not read. A catalog "
                "entry is a few lines of YAML; bring it under the limit.",
                {"path": PATH, "error": f"{PATH} {over}", "size": size},
            )
        try:
            # Bounded in size, nesting and alias expansion: any failure is a YAMLError.
            docs = [doc for doc in load_all(text) if doc is not None]
        except YAMLBoundsError as exc:
            reason = describe_error(exc, PATH)
            return Result(
                False,
                f"`{PATH}` in `{snapshot.full_name}` cannot be read: {reason}. A catalog "
                "entry is a few lines of YAML; simplify it.",
                {"path": PATH, "error": reason},
            )
        except YAMLError as exc:
            reason = describe_error(exc, PATH)
            return Result(
                False,
                f"`{PATH}` in `{snapshot.full_name}` is not valid YAML: {reason}. "
                "Fix it so the catalog can read it.",
                {"path": PATH, "error": reason},
            )
        with_spec = [d for d in docs if isinstance(d, dict) and "spec" in d]
        if not with_spec:
            return Result(
                False,
                f"`{PATH}` in `{snapshot.full_name}` has no `spec` section. Add "
                "`spec.owner` naming the team that owns this repository.",
                {"path": PATH},
            )
        missing = []
        for index, doc in enumerate(docs):
            if not (isinstance(doc, dict) and "spec" in doc):
                continue
            spec = doc["spec"]
            owner = spec.get("owner") if isinstance(spec, dict) else None
            if not (isinstance(owner, str) and owner.strip()):
                name = None
                meta = doc.get("metadata")
                if isinstance(meta, dict):
                    name = meta.get("name")
                # Quoted into an issue: a name, not whatever structure stands there.
                if not isinstance(name, str) or len(name) > 100:
                    name = None
                missing.append(f"document {index + 1}" + (f" ({name})" if name else ""))
        if missing:
            return Result(
                False,
                f"`{PATH}` in `{snapshot.full_name}` has no `spec.owner` in "
                f"{', '.join(missing)}. Set `spec.owner` to the owning team, "
                "for example `group:platform-team`.",
                {"path": PATH, "documents": missing},
            )
        return Result(True, f"Every `spec` in `{PATH}` names an owner.")


POLICY = CatalogInfoHasOwner()
