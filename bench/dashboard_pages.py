"""Dashboard response times at the issue's scale: 10,000 repositories, 3,000 open violations.

One installation "acme" is seeded straight into the database with bulk INSERTs: 10,000
repositories (about 3% archived or forks, some errored, some never scanned, mixed
visibility, each with a snapshot cache as a scan leaves it), 3,000 open violations over the
four policies plus resolved ones, 20,000 action-log rows, a few hundred scans with one
running, 90 days of the compliance trend and a few failed jobs. The real web app then
serves it on a socket, against the fake GitHub for sign-in and the access check (the
user is an owner of the org, so also an operator of /jobs); the user signs in through the
fake's OAuth flow as a browser does.

Each page is requested --requests times in a row (after 10 warm-up requests) and timed
at the client, body read included; p50 / p95 / max are printed, and PASS or FAIL against
150 ms p95 for the pages. The exports are downloads, not pages: reported apart, no target.

    .venv/bin/python -m bench.dashboard_pages [--repos 10000] [--violations 3000] [--actions 20000]
        [--requests 200] [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]

CAREFUL with --database-url on PostgreSQL: like the test suite (tests/dbutil.py), the run
DROPS the public schema of that database first. The test suite uses
postgresql+asyncpg://postgres@127.0.0.1:5432/test too: run this only while no tests run
(the run refuses while another session is connected to the database, unless --force).
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import tempfile
import time
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.models import (
    ActionLog,
    ComplianceDay,
    FailedJob,
    Installation,
    Repository,
    Scan,
    Violation,
    utcnow,
)
from app.db.session import get_engine
from bench.common import with_redis
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import DEFAULT_INSTALLATION_PERMISSIONS
from tests.stack import Stack, running_stack
from tests.test_e2e import CONFIG, POLICIES

TARGET_MS = 150.0
WARM_UP = 10
OWNER = "olivia"
POLICY_TYPES = {"Require AGENTS.md": "has_agents_md",
                "Require catalog-info.yaml": "has_catalog_info_yaml",
                "Catalog owner": "catalog_info_has_owner",
                "Read-only workflow token": "correct_workflow_permissions"}
# Most of an org's repositories are services; q=svc-1 and q=svc-42 match some of them.
PREFIXES = ["svc", "svc", "svc", "svc", "svc", "lib", "web", "infra", "tool", "data"]


# ----------------------------------------------------------------------------- seeding
async def seed(stack: Stack, inst_id: int, repos: int, violations: int,
               actions: int = 20_000, rng: random.Random | None = None) -> dict[str, Any]:
    """Store the org; returns what the measured URLs need (a violating repo, a scan id)."""
    rng = rng or random.Random(42)
    now = utcnow()
    repo_rows: list[dict[str, Any]] = []
    evaluated: list[int] = []
    for i in range(repos):
        rid = 10_000_000 + i
        archived = rng.random() < 0.015
        fork = not archived and rng.random() < 0.015
        never = rng.random() < 0.03
        errored = not never and rng.random() < 0.02
        name = f"acme/{PREFIXES[i % len(PREFIXES)]}-{i:04d}"
        repo_rows.append({
            "id": rid, "installation_id": inst_id, "full_name": name,
            "archived": archived, "fork": fork,
            "visibility": rng.choices(["private", "internal", "public"], [6, 3, 1])[0],
            "default_branch": "main", "present": rng.random() > 0.005,
            "last_scanned_at": None if never else now - timedelta(hours=rng.uniform(0, 72)),
            "last_scan_status": None if never else ("errored" if errored else "ok"),
            "last_scan_error": "GitHub answered 502 while reading the tree" if errored else None,
            "last_full_scan_id": None if never else 1,
            "listed_version": None if never else f"2026-11-{rng.randint(1, 28):02d}T00:00:00Z",
            "snapshot_cache": None if never else {
                "version": "2026-11-01T00:00:00Z", "default_branch": "main",
                "files": {"AGENTS.md": "# Agents\n\nHow to work in this repository.\n",
                          "catalog-info.yaml": "apiVersion: backstage.io/v1alpha1\n"
                                               "kind: Component\nspec:\n  owner: group:team\n",
                          ".github/workflows/ci.yml": None}},
        })
        if not (archived or fork or never or errored):
            evaluated.append(rid)
    # Open violations: (repository, policy) pairs, a repository failing 1 to 3 policies.
    pairs: set[tuple[int, str]] = set()
    while len(pairs) < min(violations, len(evaluated) * len(POLICIES)):
        rid = rng.choice(evaluated[: max(1, len(evaluated) * 2 // 3)])
        for policy in rng.sample(POLICIES, rng.choice([1, 1, 1, 2, 2, 3])):
            if len(pairs) < violations:
                pairs.add((rid, policy))
    resolved: set[tuple[int, str]] = set()
    while len(resolved) < violations // 2:
        pair = (rng.choice(evaluated), rng.choice(POLICIES))
        if pair not in pairs:
            resolved.add(pair)
    violation_rows: list[dict[str, Any]] = []
    for vid, ((rid, policy), state) in enumerate(
            [(p, "open") for p in sorted(pairs)] + [(p, "resolved") for p in sorted(resolved)],
            start=1):
        seen = now - timedelta(days=rng.uniform(0, 90))
        violation_rows.append({
            "id": vid, "installation_id": inst_id, "repository_id": rid, "policy": policy,
            "policy_type": POLICY_TYPES[policy], "state": state,
            "message": f"{policy}: the repository does not comply (see the policy's docs).",
            "details": {"path": "AGENTS.md", "checked": ["AGENTS.md", "docs/AGENTS.md"]},
            "first_seen_at": seen, "last_seen_at": now,
            "resolved_at": now - timedelta(days=rng.uniform(0, 10)) if state == "resolved"
            else None,
            "issue_number": rng.randint(1, 400), "check_run_id": None,
            "reconciled": {"create-issue": state},
        })
    names = {r["id"]: r["full_name"] for r in repo_rows}
    action_rows: list[dict[str, Any]] = []
    for n in range(actions):
        v = rng.choice(violation_rows)
        status = rng.choices(["success", "failed", "skipped"], [90, 4, 6])[0]
        action = rng.choices(["create-issue", "log-only"], [3, 1])[0]
        action_rows.append({
            "installation_id": inst_id, "repository_id": v["repository_id"],
            "repository": names[v["repository_id"]], "violation_id": v["id"],
            "policy": v["policy"], "action": action, "status": status,
            "detail": "GitHub answered 502" if status == "failed"
            else f"opened issue #{v['issue_number']}",
            "url": f"https://github.com/{names[v['repository_id']]}/issues/{v['issue_number']}",
            "at": now - timedelta(days=90) + timedelta(days=90) * n / actions,
        })
    scan_rows: list[dict[str, Any]] = []
    for day in range(90, 0, -1):  # one full scan a day, then repository scans
        started = now - timedelta(days=day)
        scan_rows.append({
            "installation_id": inst_id, "kind": "full", "trigger": "cron", "status": "ok",
            "repository_id": None, "total": repos, "done": repos, "errored": 0, "waiting": 0,
            "violations_open": violations, "violations_opened": rng.randint(0, 20),
            "violations_resolved": rng.randint(0, 20), "detail": None, "started_at": started,
            "finished_at": started + timedelta(minutes=11)})
        for _ in range(3):
            at = started + timedelta(hours=rng.uniform(1, 23))
            scan_rows.append({
                "installation_id": inst_id, "kind": "repo", "trigger": "webhook:push",
                "status": "ok", "repository_id": rng.choice(evaluated), "total": 1, "done": 1,
                "errored": 0, "waiting": 0, "violations_open": 0, "violations_opened": 0,
                "violations_resolved": 0, "detail": None, "started_at": at,
                "finished_at": at + timedelta(seconds=2)})
    scan_rows.append({
        "installation_id": inst_id, "kind": "full", "trigger": "user:olivia", "status": "running",
        "repository_id": None, "total": repos, "done": repos * 2 // 5, "errored": 3,
        "waiting": 0, "violations_open": 0, "violations_opened": 4, "violations_resolved": 2,
        "detail": "scanning repositories", "started_at": now - timedelta(minutes=4),
        "finished_at": None})
    days = [{"installation_id": inst_id, "day": (now - timedelta(days=d)).strftime("%Y-%m-%d"),
             "evaluated": len(evaluated), "compliant": len(evaluated) - 2000 + d,
             "open_violations": violations + d * 5, "at": now - timedelta(days=d)}
            for d in range(89, -1, -1)]
    failed = [{"job_id": f"job-{n}", "function": "scan_repository",
               "args": {"args": [inst_id, 10_000_000 + n]}, "installation_id": inst_id,
               "tries": 5, "enqueued_at": now, "started_at": now, "failed_at": now,
               "error": "RateLimited: secondary rate limit", "retried_at": None,
               "retried_by": None, "retry_job_id": None} for n in range(20)]

    engine = get_engine(stack.settings.DATABASE_URL)
    async with engine.begin() as conn:
        await conn.execute(insert(Installation), [{
            "id": inst_id, "account_login": "acme", "account_type": "Organization",
            "active": True, "suspended": False, "config_status": "valid",
            "config_error": None, "config_sha": "c0ffee", "config_text": CONFIG,
            "config_notes": None, "config_checked_at": now, "created_at": now,
            "updated_at": now}])
        await conn.execute(insert(Repository), repo_rows)
        await conn.execute(insert(Violation), violation_rows)
        await conn.execute(insert(ActionLog), action_rows)
        await conn.execute(insert(Scan), scan_rows)
        await conn.execute(insert(ComplianceDay), days)
        await conn.execute(insert(FailedJob), failed)
    if engine.dialect.name == "postgresql":
        # What autovacuum does within a minute of such a load.
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
    by_repo: dict[int, int] = {}
    for rid, _ in pairs:
        by_repo[rid] = by_repo.get(rid, 0) + 1
    worst = max(by_repo, key=lambda rid: (by_repo[rid], -rid))
    return {"violating_repo": names[worst].split("/", 1)[1], "running_scan": len(scan_rows),
            "evaluated": len(evaluated), "open": len(pairs), "resolved": len(resolved),
            "actions": len(action_rows), "scans": len(scan_rows)}


# ----------------------------------------------------------------------------- measuring
def percentile(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)]


async def measure(http: aiohttp.ClientSession, url: str, requests: int) -> list[float]:
    times: list[float] = []
    for n in range(WARM_UP + requests):
        start = time.perf_counter()
        async with http.get(url, allow_redirects=False) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise SystemExit(f"{url}: {resp.status} {body[:300]!r}")
        if n >= WARM_UP:
            times.append((time.perf_counter() - start) * 1000)
    return sorted(times)


def row(label: str, ms: list[float], size: int, target: bool) -> str:
    p95 = percentile(ms, 95)
    verdict = ("PASS" if p95 <= TARGET_MS else "FAIL") if target else ""
    return (f"  {label:<84} {percentile(ms, 50):7.1f} {p95:7.1f} {ms[-1]:7.1f} "
            f"{size / 1024:7.0f}  {verdict}")


async def others_connected(url: str) -> int:
    """Sessions of other clients on this PostgreSQL database (a test run, say)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")) or 0)
    finally:
        await engine.dispose()


