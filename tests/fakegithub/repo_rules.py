"""REST endpoints of the fake GitHub for what the App's data sources read (app/sources/):
branch protection and rulesets, collaborators and teams, security settings, CODEOWNERS
errors, git trees and custom property values. Imported by server.create_app, which
registers every route.

As strict as GitHub (permissions from GitHub's "Permissions required for GitHub Apps"):
branch protection, a repository's teams and its Dependabot alerts setting need the
installation's `administration: read`; CODEOWNERS errors and trees `contents: read`; the
rules of a branch, the collaborators and custom property values only `metadata: read`,
which every installation has; an organization's teams and a team's repositories
(GET /orgs/{org}/teams[/{team_slug}/repos]) `members: read`. A missing permission is 403
"Resource not accessible by integration" with GitHub's X-Accepted-GitHub-Permissions header.
GET /repos/{owner}/{repo} (and the repositories the installation or a team lists) shows
`security_and_analysis` only to `administration`, and the merge settings only to
`contents: write` (`full_repo`). GraphQL's fields for the same data (graphql.py) reuse the
helpers here and, through the /graphql route wrapped at the end, the same permission checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.fakegithub import graphql as gql
from tests.fakegithub import render
from tests.fakegithub.server import (
    _ROUTE_OF,
    ROUTES,
    Caller,
    GitHubError,
    Handler,
    _find_org,
    _org_for_members,
    caller_of,
    can_see,
    get_repo,
    json_response,
    no_content,
    not_found,
    paginate,
    route,
    state_of,
    validation_failed,
)
from tests.fakegithub.state import (
    LEGACY_PERMISSIONS,
    PERMISSION_LEVELS,
    BranchProtection,
    FakeState,
    GitTree,
    Repo,
    Ruleset,
    SecuritySettings,
    Team,
    User,
    git_trees,
    node_id,
)

FORBIDDEN = "Resource not accessible by integration"
DOCS = "https://docs.github.com/rest"
CODEOWNERS_PATHS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
AFFILIATIONS = ("outside", "direct", "all")


def _grants(caller: Caller, permission: str, level: str = "read") -> bool:
    """The installation token grants `permission` at `level` (write implies read)."""
    granted = caller.token.permissions.get(permission) if caller.token is not None else None
    return granted == "write" or (level == "read" and granted == "read")


def _need(request: web.Request, permission: str, level: str = "read") -> None:
    if not _grants(caller_of(request), permission, level):
        raise GitHubError(403, FORBIDDEN, headers={
            "X-Accepted-GitHub-Permissions": f"{permission}={level}"})


@lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    """fnmatch as GitHub applies it to branch and repository names (File::FNM_PATHNAME):
    `*` and `?` stop at `/`, `**` crosses it, `[...]` is a class."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
            i = end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def glob_match(pattern: str, name: str, *, ignore_case: bool = False) -> bool:
    if ignore_case:
        return _glob(pattern.lower()).fullmatch(name.lower()) is not None
    return _glob(pattern).fullmatch(name) is not None


# ----------------------------------------------------------------------------- access
def effective_role(st: FakeState, repo: Repo, user: User) -> str:
    """A user's strongest role on the repository, from every source GitHub counts: direct
    collaboration, ownership, organization ownership or base permission, and teams."""
    key = user.login.lower()
    roles = [repo.collaborators.get(key, "none")]
    if user is repo.owner:
        roles.append("admin")
    if repo.owner.type == "Organization":
        membership = st.org_membership(repo.owner.login, user.login)
        if membership is not None and membership.state == "active":
            roles.append("admin" if membership.role == "admin"
                         else repo.owner.default_repository_permission)
        for slug, role in repo.team_access.items():
            team = st.teams.get((repo.owner.login.lower(), slug))
            if team is not None and key in team.members:
                roles.append(role)
    return min(roles, key=PERMISSION_LEVELS.index)


def at_least(role: str, wanted: str) -> bool:
    return PERMISSION_LEVELS.index(role) <= PERMISSION_LEVELS.index(wanted)


def _permissions(role: str) -> dict[str, bool]:
    return {name: at_least(role, needed) for name, needed in (
        ("admin", "admin"), ("maintain", "maintain"), ("push", "write"), ("triage", "triage"),
        ("pull", "read"))}


