"""A repository is administered through teams, not by individual people."""

from __future__ import annotations

import builtins
from typing import Annotated, Any, ClassVar

from pydantic import Field, StrictInt

from app.policies.base import (
    DOCS_URL,
    Needs,
    Params,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
)
from app.sources.collaborators import SOURCE, AllowedLogins, rank

TYPE = "repo_admins"
ADMIN = rank("admin")
# Names listed in the message and details.
MAX_LISTED = 20


class RepoAdminsParams(Params):
    min_admin_teams: Annotated[StrictInt, Field(ge=0)] = 1
    max_individual_admins: Annotated[StrictInt, Field(ge=0)] = 0
    # Logins not counted as individual admins (case-insensitive), e.g. a break-glass account.
    allow: AllowedLogins = ()


DEFAULT_PARAMS = RepoAdminsParams()


def _listed(names: list[str]) -> str:
    """Up to MAX_LISTED names as code spans (listed, not @mentioned), and how many more."""
    shown = ", ".join(f"`{n}`" for n in names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "") if names else "none"


class RepoAdmins(PolicyBase):
    type: ClassVar[str] = TYPE
    title: ClassVar[str] = "Repository is administered by teams"
    Params: ClassVar[builtins.type[Params]] = RepoAdminsParams
    example: ClassVar[dict[str, Any]] = {
        "min_admin_teams": 1,
        "max_individual_admins": 0,
        "allow": ["break-glass-admin"],
    }
    needs: ClassVar[Needs] = Needs(sources=frozenset({SOURCE.name}))
    # No automatic fix: which team should own the repository is a person's choice.
    remedy: ClassVar[Remedy | None] = None

    def evaluate(self, snapshot: RepoSnapshot,
                 params: RepoAdminsParams = DEFAULT_PARAMS) -> Result:
        access = SOURCE.of(snapshot)
        teams = sorted((t.slug for t in access.teams if rank(t.permission) >= ADMIN),
                       key=str.lower)
        # Organization owners are not direct collaborators, so they are never counted.
        people = sorted((p.login for p in access.people
                         if rank(p.permission) >= ADMIN and p.login.lower() not in params.allow),
                        key=str.lower)
        details: dict[str, Any] = {
            "admin_teams": teams[:MAX_LISTED], "admin_team_count": len(teams),
            "individual_admins": people[:MAX_LISTED], "individual_admin_count": len(people)}
        few_teams = len(teams) < params.min_admin_teams
        many_people = len(people) > params.max_individual_admins
        if not (few_teams or many_people):
            return Result(True, f"`{snapshot.full_name}` has {len(teams)} admin team"
                                f"{'' if len(teams) == 1 else 's'} and {len(people)} "
                                "individual admin" + ("" if len(people) == 1 else "s") + ".",
                          details)
        problems = []
        if few_teams:
            problems.append(
                f"- It has {len(teams)} team{'' if len(teams) == 1 else 's'} with admin "
                f"permission ({_listed(teams)}); at least {params.min_admin_teams} "
                "required. Grant the owning team the **Admin** role under **Settings → "
                "Collaborators and teams**.")
        if many_people:
            problems.append(
                f"- It has {len(people)} individual admin{'' if len(people) == 1 else 's'} "
                f"({_listed(people)}); at most {params.max_individual_admins} allowed. "
                "Remove their individual admin rights (or lower their role) under "
                "**Settings → Collaborators and teams**, and give access through an admin "
                "team instead.")
        return Result(
            False,
            f"`{snapshot.full_name}` is not administered as required:\n"
            + "\n".join(problems) + f"\n\nSee {DOCS_URL}#{TYPE}.",
            details,
        )


POLICY = RepoAdmins()
