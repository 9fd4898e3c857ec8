"""Batched snapshots and batch scan jobs: one GraphQL query per 100 repositories, per-repo
failures that stay small, re-runs that change nothing, progress on the scan record."""

from __future__ import annotations

import time
from typing import Any

import pytest
from arq import Retry
from sqlalchemy import func, select

from app.db.models import Repository, Scan
from app.github.client import graphql_endpoint
from app.github.errors import RateLimited
from app.policies import Needs
from app.services import repositories, scan_requests, scanning
from app.services.queue import try_lock_many
from app.services.snapshot import (
    Fetched,
    SnapshotError,
    SnapshotFailed,
    build_query,
    fetch_snapshots,
    version_of,
)
from app.services.store import ensure_installation
from tasks import jobs
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation
from tests.stack import Stack, services_for
from tests.test_e2e import build_org, install, open_issues

ALL = Needs(files=frozenset({"AGENTS.md", "catalog-info.yaml"}), workflow_permissions=True)


def issue_count(st: FakeState, expected: dict[str, set[str]]) -> int:
    return sum(len(st.issues(name)) for name in expected)


def assert_issues(st: FakeState, expected: dict[str, set[str]]) -> None:
    for full_name, fails in expected.items():
        assert set(open_issues(st, full_name)) == fails, full_name
        assert len(st.issues(full_name)) == len(fails), f"duplicate issues in {full_name}"


async def full_scan(stack: Stack) -> Scan:
    (full,) = [s for s in await stack.scans() if s.kind == "full"][-1:]
    return full


async def prepare_full_scan(stack: Stack, st: FakeState, inst: Installation
                            ) -> tuple[int, list[int]]:
    """A full scan whose batch jobs are queued but not run: (scan id, repository ids)."""
    async with stack.db() as db, db.begin():
        await ensure_installation(db, inst.id, {"login": inst.account.login,
                                                "type": "Organization"})
    scan_id = await scanning.scan_installation(services_for(stack), inst.id, "test")
    assert scan_id is not None
    async with stack.db() as db:
        ids = sorted(await db.scalars(select(Repository.id).where(
            Repository.installation_id == inst.id, Repository.archived.is_(False),
            Repository.fork.is_(False))))
    return scan_id, ids