def _is_member(st: FakeState, repo: Repo, user: User) -> bool:
    membership = st.org_membership(repo.owner.login, user.login)
    return membership is not None and membership.state == "active"


def collaborators(st: FakeState, repo: Repo, affiliation: str) -> list[tuple[User, str]]:
    """(user, effective role) for GET .../collaborators?affiliation=, ordered by id."""
    org = repo.owner.type == "Organization"
    direct = {login for login, role in repo.collaborators.items() if role != "none"}
    if not org:
        direct.add(repo.owner.login.lower())  # a personal repository lists its owner
    if affiliation == "all":
        candidates = set(direct)
        if org:
            members = st.memberships.get(repo.owner.login.lower(), {})
            candidates |= {login for login, m in members.items() if m.state == "active"
                           and (m.role == "admin"
                                or repo.owner.default_repository_permission != "none")}
            for slug in repo.team_access:
                team = st.teams.get((repo.owner.login.lower(), slug))
                candidates |= set(team.members) if team is not None else set()
    elif affiliation == "outside":
        # Not members of the owner organization (a personal repository: all but its owner).
        candidates = {login for login in direct if login != repo.owner.login.lower()
                      and not (org and _is_member(st, repo, st.user(login)))}
    else:
        candidates = direct
    found = [(st.user(login), effective_role(st, repo, st.user(login))) for login in candidates]
    return sorted(((u, r) for u, r in found if r != "none"), key=lambda ur: ur[0].id)


def team_json(st: FakeState, team: Team, role: str) -> dict[str, Any]:
    url = f"{st.api_url}/organizations/{team.org.id}/team/{team.id}"
    return {
        "name": team.name,
        "id": team.id,
        "node_id": node_id("Team", team.id),
        "slug": team.slug,
        "description": None,
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": LEGACY_PERMISSIONS[role],
        "permissions": _permissions(role),
        "url": url,
        "html_url": f"{st.web_url}/orgs/{quote(team.org.login, safe='')}/teams/{team.slug}",
        "members_url": f"{url}/members{{/member}}",
        "repositories_url": f"{url}/repos",
        "type": "organization",
        "organization_id": team.org.id,
        "parent": None,
    }


def repo_teams(st: FakeState, repo: Repo) -> list[tuple[Team, str]]:
    teams = [(st.teams.get((repo.owner.login.lower(), slug)), role)
             for slug, role in repo.team_access.items()]
    return sorted(((t, r) for t, r in teams if t is not None), key=lambda tr: tr[0].id)


# ----------------------------------------------------------------------------- settings
MERGE_SETTINGS = ("allow_rebase_merge", "allow_squash_merge", "allow_auto_merge",
                  "delete_branch_on_merge", "allow_merge_commit", "allow_update_branch",
                  "use_squash_pr_title_as_default", "squash_merge_commit_title",
                  "squash_merge_commit_message", "merge_commit_title", "merge_commit_message")


def security_and_analysis(repo: Repo, sec: SecuritySettings | None = None) -> dict[str, Any]:
    """The `security_and_analysis` object (of `sec`, else the repository's settings): no
    `advanced_security` for a public repository (GitHub gives it its features for free), no
    `secret_scanning*` for a private or internal one without GitHub Advanced Security."""
    sec = sec or repo.security

    def status(on: bool) -> dict[str, str]:
        return {"status": "enabled" if on else "disabled"}

    out: dict[str, Any] = {}
    if repo.private:
        out["advanced_security"] = status(sec.advanced_security)
    if not repo.private or sec.advanced_security:
        out["secret_scanning"] = status(sec.secret_scanning)
        out["secret_scanning_push_protection"] = status(sec.secret_scanning_push_protection)
        out["secret_scanning_non_provider_patterns"] = status(False)
        out["secret_scanning_validity_checks"] = status(False)
    out["dependabot_security_updates"] = status(sec.dependabot_security_updates)
    return out


def full_repo(st: FakeState, caller: Caller, repo: Repo) -> dict[str, Any]:
    """GET /repos/{owner}/{repo} as this caller may see it: the merge settings only with
    `contents: write`, `security_and_analysis` only with `administration`."""
    data = render.repo(st, repo)
    data.update(has_wiki=repo.has_wiki, has_projects=repo.has_projects)
    if _grants(caller, "contents", "write"):
        data.update(repo.settings(), allow_auto_merge=False, allow_update_branch=False,
                    use_squash_pr_title_as_default=False,
                    squash_merge_commit_title="COMMIT_OR_PR_TITLE",
                    squash_merge_commit_message="COMMIT_MESSAGES",
                    merge_commit_title="MERGE_MESSAGE", merge_commit_message="PR_TITLE")
    else:
        for key in MERGE_SETTINGS:
            data.pop(key, None)
    if _grants(caller, "administration"):
        data["security_and_analysis"] = security_and_analysis(repo)
    return data


