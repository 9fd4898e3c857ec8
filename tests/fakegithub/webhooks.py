"""Webhook payloads shaped like GitHub's (see @octokit/webhooks-examples), built from FakeState
objects so ids, logins and names match what the fake API serves; plus signing and delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from tests.fakegithub import render
from tests.fakegithub.state import (
    PERMISSION_LEVELS,
    BranchProtection,
    Comment,
    FakeState,
    Installation,
    Issue,
    Repo,
    Ruleset,
    SecuritySettings,
    Team,
    User,
    git_trees,
    iso,
    node_id,
)

ZERO_SHA = "0" * 40
HOOK_ID = 109948940


def sign(body: bytes, secret: str) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_sha1(body: bytes, secret: str) -> str:
    """The legacy X-Hub-Signature value."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def encode(payload: Mapping[str, Any]) -> bytes:
    """Bytes as GitHub sends them (compact JSON); sign exactly these."""
    return json.dumps(payload, separators=(",", ":")).encode()


def headers_for(
    event: str,
    body: bytes,
    secret: str | None,
    delivery_id: str | None = None,
    *,
    app_id: int | None = None,
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc1234",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": str(HOOK_ID),
    }
    if app_id is not None:
        headers["X-GitHub-Hook-Installation-Target-Type"] = "integration"
        headers["X-GitHub-Hook-Installation-Target-ID"] = str(app_id)
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
        headers["X-Hub-Signature"] = sign_sha1(body, secret)
    return headers


