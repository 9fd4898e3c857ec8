"""Every catalog-info.yaml document that has a `spec` names a non-empty `spec.owner`."""

from __future__ import annotations

from typing import Any, ClassVar

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from app.policies.base import Needs, RepoSnapshot, Result

PATH = "catalog-info.yaml"


def _documents(text: str) -> list[Any]:
    return [doc for doc in YAML(typ="safe", pure=True).load_all(text) if doc is not None]


class CatalogInfoHasOwner:
    type: ClassVar[str] = "catalog_info_has_owner"
    title: ClassVar[str] = "catalog-info.yaml names an owner"
    needs: ClassVar[Needs] = Needs(files=frozenset({PATH}))

    def evaluate(self, snapshot: RepoSnapshot) -> Result:
        text = snapshot.file(PATH)
        if text is None:
            # has_catalog_info_yaml reports the missing file; one problem, one issue.
            return Result(True, f"`{PATH}` does not exist; nothing to check.")
        try:
            docs = _documents(text)
        except YAMLError as exc:
            reason = " ".join(str(exc).split())
            return Result(
                False,
                f"`{PATH}` in `{snapshot.full_name}` is not valid YAML: {reason}. "
                "Fix the syntax so the catalog can read it.",
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