def minimal_repo(st: FakeState, caller: Caller, repo: Repo, role: str) -> dict[str, Any]:
    """GitHub's `minimal-repository` with a team's `permissions` and `role_name`: what
    GET /repos/{owner}/{repo} shows this caller, less the merge settings that schema lacks
    (`delete_branch_on_merge` is in it, under the same `contents: write` rule)."""
    data = full_repo(st, caller, repo)
    for key in MERGE_SETTINGS:
        if key != "delete_branch_on_merge":
            data.pop(key, None)
    data.update(permissions=_permissions(role), role_name=role)
    return data


# ----------------------------------------------------------------------------- branch rules
def protection_for(repo: Repo, branch: str) -> BranchProtection | None:
    """GitHub's precedence: a rule naming the branch beats patterns; among equals, the
    oldest rule wins."""
    exact = [p for p in repo.protections if p.pattern == branch]
    if exact:
        return exact[0]
    return next((p for p in repo.protections if glob_match(p.pattern, branch)), None)


def protection_json(st: FakeState, repo: Repo, branch: str, p: BranchProtection
                    ) -> dict[str, Any]:
    url = f"{st.api_url}/repos/{repo.full_name}/branches/{quote(branch, safe='/')}/protection"
    out: dict[str, Any] = {"url": url}
    if p.required_status_checks is not None:
        out["required_status_checks"] = {
            "url": f"{url}/required_status_checks",
            "strict": p.strict,
            "contexts": list(p.required_status_checks),
            "contexts_url": f"{url}/required_status_checks/contexts",
            "checks": [{"context": c, "app_id": None} for c in p.required_status_checks],
        }
    if p.required_approving_review_count is not None:
        out["required_pull_request_reviews"] = {
            "url": f"{url}/required_pull_request_reviews",
            "dismiss_stale_reviews": p.dismiss_stale_reviews,
            "require_code_owner_reviews": p.require_code_owner_reviews,
            "required_approving_review_count": p.required_approving_review_count,
            "require_last_push_approval": p.require_last_push_approval,
        }
    out["required_signatures"] = {"url": f"{url}/required_signatures",
                                  "enabled": p.required_signatures}
    out["enforce_admins"] = {"url": f"{url}/enforce_admins", "enabled": p.enforce_admins}
    for key in ("required_linear_history", "allow_force_pushes", "allow_deletions",
                "block_creations", "required_conversation_resolution", "lock_branch"):
        out[key] = {"enabled": getattr(p, key)}
    out["allow_fork_syncing"] = {"enabled": False}
    return out


def applies_to_repo(ruleset: Ruleset, repo: Repo) -> bool:
    if ruleset.repo is not None:
        return ruleset.repo is repo
    if ruleset.org is not repo.owner:
        return False
    ids = ruleset.conditions.get("repository_id")
    if ids is not None:
        return repo.id in ids.get("repository_ids", [])
    names = ruleset.conditions.get("repository_name") or {}

    def hit(patterns: list[str]) -> bool:
        return any(p == "~ALL" or glob_match(p, repo.name, ignore_case=True) for p in patterns)

    return hit(names.get("include", [])) and not hit(names.get("exclude", []))


def applies_to_branch(ruleset: Ruleset, repo: Repo, branch: str) -> bool:
    ref_name = ruleset.conditions.get("ref_name") or {}
    ref = f"refs/heads/{branch}"

    def hit(patterns: list[str]) -> bool:
        return any(p == "~ALL" or (p == "~DEFAULT_BRANCH" and branch == repo.default_branch)
                   or glob_match(p, ref) for p in patterns)

    return hit(ref_name.get("include", [])) and not hit(ref_name.get("exclude", []))


def rulesets_for(st: FakeState, repo: Repo) -> list[Ruleset]:
    """Every ruleset that may apply to the repository: its own and its organization's."""
    org = st.org_rulesets.get(repo.owner.login.lower(), [])
    return [*org, *repo.rulesets]