async def deliver(
    session_or_url: Any,
    event: str,
    payload: Mapping[str, Any] | bytes,
    secret: str | None,
    delivery_id: str | None = None,
    *,
    path: str = "/api/github/webhooks",
    app_id: int | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """POST a webhook as GitHub does; returns (status, response text).

    `session_or_url` is a full URL string, or anything with aiohttp's `.post(url, data=,
    headers=)` (a ClientSession with base_url, aiohttp.test_utils.TestClient), which gets
    `path` (the app's WEBHOOK_PATH by default). secret=None sends no signature headers;
    bytes payloads are sent (and signed) as-is.
    """
    body = payload if isinstance(payload, bytes) else encode(payload)
    headers = headers_for(event, body, secret, delivery_id, app_id=app_id)
    headers.update(extra_headers or {})
    if isinstance(session_or_url, str):
        async with (
            aiohttp.ClientSession() as session,
            session.post(session_or_url, data=body, headers=headers) as resp,
        ):
            return resp.status, await resp.text()
    async with session_or_url.post(path, data=body, headers=headers) as resp:
        return int(resp.status), str(await resp.text())


# ----------------------------------------------------------------------------- parts
def _sender(st: FakeState, sender: str | User | None, default: User) -> dict[str, Any]:
    if sender is None:
        return render.user(st, default)
    return render.user(st, sender if isinstance(sender, User) else st.user(sender))


def _default_actor(st: FakeState, account: User) -> User:
    # Organisations act through a person; user accounts act as themselves.
    return st.user(f"{account.login}-admin") if account.type == "Organization" else account


def _mini_repo(r: Repo) -> dict[str, Any]:
    return {
        "id": r.id,
        "node_id": node_id("Repository", r.id),
        "name": r.name,
        "full_name": r.full_name,
        "private": r.private,
    }


def _installation_ref(inst: Installation) -> dict[str, Any]:
    return {"id": inst.id, "node_id": node_id("IntegrationInstallation", inst.id)}


def _organization(st: FakeState, org: User) -> dict[str, Any]:
    # Webhook payloads carry the org with an empty description (the REST shape has null).
    return {**render.organization_simple(st, org), "description": ""}


def webhook_repo(st: FakeState, r: Repo) -> dict[str, Any]:
    """The repository object of webhook payloads: the REST one without caller permissions."""
    d = render.repo(st, r)
    for key in ("permissions", "subscribers_count", "network_count"):
        d.pop(key, None)
    d["web_commit_signoff_required"] = False
    d["custom_properties"] = {}
    d.update(r.settings())
    return d


def _repo_context(
    st: FakeState, r: Repo, installation: Installation | None
) -> dict[str, Any]:
    """repository / organization / installation keys shared by repository-scoped events."""
    out: dict[str, Any] = {"repository": webhook_repo(st, r)}
    if r.owner.type == "Organization":
        out["organization"] = _organization(st, r.owner)
    inst = installation or st.installation_for(r)
    if inst is None:
        try:
            inst = st.installation(r.owner.login)
        except KeyError:
            inst = None
    if inst is not None:
        out["installation"] = _installation_ref(inst)
    return out


# ----------------------------------------------------------------------------- events
def installation(
    st: FakeState,
    inst: Installation,
    action: str = "created",
    *,
    sender: str | User | None = None,
) -> dict[str, Any]:
    """`installation` event: created, deleted, suspend, unsuspend, new_permissions_accepted."""
    payload: dict[str, Any] = {"action": action, "installation": render.installation(st, inst)}
    if action not in ("suspend", "unsuspend"):
        payload["repositories"] = [_mini_repo(r) for r in inst.repos]
    if action == "created":
        payload["requester"] = None
    payload["sender"] = _sender(st, sender, _default_actor(st, inst.account))
    return payload


def installation_repositories(
    st: FakeState,
    inst: Installation,
    action: str,
    repos: Sequence[Repo],
    *,
    sender: str | User | None = None,
) -> dict[str, Any]:
    """`installation_repositories` event: action "added" or "removed" with those repositories."""
    return {
        "action": action,
        "installation": render.installation(st, inst),
        "repository_selection": inst.repository_selection,
        "repositories_added": [_mini_repo(r) for r in repos] if action == "added" else [],
        "repositories_removed": [_mini_repo(r) for r in repos] if action == "removed" else [],
        "requester": None,
        "sender": _sender(st, sender, _default_actor(st, inst.account)),
    }


def repository(
    st: FakeState,
    repo: Repo,
    action: str,
    *,
    changes: Mapping[str, Any] | None = None,
    old_name: str | None = None,
    old_owner: str | User | None = None,
    installation: Installation | None = None,
    sender: str | User | None = None,
) -> dict[str, Any]:
    """`repository` event: created, edited, renamed, archived, unarchived, publicized,
    privatized, transferred, deleted. Arrange the state first (rename_repo, archive_repo, ...);
    old_name / old_owner fill `changes` for renamed / transferred.
    """
    payload: dict[str, Any] = {"action": action}
    change: dict[str, Any] = dict(changes or {})
    if action == "renamed" and old_name is not None:
        change = {"repository": {"name": {"from": old_name}}}
    if action == "transferred" and old_owner is not None:
        prev = old_owner if isinstance(old_owner, User) else st.user(old_owner)
        kind = "organization" if prev.type == "Organization" else "user"
        change = {"owner": {"from": {kind: render.user(st, prev)}}}
    if change or action in ("edited", "renamed", "transferred"):
        payload["changes"] = change
    payload.update(_repo_context(st, repo, installation))
    payload["sender"] = _sender(st, sender, _default_actor(st, repo.owner))
    return payload


def _commit(
    st: FakeState, repo: Repo, sha: str, pusher: User, files: Mapping[str, Sequence[str]],
    message: str,
) -> dict[str, Any]:
    ident = {
        "name": pusher.login,
        "email": f"{pusher.id}+{pusher.login}@users.noreply.github.com",
        "username": pusher.login,
    }
    return {
        "id": sha,
        "tree_id": git_trees(repo.commits[sha])[""].sha if sha in repo.commits
        else hashlib.sha1(f"tree:{sha}".encode()).hexdigest(),
        "distinct": True,
        "message": message,
        "timestamp": iso(time.time()),
        "url": f"{st.web_url}/{repo.full_name}/commit/{sha}",
        "author": ident,
        "committer": ident,
        "added": list(files.get("added", ())),
        "removed": list(files.get("removed", ())),
        "modified": list(files.get("modified", ())),
    }


def push(
    st: FakeState,
    repo: Repo,
    *,
    ref: str | None = None,
    before: str | None = None,
    after: str | None = None,
    added: Sequence[str] = (),
    modified: Sequence[str] = (),
    removed: Sequence[str] = (),
    commits: Sequence[Mapping[str, Any]] | None = None,
    message: str = "Update files",
    sender: str | User | None = None,
    installation: Installation | None = None,
) -> dict[str, Any]:
    """`push` event. Default ref is the default branch and `after` its current head sha.

    Either pass added/modified/removed (one commit), or `commits`: dicts with optional
    "added", "modified", "removed", "message" and "id" (the last one's id defaults to `after`).
    """
    branch_ref = ref or f"refs/heads/{repo.default_branch}"
    branch = branch_ref.removeprefix("refs/heads/")
    after = after or repo.heads.get(branch) or hashlib.sha1(
        f"{repo.id}:{branch_ref}".encode()
    ).hexdigest()
    before = before or hashlib.sha1(f"before:{after}".encode()).hexdigest()
    pusher = sender if isinstance(sender, User) else (
        st.user(sender) if sender else _default_actor(st, repo.owner)
    )
    specs = list(commits) if commits is not None else [
        {"added": added, "modified": modified, "removed": removed, "message": message}
    ]
    built: list[dict[str, Any]] = []
    for n, spec in enumerate(specs):
        last = n == len(specs) - 1
        sha = str(spec.get("id") or (
            after if last else hashlib.sha1(f"{after}:{n}".encode()).hexdigest()
        ))
        built.append(_commit(st, repo, sha, pusher, spec, str(spec.get("message", message))))
    ctx = _repo_context(st, repo, installation)
    push_repo = ctx.pop("repository")
    # Push payloads carry the repository in an older shape: epoch ints and owner name/email.
    push_repo.update(
        created_at=int(repo.created_at),
        pushed_at=int(repo.pushed_at),
        url=f"{st.web_url}/{repo.full_name}",
        stargazers=0,
        master_branch=repo.default_branch,
    )
    push_repo["owner"].update(name=repo.owner.login, email=None)
    payload: dict[str, Any] = {
        "ref": branch_ref,
        "before": before,
        "after": after,
        "repository": push_repo,
        "pusher": {"name": pusher.login,
                   "email": f"{pusher.id}+{pusher.login}@users.noreply.github.com"},
        "sender": render.user(st, pusher),
        "created": before == ZERO_SHA,
        "deleted": after == ZERO_SHA,
        "forced": False,
        "base_ref": None,
        "compare": f"{st.web_url}/{repo.full_name}/compare/{before[:12]}...{after[:12]}",
        "commits": built,
        "head_commit": built[-1] if built else None,
    }
    payload.update(ctx)
    return payload


def commit_and_push(
    st: FakeState,
    full_name: str,
    changes: Mapping[str, str | None],
    *,
    message: str = "Update files",
    sender: str | User | None = None,
) -> dict[str, Any]:
    """Apply file changes to the default branch (text, or None to delete) and return the
    matching `push` payload, so state and webhook cannot disagree."""
    repo = st.repo(full_name)
    before = repo.heads.get(repo.default_branch, ZERO_SHA)
    added: list[str] = []
    modified: list[str] = []
    removed: list[str] = []
    for path, text in changes.items():
        exists = path in repo.files
        if text is None:
            if exists:
                removed.append(path)
                st.delete_file(full_name, path)
        else:
            (modified if exists else added).append(path)
            st.set_file(full_name, path, text)
    return push(st, repo, before=before, added=added, modified=modified, removed=removed,
                message=message, sender=sender)


def _comment_obj(st: FakeState, comment: Comment | Mapping[str, Any] | int) -> Comment:
    if isinstance(comment, Comment):
        return comment
    ident = comment if isinstance(comment, int) else int(comment["id"])
    return st.comment(ident)


def issue_comment(
    st: FakeState,
    comment: Comment | Mapping[str, Any] | int,
    action: str = "created",
    *,
    previous_body: str | None = None,
    sender: str | User | None = None,
) -> dict[str, Any]:
    """`issue_comment` event for a comment in the state (a Comment, the dict returned by
    add_issue_comment, or its id). For "edited", previous_body fills changes.body.from."""
    c = _comment_obj(st, comment)
    issue: Issue = c.repo.issues[c.issue_number]
    payload: dict[str, Any] = {"action": action}
    if action == "edited":
        payload["changes"] = {"body": {"from": previous_body if previous_body is not None
                                       else c.body}}
    payload["issue"] = render.issue(st, issue)
    payload["comment"] = render.comment(st, c)
    payload.update(_repo_context(st, c.repo, None))
    payload["sender"] = _sender(st, sender, c.user)
    return payload


def issues(
    st: FakeState,
    issue: Issue,
    action: str,
    *,
    sender: str | User | None = None,
) -> dict[str, Any]:
    """`issues` event (closed, reopened, deleted, transferred, ...) for an issue in the
    state; the sender defaults to whoever closed it, else its author."""
    payload: dict[str, Any] = {"action": action, "issue": render.issue(st, issue)}
    payload.update(_repo_context(st, issue.repo, None))
    payload["sender"] = _sender(st, sender, issue.closed_by or issue.user)
    return payload


def installation_target(
    st: FakeState,
    inst: Installation,
    old_login: str,
    *,
    sender: str | User | None = None,
) -> dict[str, Any]:
    """`installation_target` "renamed": the installation's account changed its login."""
    account = render.user(st, inst.account)
    return {
        "action": "renamed",
        "account": {**account, "description": "", "website_url": None,
                    "archived_at": None, "has_organization_projects": True,
                    "has_repository_projects": True, "is_verified": False,
                    "public_repos": len(inst.repos), "followers": 0, "following": 0,
                    "created_at": iso(inst.account.created_at),
                    "updated_at": iso(time.time())},
        "changes": {"login": {"from": old_login}},
        "installation": _installation_ref(inst),
        "target_type": inst.account.type,
        "sender": _sender(st, sender, _default_actor(st, inst.account)),
    }


def ping(
    st: FakeState,
    *,
    url: str = "http://127.0.0.1:3000/api/github/webhooks",
    events: Sequence[str] | None = None,
) -> dict[str, Any]:
    """`ping` sent when the App's webhook is set up (hook type "App", no repository)."""
    now = iso(time.time())
    return {
        "zen": "Anything added dilutes everything else.",
        "hook_id": HOOK_ID,
        "hook": {
            "type": "App",
            "id": HOOK_ID,
            "name": "web",
            "active": True,
            "events": list(events or ["issue_comment", "push", "repository"]),
            "config": {"content_type": "json", "insecure_ssl": "0", "url": url},
            "updated_at": now,
            "created_at": now,
            "app_id": st.app_id,
            "deliveries_url": f"{st.api_url}/app/hook/deliveries",
        },
        "sender": render.user(st, st.app_owner),
    }


# ----------------------------------------------------------------------------- source events
# Events after which what the App's sources read is stale (branch rules, access, security).
# Arrange the state first (FakeState.protect_branch, add_ruleset, set_permission, ...); for an
# edit, pass the object as it was (`previous`: the state replaces, never changes, these).
def _installation_of(st: FakeState, account: User,
                     installation: Installation | None) -> dict[str, Any]:
    if installation is None:
        installation = next((i for i in st.installations.values() if i.account is account),
                            None)
    return {"installation": _installation_ref(installation)} if installation else {}


def _level(on: bool, rule: BranchProtection) -> str:
    return ("everyone" if rule.enforce_admins else "non_admins") if on else "off"


def protection_rule(st: FakeState, repo: Repo, rule: BranchProtection) -> dict[str, Any]:
    """A classic protection rule as branch_protection_rule events carry it ("off" /
    "non_admins" / "everyone"; an allowed force push or deletion is "everyone")."""
    return {
        "id": rule.id,
        "repository_id": repo.id,
        "name": rule.pattern,
        "created_at": iso(rule.created_at),
        "updated_at": iso(rule.updated_at),
        "pull_request_reviews_enforcement_level":
            _level(rule.required_approving_review_count is not None, rule),
        "required_approving_review_count": rule.required_approving_review_count or 0,
        "dismiss_stale_reviews_on_push": rule.dismiss_stale_reviews,
        "require_code_owner_review": rule.require_code_owner_reviews,
        "authorized_dismissal_actors_only": False,
        "ignore_approvals_from_contributors": False,
        "required_status_checks": list(rule.required_status_checks or []),
        "required_status_checks_enforcement_level":
            _level(rule.required_status_checks is not None, rule),
        "strict_required_status_checks_policy": rule.strict,
        "signature_requirement_enforcement_level": _level(rule.required_signatures, rule),
        "linear_history_requirement_enforcement_level":
            _level(rule.required_linear_history, rule),
        "admin_enforced": rule.enforce_admins,
        "create_protected": rule.block_creations,
        "allow_force_pushes_enforcement_level": "everyone" if rule.allow_force_pushes else "off",
        "allow_deletions_enforcement_level": "everyone" if rule.allow_deletions else "off",
        "merge_queue_enforcement_level": "off",
        "required_deployments_enforcement_level": "off",
        "required_conversation_resolution_level":
            _level(rule.required_conversation_resolution, rule),
        "authorized_actors_only": False,
        "authorized_actor_names": [],
        "require_last_push_approval": rule.require_last_push_approval,
        "lock_branch_enforcement_level": _level(rule.lock_branch, rule),
        "lock_allows_fork_sync": False,
    }


def branch_protection_rule(
    st: FakeState,
    repo: Repo,
    rule: BranchProtection,
    action: str,
    *,
    previous: BranchProtection | None = None,
    sender: str | User | None = None,
    installation: Installation | None = None,
) -> dict[str, Any]:
    """`branch_protection_rule` event: created, edited (`changes`: what differs from
    `previous`) or deleted (the rule unprotect_branch returned)."""
    payload: dict[str, Any] = {"action": action, "rule": protection_rule(st, repo, rule)}
    if action == "edited":
        before = protection_rule(st, repo, previous) if previous is not None else {}
        payload["changes"] = {k: {"from": v} for k, v in before.items()
                              if k != "updated_at" and payload["rule"][k] != v}
    payload.update(_repo_context(st, repo, installation))
    payload["sender"] = _sender(st, sender, _default_actor(st, repo.owner))
    return payload


def _ruleset_changes(old: Ruleset, new: Ruleset) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if old.name != new.name:
        changes["name"] = {"from": old.name}
    if old.enforcement != new.enforcement:
        changes["enforcement"] = {"from": old.enforcement}
    conditions: dict[str, list[Any]] = {"added": [], "deleted": [], "updated": []}
    for key in dict.fromkeys([*old.conditions, *new.conditions]):
        was, now = old.conditions.get(key), new.conditions.get(key)
        if was == now:
            continue
        if was is None:
            conditions["added"].append({key: now})
        elif now is None:
            conditions["deleted"].append({key: was})
        else:
            conditions["updated"].append({
                "condition": {key: now},
                "changes": {k: {"from": was.get(k)} for k in ("include", "exclude")
                            if was.get(k) != now.get(k)}})
    if any(conditions.values()):
        changes["conditions"] = conditions
    was_rules = {r["type"]: r for r in old.rules}
    now_rules = {r["type"]: r for r in new.rules}
    rules: dict[str, list[Any]] = {
        "added": [r for t, r in now_rules.items() if t not in was_rules],
        "deleted": [r for t, r in was_rules.items() if t not in now_rules],
        "updated": [{"rule": r, "changes": {"configuration": {
            "from": json.dumps(was_rules[t].get("parameters"))}}}
            for t, r in now_rules.items() if t in was_rules and was_rules[t] != r],
    }
    if any(rules.values()):
        changes["rules"] = rules
    return changes


def repository_ruleset(
    st: FakeState,
    ruleset: Ruleset,
    action: str,
    *,
    previous: Ruleset | None = None,
    sender: str | User | None = None,
    installation: Installation | None = None,
) -> dict[str, Any]:
    """`repository_ruleset` event: created, edited (`changes` from `previous`) or deleted.
    An organization's ruleset has no `repository`."""
    from tests.fakegithub.repo_rules import ruleset_json  # it imports this module

    payload: dict[str, Any] = {"action": action,
                               "repository_ruleset": ruleset_json(st, ruleset)}
    if action == "edited" and previous is not None:
        payload["changes"] = _ruleset_changes(previous, ruleset)
    if ruleset.repo is not None:
        owner = ruleset.repo.owner
        payload.update(_repo_context(st, ruleset.repo, installation))
    else:
        assert ruleset.org is not None
        owner = ruleset.org
        payload["organization"] = _organization(st, owner)
        payload.update(_installation_of(st, owner, installation))
    payload["sender"] = _sender(st, sender, _default_actor(st, owner))
    return payload


# The `permission` webhooks name: maintain counts as write, triage as read.
_HOOK_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read",
                    "read": "read"}


