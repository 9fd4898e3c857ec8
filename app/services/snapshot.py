"""Fetch, once per repository, everything the enabled policies need — many at a time.

One GraphQL query answers repository metadata and every needed root file for up to 100
repositories (`rN: repository(...)` aliases, files as `object(expression: "HEAD:path")`);
it costs one point of the GraphQL budget. REST is used only where GraphQL has no field
(the default workflow permissions: one read for the organization, and one per repository
unless the organization's default is "read") and for blobs GraphQL truncates (over ~512 KB).

Decisions:
- A repository GraphQL cannot resolve (NOT_FOUND), or whose REST extras fail, comes back as
  a `SnapshotError` for that repository alone; the others in the batch are unaffected.
- A binary blob (GraphQL gives no text) counts as present with empty text: the file
  exists, and no policy reads binary content; this spares a REST call per binary file.
- A path that is a directory (a Tree) counts as missing, as it did through REST.
- A file over MAX_FILE_BYTES (GraphQL's byteSize, REST's size) is not downloaded: it is
  present with empty text and its size in `RepoSnapshot.too_large`, for the policies that
  read it to report as a violation. (GraphQL still sends such a blob's text cut at
  ~512 KB: asking for sizes first would cost a second query per batch.)
- Snapshots passed in `reuse` (files known unchanged) skip GraphQL; only REST extras
  are fetched for them.
- Every other kind of data is a source (app/sources/): its GraphQL selections join the
  repository fragment only when an enabled policy needs it, and its REST reads run with the
  repository's other REST reads, through `GitHubReader`. A source GitHub refuses (403) is an
  `Unreadable` view, which the policies that read it report as not checked; any other
  failure fails the repository's snapshot, as a failed file read does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI

from app.github.errors import RateLimited
from app.policies import Needs, RepoSnapshot
from app.policies.base import MAX_FILE_BYTES
from app.services.rest_reads import (
    GitHubReader,
    TooLarge,
    fetch_file,
    fetch_org_workflow_permissions,
    fetch_workflow_permissions,
    fetch_workflow_permissions_probing,
)
from app.sources import SOURCES, RepoRef, Source, Unreadable

log = logging.getLogger(__name__)

# Repositories per GraphQL query; GitHub's node limits and timeouts are comfortable here.
GRAPHQL_BATCH = 100
# REST calls in flight per batch (the client's rate governor paces them further).
REST_CONCURRENCY = 20


class SnapshotFailed(Exception):
    """The snapshot of one repository could not be taken."""

    def __init__(self, reason: str, *, not_found: bool = False) -> None:
        super().__init__(reason)
        self.not_found = not_found


class GraphQLFailed(Exception):
    """A GraphQL query failed as a whole (not per repository)."""


@dataclass(frozen=True)
class Fetched:
    snapshot: RepoSnapshot
    # The repository in REST's shape (id, full_name, archived, fork, visibility,
    # default_branch, pushed_at, updated_at), to refresh the stored copy.
    meta: dict[str, Any] = field(default_factory=dict)
    # True when files came from GitHub now (False: reused from an earlier scan).
    fresh: bool = True
    # For reused snapshots: Actions was disabled at the last read (None: not known).
    actions_enabled: bool | None = None


@dataclass(frozen=True)
class SnapshotError:
    repo_id: int
    full_name: str
    reason: str
    not_found: bool = False
    # Set when the repository is waiting for the rate limit: retry at this epoch time.
    retry_at: float | None = None


SnapshotOrError = Fetched | SnapshotError


def version_of(pushed_at: Any, updated_at: Any) -> str | None:
    """A repository's version for change detection: its pushed and updated times."""
    def norm(value: Any) -> str:
        if isinstance(value, int | float):
            return str(int(value))
        if isinstance(value, str) and value:
            try:
                return str(int(datetime.fromisoformat(value.replace("Z", "+00:00"))
                               .timestamp()))
            except ValueError:
                return value
        return "-"

    if not pushed_at and not updated_at:
        return None
    return f"{norm(pushed_at)}|{norm(updated_at)}"


def sources_of(needs: Needs) -> list[Source[Any]]:
    return [SOURCES[name] for name in sorted(needs.sources)]