def active_rules(st: FakeState, repo: Repo, branch: str) -> list[dict[str, Any]]:
    """GET .../rules/branches/{branch}: the rules of every *active* branch ruleset that
    applies (rulesets in "evaluate" or "disabled" mode are not returned)."""
    out: list[dict[str, Any]] = []
    for ruleset in rulesets_for(st, repo):
        if ruleset.enforcement != "active" or ruleset.target != "branch" \
                or not applies_to_repo(ruleset, repo) \
                or not applies_to_branch(ruleset, repo, branch):
            continue
        for rule in ruleset.rules:
            out.append({**rule, "ruleset_source_type": ruleset.source_type,
                        "ruleset_source": ruleset.source, "ruleset_id": ruleset.id})
    return out


def ruleset_json(st: FakeState, ruleset: Ruleset) -> dict[str, Any]:
    """A ruleset in REST's repository-ruleset shape (as webhooks carry it)."""
    if ruleset.repo is not None:
        self_url = f"{st.api_url}/repos/{ruleset.repo.full_name}/rulesets/{ruleset.id}"
        html = f"{st.web_url}/{ruleset.repo.full_name}/rules/{ruleset.id}"
    else:
        self_url = f"{st.api_url}/orgs/{ruleset.source}/rulesets/{ruleset.id}"
        html = f"{st.web_url}/organizations/{ruleset.source}/settings/rules/{ruleset.id}"
    return {
        "id": ruleset.id,
        "name": ruleset.name,
        "target": ruleset.target,
        "source_type": ruleset.source_type,
        "source": ruleset.source,
        "enforcement": ruleset.enforcement,
        "conditions": ruleset.conditions,
        "rules": [dict(r) for r in ruleset.rules],
        "bypass_actors": list(ruleset.bypass_actors),
        "node_id": node_id("RepositoryRuleset", ruleset.id),
        "_links": {"self": {"href": self_url}, "html": {"href": html}},
        "created_at": _iso_offset(ruleset.created_at),
        "updated_at": _iso_offset(ruleset.updated_at),
    }


def _iso_offset(ts: float) -> str:
    # Rulesets carry timestamps with a UTC offset ("2023-07-06T09:43:51.000-07:00").
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


# ----------------------------------------------------------------------------- CODEOWNERS
_USER_OWNER = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
_TEAM_OWNER = re.compile(r"@([A-Za-z0-9][A-Za-z0-9-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)")
_EMAIL_OWNER = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def codeowners_file(files: Mapping[str, str]) -> str | None:
    """Where GitHub takes CODEOWNERS from: the first of .github/, the root, docs/."""
    return next((p for p in CODEOWNERS_PATHS if p in files), None)


def codeowners_at(repo: Repo, ref: str) -> tuple[str, str] | None:
    """(path, text) of the CODEOWNERS file at `ref` (a branch or a commit sha); None when
    the ref or the file is missing. REST's codeowners/errors and GraphQL's codeowners."""
    if ref in repo.heads:
        files: Mapping[str, str] | None = repo.branches.get(ref, {})
    else:
        found = repo.commit(ref)
        files = found[1] if found is not None else None
    path = codeowners_file(files) if files is not None else None
    return (path, files[path]) if files is not None and path is not None else None


def _tokens(line: str) -> Iterator[tuple[int, str]]:
    """(1-based column, token) up to a comment."""
    for m in re.finditer(r"\S+", line):
        if m.group().startswith("#"):
            return
        yield m.start() + 1, m.group()


def _pattern_problem(pattern: str) -> tuple[str, str | None] | None:
    """(kind, suggestion) for a pattern GitHub's CODEOWNERS syntax rejects."""
    if "***" in pattern:
        fixed = re.sub(r"\*{3,}", "**", pattern)
        return "Invalid pattern", f"Did you mean `{fixed}`?"
    if pattern == "/":
        return "Invalid pattern", ("The pattern `/` will never match anything, did you mean "
                                   "`*` instead?")
    if pattern.startswith("!"):
        return "Invalid pattern", "Negated patterns are not supported."
    if "[" in pattern or "]" in pattern:
        return "Invalid pattern", "Character ranges are not supported."
    return None