def member(
    st: FakeState,
    repo: Repo,
    login: str,
    action: str,
    *,
    old_permission: str | None = None,
    sender: str | User | None = None,
    installation: Installation | None = None,
) -> dict[str, Any]:
    """`member` event: a direct collaborator added (their role as in the state), edited
    (`old_permission`: the role before) or removed."""
    role = repo.collaborators.get(login.lower(), "none")
    payload: dict[str, Any] = {"action": action, "member": render.user(st, st.user(login))}
    if action == "added":
        payload["changes"] = {"permission": {"to": _HOOK_PERMISSION.get(role, role)},
                              "role_name": {"to": role}}
    elif action == "edited":
        was = old_permission or role
        payload["changes"] = {"old_permission": {"from": was},
                              "permission": {"from": _HOOK_PERMISSION.get(was, was),
                                             "to": _HOOK_PERMISSION.get(role, role)}}
    payload.update(_repo_context(st, repo, installation))
    payload["sender"] = _sender(st, sender, _default_actor(st, repo.owner))
    return payload


def _role_flags(role: str | None) -> dict[str, bool]:
    rank = PERMISSION_LEVELS.index(role) if role else len(PERMISSION_LEVELS)
    return {"admin": rank <= 0, "maintain": rank <= 1, "push": rank <= 2, "triage": rank <= 3,
            "pull": rank <= 4}


