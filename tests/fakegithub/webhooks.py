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
    Comment,
    FakeState,
    Installation,
    Issue,
    Repo,
    User,
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
        "tree_id": hashlib.sha1(f"tree:{sha}".encode()).hexdigest(),
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
