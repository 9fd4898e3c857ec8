"""Security features: secret scanning, push protection, Dependabot alerts and security
updates.

`GET /repos/{o}/{r}` (conditional) gives `security_and_analysis` (only to a token that may
administer the repository: without it the field is missing, and the view is Unreadable);
`GET /repos/{o}/{r}/vulnerability-alerts` answers 204 when Dependabot alerts are on and
404 when off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from app.sources.base import Needs, Reader, RepoRef, Source, Unreadable


@dataclass(frozen=True)
class SecurityFeatures:
    # None: GitHub does not offer the feature for this repository (a private repository
    # without GitHub Advanced Security has no `secret_scanning` entry).
    secret_scanning: bool | None
    secret_scanning_push_protection: bool | None
    dependabot_alerts: bool
    dependabot_security_updates: bool | None


def _on(sa: dict[str, Any], key: str) -> bool | None:
    item = sa.get(key)
    return item.get("status") == "enabled" if isinstance(item, dict) else None


class SecuritySource(Source[SecurityFeatures]):
    name: ClassVar[str] = "security"
    stale_on: ClassVar[frozenset[str]] = frozenset({"security_and_analysis",
                                                    "repository.edited"})
    cache: ClassVar[str] = "etag"

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> SecurityFeatures | Unreadable:
        got = await reader.get("", expect=(403, 404))
        sa = got.body.get("security_and_analysis") if isinstance(got.body, dict) else None
        if not isinstance(sa, dict):
            return Unreadable("GitHub did not show the security settings: the App needs "
                              "\"Administration: read\"")
        alerts = await reader.get("vulnerability-alerts", expect=(403, 404))
        if alerts.status == 403:
            return Unreadable("GitHub refused to say whether Dependabot alerts are on (403)")
        return SecurityFeatures(
            secret_scanning=_on(sa, "secret_scanning"),
            secret_scanning_push_protection=_on(sa, "secret_scanning_push_protection"),
            dependabot_alerts=alerts.status < 300,
            dependabot_security_updates=_on(sa, "dependabot_security_updates"),
        )


SOURCE = SecuritySource()
