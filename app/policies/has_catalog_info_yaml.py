"""catalog-info.yaml (a Backstage catalog entry) exists at the repository root."""

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

PATH = "catalog-info.yaml"


class HasCatalogInfoYaml(PolicyBase):
    type: ClassVar[str] = "has_catalog_info_yaml"
    title: ClassVar[str] = "Repository has a catalog-info.yaml file"
    needs: ClassVar[Needs] = Needs(files=frozenset({PATH}))
    remedy: ClassVar[Remedy | None] = FileRemedy(PATH)

    def evaluate(self, snapshot: RepoSnapshot, params: NoParams = NO_PARAMS) -> Result:
        # A file too large to download is present too; catalog_info_has_owner reports it.
        if snapshot.file(PATH) is not None:
            return Result(True, f"`{PATH}` is present.")
        return Result(
            False,
            f"`{snapshot.full_name}` has no `{PATH}` at the root of its default branch "
            f"(`{snapshot.default_branch}`). Add a Backstage catalog entry that names the "
            "component and its owning team (`spec.owner`).",
            {"path": PATH},
        )


POLICY = HasCatalogInfoYaml()
