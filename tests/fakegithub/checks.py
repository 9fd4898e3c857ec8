"""REST endpoints of the fake GitHub for pull requests and check runs (state and renderings:
tests/fakegithub/pulls.py). Imported by server.create_app, which registers every route.

As strict as GitHub: check runs need the installation's `checks: write` (reading them
`checks: read`), pull requests `pull_requests: read`; a check run needs a name and a
commit the repository has, a completed one a conclusion, an output a title and a summary
of at most 65535 characters; an App changes only its own check runs.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from tests.fakegithub import pulls
from tests.fakegithub.server import (
    GitHubError,
    body_json,
    caller_of,
    get_repo,
    json_response,
    not_found,
    paginate,
    route,
    state_of,
    validation_failed,
    writable,
)
from tests.fakegithub.state import Repo

FORBIDDEN = "Resource not accessible by integration"


def _require(request: web.Request, permission: str, level: str) -> None:
    """The installation token grants `permission` at `level` (write implies read)."""
    caller = caller_of(request)
    granted = caller.token.permissions.get(permission) if caller.token is not None else None
    if granted == "write" or (level == "read" and granted == "read"):
        return
    raise GitHubError(403, FORBIDDEN)


# ----------------------------------------------------------------------------- pulls
@route("GET", "/repos/{owner}/{repo}/pulls",
       doc="https://docs.github.com/rest/pulls/pulls#list-pull-requests")
async def list_pulls(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    _require(request, "pull_requests", "read")
    q = request.query
    state = q.get("state", "open")
    if state not in ("open", "closed", "all"):
        raise validation_failed("PullRequest", "state", "invalid")
    found = [p for p in pulls.pulls_of(st, repo) if state == "all" or p.state == state]
    if head := q.get("head"):
        owner, _, ref = head.partition(":")
        found = [p for p in found if p.head_repo is not None and p.head_ref == ref
                 and p.head_repo.owner.login.lower() == owner.lower()]
    if base := q.get("base"):
        found = [p for p in found if p.base_ref == base]
    by_update = q.get("sort", "created") == "updated"

    def key(p: pulls.PullRequest) -> tuple[float, int]:
        return (p.issue.updated_at if by_update else p.issue.created_at, p.number)

    found.sort(key=key, reverse=q.get("direction", "desc") != "asc")
    page, headers = paginate(request, found)
    return json_response([pulls.render_pull(st, p) for p in page], headers=headers)


@route("GET", "/repos/{owner}/{repo}/pulls/{number}",
       doc="https://docs.github.com/rest/pulls/pulls#get-a-pull-request")
async def get_pull(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    _require(request, "pull_requests", "read")
    try:
        number = int(request.match_info["number"])
    except ValueError:
        raise not_found() from None
    pr = pulls.store(st).pulls.get((repo.id, number))
    if pr is None:
        raise not_found()
    return json_response(pulls.render_pull(st, pr))


# ----------------------------------------------------------------------------- check runs
def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise validation_failed("CheckRun", key, "invalid")
    return value


def _apply(run: pulls.CheckRun, body: dict[str, Any], *, creating: bool) -> None:
    """Validate the fields GitHub accepts on create and update, then set them."""
    name = _text(body, "name")
    if creating and not name:
        raise GitHubError(422, 'Invalid request.\n\n"name" wasn\'t supplied.')
    details_url = _text(body, "details_url")
    if details_url is not None and urlsplit(details_url).scheme not in ("http", "https"):
        raise validation_failed("CheckRun", "details_url", "invalid")
    status = _text(body, "status")
    if status is not None and status not in pulls.CHECK_STATUSES:
        raise GitHubError(422, f"Invalid request.\n\n{status!r} is not a member of "
                               f"{list(pulls.CHECK_STATUSES)}.")
    conclusion = _text(body, "conclusion")
    if conclusion is not None and conclusion not in pulls.CHECK_CONCLUSIONS:
        raise GitHubError(422, f"Invalid request.\n\n{conclusion!r} is not a member of "
                               f"{list(pulls.CHECK_CONCLUSIONS)}.")
    if (status == "completed" or body.get("completed_at")) and conclusion is None \
            and run.conclusion is None:
        raise GitHubError(422, 'Invalid request.\n\n"conclusion" wasn\'t supplied.')
    if conclusion == "action_required" and not (details_url or run.details_url):
        raise GitHubError(422, 'Invalid request.\n\n"details_url" wasn\'t supplied.')
    output = body.get("output")
    if output is not None:
        if not isinstance(output, dict):
            raise validation_failed("CheckRun", "output", "invalid")
        for key in ("title", "summary"):
            if not isinstance(output.get(key), str) or not output[key]:
                raise GitHubError(422, f'Invalid request.\n\n"{key}" wasn\'t supplied.')
        for key in ("summary", "text"):
            value = output.get(key)
            if isinstance(value, str) and len(value) > pulls.MAX_OUTPUT_CHARS:
                raise GitHubError(422, f"Invalid request.\n\nOnly {pulls.MAX_OUTPUT_CHARS} "
                                       f"characters are allowed; {len(value)} were supplied.")
        _check_annotations(output.get("annotations"))
    if name:
        run.name = name
    if details_url is not None:
        run.details_url = details_url
    if "external_id" in body:
        run.external_id = _text(body, "external_id")
    if status is not None:
        run.status = status
    if conclusion is not None:
        run.status, run.conclusion = "completed", conclusion
        run.completed_at = run.completed_at or time.time()
    if isinstance(output, dict):
        run.title, run.summary = output["title"], output["summary"]
        run.text = output.get("text") if isinstance(output.get("text"), str) else None
        run.annotations.extend(output.get("annotations") or [])


ANNOTATION_LEVELS = ("notice", "warning", "failure")


def _check_annotations(value: Any) -> None:
    """GitHub's rules: at most 50 per request, each with a path, lines, a level and a
    message (end_line not before start_line)."""
    if value is None:
        return
    if not isinstance(value, list):
        raise validation_failed("CheckRun", "annotations", "invalid")
    if len(value) > 50:
        raise GitHubError(422, "Invalid request.\n\nOnly 50 annotations are allowed per "
                               "request.")
    for item in value:
        if not isinstance(item, dict):
            raise validation_failed("CheckRun", "annotations", "invalid")
        for key in ("path", "annotation_level", "message"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise GitHubError(422, f'Invalid request.\n\n"{key}" wasn\'t supplied.')
        start, end = item.get("start_line"), item.get("end_line")
        if not isinstance(start, int) or not isinstance(end, int) or start < 1 or end < start:
            raise GitHubError(422, 'Invalid request.\n\n"start_line" and "end_line" must '
                                   "be lines, the end not before the start.")
        if item["annotation_level"] not in ANNOTATION_LEVELS:
            raise GitHubError(422, f"Invalid request.\n\n{item['annotation_level']!r} is not "
                                   f"a member of {list(ANNOTATION_LEVELS)}.")


def _head_sha(repo: Repo, body: dict[str, Any]) -> str:
    sha = body.get("head_sha")
    if not isinstance(sha, str) or not sha:
        raise GitHubError(422, 'Invalid request.\n\n"head_sha" wasn\'t supplied.')
    found = repo.commit(sha) if len(sha) == 40 else None
    if found is None:
        raise GitHubError(422, f"No commit found for SHA: {sha}")
    return found[0]


@route("POST", "/repos/{owner}/{repo}/check-runs",
       doc="https://docs.github.com/rest/checks/runs#create-a-check-run", creates_content=True)
async def create_check_run(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = writable(get_repo(request))
    _require(request, "checks", "write")
    body = await body_json(request)
    sha = _head_sha(repo, body)
    now = time.time()
    run = pulls.CheckRun(id=next(pulls.store(st).ids), repo=repo, head_sha=sha, name="",
                         app_id=st.app_id, suite_id=pulls.suite_id(st, repo, sha, st.app_id),
                         started_at=now)
    _apply(run, body, creating=True)
    pulls.store(st).check_runs[run.id] = run
    data = pulls.render_check_run(st, run)
    return json_response(data, 201, {"Location": data["url"]})


def _run_from_path(request: web.Request, repo: Repo) -> pulls.CheckRun:
    try:
        ident = int(request.match_info["check_run_id"])
    except ValueError:
        raise not_found() from None
    run = pulls.store(state_of(request)).check_runs.get(ident)
    if run is None or run.repo is not repo:
        raise not_found()
    return run


@route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}",
       doc="https://docs.github.com/rest/checks/runs#get-a-check-run")
async def get_check_run(request: web.Request) -> web.Response:
    repo = get_repo(request)
    _require(request, "checks", "read")
    return json_response(pulls.render_check_run(state_of(request),
                                                _run_from_path(request, repo)))


@route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}",
       doc="https://docs.github.com/rest/checks/runs#update-a-check-run")
async def update_check_run(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = writable(get_repo(request))
    _require(request, "checks", "write")
    run = _run_from_path(request, repo)
    if run.app_id != st.app_id:
        raise GitHubError(403, FORBIDDEN)  # an App changes only its own check runs
    _apply(run, await body_json(request), creating=False)
    run.updates += 1
    return json_response(pulls.render_check_run(st, run))


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs",
       doc="https://docs.github.com/rest/checks/runs#list-check-runs-for-a-git-reference")
async def list_check_runs_for_ref(request: web.Request) -> web.Response:
    st = state_of(request)
    repo = get_repo(request)
    _require(request, "checks", "read")
    ref = request.match_info["ref"]
    branch = ref.removeprefix("refs/heads/")
    sha = repo.heads.get(branch) or (found[0] if (found := repo.commit(ref)) else None)
    if sha is None:
        raise GitHubError(422, f"No commit found for SHA: {ref}")
    q = request.query
    runs = [r for r in pulls.check_runs(st, repo.full_name, sha)]
    if name := q.get("check_name"):
        runs = [r for r in runs if r.name == name]
    if status := q.get("status"):
        if status not in pulls.CHECK_STATUSES:
            raise validation_failed("CheckRun", "status", "invalid")
        runs = [r for r in runs if r.status == status]
    if app_id := q.get("app_id"):
        runs = [r for r in runs if str(r.app_id) == app_id]
    flt = q.get("filter", "latest")
    if flt not in ("latest", "all"):
        raise validation_failed("CheckRun", "filter", "invalid")
    if flt == "latest":
        newest: dict[tuple[str, int], pulls.CheckRun] = {}
        for r in runs:
            newest[(r.name, r.app_id)] = r
        runs = list(newest.values())
    runs.sort(key=lambda r: r.id, reverse=True)
    page, headers = paginate(request, runs)
    return json_response({"total_count": len(runs),
                          "check_runs": [pulls.render_check_run(st, r) for r in page]},
                         headers=headers)