async def run(repos: int, violations: int, actions: int, requests: int,
              database_url: str | None, redis_url: str, force: bool = False) -> None:
    url = database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/dashboard.db"
    if make_url(url).get_backend_name() == "postgresql" and not force:
        busy = await others_connected(url)
        if busy:
            raise SystemExit(f"{busy} other session(s) on this database (tests running?); "
                             "its schema would be dropped under them. --force to go on.")
    async with FakeGitHub() as gh:
        st = gh.state
        st.web_url = gh.url
        inst = st.add_installation(
            "acme", 0, permissions={**DEFAULT_INSTALLATION_PERMISSIONS, "members": "read"})
        st.add_org_member("acme", OWNER, "admin")
        async with running_stack(github_url=gh.url, app_id=gh.app_id,
                                 private_key=gh.private_key_pem, redis_url=redis_url,
                                 database_url=url, GITHUB_URL=gh.url,
                                 GITHUB_CLIENT_ID=st.client_id,
                                 GITHUB_CLIENT_SECRET=st.client_secret,
                                 LOG_LEVEL="WARNING") as stack:
            await stack.redis.flushdb()
            start = time.perf_counter()
            seeded = await seed(stack, inst.id, repos, violations, actions)
            print(f"{make_url(url).get_backend_name()}: seeded {repos:,} repositories "
                  f"({seeded['evaluated']:,} evaluated), {seeded['open']:,} open + "
                  f"{seeded['resolved']:,} resolved violations, {seeded['actions']:,} "
                  f"action-log rows, {seeded['scans']} scans (one running), 90 trend days "
                  f"in {time.perf_counter() - start:.1f} s")
            # As the web process does at start-up (app/web/app.py, create_runner).
            gc.collect()
            gc.freeze()
            repo, scan_id, policy = seeded["violating_repo"], seeded["running_scan"], POLICIES[1]
            pages = [
                "/orgs/acme",
                "/orgs/acme/repos",
                "/orgs/acme/repos?q=svc-1&state=violating&sort=violations&order=desc",
                f"/orgs/acme/repos?policy={policy}&sort=scanned&order=desc&page=3",
                "/orgs/acme/repos?partial=1&q=svc-42",
                f"/orgs/acme/repos/{repo}",
                "/orgs/acme/scans",
                f"/orgs/acme/scans/{scan_id}?format=json",
                "/orgs/acme/actions",
                f"/orgs/acme/actions?status=failed&policy={policy}",
                "/orgs/acme/config",
                "/jobs",
            ]
            exports = ["/orgs/acme/repos?format=csv", "/orgs/acme/actions?format=json"]
            async with aiohttp.ClientSession(
                    cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.post(f"{gh.url}/session",
                                     data={"login": OWNER, "return_to": "/"},
                                     allow_redirects=False) as resp:
                    assert resp.status in (302, 303), resp.status
                async with http.get(f"{stack.base_url}/login") as resp:
                    await resp.read()
                    assert resp.status == 200 and resp.url.path == "/orgs/acme", resp.url
                header = (f"  {'page':<84} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
                          f"{'KiB':>7}")
                print(f"{requests} sequential requests per URL after {WARM_UP} warm-up, "
                      f"signed in as an org owner; target p95 ≤ {TARGET_MS:.0f} ms")
                print(header)
                failed = 0
                for path in pages:
                    ms = await measure(http, stack.base_url + path, requests)
                    async with http.get(stack.base_url + path) as resp:
                        size = len(await resp.read())
                    failed += percentile(ms, 95) > TARGET_MS
                    print(row(path, ms, size, True))
                print("exports (downloads, no target):")
                for path in exports:
                    ms = await measure(http, stack.base_url + path, max(20, requests // 10))
                    async with http.get(stack.base_url + path) as resp:
                        size = len(await resp.read())
                    print(row(path, ms, size, False))
            print(f"{'PASS' if not failed else 'FAIL'}: {len(pages) - failed} of {len(pages)} "
                  f"pages within {TARGET_MS:.0f} ms p95")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--violations", type=int, default=3_000)
    parser.add_argument("--actions", type=int, default=20_000, help="action-log rows")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", default=None,
                        help="default: a new SQLite file; a PostgreSQL database is WIPED")
    parser.add_argument("--force", action="store_true",
                        help="wipe the PostgreSQL database even while others are connected")
    args = parser.parse_args()
    with_redis(lambda url: run(args.repos, args.violations, args.actions,
                               args.requests, args.database_url, url, args.force))


if __name__ == "__main__":
    main()
