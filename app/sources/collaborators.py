"""Who has direct access to a repository: people (and whether they are outside
collaborators) and teams, each with a permission.

REST, conditional and paginated: `GET /repos/{o}/{r}/collaborators?affiliation=direct`,
`GET /repos/{o}/{r}/collaborators?affiliation=outside` and `GET /repos/{o}/{r}/teams`.
Organization owners, who are admins of every repository, are not direct collaborators and
are not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from app.sources.base import Needs, Reader, RepoRef, Source, Unreadable

# GitHub's role names from the weakest; custom roles rank by their base role.
PERMISSIONS = ("read", "triage", "write", "maintain", "admin")
_LEGACY = {"pull": "read", "push": "write"}


def rank(permission: str) -> int:
    """The permission's place in PERMISSIONS (push → write, pull → read)."""
    name = _LEGACY.get(permission, permission)
    return PERMISSIONS.index(name) if name in PERMISSIONS else 0


def normalize_logins(values: tuple[str, ...]) -> tuple[str, ...]:
    """Lower-cased, sorted, unique logins (GitHub logins are case-insensitive), for the
    allow-lists of the policies that read this source."""
    out = tuple(sorted({v.strip().lower() for v in values}))
    if "" in out:
        raise ValueError("a blank login in the list")
    return out


@dataclass(frozen=True)
class Person:
    login: str
    permission: str  # one of PERMISSIONS
    outside: bool


@dataclass(frozen=True)
class Team:
    slug: str
    permission: str  # one of PERMISSIONS


@dataclass(frozen=True)
class Access:
    people: tuple[Person, ...]
    teams: tuple[Team, ...]


def permission_of(item: dict[str, Any]) -> str:
    """A collaborator's or team's highest permission (role_name, else the booleans)."""
    role = item.get("role_name") or item.get("permission")
    if isinstance(role, str) and _LEGACY.get(role, role) in PERMISSIONS:
        return _LEGACY.get(role, role)
    perms = item.get("permissions")
    if isinstance(perms, dict):
        for name, key in (("admin", "admin"), ("maintain", "maintain"), ("write", "push"),
                          ("triage", "triage")):
            if perms.get(key):
                return name
    return "read"


class CollaboratorsSource(Source[Access]):
    name: ClassVar[str] = "collaborators"
    stale_on: ClassVar[frozenset[str]] = frozenset({"member", "team"})
    cache: ClassVar[str] = "etag"

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> Access | Unreadable:
        status, direct = await reader.get_all("collaborators?affiliation=direct&per_page=100",
                                              expect=(403,))
        if status == 403:
            return Unreadable("GitHub refused to list the collaborators (403): the App needs "
                              "\"Administration: read\" or \"Members: read\"")
        _, outside = await reader.get_all("collaborators?affiliation=outside&per_page=100",
                                          expect=(403,))
        outside_logins = {str(u.get("login")).lower() for u in outside if isinstance(u, dict)}
        status, teams = await reader.get_all("teams?per_page=100", expect=(403,))
        if status == 403:
            return Unreadable("GitHub refused to list the teams with access (403)")
        people = tuple(Person(str(u.get("login")), permission_of(u),
                              str(u.get("login")).lower() in outside_logins)
                       for u in direct if isinstance(u, dict))
        return Access(people, tuple(Team(str(t.get("slug")), permission_of(t))
                                    for t in teams if isinstance(t, dict)))


SOURCE = CollaboratorsSource()