def team(
    st: FakeState,
    team: Team,
    action: str,
    *,
    repo: Repo | None = None,
    old_permission: str | None = None,
    changes: Mapping[str, Any] | None = None,
    sender: str | User | None = None,
    installation: Installation | None = None,
) -> dict[str, Any]:
    """`team` event: added_to_repository / removed_from_repository (`repo`; arrange
    add_team_access / remove_team_access first), or edited: the team's own fields
    (`changes`), or its role on `repo` (`old_permission`: the role before)."""
    from tests.fakegithub.repo_rules import team_json  # it imports this module

    role = repo.team_access.get(team.slug) if repo is not None else None
    body = team_json(st, team, role or "read")
    for key in ("permissions", "type", "organization_id"):
        body.pop(key)
    payload: dict[str, Any] = {"action": action, "team": body}
    change: dict[str, Any] = dict(changes or {})
    if action == "edited" and repo is not None and old_permission is not None:
        change["repository"] = {"permissions": {"from": _role_flags(old_permission)}}
    if action == "edited":
        payload["changes"] = change
    if repo is not None:
        payload.update(_repo_context(st, repo, installation))
        payload["repository"]["permissions"] = _role_flags(role)
    else:
        payload.update(_installation_of(st, team.org, installation))
    payload["organization"] = _organization(st, team.org)
    payload["sender"] = _sender(st, sender, _default_actor(st, team.org))
    return payload


