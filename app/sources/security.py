"""Security features: secret scanning, push protection, Dependabot alerts and security
updates.

`security_and_analysis`: a full scan lists the organization's repositories once
(`GET /orgs/{org}/repos`, 100 a page, whose `minimal-repository` items carry it; the
installation's own listing does not) and keeps each one's for its batches
(app/services/repositories.py `keep_org_listing`); a single repository, or one the listing
lacked, is asked `GET /repos/{o}/{r}` (conditional). GitHub shows it only to a token that
may administer the repository (without it the view is Unreadable).
Dependabot alerts: GraphQL's `hasVulnerabilityAlertsEnabled`, in a batched query of its
own (`isolated`: the field is non-null, so a refusal nulls the whole repository in the
query that asked for it); REST's `vulnerability-alerts` (204 / 404, paid at every scan) is
not used.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    isolated: ClassVar[bool] = True

    def graphql(self, needs: Needs, ref: str = "HEAD") -> tuple[str, dict[str, str]]:
        return "secAlerts: hasVulnerabilityAlertsEnabled", {}

    def owns(self, alias: str) -> bool:
        return alias == "secAlerts"

    def parse(self, node: Mapping[str, Any], needs: Needs) -> bool | None:
        found = node.get("secAlerts")
        return found if isinstance(found, bool) else None

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> SecurityFeatures | Unreadable:
        # A full scan has the organization listing's copy; a single repository asks.
        sa = (repo.listed or {}).get("security_and_analysis")
        if not isinstance(sa, dict):
            got = await reader.get("", expect=(403, 404))
            sa = got.body.get("security_and_analysis") if isinstance(got.body, dict) else None
        if not isinstance(sa, dict):
            return Unreadable("GitHub did not show the security settings: the App needs "
                              "\"Administration: read\"")
        if not isinstance(view, bool):
            return Unreadable("GitHub did not say whether Dependabot alerts are on")
        return SecurityFeatures(
            secret_scanning=_on(sa, "secret_scanning"),
            secret_scanning_push_protection=_on(sa, "secret_scanning_push_protection"),
            dependabot_alerts=view,
            dependabot_security_updates=_on(sa, "dependabot_security_updates"),
        )


SOURCE = SecuritySource()
