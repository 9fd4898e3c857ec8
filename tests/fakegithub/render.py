"""JSON renderings of the fake's objects, in the shapes of GitHub's REST description.

The key sets and URL layouts come from templated fixtures (fixtures/*.json) that were trimmed
from the examples in @octokit/openapi; `<api>`, `<web>`, `<owner>`, ... are filled per object.
"""

from __future__ import annotations

import base64
import copy
import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.fakegithub.state import (
    Comment,
    FakeState,
    Installation,
    Issue,
    Label,
    ManifestConversion,
    OrgMembership,
    Reaction,
    Repo,
    Team,
    User,
    git_blob_sha,
    iso,
    node_id,
)

FIXTURES = Path(__file__).parent / "fixtures"
RAW_URL = "https://raw.githubusercontent.com"
MAX_INLINE_CONTENT = 1024 * 1024


@cache
def _template(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def _fill(obj: Any, subs: dict[str, str]) -> Any:
    if isinstance(obj, dict):
        return {k: _fill(v, subs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fill(v, subs) for v in obj]
    if isinstance(obj, str) and "<" in obj:
        for token, value in subs.items():
            obj = obj.replace(token, value)
    return obj


def from_template(name: str, subs: dict[str, str]) -> dict[str, Any]:
    filled: dict[str, Any] = _fill(copy.deepcopy(_template(name)), subs)
    return filled


def _base(st: FakeState) -> dict[str, str]:
    return {"<api>": st.api_url, "<web>": st.web_url}


def user(st: FakeState, u: User) -> dict[str, Any]:
    login = quote(u.login, safe="")
    d = from_template("user.json", {**_base(st), "<login>": login, "<id>": str(u.id)})
    d.update(login=u.login, id=u.id, node_id=node_id(u.type, u.id), type=u.type,
             site_admin=u.site_admin)
    if u.type == "Bot" and u.login.endswith("[bot]"):
        d["html_url"] = f"{st.web_url}/apps/{u.login.removesuffix('[bot]')}"
    return d


def private_user(st: FakeState, u: User) -> dict[str, Any]:
    """GET /user: the authenticated user's own view (public and private profile fields)."""
    d = user(st, u)
    d.update(
        name=u.name,
        company=None,
        blog="",
        location=None,
        email=u.email,
        hireable=None,
        bio=None,
        twitter_username=None,
        notification_email=u.email,
        public_repos=sum(1 for r in st.repos.values() if r.owner is u and not r.private),
        public_gists=0,
        followers=0,
        following=0,
        created_at=iso(u.created_at),
        updated_at=iso(u.created_at),
        private_gists=0,
        total_private_repos=sum(1 for r in st.repos.values() if r.owner is u and r.private),
        owned_private_repos=sum(1 for r in st.repos.values() if r.owner is u and r.private),
        disk_usage=0,
        collaborators=0,
        two_factor_authentication=True,
        plan={"name": "free", "space": 976562499, "collaborators": 0, "private_repos": 10000},
    )
    return d


def organization_simple(st: FakeState, org: User) -> dict[str, Any]:
    api = f"{st.api_url}/orgs/{quote(org.login, safe='')}"
    return {
        "login": org.login,
        "id": org.id,
        "node_id": node_id("Organization", org.id),
        "url": api,
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events",
        "hooks_url": f"{api}/hooks",
        "issues_url": f"{api}/issues",
        "members_url": f"{api}/members{{/member}}",
        "public_members_url": f"{api}/public_members{{/member}}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{org.id}?v=4",
        "description": None,
    }


def org_membership(st: FakeState, m: OrgMembership) -> dict[str, Any]:
    org = quote(m.org.login, safe="")
    return {
        "url": f"{st.api_url}/orgs/{org}/memberships/{quote(m.user.login, safe='')}",
        "state": m.state,
        "role": m.role,
        "organization_url": f"{st.api_url}/orgs/{org}",
        "organization": organization_simple(st, m.org),
        "user": user(st, m.user),
    }


def team_membership(st: FakeState, team: Team, u: User, role: str,
                    state: str = "active") -> dict[str, Any]:
    return {
        "url": f"{st.api_url}/organizations/{team.org.id}/team/{team.id}/memberships/"
               f"{quote(u.login, safe='')}",
        "role": role,
        "state": state,
    }


def manifest_app(st: FakeState, conv: ManifestConversion, created_at: float) -> dict[str, Any]:
    """POST /app-manifests/{code}/conversions: the App, its credentials and its key."""
    m = conv.manifest
    permissions = {"metadata": "read"}
    raw_permissions = m.get("default_permissions")
    if isinstance(raw_permissions, dict):
        permissions.update({str(k): str(v) for k, v in raw_permissions.items()})
    events = m.get("default_events")
    description = m.get("description")
    return {
        "id": st.app_id,
        "slug": st.app_slug,
        "node_id": node_id("Integration", st.app_id),
        "client_id": st.client_id,
        "owner": user(st, conv.owner),
        "name": conv.name,
        "description": description if isinstance(description, str) else "",
        "external_url": str(m.get("url", "")),
        "html_url": f"{st.web_url}/apps/{st.app_slug}",
        "created_at": iso(created_at),
        "updated_at": iso(created_at),
        "permissions": permissions,
        "events": [str(e) for e in events] if isinstance(events, list) else [],
        "client_secret": st.client_secret,
        "webhook_secret": conv.webhook_secret,
        "pem": st.private_key_pem,
    }


def author_association(st: FakeState, repo: Repo, u: User) -> str:
    if u is repo.owner:
        return "OWNER"
    perm = repo.collaborators.get(u.login.lower(), "none")
    if perm == "none":
        return "NONE"
    return "MEMBER" if repo.owner.type == "Organization" else "COLLABORATOR"


def repo(st: FakeState, r: Repo) -> dict[str, Any]:
    d = from_template("repository.json", {**_base(st), "<owner>": r.owner.login, "<repo>": r.name})
    open_issues = r.open_issues_count()
    d.update(
        id=r.id,
        node_id=node_id("Repository", r.id),
        name=r.name,
        full_name=r.full_name,
        owner=user(st, r.owner),
        private=r.private,
        visibility=r.visibility,
        description=r.description,
        fork=r.fork,
        archived=r.archived,
        disabled=r.disabled,
        is_template=r.is_template,
        has_issues=r.has_issues,
        default_branch=r.default_branch,
        topics=list(r.topics),
        open_issues_count=open_issues,
        open_issues=open_issues,
        created_at=iso(r.created_at),
        updated_at=iso(r.updated_at),
        pushed_at=iso(r.pushed_at),
        permissions={"admin": False, "maintain": False, "push": True, "triage": True,
                     "pull": True},
    )
    return d


def label(st: FakeState, r: Repo, lab: Label) -> dict[str, Any]:
    return {
        "id": lab.id,
        "node_id": node_id("Label", lab.id),
        "url": f"{st.api_url}/repos/{r.full_name}/labels/{quote(lab.name, safe='')}",
        "name": lab.name,
        "color": lab.color,
        "default": lab.default,
        "description": lab.description,
    }


def reactions_summary(url: str, reactions: list[Reaction]) -> dict[str, Any]:
    summary: dict[str, Any] = {"url": url, "total_count": len(reactions)}
    for content in ("+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes"):
        summary[content] = sum(1 for r in reactions if r.content == content)
    return summary


def app(st: FakeState) -> dict[str, Any]:
    d = from_template("app.json", _base(st))
    d.update(
        id=st.app_id,
        slug=st.app_slug,
        client_id=st.app_client_id,
        node_id=node_id("Integration", st.app_id),
        owner=user(st, st.app_owner),
        name=st.app_name,
        description="Enforces repository policies.",
        external_url=f"{st.web_url}/{st.app_owner.login}",
        html_url=f"{st.web_url}/apps/{st.app_slug}",
        created_at=iso(st.created_at),
        updated_at=iso(st.created_at),
        permissions={"actions": "read", "administration": "read", "contents": "read",
                     "issues": "write", "metadata": "read"},
        events=["issue_comment", "push", "repository"],
        installations_count=len(st.installations),
    )
    return d


def installation(st: FakeState, inst: Installation) -> dict[str, Any]:
    d = from_template("installation.json", _base(st))
    acct = inst.account
    html = (
        f"{st.web_url}/organizations/{acct.login}/settings/installations/{inst.id}"
        if acct.type == "Organization"
        else f"{st.web_url}/settings/installations/{inst.id}"
    )
    d.update(
        id=inst.id,
        account=user(st, acct),
        repository_selection=inst.repository_selection,
        access_tokens_url=f"{st.api_url}/app/installations/{inst.id}/access_tokens",
        repositories_url=f"{st.api_url}/installation/repositories",
        html_url=html,
        app_id=st.app_id,
        app_slug=st.app_slug,
        client_id=st.app_client_id,
        target_id=acct.id,
        target_type=acct.type,
        permissions=dict(inst.permissions),
        events=list(inst.events),
        single_file_name=None,
        has_multiple_single_files=False,
        single_file_paths=[],
        created_at=iso(inst.created_at),
        updated_at=iso(inst.updated_at),
        suspended_at=iso(inst.suspended_at) if inst.suspended_at else None,
        suspended_by=user(st, inst.suspended_by) if inst.suspended_by else None,
    )
    return d


def issue(st: FakeState, i: Issue) -> dict[str, Any]:
    r = i.repo
    d = from_template(
        "issue.json",
        {**_base(st), "<owner>": r.owner.login, "<repo>": r.name, "<number>": str(i.number)},
    )
    base = f"{st.api_url}/repos/{r.full_name}/issues/{i.number}"
    d.update(
        id=i.id,
        node_id=node_id("Issue", i.id),
        number=i.number,
        title=i.title,
        body=i.body,
        user=user(st, i.user),
        labels=[label(st, r, r.labels[n.lower()]) for n in i.labels if n.lower() in r.labels],
        state=i.state,
        state_reason=i.state_reason,
        locked=i.locked,
        comments=len(i.comments),
        created_at=iso(i.created_at),
        updated_at=iso(i.updated_at),
        closed_at=iso(i.closed_at) if i.closed_at else None,
        closed_by=user(st, i.closed_by) if i.closed_by else None,
        author_association=author_association(st, r, i.user),
        performed_via_github_app=app(st) if i.via_app else None,
        timeline_url=f"{base}/timeline",
        reactions=reactions_summary(f"{base}/reactions", []),
    )
    if i.pull_request:  # GitHub's issue view of a pull request
        html = f"{st.web_url}/{r.full_name}/pull/{i.number}"
        d["pull_request"] = {"url": f"{st.api_url}/repos/{r.full_name}/pulls/{i.number}",
                             "html_url": html, "diff_url": f"{html}.diff",
                             "patch_url": f"{html}.patch", "merged_at": None}
        d["html_url"] = html
    return d


def comment(st: FakeState, c: Comment) -> dict[str, Any]:
    r = c.repo
    d = from_template(
        "issue_comment.json",
        {**_base(st), "<owner>": r.owner.login, "<repo>": r.name,
         "<number>": str(c.issue_number), "<id>": str(c.id)},
    )
    d.update(
        id=c.id,
        node_id=node_id("IssueComment", c.id),
        body=c.body,
        user=user(st, c.user),
        created_at=iso(c.created_at),
        updated_at=iso(c.updated_at),
        author_association=author_association(st, r, c.user),
        performed_via_github_app=app(st) if c.via_app else None,
        reactions=reactions_summary(f"{d['url']}/reactions", c.reactions),
    )
    return d


def reaction(st: FakeState, x: Reaction) -> dict[str, Any]:
    return {
        "id": x.id,
        "node_id": node_id("Reaction", x.id),
        "user": user(st, x.user),
        "content": x.content,
        "created_at": iso(x.created_at),
    }


def _links(url: str, git_url: str, html_url: str) -> dict[str, str]:
    return {"self": url, "git": git_url, "html": html_url}


def content_file(st: FakeState, r: Repo, path: str, text: str, ref: str) -> dict[str, Any]:
    data = text.encode()
    sha = git_blob_sha(data)
    if len(data) > MAX_INLINE_CONTENT:
        # GitHub omits content over 1 MB: encoding "none", empty content; ask for raw instead.
        encoding, wrapped = "none", ""
    else:
        b64 = base64.b64encode(data).decode()
        # GitHub wraps the base64 at 60 characters, each line newline-terminated.
        encoding = "base64"
        wrapped = "".join(b64[i : i + 60] + "\n" for i in range(0, len(b64), 60))
    qpath = quote(path)
    url = f"{st.api_url}/repos/{r.full_name}/contents/{qpath}?ref={quote(ref, safe='')}"
    git_url = f"{st.api_url}/repos/{r.full_name}/git/blobs/{sha}"
    html_url = f"{st.web_url}/{r.full_name}/blob/{ref}/{qpath}"
    return {
        "type": "file",
        "encoding": encoding,
        "size": len(data),
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "content": wrapped,
        "sha": sha,
        "url": url,
        "git_url": git_url,
        "html_url": html_url,
        "download_url": f"{RAW_URL}/{r.full_name}/{ref}/{qpath}",
        "_links": _links(url, git_url, html_url),
    }


def content_entry(
    st: FakeState, r: Repo, path: str, kind: str, text: str | None, ref: str
) -> dict[str, Any]:
    """One entry of a directory listing (no content), "file" or "dir"."""
    data = (text or "").encode()
    sha = git_blob_sha(data) if kind == "file" else git_blob_sha(path.encode())
    qpath = quote(path)
    url = f"{st.api_url}/repos/{r.full_name}/contents/{qpath}?ref={quote(ref, safe='')}"
    git_kind = "blobs" if kind == "file" else "trees"
    git_url = f"{st.api_url}/repos/{r.full_name}/git/{git_kind}/{sha}"
    html_url = f"{st.web_url}/{r.full_name}/{'blob' if kind == 'file' else 'tree'}/{ref}/{qpath}"
    return {
        "type": kind,
        "size": len(data) if kind == "file" else 0,
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "sha": sha,
        "url": url,
        "git_url": git_url,
        "html_url": html_url,
        "download_url": f"{RAW_URL}/{r.full_name}/{ref}/{qpath}" if kind == "file" else None,
        "_links": _links(url, git_url, html_url),
    }
