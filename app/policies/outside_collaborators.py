"""No outside collaborator holds a permission at or above a forbidden one."""

from __future__ import annotations

import builtins
from typing import Any, ClassVar, Literal

from app.policies.base import (
    DOCS_URL,
    Needs,
    Params,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
)
from app.sources.collaborators import PERMISSIONS, SOURCE, AllowedLogins, rank

TYPE = "outside_collaborators"
# Offenders listed in the message and details.
MAX_LISTED = 20


class OutsideCollaboratorsParams(Params):
    # "push" is GitHub's legacy name for write.
    forbidden_permission: Literal["read", "triage", "write", "push", "maintain", "admin"] = (
        "admin")
    # Logins exempt, compared case-insensitively.
    allow: AllowedLogins = ()


DEFAULT_PARAMS = OutsideCollaboratorsParams()


class OutsideCollaborators(PolicyBase):
    type: ClassVar[str] = TYPE
    title: ClassVar[str] = "Outside collaborators have limited access"
    Params: ClassVar[builtins.type[Params]] = OutsideCollaboratorsParams
    example: ClassVar[dict[str, Any]] = {
        "forbidden_permission": "maintain",
        "allow": ["release-bot"],
    }
    needs: ClassVar[Needs] = Needs(sources=frozenset({SOURCE.name}))
    # No automatic fix: removing someone's access is a person's decision.
    remedy: ClassVar[Remedy | None] = None

    def evaluate(self, snapshot: RepoSnapshot,
                 params: OutsideCollaboratorsParams = DEFAULT_PARAMS) -> Result:
        access = SOURCE.of(snapshot)
        limit = rank(params.forbidden_permission)
        forbidden = PERMISSIONS[limit]
        at_least = "" if forbidden == "admin" else " or higher"
        offenders = sorted(
            (p for p in access.people
             if p.outside and rank(p.permission) >= limit
             and p.login.lower() not in params.allow),
            key=lambda p: (p.login.lower(), p.login))
        if not offenders:
            return Result(True, f"No outside collaborator of `{snapshot.full_name}` has "
                                f"`{forbidden}` permission{at_least}.",
                          {"forbidden_permission": forbidden, "count": 0})
        shown = offenders[:MAX_LISTED]
        # Logins in code spans: listed, not @mentioned.
        lines = [f"- `{p.login}`: `{p.permission}`" for p in shown]
        if len(offenders) > len(shown):
            lines.append(f"- … and {len(offenders) - len(shown)} more")
        below = PERMISSIONS[limit - 1] if limit else None
        lower = (f"lower their permission to `{below}` or less" if below
                 else "remove their access")
        return Result(
            False,
            f"`{snapshot.full_name}` has {len(offenders)} outside collaborator"
            f"{'' if len(offenders) == 1 else 's'} with `{forbidden}` permission{at_least}:\n"
            + "\n".join(lines) + "\n\n"
            f"Under **Settings → Collaborators and teams**, {lower}, or, if they work for "
            "the organization, make them members and give them access through a team.\n\n"
            f"See {DOCS_URL}#{TYPE}.",
            {"forbidden_permission": forbidden, "count": len(offenders),
             "offenders": [{"login": p.login, "permission": p.permission} for p in shown]},
        )


POLICY = OutsideCollaborators()