# ----------------------------------------------------------------------------- GraphQL
def _rate_limited(body: Mapping[str, Any]) -> bool:
    errors = body.get("errors")
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("type") == "RATE_LIMITED" for e in errors)


async def graphql(gh: GitHubAPI, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
    """Run a query; returns the whole body: `data`, and `errors` when some fields failed.

    The client's graphql() raises QueryError when the body has errors, which for a batch
    are usually per repository (NOT_FOUND) next to good data, so that body is returned,
    not raised.
    """
    try:
        data = await gh.graphql(query, **variables)
    except gidgethub.QueryError as exc:
        body: dict[str, Any] = exc.response if isinstance(exc.response, dict) else {}
        if _rate_limited(body):
            # Only when the client did not wait it out itself.
            rl = gh.rate_limit
            until = rl.reset_datetime.timestamp() if rl is not None else time.time() + 60
            raise RateLimited(max(until, time.time()) + 1, "GraphQL budget spent") from exc
        return body
    return {"data": data}


_REPO_FIELDS = ("databaseId nameWithOwner isArchived isFork visibility pushedAt updatedAt "
                "createdAt isEmpty hasIssuesEnabled defaultBranchRef { name }")


def build_query(repos: Sequence[str], paths: Sequence[str], ref: str = "HEAD",
                needs: Needs | None = None, *, isolated: bool = False
                ) -> tuple[str, dict[str, Any]]:
    """The batch query for `repos` (full names) and its variables. Aliases: rN per
    repository, fN per path; every value travels as a variable, so nothing needs escaping.
    `ref`: where files are read, the default branch (HEAD) or a commit SHA (a pull
    request's head: GitHub keeps a fork's pull request heads in the base repository).
    `isolated`: the query of the isolated sources' fields alone (Source.isolated)."""
    variables: dict[str, Any] = {}
    owners: dict[str, str] = {}
    lines: list[str] = []
    for i, full_name in enumerate(repos):
        owner, _, name = full_name.partition("/")
        if owner not in owners:
            owners[owner] = f"o{len(owners)}"
            variables[owners[owner]] = owner
        variables[f"n{i}"] = name
        lines.append(f"  r{i}: repository(owner: ${owners[owner]}, name: $n{i}) {{ ...repo }}")
    files = []
    for j, path in enumerate([] if isolated else paths):
        variables[f"p{j}"] = f"{ref}:{path}"
        files.append(f"  f{j}: object(expression: $p{j}) {{ ... on Blob "
                     "{ text byteSize isTruncated isBinary } }")
    if ref != "HEAD" and not isolated:
        # The commit itself: a missing file and a commit GitHub does not have (yet) differ.
        variables["at"] = ref
        files.append("  at: object(expression: $at) { oid }")
    for source in sources_of(needs or Needs()):
        if source.isolated != isolated:
            continue
        selections, own = source.graphql(needs or Needs(), ref)
        if selections:
            files.append(f"  {selections}")
            variables.update(own)
    decls = ", ".join(f"${k}: String!" for k in variables)
    query = (f"query Snapshots({decls}) {{\n  rateLimit {{ cost remaining resetAt }}\n"
             + "\n".join(lines) + "\n}\n"
             + f"fragment repo on Repository {{\n  {'databaseId' if isolated else _REPO_FIELDS}\n"
             + "\n".join(files) + "\n}\n")
    return query, variables


def _visibility(node: Mapping[str, Any]) -> str:
    vis = node.get("visibility")
    return str(vis).lower() if vis else "public"


@dataclass
class _Partial:
    repo_id: int
    snapshot: RepoSnapshot
    meta: dict[str, Any]
    truncated: list[str]
    actions_enabled: bool | None = None
    # Source name -> what GraphQL gave for it (finished by the source's REST reads).
    pending: dict[str, Any] = field(default_factory=dict)


def _field_of(err: Mapping[str, Any]) -> str:
    """The repository-level field (alias) a GraphQL error is about ("" for the repository)."""
    path = err.get("path")
    return str(path[1]) if isinstance(path, list) and len(path) > 1 else ""


def _parse_repo(repo_id: int, asked: str, node: Mapping[str, Any],
                paths: Sequence[str], needs: Needs | None = None,
                field_errors: Sequence[Mapping[str, Any]] = ()) -> _Partial | SnapshotError:
    db_id = int(node.get("databaseId") or 0)
    if repo_id and db_id and db_id != repo_id:
        return SnapshotError(repo_id, asked, f"{asked} is now another repository ({db_id})",
                             not_found=True)
    full_name = str(node.get("nameWithOwner") or asked)
    ref = node.get("defaultBranchRef")
    branch = str(ref["name"]) if isinstance(ref, dict) and ref.get("name") else "main"
    files: dict[str, str | None] = {}
    too_large: dict[str, int] = {}
    truncated: list[str] = []
    for j, path in enumerate(paths):
        blob = node.get(f"f{j}")
        if not isinstance(blob, dict) or "byteSize" not in blob:
            files[path] = None  # missing, or a directory
        elif isinstance(blob["byteSize"], int) and blob["byteSize"] > MAX_FILE_BYTES:
            files[path] = ""  # present, and not read (see the module docstring)
            too_large[path] = blob["byteSize"]
        elif blob.get("isTruncated"):
            files[path] = None
            truncated.append(path)
        elif blob.get("text") is None:
            files[path] = ""  # binary: present, no text (see the module docstring)
        else:
            files[path] = str(blob["text"])
    visibility = _visibility(node)
    meta: dict[str, Any] = {
        "id": db_id or repo_id, "full_name": full_name,
        "archived": bool(node.get("isArchived")), "fork": bool(node.get("isFork")),
        "visibility": visibility, "private": visibility != "public",
        "default_branch": branch,
        "pushed_at": node.get("pushedAt"), "updated_at": node.get("updatedAt"),
        "created_at": node.get("createdAt"),
        # No commit yet: not evaluated until the first push (REST's size 0 does not say so).
        "empty": bool(node.get("isEmpty")),
        # Lifts the hold of an issue action that found issues disabled (reconcile.HELD).
        "has_issues": bool(node.get("hasIssuesEnabled")),
    }
    snap = RepoSnapshot(id=db_id or repo_id, full_name=full_name, default_branch=branch,
                        archived=meta["archived"], fork=meta["fork"], visibility=visibility,
                        files=files, too_large=too_large)
    pending: dict[str, Any] = {}
    for source in sources_of(needs or Needs()):
        own = [e for e in field_errors if source.owns(_field_of(e))]
        pending[source.name] = (source.parse_errors(node, needs or Needs(), own) if own
                                else source.parse(node, needs or Needs()))
    return _Partial(repo_id, snap, meta, truncated, pending=pending)


def _errors_by_alias(body: Mapping[str, Any]) -> tuple[dict[str, list[dict[str, Any]]],
                                                       list[dict[str, Any]]]:
    per: dict[str, list[dict[str, Any]]] = {}
    general: list[dict[str, Any]] = []
    for err in body.get("errors") or []:
        path = err.get("path") if isinstance(err, dict) else None
        if isinstance(path, list) and path and isinstance(path[0], str) \
                and path[0].startswith("r") and path[0][1:].isdigit():
            per.setdefault(path[0], []).append(err)
        else:
            general.append(err if isinstance(err, dict) else {"message": str(err)})
    return per, general


async def _isolated(gh: GitHubAPI, repos: Sequence[tuple[int, str]], needs: Needs, ref: str
                    ) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The isolated sources' fields for the batch, in a query of their own: (nodes by
    alias, errors by alias). A repository GitHub answers null for loses only these."""
    if not any(s.isolated for s in sources_of(needs)):
        return {}, {}
    query, variables = build_query([name for _, name in repos], [], ref, needs,
                                   isolated=True)
    body = await graphql(gh, query, variables)
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    per, _ = _errors_by_alias(body)
    return data or {}, per


async def _graphql_batch(gh: GitHubAPI, repos: Sequence[tuple[int, str]], paths: Sequence[str],
                         ref: str = "HEAD", needs: Needs | None = None
                         ) -> list[_Partial | SnapshotError]:
    query, variables = build_query([name for _, name in repos], paths, ref, needs)
    body = await graphql(gh, query, variables)
    data = body.get("data")
    per, general = _errors_by_alias(body)
    extra, extra_errors = await _isolated(gh, repos, needs or Needs(), ref)
    if not isinstance(data, dict) or general:
        raise GraphQLFailed("; ".join(str(e.get("message")) for e in general)
                            or "GraphQL answered without data")
    rate = data.get("rateLimit") or {}
    log.debug("GraphQL batch of %d repositories: cost %s, %s left", len(repos),
              rate.get("cost"), rate.get("remaining"))
    owned = sources_of(needs or Needs())
    out: list[_Partial | SnapshotError] = []
    for i, (repo_id, name) in enumerate(repos):
        node = data.get(f"r{i}")
        # Errors under a source's own fields are that source's (it becomes Unreadable); any
        # other error fails the repository's snapshot.
        sourced = [e for e in per.get(f"r{i}", [])
                   if any(s.owns(_field_of(e)) for s in owned)]
        errors = [e for e in per.get(f"r{i}", []) if e not in sourced]
        # The isolated query's answer for this repository joins the node; its errors are
        # always the isolated sources' own.
        sourced += extra_errors.get(f"r{i}", [])
        if isinstance(node, dict) and isinstance(extra.get(f"r{i}"), dict):
            node = {**extra[f"r{i}"], **node}
        if not isinstance(node, dict) or errors:
            not_found = any(e.get("type") == "NOT_FOUND" for e in errors)
            reason = "; ".join(str(e.get("message")) for e in errors) or "no data"
            out.append(SnapshotError(repo_id, name, reason, not_found=not_found))
            continue
        if ref != "HEAD" and not node.get("at"):
            out.append(SnapshotError(repo_id, name, f"{name} has no commit {ref} (yet)"))
            continue
        try:
            out.append(_parse_repo(repo_id, name, node, paths, needs, sourced))
        except Exception as exc:  # a source's parsing bug fails this repository alone
            log.exception("parsing the snapshot of %s failed", name)
            out.append(SnapshotError(repo_id, name, f"{type(exc).__name__}: {exc}"))
    return out


# ----------------------------------------------------------------------------- batches
async def _complete(gh: GitHubAPI, part: _Partial, needs: Needs, fresh: bool,
                    limit: asyncio.Semaphore, org_restricted: bool, ref: str = "HEAD",
                    forks: bool = False, *, org: str | None = None,
                    listed: Mapping[str, Any] | None = None,
                    shared: dict[str, Any] | None = None) -> SnapshotOrError:
    """Add what only REST has; archived repositories, forks and empty repositories are not
    evaluated (forks only when a policy opts in: `forks`), so they get nothing more.
    `org_restricted`: the organization's default
    workflow permissions are "read", which GitHub applies to every repository in it, so
    none is asked."""
    snap = part.snapshot
    if snap.archived or (snap.fork and not forks) or part.meta.get("empty"):
        return Fetched(snap, part.meta, fresh)

    async def call(fn: Any, *args: Any) -> Any:
        async with limit:
            return await fn(gh, snap.full_name, *args)

    at = snap.default_branch if ref == "HEAD" else ref
    jobs = [call(fetch_file, path, at) for path in part.truncated]
    per_repo = needs.workflow_permissions and not org_restricted
    if per_repo:
        jobs.append(call(fetch_workflow_permissions_probing if part.actions_enabled is False
                         else fetch_workflow_permissions))
    reader = GitHubReader(gh, snap.full_name)
    where = RepoRef(snap.full_name, snap.default_branch, org=org, ref=ref, listed=listed,
                    shared=shared if shared is not None else {})
    todo = [s for s in sources_of(needs) if s.name not in snap.data]

    async def finish(source: Source[Any]) -> Any:
        pending = part.pending.get(source.name)
        if isinstance(pending, Unreadable):
            return pending  # GraphQL refused it already
        async with limit:
            return await source.complete(reader, where, pending, needs)

    results = await asyncio.gather(*jobs, *(finish(s) for s in todo), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for exc in failures:
        if isinstance(exc, RateLimited):
            return SnapshotError(part.repo_id, snap.full_name, str(exc), retry_at=exc.until)
    for exc in failures:
        if not isinstance(exc, Exception):
            raise exc  # cancelled: not this repository's failure
        return SnapshotError(part.repo_id, snap.full_name, f"{type(exc).__name__}: {exc}",
                             not_found=isinstance(exc, gidgethub.HTTPException)
                             and int(exc.status_code) == 404)
    values: list[Any] = list(results)
    data = dict(snap.data)
    for source, view in zip(todo, values[len(values) - len(todo):], strict=True):
        data[source.name] = view
    values = values[:len(values) - len(todo)]
    files = dict(snap.files)
    too_large = dict(snap.too_large)
    for path, text in zip(part.truncated, values, strict=False):
        if isinstance(text, TooLarge):  # it grew past the limit since GraphQL saw it
            files[path], too_large[path] = "", text.size
        else:
            files[path] = text
    perms: str | None = None
    if per_repo:
        perms = values[-1]
    elif needs.workflow_permissions:
        perms = "read"  # the organization's restricted default
    return Fetched(replace(snap, files=files, too_large=too_large, workflow_permissions=perms,
                           data=data), part.meta, fresh)


async def fetch_snapshots(gh: GitHubAPI, repos: Sequence[tuple[int, str]], needs: Needs, *,
                          reuse: Mapping[int, Fetched] | None = None, org: str | None = None,
                          ref: str = "HEAD", forks: bool = False,
                          listed: Mapping[int, Mapping[str, Any]] | None = None
                          ) -> dict[int, SnapshotOrError]:
    """Snapshots of `repos` ((id, full name) pairs), keyed by the id given.

    Metadata and files: one GraphQL query per 100 repositories, except for those in
    `reuse` (snapshots whose files are known unchanged: only REST extras are refreshed).
    Then, concurrently and bounded: REST for what GraphQL has no field for. A rate-limit
    wait longer than the client sleeps through raises `RateLimited` when it hits the
    GraphQL query, or marks the repository with `retry_at` when it hits its REST calls.

    `org`: the organization the repositories belong to. Its default workflow permissions
    are read once per call (a free 304 while unchanged); when they are "read", no
    repository's own setting is read, since GitHub applies the restricted default to all.
    Sources read organization-wide data (its teams) once per call too. `listed`: what an
    organization-wide listing at this full scan showed of each repository, by id.
    """
    reuse = reuse or {}
    paths = sorted(needs.files)
    parts: list[_Partial | SnapshotError] = []
    for rid, _name in repos:
        if rid in reuse:
            got = reuse[rid]
            parts.append(_Partial(rid, got.snapshot, got.meta, [], got.actions_enabled))
    todo = [(rid, name) for rid, name in repos if rid not in reuse]
    for start in range(0, len(todo), GRAPHQL_BATCH):
        parts.extend(await _graphql_batch(gh, todo[start:start + GRAPHQL_BATCH], paths, ref,
                                          needs))
    limit = asyncio.Semaphore(REST_CONCURRENCY)
    shared: dict[str, Any] = {}  # organization-wide reads, made once (RepoRef.once)
    restricted = False
    if org and needs.workflow_permissions and any(
            isinstance(p, _Partial) and not (p.snapshot.archived or p.snapshot.fork)
            for p in parts):
        restricted = await fetch_org_workflow_permissions(gh, org) == "read"

    async def finish(part: _Partial | SnapshotError) -> SnapshotOrError:
        if isinstance(part, SnapshotError):
            return part
        return await _complete(gh, part, needs, part.repo_id not in reuse, limit, restricted,
                               ref, forks, org=org, listed=(listed or {}).get(part.repo_id),
                               shared=shared)

    done = await asyncio.gather(*(finish(p) for p in parts))
    return {(p.repo_id): d for p, d in zip(parts, done, strict=True)}


async def fetch_one(gh: GitHubAPI, repo_id: int, full_name: str, needs: Needs, *,
                    org: str | None = None, ref: str = "HEAD", forks: bool = False) -> Fetched:
    """One repository through the batch path; raises `SnapshotFailed` or `RateLimited`.
    `ref`: HEAD (the default branch) or a commit SHA to read the files at."""
    (got,) = (await fetch_snapshots(gh, [(repo_id, full_name)], needs, org=org,
                                    ref=ref, forks=forks)).values()
    if isinstance(got, SnapshotError):
        if got.retry_at is not None:
            raise RateLimited(got.retry_at, got.reason)
        raise SnapshotFailed(got.reason, not_found=got.not_found)
    return got
