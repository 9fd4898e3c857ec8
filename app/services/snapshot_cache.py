"""What a scan keeps of a repository's snapshot (repositories.snapshot_cache), to judge it
again without reading it while nothing changed, and to preview a new config from."""

from __future__ import annotations

import json
from typing import Any

from app.db.models import Repository
from app.policies import Needs, RepoSnapshot
from app.services.snapshot import Fetched, sources_of, version_of

# Largest set of file texts kept to re-evaluate an unchanged repository without reading it.
SNAPSHOT_CACHE_MAX = 64 * 1024


def cached_snapshot(repo: Repository, needs: Needs) -> Fetched | None:
    """The last scan's files, when nothing can have changed since: the listing shows the
    same pushed/updated times as when they were read, and they cover what is needed."""
    cache = repo.snapshot_cache
    if not cache or not repo.listed_version or cache.get("version") != repo.listed_version:
        return None
    files = cache.get("files")
    if not isinstance(files, dict) or not needs.files <= files.keys() \
            or cache.get("default_branch") != repo.default_branch:
        return None
    too_large = cache.get("too_large") or {}
    try:
        data = _cached_sources(cache.get("data"), needs)
    except (TypeError, KeyError, ValueError):
        return None  # kept by an older release in another shape: read it again
    if data is None:
        return None
    snap = RepoSnapshot(id=repo.id, full_name=repo.full_name, default_branch=repo.default_branch,
                        archived=repo.archived, fork=repo.fork, visibility=repo.visibility,
                        files={path: files[path] for path in needs.files},
                        too_large={p: int(n) for p, n in too_large.items() if p in needs.files},
                        data=data)
    # Settings are always read again; this only picks the cheaper way to read them.
    actions = False if "workflow_permissions" in cache and \
        cache["workflow_permissions"] is None else None
    return Fetched(snap, {"id": repo.id, "full_name": repo.full_name}, fresh=False,
                   actions_enabled=actions)


def _cached_sources(kept: Any, needs: Needs) -> dict[str, Any] | None:
    """The views of the needed sources kept with the files (the others are read by REST
    alone, and read again); None when a needed source's GraphQL part was not kept, so the
    repository must go through GraphQL again."""
    kept = kept if isinstance(kept, dict) else {}
    data: dict[str, Any] = {}
    for source in sources_of(needs):
        if source.name in kept:
            data[source.name] = source.from_json(kept[source.name])
        elif source.graphql(needs)[0]:
            return None
    return data


def cache_of(got: Fetched, needs: Needs, old: dict[str, Any] | None) -> dict[str, Any] | None:
    """What to keep of a snapshot for the next scan: the files if they were read now (the
    version they were read at), and whether Actions was disabled (a hint for how to ask)."""
    if not got.fresh:
        if old is None or not needs.workflow_permissions:
            return old
        return {**old, "workflow_permissions": got.snapshot.workflow_permissions}
    version = version_of(got.meta.get("pushed_at"), got.meta.get("updated_at"))
    files = dict(got.snapshot.files)
    if version is None or sum(len(t or "") for t in files.values()) > SNAPSHOT_CACHE_MAX:
        return None
    cache: dict[str, Any] = {"version": version, "default_branch": got.snapshot.default_branch,
                             "files": files}
    if got.snapshot.too_large:
        cache["too_large"] = dict(got.snapshot.too_large)
    if needs.workflow_permissions:
        cache["workflow_permissions"] = got.snapshot.workflow_permissions
    kept = {s.name: j for s in sources_of(needs)
            if s.name in got.snapshot.data
            and (j := s.to_json(got.snapshot.data[s.name])) is not None}
    if kept:
        if len(json.dumps(kept)) > SNAPSHOT_CACHE_MAX:
            return None
        cache["data"] = kept
    return cache


def stored_snapshot(repo: Repository, needs: Needs) -> RepoSnapshot | None:
    """The repository as its last scan saw it, whatever changed since (a config preview
    takes no reads), or None when what was kept does not cover `needs`: a file or a source
    the last config did not read, or a source read by REST at every scan (not kept)."""
    cache = repo.snapshot_cache or {}
    files = cache.get("files")
    raw = cache.get("data")
    kept: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if not isinstance(files, dict) or not needs.files <= files.keys() \
            or not needs.sources <= kept.keys() \
            or (needs.workflow_permissions and "workflow_permissions" not in cache):
        return None
    too_large = cache.get("too_large") or {}
    try:
        data = {s.name: s.from_json(kept[s.name]) for s in sources_of(needs)}
    except (TypeError, KeyError, ValueError):
        return None
    return RepoSnapshot(
        id=repo.id, full_name=repo.full_name, default_branch=repo.default_branch,
        archived=repo.archived, fork=repo.fork, visibility=repo.visibility,
        files={path: files[path] for path in needs.files},
        too_large={p: int(n) for p, n in too_large.items() if p in needs.files},
        workflow_permissions=cache.get("workflow_permissions"), data=data)