def security_and_analysis(
    st: FakeState,
    repo: Repo,
    previous: SecuritySettings,
    *,
    sender: str | User | None = None,
    installation: Installation | None = None,
) -> dict[str, Any]:
    """`security_and_analysis` event (it has no action): `previous` is `repo.security` as
    it was before set_security; the repository carries the settings now."""
    from tests.fakegithub.repo_rules import security_and_analysis as shown

    payload: dict[str, Any] = {
        "changes": {"from": {"security_and_analysis": shown(repo, previous)}}}
    payload.update(_repo_context(st, repo, installation))
    payload["repository"]["security_and_analysis"] = shown(repo)
    payload["sender"] = _sender(st, sender, _default_actor(st, repo.owner))
    return payload


def custom_property_values(
    st: FakeState,
    repo: Repo,
    previous: Mapping[str, Any],
    *,
    sender: str | User | None = None,
    installation: Installation | None = None,
) -> dict[str, Any]:
    """`custom_property_values` "updated": the properties that changed since `previous`
    (`repo.custom_properties` before set_custom_properties), old and new."""
    now = repo.custom_properties
    changed = [n for n in dict.fromkeys([*previous, *now]) if previous.get(n) != now.get(n)]
    payload: dict[str, Any] = {
        "action": "updated",
        "new_property_values": [{"property_name": n, "value": now.get(n)} for n in changed],
        "old_property_values": [{"property_name": n, "value": previous.get(n)}
                                for n in changed],
    }
    payload.update(_repo_context(st, repo, installation))
    payload["sender"] = _sender(st, sender, _default_actor(st, repo.owner))
    return payload
