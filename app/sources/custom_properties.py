"""The repository's custom property values (organization-defined, e.g. `tier: critical`),
for targeting: `GET /repos/{o}/{r}/properties/values` (conditional)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from app.sources.base import Needs, Reader, RepoRef, Source, Unreadable


@dataclass(frozen=True)
class CustomProperties:
    # property name -> a string, a list of strings (multi-select), or None (unset).
    values: Mapping[str, Any] = field(default_factory=dict)


class CustomPropertiesSource(Source[CustomProperties]):
    name: ClassVar[str] = "custom_properties"
    stale_on: ClassVar[frozenset[str]] = frozenset({"custom_property_values"})
    cache: ClassVar[str] = "etag"

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> CustomProperties | Unreadable:
        got = await reader.get("properties/values", expect=(403, 404))
        if got.status == 403:
            return Unreadable("GitHub refused to give the custom properties (403)")
        items = got.body if isinstance(got.body, list) else []
        return CustomProperties({str(i.get("property_name")): i.get("value")
                                 for i in items if isinstance(i, dict)})


SOURCE = CustomPropertiesSource()