def _owner_problem(st: FakeState, repo: Repo, owner: str) -> tuple[str, str | None] | None:
    """(kind, suggestion) for an owner GitHub cannot use: bad syntax, or a user, team or
    email that does not exist or has no write access to the repository."""
    unknown = ("Unknown owner", f"make sure {owner} exists and has write access to the "
                                "repository")
    if team := _TEAM_OWNER.fullmatch(owner):
        found = st.teams.get((team.group(1).lower(), team.group(2).lower()))
        role = repo.team_access.get(found.slug) if found is not None \
            and found.org is repo.owner else None
        return None if role is not None and at_least(role, "write") else unknown
    if _USER_OWNER.fullmatch(owner):
        user = st.users.get(owner[1:].lower())
    elif _EMAIL_OWNER.fullmatch(owner):
        user = next((u for u in st.users.values()
                     if u.email and u.email.lower() == owner.lower()), None)
    else:
        return "Invalid owner", None
    if user is None or user.type != "User" or not at_least(effective_role(st, repo, user),
                                                           "write"):
        return unknown
    return None


def codeowners_errors(st: FakeState, repo: Repo, path: str, text: str) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []

    def add(number: int, column: int, source: str, kind: str, suggestion: str | None) -> None:
        detail = f" {suggestion}" if suggestion else ""
        errors.append({
            "line": number, "column": column, "kind": kind, "source": source,
            "suggestion": suggestion,
            "message": f"{kind} on line {number}:{detail}\n\n  {source}\n  "
                       f"{' ' * (column - 1)}^",
            "path": path,
        })

    for number, line in enumerate(text.splitlines(), start=1):
        tokens = list(_tokens(line))
        if not tokens:
            continue
        (column, pattern), owners = tokens[0], tokens[1:]
        problem = _pattern_problem(pattern)
        if problem is not None:
            add(number, column, line, *problem)
            continue
        for column, owner in owners:
            problem = _owner_problem(st, repo, owner)
            if problem is not None:
                add(number, column, line, *problem)
    return errors


# ----------------------------------------------------------------------------- git trees
def find_tree(repo: Repo, wanted: str) -> tuple[GitTree, Mapping[str, GitTree]] | None:
    """The tree `wanted` names, with every tree of a commit holding it: a tree sha of any
    commit the repository has, a commit sha (its root tree) or a branch name."""
    if re.fullmatch(r"[0-9a-f]{40}", wanted):
        for files in repo.commits.values():
            trees = git_trees(files)
            for tree in trees.values():
                if tree.sha == wanted:
                    return tree, trees
    found = repo.commit(wanted) if re.fullmatch(r"[0-9a-f]{7,40}", wanted) else None
    if found is None:
        branch = wanted.removeprefix("refs/heads/").removeprefix("heads/")
        if branch not in repo.heads:
            return None
        found = repo.heads[branch], repo.commits.get(repo.heads[branch],
                                                     repo.branches[branch])
    trees = git_trees(found[1])
    return trees[""], trees


def tree_json(st: FakeState, repo: Repo, tree: GitTree, trees: Mapping[str, GitTree],
              recursive: bool) -> dict[str, Any]:
    api = f"{st.api_url}/repos/{repo.full_name}/git"
    entries: list[dict[str, Any]] = []

    def walk(t: GitTree) -> None:
        for e in t.entries:
            rel = e.path[len(tree.path) + 1:] if tree.path else e.path
            item: dict[str, Any] = {"path": rel, "mode": e.mode, "type": e.type, "sha": e.sha}
            if e.size is not None:
                item["size"] = e.size
            item["url"] = f"{api}/{'trees' if e.type == 'tree' else 'blobs'}/{e.sha}"
            entries.append(item)
            if recursive and e.type == "tree" and e.path in trees:
                walk(trees[e.path])

    walk(tree)
    limit = st.tree_entry_limit
    return {"sha": tree.sha, "url": f"{api}/trees/{tree.sha}", "tree": entries[:limit],
            "truncated": len(entries) > limit}


# ----------------------------------------------------------------------------- routes
def _branch(request: web.Request) -> str:
    return request.match_info["branch"]


@route("GET", "/repos/{owner}/{repo}/branches/{branch:.+}/protection",
       doc=f"{DOCS}/branches/branch-protection#get-branch-protection")