# ----------------------------------------------------------------------------- units
def test_graphql_endpoint_for_github_and_ghes() -> None:
    assert graphql_endpoint("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_endpoint("https://ghe.example.com/api/v3") == \
        "https://ghe.example.com/api/graphql"
    assert graphql_endpoint("https://ghe.example.com/api/v3/") == \
        "https://ghe.example.com/api/graphql"
    assert graphql_endpoint("http://127.0.0.1:8080") == "http://127.0.0.1:8080/graphql"


def test_query_carries_every_name_and_path_as_a_variable() -> None:
    query, variables = build_query(["acme/a", "acme/b", "other/c"], ['we"ird\\ü.md'])
    assert '"' not in query.replace('"""', "")  # no literal strings at all
    assert variables == {"o0": "acme", "n0": "a", "n1": "b", "o1": "other", "n2": "c",
                         "p0": 'HEAD:we"ird\\ü.md'}
    assert "r2: repository(owner: $o1, name: $n2)" in query


def test_version_ignores_the_timestamp_format() -> None:
    assert version_of("2026-01-02T03:04:05Z", "2026-01-02T03:04:06Z") == \
        version_of(1767323045, "2026-01-02T03:04:06+00:00")
    assert version_of(None, None) is None


# ----------------------------------------------------------------------------- snapshots
async def test_batch_snapshot_of_files_settings_and_odd_paths(stack: Stack,
                                                              fake_github: FakeGitHub) -> None:
    st = fake_github.state
    odd = 'we"ird\\ name ü.md'
    inst = st.add_installation("acme", [
        {"name": "a", "files": {"AGENTS.md": "# a\n", odd: "odd", "docs/x.md": "x"}},
        {"name": "b", "files": {"catalog-info.yaml": "spec:\n  owner: me\n"},
         "workflow_permissions": None, "visibility": "internal", "default_branch": "trunk"},
        {"name": "bin", "files": {"AGENTS.md": "\x00\x01binary"}},
        {"name": "old", "archived": True},
    ])
    ids = {r.name: r.id for r in inst.repos}
    gh = services_for(stack).github.installation(inst.id)
    needs = Needs(files=frozenset({"AGENTS.md", "catalog-info.yaml", odd, "docs"}),
                  workflow_permissions=True)
    got = await fetch_snapshots(gh, [(ids[n], f"acme/{n}") for n in ids], needs)
    assert st.graphql_requests == 1 and st.graphql_points == 1
    a, b, binary, old = (got[ids[n]] for n in ("a", "b", "bin", "old"))
    assert isinstance(a, Fetched) and isinstance(b, Fetched)
    assert isinstance(binary, Fetched) and isinstance(old, Fetched)
    assert a.snapshot.files == {"AGENTS.md": "# a\n", "catalog-info.yaml": None, odd: "odd",
                                "docs": None}  # a directory is not a file
    assert a.snapshot.workflow_permissions == "read"
    assert (b.snapshot.default_branch, b.snapshot.visibility) == ("trunk", "internal")
    assert b.snapshot.workflow_permissions is None  # Actions disabled
    assert b.meta["private"] is True and b.meta["default_branch"] == "trunk"
    assert binary.snapshot.files["AGENTS.md"] == ""  # binary: present, no text
    assert old.snapshot.archived
    # REST only for what GraphQL lacks, and nothing for an archived repository.
    assert st.count_requests("GET", "/repos/acme/old") == 0
    assert st.count_requests("GET", "/repos") == 3
    assert st.count_requests("GET", "/repos/acme/a/actions/permissions/workflow") == 1


async def test_not_found_in_a_batch_is_per_repository(stack: Stack,
                                                      fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", ["a", "b", "c"])
    gh = services_for(stack).github.installation(inst.id)
    repos = [(r.id, r.full_name) for r in inst.repos] + [(999, "acme/gone")]
    got = await fetch_snapshots(gh, repos, ALL)
    gone = got[999]
    assert isinstance(gone, SnapshotError) and gone.not_found
    assert "Could not resolve to a Repository with the name 'acme/gone'" in gone.reason
    assert all(isinstance(got[r.id], Fetched) for r in inst.repos)


async def test_truncated_blob_falls_back_to_rest(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    st.graphql_blob_text_limit = 64
    big = "# catalog\n" + "x" * 200 + "\nspec:\n  owner: group:team\n"
    inst = st.add_installation("acme", [{"name": "a", "files": {"catalog-info.yaml": big,
                                                                 "AGENTS.md": "small"}}])
    gh = services_for(stack).github.installation(inst.id)
    got = (await fetch_snapshots(gh, [(inst.repos[0].id, "acme/a")], ALL))[inst.repos[0].id]
    assert isinstance(got, Fetched)
    assert got.snapshot.files == {"catalog-info.yaml": big, "AGENTS.md": "small"}
    assert st.count_requests("GET", "/repos/acme/a/contents/catalog-info.yaml") == 1
    assert st.count_requests("GET", "/repos/acme/a/contents/AGENTS.md") == 0


# ----------------------------------------------------------------------------- full scans
async def test_250_repositories_in_three_queries(stack: Stack, fake_github: FakeGitHub,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    st = fake_github.state
    inst, expected = build_org(st, n=250)
    monkeypatch.setattr(repositories, "SYNC_CHUNK", 60)  # the listing is stored in 5 chunks
    await install(stack, st, inst)
    async with stack.db() as db:
        assert await db.scalar(select(func.count()).select_from(Repository)) == 253
        archived = await db.get(Repository, st.repo("acme/old").id)
        assert archived is not None and archived.archived and archived.listed_version
    # 251 scannable repositories (with .github): batches of 100, 100 and 51.
    assert st.graphql_requests == 3 and st.graphql_points == 3
    assert st.count_requests("GET", "/repos/acme/svc-00/contents") == 0  # files came by GraphQL
    assert_issues(st, expected)
    full = await full_scan(stack)
    assert (full.status, full.total, full.done, full.errored, full.waiting) == \
        ("ok", 251, 251, 0, 0)
    # Every repository was recorded by a batch, none by a job of its own.
    assert [s for s in await stack.scans() if s.kind == "repo"] == []


async def test_not_found_repository_goes_to_its_own_job(stack: Stack,
                                                        fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected = build_org(st, n=8)
    st.graphql_not_found["acme/svc-03"] = 1  # not replicated yet at the first query
    await install(stack, st, inst)
    assert_issues(st, expected)
    full = await full_scan(stack)
    assert (full.status, full.done, full.errored) == ("ok", full.total, 0)
    # The batch query, then svc-03 alone (its scan_repo job).
    assert st.graphql_requests == 2


async def test_unchanged_repositories_are_not_read_again(stack: Stack,
                                                         fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected = build_org(st, n=12)
    await install(stack, st, inst)
    svc = services_for(stack)
    st.clear_log()
    graphql_before = st.graphql_requests

    await scan_requests.request_full_scan(svc, inst.id, "user")
    await stack.drain()
    assert st.graphql_requests == graphql_before  # nothing changed: no file was read
    assert st.count_requests("GET", "/repos/acme/svc-01/contents") == 0
    assert st.count_requests("GET", "/repos/acme/svc-01/actions/permissions/workflow") == 1
    # Settings are read every time; where Actions was disabled (a 404 each time), by asking
    # whether it still is: a 200 that the ETag cache turns into a free 304.
    assert st.count_requests("GET", "/repos/acme/svc-05/actions/permissions/workflow") == 0
    assert st.count_requests("GET", "/repos/acme/svc-05/actions/permissions") == 1
    assert_issues(st, expected)
    assert (await full_scan(stack)).done == 13

    # Actions enabled with a writable token: no push, no new timestamps, still found.
    st.set_workflow_permissions("acme/svc-05", "write")
    await scan_requests.request_full_scan(svc, inst.id, "user")
    await stack.drain()
    assert st.graphql_requests == graphql_before
    expected["acme/svc-05"] = expected["acme/svc-05"] | {"Read-only workflow token"}
    assert_issues(st, expected)

    # A change that no webhook announced: the listing's pushed_at gives it away.
    st.set_file("acme/svc-00", "AGENTS.md", "# now\n")
    st.repo("acme/svc-00").pushed_at += 5  # a later second than the last read
    await scan_requests.request_full_scan(svc, inst.id, "user")
    await stack.drain()
    assert st.graphql_requests == graphql_before + 1
    assert "Require AGENTS.md" not in open_issues(st, "acme/svc-00")
    full = await full_scan(stack)
    assert (full.status, full.done, full.violations_resolved) == ("ok", 13, 1)
    async with stack.db() as db:
        row = await db.get(Repository, st.repo("acme/svc-05").id)
        assert row is not None and row.snapshot_cache is not None
        assert row.snapshot_cache["workflow_permissions"] == "write"


async def test_org_read_default_spares_every_repository_read(stack: Stack,
                                                            fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected = build_org(st, n=12)
    st.set_org_workflow_permissions("acme", "read")
    await install(stack, st, inst)

    def repo_reads() -> int:
        return sum(1 for method, path, _ in st.requests if method == "GET"
                   and path.startswith("/repos/") and "/actions/permissions" in path)

    # GitHub applies the organization's "read" to every repository, whatever its own.
    assert repo_reads() == 0
    assert st.count_requests("GET", "/orgs/acme/actions/permissions/workflow") == 1
    assert_issues(st, {name: fails - {"Read-only workflow token"}
                       for name, fails in expected.items()})

    # The organization opens up: the repositories' own settings count again.
    st.set_org_workflow_permissions("acme", "write")
    await scan_requests.request_full_scan(services_for(stack), inst.id, "user")
    await stack.drain()
    assert repo_reads() == 13
    assert_issues(st, expected)


async def test_without_the_org_permission_each_repository_is_read(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected = build_org(st, n=12)
    del inst.permissions["organization_administration"]
    await install(stack, st, inst)
    assert [status for method, path, status in st.requests
            if path == "/orgs/acme/actions/permissions/workflow"] == [403]
    assert st.count_requests("GET", "/repos/acme/svc-01/actions/permissions/workflow") == 1
    assert_issues(st, expected)
    assert (await full_scan(stack)).errored == 0


async def test_batch_job_run_twice_changes_nothing(stack: Stack,
                                                  fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected = build_org(st, n=6)
    await install(stack, st, inst)
    total_issues = issue_count(st, expected)
    full = await full_scan(stack)
    # arq runs a batch again when its worker died: the same job, id and all.
    async with stack.db() as db:
        ids = list(await db.scalars(select(Repository.id).where(
            Repository.last_full_scan_id == full.id)))
    job = await stack.redis.enqueue_job("scan_batch", inst.id, full.id, ids,
                                        _job_id=scan_requests.batch_job_id(full.id, 0))
    assert job is not None
    posts = st.count_requests("POST", "/repos")
    await stack.drain()
    assert issue_count(st, expected) == total_issues
    assert st.count_requests("POST", "/repos") == posts
    again = await full_scan(stack)
    assert (again.done, again.errored, again.violations_opened) == \
        (full.done, 0, full.violations_opened)
    assert_issues(st, expected)


async def test_rerun_after_a_crash_reclaims_its_locks_and_finishes(
        stack: Stack, fake_github: FakeGitHub) -> None:
    """A worker died mid-batch: its locks are still held (under the job's id), half the
    batch is recorded. The re-run takes its locks back and does only the rest."""
    st = fake_github.state
    inst, expected = build_org(st, n=6)
    scan_id, ids = await prepare_full_scan(stack, st, inst)
    job_id = scan_requests.batch_job_id(scan_id, 0)
    keys = [scan_requests.scan_key(inst.id, rid) for rid in ids]
    assert all(await try_lock_many(stack.redis, keys, job_id))  # left behind by the dead try
    first = await scanning.scan_batch(services_for(stack), inst.id, scan_id, ids[:3],
                                      token=job_id)
    assert (first.done, first.handed_off) == (3, 0)
    await stack.drain()  # the queued batch job: its re-run
    assert_issues(st, expected)
    full = await full_scan(stack)
    assert (full.status, full.done, full.errored) == ("ok", full.total, 0)
    assert [s for s in await stack.scans() if s.kind == "repo"] == []  # no lock was busy


async def test_busy_repository_is_handed_to_scan_repo(stack: Stack,
                                                      fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst, expected = build_org(st, n=4)
    scan_id, ids = await prepare_full_scan(stack, st, inst)
    busy = scan_requests.scan_key(inst.id, st.repo("acme/svc-02").id)
    # Something else (a scan_repo job, say) holds svc-02's lock while the batch runs.
    assert (await try_lock_many(stack.redis, [busy], "another job"))[0]
    out = await scanning.scan_batch(services_for(stack), inst.id, scan_id, ids,
                                    token=scan_requests.batch_job_id(scan_id, 0))
    assert (out.done, out.handed_off) == (len(ids) - 1, 1)
    assert "Require AGENTS.md" not in open_issues(st, "acme/svc-02")  # not recorded yet
    await stack.redis.delete(f"pe:lock:{busy}")
    await stack.drain()  # the scan_repo job does svc-02; the queued batch finds nothing left
    assert_issues(st, expected)
    full = await full_scan(stack)
    assert (full.status, full.done, full.errored) == ("ok", full.total, 0)


# ----------------------------------------------------------------------------- progress
def _ctx(svc: Any, job_id: str, job_try: int = 1) -> dict[str, Any]:
    return {"services": svc, "job_id": job_id, "job_try": job_try}


async def test_progress_counts_waiting_done_and_errored(
        stack: Stack, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    st = fake_github.state
    inst, _ = build_org(st, n=5)
    scan_id, ids = await prepare_full_scan(stack, st, inst)
    svc = services_for(stack)
    full = await full_scan(stack)
    assert (full.status, full.total, full.done, full.waiting) == ("running", 6, 0, 0)
    job_id = scan_requests.batch_job_id(scan_id, 0)

    # The budget is spent for an hour: the batch waits, and the scan says so.
    async def spent(*args: Any, **kwargs: Any) -> Any:
        raise RateLimited(time.time() + 3600, "GraphQL budget spent")

    monkeypatch.setattr(scanning, "fetch_snapshots", spent)
    with pytest.raises(Retry):
        await jobs.scan_batch(_ctx(svc, job_id), inst.id, scan_id, ids)
    full = await full_scan(stack)
    assert (full.status, full.done, full.waiting) == ("running", 0, 6)
    assert full.detail is not None and full.detail.startswith("waiting for rate limit until")

    # The budget is back; one repository's REST call keeps failing.
    monkeypatch.undo()
    st.fail_next(100, 403, path_prefix="/repos/acme/svc-01/actions")
    result = await jobs.scan_batch(_ctx(svc, job_id, 2), inst.id, scan_id, ids)
    assert result.startswith("5 done")
    full = await full_scan(stack)
    assert (full.status, full.done, full.errored, full.waiting, full.detail) == \
        ("running", 5, 0, 0, None)
    # svc-01 went to a scan_repo job of its own; when that gives up, it counts as errored
    # (and the job fails, for the job monitor's Retry).
    svc01 = st.repo("acme/svc-01").id
    key = scan_requests.scan_key(inst.id, svc01)
    (queued,) = [j for j in await stack.redis.queued_jobs() if str(j.job_id).startswith(key)]
    with pytest.raises(SnapshotFailed, match="Forbidden"):
        await jobs.scan_repo(_ctx(svc, str(queued.job_id), jobs.MAX_TRIES), inst.id, svc01)
    full = await full_scan(stack)
    assert (full.status, full.done, full.errored, full.waiting) == ("errored", 5, 1, 0)
    async with stack.db() as db:
        row = await db.get(Repository, svc01)
        assert row is not None and row.last_scan_status == "errored"
