"""REST endpoints of the fake GitHub that write code: git refs, file contents, and opening
and editing pull requests (the reading routes are in server.py and checks.py). Imported by
server.create_app, which registers every route.

As strict as GitHub: writing refs and contents needs the installation's `contents: write`,
opening or editing a pull request `pull_requests: write` (403 "Resource not accessible by
integration" otherwise); an archived repository answers 403; an existing ref 422
"Reference already exists"; a contents update without the file's blob `sha` 422, with a
stale one 409; a second open pull request for the same head 422; a branch a ruleset
protects (`restrict_branch`) refuses creation and pushes with 422 "Repository rule
violations found".
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import time
import weakref
from typing import Any

from aiohttp import web

from tests.fakegithub import pulls
from tests.fakegithub.checks import _require
from tests.fakegithub.server import (
    GitHubError,
    body_json,
    get_repo,
    json_response,
    not_found,
    route,
    state_of,
    validation_failed,
    writable,
)
from tests.fakegithub.state import FakeState, Repo, git_blob_sha, node_id

# repository id -> branch name globs a ruleset restricts (creation, update).
_RULESETS: weakref.WeakKeyDictionary[FakeState, dict[int, list[str]]] = \
    weakref.WeakKeyDictionary()


def restrict_branch(st: FakeState, full_name: str, pattern: str) -> None:
    """A ruleset on `full_name` that restricts creating and updating branches matching
    `pattern` (fnmatch glob), for every actor including the App."""
    rules = _RULESETS.setdefault(st, {})
    rules.setdefault(st.repo(full_name).id, []).append(pattern)


def _ruleset_check(st: FakeState, repo: Repo, branch: str, what: str) -> None:
    for pattern in _RULESETS.get(st, {}).get(repo.id, []):
        if fnmatch.fnmatchcase(branch, pattern):
            raise GitHubError(422, f"Repository rule violations found\n\nCannot {what} this "
                                   "ref due to a restriction on its name.\n\n")


def _render_ref(st: FakeState, repo: Repo, branch: str) -> dict[str, Any]:
    sha = repo.heads[branch]
    api = f"{st.api_url}/repos/{repo.full_name}"
    return {
        "ref": f"refs/heads/{branch}",
        "node_id": node_id("Ref", hash((repo.id, branch)) & 0xFFFFFFF),
        "url": f"{api}/git/refs/heads/{branch}",
        "object": {"sha": sha, "type": "commit", "url": f"{api}/git/commits/{sha}"},
    }


def _sync_pulls(st: FakeState, repo: Repo, branch: str) -> None:
    """Open pull requests from `branch` follow its head, as on GitHub."""
    for pr in pulls.pulls_of(st, repo):
        if pr.head_repo is repo and pr.head_ref == branch and pr.state == "open":
            pr.head_sha = repo.heads[branch]
            pr.issue.updated_at = time.time()


def _nonempty(repo: Repo) -> Repo:
    if not repo.heads:
        raise GitHubError(409, "Git Repository is empty.")
    return repo


# ----------------------------------------------------------------------------- refs
@route("GET", "/repos/{owner}/{repo}/git/ref/heads/{branch:.+}",
       doc="https://docs.github.com/rest/git/refs#get-a-reference")
async def get_ref(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = _nonempty(get_repo(request))
    _require(request, "contents", "read")
    branch = request.match_info["branch"]
    if branch not in repo.heads:
        raise not_found()
    return json_response(_render_ref(st, repo, branch))


@route("POST", "/repos/{owner}/{repo}/git/refs",
       doc="https://docs.github.com/rest/git/refs#create-a-reference", creates_content=True)
async def create_ref(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = _nonempty(writable(get_repo(request)))
    _require(request, "contents", "write")
    body = await body_json(request)
    ref, sha = body.get("ref"), body.get("sha")
    if not isinstance(ref, str):
        raise GitHubError(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
    if not isinstance(sha, str):
        raise GitHubError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
    if not ref.startswith("refs/") or ref.count("/") < 2:
        raise GitHubError(422, "Reference name must start with 'refs/' and have at least "
                               "two slashes.")
    if not ref.startswith("refs/heads/"):
        raise GitHubError(422, "Only branch references are supported by this fake")
    branch = ref.removeprefix("refs/heads/")
    if branch in repo.heads:
        raise GitHubError(422, "Reference already exists")
    found = repo.commit(sha) if len(sha) == 40 else None
    if found is None:
        raise GitHubError(422, "Object does not exist")
    _ruleset_check(st, repo, branch, "create")
    repo.branches[branch] = dict(found[1])
    repo.heads[branch] = found[0]
    data = _render_ref(st, repo, branch)
    return json_response(data, 201, {"Location": data["url"]})


@route("PATCH", "/repos/{owner}/{repo}/git/refs/heads/{branch:.+}",
       doc="https://docs.github.com/rest/git/refs#update-a-reference")
async def update_ref(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = _nonempty(writable(get_repo(request)))
    _require(request, "contents", "write")
    branch = request.match_info["branch"]
    body = await body_json(request)
    sha = body.get("sha")
    if not isinstance(sha, str):
        raise GitHubError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
    if branch not in repo.heads:
        raise GitHubError(422, "Reference does not exist")
    found = repo.commit(sha) if len(sha) == 40 else None
    if found is None:
        raise GitHubError(422, "Object does not exist")
    # The fake keeps no commit graph: only a move to the same commit is a fast forward.
    if not body.get("force") and found[0] != repo.heads[branch]:
        raise GitHubError(422, "Update is not a fast forward")
    _ruleset_check(st, repo, branch, "update")
    repo.branches[branch] = dict(found[1])
    repo.heads[branch] = found[0]
    _sync_pulls(st, repo, branch)
    return json_response(_render_ref(st, repo, branch))


# ----------------------------------------------------------------------------- contents
@route("PUT", "/repos/{owner}/{repo}/contents/{path:.+}",
       doc="https://docs.github.com/rest/repos/contents#create-or-update-file-contents",
       creates_content=True)
async def put_contents(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = _nonempty(writable(get_repo(request)))
    _require(request, "contents", "write")
    path = request.match_info["path"].strip("/")
    body = await body_json(request)
    for key in ("message", "content"):
        if not isinstance(body.get(key), str):
            raise GitHubError(422, f'Invalid request.\n\n"{key}" wasn\'t supplied.')
    try:
        text = base64.b64decode(body["content"], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise GitHubError(422, "content is not valid Base64") from None
    branch = body.get("branch") or repo.default_branch
    if not isinstance(branch, str) or branch not in repo.heads:
        raise GitHubError(404, f"Branch {branch} not found")
    files = repo.branches[branch]
    existing = files.get(path)
    sha = body.get("sha")
    if existing is not None:
        if sha is None:
            raise GitHubError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
        if sha != git_blob_sha(existing.encode()):
            raise GitHubError(409, f"{path} does not match {sha}")
    elif sha is not None:
        raise GitHubError(409, f"{path} does not match {sha}")
    _ruleset_check(st, repo, branch, "update")
    head = pulls.commit(st, repo.full_name, branch, {path: text})
    _sync_pulls(st, repo, branch)
    blob = git_blob_sha(text.encode())
    api = f"{st.api_url}/repos/{repo.full_name}"
    return json_response({
        "content": {"name": path.rsplit("/", 1)[-1], "path": path, "sha": blob,
                    "size": len(text.encode()), "type": "file",
                    "url": f"{api}/contents/{path}?ref={branch}"},
        "commit": {"sha": head, "url": f"{api}/git/commits/{head}",
                   "message": body["message"]},
    }, 200 if existing is not None else 201)


# ----------------------------------------------------------------------------- pulls
@route("POST", "/repos/{owner}/{repo}/pulls",
       doc="https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
       creates_content=True)
async def create_pull(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = writable(get_repo(request))
    _require(request, "pull_requests", "write")
    body = await body_json(request)
    for key in ("head", "base"):
        if not isinstance(body.get(key), str):
            raise GitHubError(422, f'Invalid request.\n\n"{key}" wasn\'t supplied.')
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        raise validation_failed("PullRequest", "title", "missing_field")
    owner, _, head = body["head"].rpartition(":")
    if owner and owner.lower() != repo.owner.login.lower():
        raise validation_failed("PullRequest", "head", "invalid")  # forks: not needed here
    base = body["base"]
    if head not in repo.heads:
        raise validation_failed("PullRequest", "head", "invalid")
    if base not in repo.heads:
        raise validation_failed("PullRequest", "base", "invalid")
    for pr in pulls.pulls_of(st, repo):
        if pr.state == "open" and pr.head_repo is repo and pr.head_ref == head \
                and pr.base_ref == base:
            raise GitHubError(422, "Validation Failed", errors=[{
                "resource": "PullRequest", "code": "custom",
                "message": f"A pull request already exists for {repo.owner.login}:{head}."}])
    if repo.branches.get(head) == repo.branches.get(base):
        raise GitHubError(422, "Validation Failed", errors=[{
            "resource": "PullRequest", "code": "custom",
            "message": f"No commits between {base} and {head}"}])
    text = body.get("body")
    issue = st.add_issue(repo.full_name, title, text if isinstance(text, str) else None)
    issue.pull_request = True
    pr = pulls.PullRequest(id=next(pulls.store(st).ids), issue=issue, base_ref=base,
                           base_sha=repo.heads[base], head_repo=repo, head_ref=head,
                           head_sha=repo.heads[head], draft=bool(body.get("draft")))
    pulls.store(st).pulls[(repo.id, issue.number)] = pr
    data = pulls.render_pull(st, pr)
    return json_response(data, 201, {"Location": data["url"]})


@route("PATCH", "/repos/{owner}/{repo}/pulls/{number}",
       doc="https://docs.github.com/rest/pulls/pulls#update-a-pull-request")
async def update_pull(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = writable(get_repo(request))
    _require(request, "pull_requests", "write")
    try:
        pr = pulls.store(st).pulls.get((repo.id, int(request.match_info["number"])))
    except ValueError:
        pr = None
    if pr is None:
        raise not_found()
    body = await body_json(request)
    if "title" in body:
        if not isinstance(body["title"], str) or not body["title"].strip():
            raise validation_failed("PullRequest", "title", "missing_field")
        pr.issue.title = body["title"]
    if "body" in body:
        if body["body"] is not None and not isinstance(body["body"], str):
            raise validation_failed("PullRequest", "body", "invalid")
        pr.issue.body = body["body"]
    if "state" in body:
        if body["state"] not in ("open", "closed"):
            raise validation_failed("PullRequest", "state", "invalid")
        if body["state"] == "closed" and pr.state == "open":
            pulls.close_pull(st, pr)
        elif body["state"] == "open" and pr.state == "closed" and not pr.merged:
            pr.issue.state, pr.issue.closed_at = "open", None
    pr.issue.updated_at = time.time()
    return json_response(pulls.render_pull(st, pr))
