"""Who has direct access to a repository: people (and whether they are outside
collaborators) and teams, each with a permission.

People come with the batched GraphQL query (`collaborators(affiliation: DIRECT)` and
`(affiliation: OUTSIDE)`, the first 100 of each; a repository with more is read through
REST, paginated). Teams: in an organization, its teams and each team's repositories are
read once per batch of repositories (`GET /orgs/{org}/teams`, then
`GET /orgs/{org}/teams/{slug}/repos`; conditional, so every batch after the first pays
nothing), instead of `GET /repos/{o}/{r}/teams` for each repository, which is the fallback
(a personal account, or an organization listing GitHub refuses). Organization owners, who
are admins of every repository, are not direct collaborators and are not listed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

from pydantic import AfterValidator

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


# An allow-list of logins in a policy's parameters: normalized as it is validated.
AllowedLogins = Annotated[tuple[str, ...], AfterValidator(normalize_logins)]


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


_FIRST = 100


def _people(found: Any) -> tuple[list[dict[str, Any]], bool]:
    """(login + permission items, complete?) from a GraphQL collaborators connection."""
    if not isinstance(found, dict):
        return [], False
    items = [{"login": (e.get("node") or {}).get("login"),
              "permission": str(e.get("permission") or "READ").lower()}
             for e in found.get("edges") or [] if isinstance(e, dict)]
    return items, int(found.get("totalCount") or 0) <= len(items)


async def org_teams(reader: Reader, org: str | None) -> dict[str, list[dict[str, Any]]] | None:
    """Repository full name (lower-cased) -> its teams, each {slug, permission}, from the
    organization's team listing; None when GitHub refuses it (each repository is then asked
    for its own teams)."""
    if not org:
        return None
    base = f"/orgs/{quote(org, safe='')}/teams"
    status, teams = await reader.get_all(f"{base}?per_page=100", expect=(403, 404))
    if status != 200:
        return None
    out: dict[str, list[dict[str, Any]]] = {}
    for team in teams:
        slug = str(team.get("slug")) if isinstance(team, dict) else ""
        if not slug:
            continue
        status, repos = await reader.get_all(
            f"{base}/{quote(slug, safe='')}/repos?per_page=100", expect=(403, 404))
        if status == 403:
            return None
        for item in repos:
            if isinstance(item, dict) and item.get("full_name"):
                out.setdefault(str(item["full_name"]).lower(), []).append(
                    {"slug": slug, "permission": permission_of(item)})
    return out


class CollaboratorsSource(Source[Access]):
    name: ClassVar[str] = "collaborators"
    stale_on: ClassVar[frozenset[str]] = frozenset({"member", "team"})
    cache: ClassVar[str] = "etag"

    def graphql(self, needs: Needs, ref: str = "HEAD") -> tuple[str, dict[str, str]]:
        edges = f"first: {_FIRST}) {{ totalCount edges {{ permission node {{ login }} }} }}"
        return (f"clDirect: collaborators(affiliation: DIRECT, {edges}\n  "
                f"clOutside: collaborators(affiliation: OUTSIDE, {edges}"), {}

    def owns(self, alias: str) -> bool:
        return alias in ("clDirect", "clOutside")

    def parse(self, node: Mapping[str, Any], needs: Needs) -> dict[str, Any]:
        direct, direct_done = _people(node.get("clDirect"))
        outside, outside_done = _people(node.get("clOutside"))
        return {"direct": direct if direct_done else None,
                "outside": outside if outside_done else None}

    def parse_errors(self, node: Mapping[str, Any], needs: Needs,
                     errors: Sequence[Mapping[str, Any]]) -> Unreadable:
        return Unreadable("GitHub refused to list the collaborators ("
                          + "; ".join(str(e.get("message")) for e in errors)
                          + "): the App needs \"Administration: read\" or \"Members: read\"")

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> Access | Unreadable:
        got = view if isinstance(view, dict) else {"direct": None, "outside": None}
        lists: dict[str, list[Any]] = {}
        for key in ("direct", "outside"):
            known = got.get(key)
            if isinstance(known, list):
                lists[key] = known
                continue
            # More than GraphQL's first page (or no GraphQL part): REST, every page.
            status, lists[key] = await reader.get_all(
                f"collaborators?affiliation={key}&per_page=100", expect=(403,))
            if status == 403:
                return self.parse_errors({}, needs, [{"message": "403"}])
        by_repo = await repo.once("org-teams", lambda: org_teams(reader, repo.org)) \
            if repo.org else None
        if isinstance(by_repo, dict):
            teams: list[Any] = by_repo.get(repo.full_name.lower(), [])
        else:
            status, teams = await reader.get_all("teams?per_page=100", expect=(403,))
            if status == 403:
                return Unreadable("GitHub refused to list the teams with access (403)")
        outside_logins = {str(u.get("login")).lower() for u in lists["outside"]
                          if isinstance(u, dict)}
        people = tuple(Person(str(u.get("login")), permission_of(u),
                              str(u.get("login")).lower() in outside_logins)
                       for u in lists["direct"] if isinstance(u, dict))
        return Access(people, tuple(Team(str(t.get("slug")), permission_of(t))
                                    for t in teams if isinstance(t, dict)))


SOURCE = CollaboratorsSource()