async def get_branch_protection(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    _need(request, "administration")
    branch = _branch(request)
    if branch not in repo.heads:
        raise GitHubError(404, "Branch not found")
    rule = protection_for(repo, branch)
    if rule is None:
        raise GitHubError(404, "Branch not protected")
    return json_response(protection_json(st, repo, branch, rule))


@route("GET", "/repos/{owner}/{repo}/rules/branches/{branch:.+}",
       doc=f"{DOCS}/repos/rules#get-rules-for-a-branch")
async def get_branch_rules(request: web.Request) -> web.Response:
    # The branch need not exist: the rules that would apply to that name are listed.
    st = state_of(request)
    repo = get_repo(request)
    page, headers = paginate(request, active_rules(st, repo, _branch(request)))
    return json_response(page, headers=headers)


@route("GET", "/repos/{owner}/{repo}/collaborators",
       doc=f"{DOCS}/collaborators/collaborators#list-repository-collaborators")
async def list_collaborators(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    affiliation = request.query.get("affiliation", "all")
    if affiliation not in AFFILIATIONS:
        raise GitHubError(422, f"Invalid request.\n\nFor 'properties/affiliation', "
                               f"\"{affiliation}\" is not a member of {list(AFFILIATIONS)}.")
    found = collaborators(st, repo, affiliation)
    wanted = request.query.get("permission")
    if wanted is not None:
        legacy = {v: k for k, v in LEGACY_PERMISSIONS.items()}
        if wanted not in legacy:
            raise validation_failed("Collaborator", "permission", "invalid")
        found = [(u, r) for u, r in found if r == legacy[wanted]]
    page, headers = paginate(request, found)
    return json_response([{**render.user(st, u), "permissions": _permissions(role),
                           "role_name": role} for u, role in page], headers=headers)


@route("GET", "/repos/{owner}/{repo}/teams", doc=f"{DOCS}/repos/repos#list-repository-teams")
async def list_repo_teams(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    _need(request, "administration")
    page, headers = paginate(request, repo_teams(st, repo))
    return json_response([{**team_json(st, team, role), "access_source": "direct"}
                          for team, role in page], headers=headers)


# ----------------------------------------------------------------------------- org teams
TEAM_TYPES = ("all", "enterprise", "organization")


def org_teams(st: FakeState, org: User) -> list[Team]:
    """The organization's teams in GitHub's order for GET /orgs/{org}/teams: by name."""
    found = [t for (login, _), t in st.teams.items() if login == org.login.lower()]
    return sorted(found, key=lambda t: (t.name.lower(), t.id))


def org_team_json(st: FakeState, team: Team) -> dict[str, Any]:
    """A team as the organization lists it: no repository in context, so no `permissions`
    object, and `permission` is the team's default ("pull")."""
    data = team_json(st, team, "read")
    del data["permissions"]
    return data


def team_repos(st: FakeState, caller: Caller, team: Team) -> list[tuple[Repo, str]]:
    """(repository, the team's role) for each repository of the team's organization the
    team has access to and the caller can see, by id. The role is the one
    GET /repos/{owner}/{repo}/teams gives the team (Repo.team_access)."""
    found = [(r, r.team_access[team.slug]) for r in st.repos.values()
             if r.owner is team.org and team.slug in r.team_access and can_see(caller, r)]
    return sorted(found, key=lambda rr: rr[0].id)


@route("GET", "/orgs/{org}/teams", doc=f"{DOCS}/teams/teams#list-teams")
async def list_org_teams(request: web.Request) -> web.Response:
    st = state_of(request)
    org = _org_for_members(request)  # 404 unknown org; 403 without members: read
    team_type = request.query.get("team_type", "all")
    if team_type not in TEAM_TYPES:
        raise GitHubError(422, f"Invalid request.\n\nFor 'properties/team_type', "
                               f"\"{team_type}\" is not a member of {list(TEAM_TYPES)}.")
    # Every team of the fake is an organization's (none is an enterprise team).
    teams = [] if team_type == "enterprise" else org_teams(st, org)
    page, headers = paginate(request, teams)
    return json_response([org_team_json(st, t) for t in page], headers=headers)


@route("GET", "/orgs/{org}/teams/{team_slug}/repos",
       doc=f"{DOCS}/teams/teams#list-team-repositories")
async def list_team_repos(request: web.Request) -> web.Response:
    st = state_of(request)
    caller = caller_of(request)
    org = _org_for_members(request)
    team = st.teams.get((org.login.lower(), request.match_info["team_slug"].lower()))
    if team is None:
        raise not_found()
    page, headers = paginate(request, team_repos(st, caller, team))
    return json_response([minimal_repo(st, caller, r, role) for r, role in page],
                         headers=headers)


ORG_REPO_TYPES = ("all", "public", "private", "forks", "sources", "member")


@route("GET", "/orgs/{org}/repos", doc=f"{DOCS}/repos/repos#list-organization-repositories")
async def list_org_repos(request: web.Request) -> web.Response:
    """The organization's repositories the caller can see, as `minimal-repository` (with
    `security_and_analysis` under GET /repos/{owner}/{repo}'s rule: GitHub's docs say it
    is shown to those who may administer the repository), by id."""
    st = state_of(request)
    caller = caller_of(request)
    org = _find_org(st, request.match_info["org"])  # 404 for an unknown organization
    kind = request.query.get("type", "all")
    if kind not in ORG_REPO_TYPES:
        raise GitHubError(422, f"Invalid request.\n\nFor 'properties/type', \"{kind}\" is "
                               f"not a member of {list(ORG_REPO_TYPES)}.")
    found = [r for r in st.repos.values() if r.owner is org and can_see(caller, r)
             and (kind in ("all", "member") or (kind == "public" and not r.private)
                  or (kind == "private" and r.private) or (kind == "forks" and r.fork)
                  or (kind == "sources" and not r.fork))]
    page, headers = paginate(request, sorted(found, key=lambda r: r.id))
    out = []
    for repo in page:
        data = full_repo(st, caller, repo)
        for key in MERGE_SETTINGS:
            if key != "delete_branch_on_merge":
                data.pop(key, None)
        out.append(data)
    return json_response(out, headers=headers)


@route("GET", "/repos/{owner}/{repo}/vulnerability-alerts",
       doc=f"{DOCS}/repos/repos#check-if-vulnerability-alerts-are-enabled-for-a-repository")
async def get_vulnerability_alerts(request: web.Request) -> web.Response:
    repo = get_repo(request)
    _need(request, "administration")
    if not repo.security.dependabot_alerts:
        raise not_found()
    return no_content()


@route("GET", "/repos/{owner}/{repo}/codeowners/errors",
       doc=f"{DOCS}/repos/repos#list-codeowners-errors")
async def list_codeowners_errors(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    _need(request, "contents")
    found = codeowners_at(repo, request.query.get("ref") or repo.default_branch)
    if found is None:
        raise not_found()
    return json_response({"errors": codeowners_errors(st, repo, *found)})


@route("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha:.+}",
       doc=f"{DOCS}/git/trees#get-a-tree")
async def get_tree(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    _need(request, "contents")
    if not repo.heads:
        raise GitHubError(409, "Git Repository is empty.")
    found = find_tree(repo, request.match_info["tree_sha"])
    if found is None:
        raise not_found()
    # Any value of `recursive` (even 0 or false) recurses; only its absence does not.
    return json_response(tree_json(st, repo, *found, "recursive" in request.query))


@route("GET", "/repos/{owner}/{repo}/properties/values",
       doc=f"{DOCS}/repos/custom-properties#get-all-custom-property-values-for-a-repository")
async def get_custom_property_values(request: web.Request) -> web.Response:
    repo = get_repo(request)
    if repo.owner.type != "Organization":
        raise not_found()  # custom properties are an organization's
    return json_response([{"property_name": name, "value": value}
                          for name, value in repo.custom_properties.items()])


# ----------------------------------------------------------------------------- graphql
def _graphql_with_grants(handler: Handler) -> Handler:
    """The /graphql route, telling graphql.GRANTS what the caller's token grants, so that
    GraphQL fields refuse what the REST endpoints here refuse (`_grants`)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        caller = caller_of(request)
        reset = gql.GRANTS.set(lambda permission: _grants(caller, permission))
        try:
            return await handler(request)
        finally:
            gql.GRANTS.reset(reset)

    return answer


# server.py registers /graphql without the caller's permissions in reach of the schema; wrap
# its route here (once: a module is imported once), where the permission checks live.
for _i, _route in enumerate(ROUTES):
    if (_route.method, _route.path) == ("POST", "/graphql"):
        ROUTES[_i] = replace(_route, handler=_graphql_with_grants(_route.handler))
        _ROUTE_OF[ROUTES[_i].handler] = ROUTES[_i]
