"""What a full scan costs per repository with every built-in policy type enabled, by source.

An org of `--repos` repositories, half compliant and half breaking every rule (files,
settings, branch protection and rulesets, security features, collaborators and teams,
workflows, binaries), with a config that enables all types (log-only, so no issue is filed
and only reading is measured). On the fake GitHub at `--latency` (100 ms) with its
secondary limits on and GitHub's numbers (900 points a minute, 100 concurrent), the App's
governor at GitHub's numbers too; the clock sped up `--speed` times (a minute is 60/speed
seconds) for both. Prints, for a cold scan (installation webhook) and a rescan in the same
token's hour:
  REST requests that spent the primary budget (not 304) per repository, by source;
  GraphQL points (batched per 100 repositories) per repository;
  secondary-limit answers (target 0);
and the targets: cold <= 3 REST per repository, rescan <= 0.1.

    .venv/bin/python -m bench.source_cost [--repos 1000] [--latency 0.1] [--speed 10]
        [--org-default write|read]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import Counter
from typing import Any

from app.policies import REGISTRY
from app.services.scan_requests import request_full_scan
from bench.common import with_redis
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, Installation, ruleset_rule
from tests.stack import MANIFEST, Stack, running_stack, services_for
from tests.test_policy_types_e2e import DANGEROUS_WORKFLOW, SAFE_WORKFLOW

# Which source a REST path is paid for (the first match).
SOURCES: list[tuple[str, re.Pattern[str]]] = [(name, re.compile(rx)) for name, rx in [
    ("branch_rules", r"^/repos/[^/]+/[^/]+/(branches/[^/]+/protection|rules/branches/)"),
    ("collaborators", r"^/repos/[^/]+/[^/]+/(collaborators|teams)"),
    ("security", r"^/repos/[^/]+/[^/]+(/vulnerability-alerts)?$"),
    ("codeowners", r"^/repos/[^/]+/[^/]+/codeowners/errors"),
    ("tree", r"^/repos/[^/]+/[^/]+/git/trees/"),
    ("custom_properties", r"^/repos/[^/]+/[^/]+/properties/values"),
    ("workflow_permissions", r"/actions/permissions"),
    ("files (REST)", r"^/repos/[^/]+/[^/]+/contents/"),
    ("repository listing", r"^/installation/repositories"),
]]


def source_of(path: str) -> str:
    return next((name for name, rx in SOURCES if rx.search(path)), path)


def config() -> str:
    """Every registered type, with its documented example parameters."""
    import json

    lines = ["policies:"]
    for name, impl in REGISTRY.items():
        lines += [f"  - name: {name}", f"    type: {name}", "    action: log-only"]
        if impl.example:
            lines.append(f"    params: {json.dumps(impl.example)}")
    return "\n".join(lines) + "\n"


def build(st: FakeState, repos: int) -> Installation:
    specs: list[dict[str, Any]] = [{"name": ".github", "files": {"config.yaml": config()}}]
    old = time.time() - 800 * 86400
    for i in range(repos):
        good = i % 2 == 0
        files = ({"README.md": "x", "CONTRIBUTING.md": "x", "LICENSE": "MIT",
                  "AGENTS.md": "x", "catalog-info.yaml": "spec:\n  owner: a\n  lifecycle: "
                  "production\n", ".github/CODEOWNERS": "* @acme/platform\n",
                  ".github/workflows/ci.yml": SAFE_WORKFLOW} if good else
                 {"catalog-info.yaml": "spec:\n  lifecycle: retired\n",
                  "CODEOWNERS": "* @nobody\n", ".github/workflows/pr.yml": DANGEROUS_WORKFLOW,
                  "tools/app.exe": "MZ\x00\x00"})
        specs.append({"name": f"svc-{i:04d}", "files": files, "visibility": "private",
                      "description": "a service" if good else None,
                      "topics": ["team-platform"] if good else [],
                      **({} if good else {"pushed_at": old})})
    # With the permissions app.yml asks for (members: read lists the org's teams).
    inst = st.add_installation("acme", specs, permissions=MANIFEST["default_permissions"],
                               events=MANIFEST["default_events"])
    st.add_team("acme", "platform", [])
    for i in range(repos):
        name = f"acme/svc-{i:04d}"
        if i % 2 == 0:
            st.set_repo_settings(name, delete_branch_on_merge=True, has_wiki=False,
                                 allow_merge_commit=False)
            st.protect_branch(name, "main", required_approving_review_count=1,
                              dismiss_stale_reviews=True, required_status_checks=["ci/test"],
                              allow_force_pushes=False, allow_deletions=False)
            st.add_team_access(name, "platform", "admin")
            st.set_security(name, advanced_security=True, secret_scanning=True,
                            secret_scanning_push_protection=True, dependabot_alerts=True)
        else:
            st.add_ruleset(name, "trial", [ruleset_rule(
                "pull_request", required_approving_review_count=1)], enforcement="evaluate")
            st.set_permission(name, "eve", "admin")
    return inst


async def measure(st: FakeState, stack: Stack, inst: Installation, cold: bool
                  ) -> tuple[Counter[str], int, int, float]:
    st.clear_log()
    key = f"installation:{inst.id}"
    gql0 = st.bucket(key, "graphql").used
    secondary0 = st.secondary_limit_responses
    started = time.monotonic()
    if cold:
        await stack.deliver("installation", hooks.installation(st, inst))
    else:
        await request_full_scan(services_for(stack), inst.id, "bench")
    await stack.drain()
    elapsed = time.monotonic() - started
    paid = Counter(source_of(r.path) for r in st.log if r.installation_id == inst.id
                   and r.status != 304 and r.path != "/graphql")
    return (paid, st.bucket(key, "graphql").used - gql0,
            st.secondary_limit_responses - secondary0, elapsed)


async def run(repos: int, latency: float, speed: float, org_default: str,
              redis_url: str) -> None:
    minute = 60 / speed
    limits = (f"minute_seconds={minute},hour_seconds={3600 / speed},"
              "points_per_minute=900,content_per_minute=80,content_per_hour=500")
    tmp = tempfile.mkdtemp()
    async with FakeGitHub() as gh:
        st = gh.state
        inst = build(st, repos)
        # "read": GitHub applies it to every repository, so none is asked for its own.
        st.set_org_workflow_permissions("acme", org_default)
        st.secondary.enabled = True
        st.secondary.minute_seconds, st.secondary.hour_seconds = minute, 3600 / speed
        st.secondary.retry_after = max(1, round(minute))
        st.rate_limit.installation_limits[inst.id] = 10**7  # primary budget not measured
        st.latency = latency
        async with running_stack(github_url=gh.url, app_id=gh.app_id,
                                 private_key=gh.private_key_pem, redis_url=redis_url,
                                 database_url=f"sqlite+aiosqlite:///{tmp}/cost.db",
                                 LOG_LEVEL="WARNING", GITHUB_RATE_LIMITS=limits) as stack:
            await stack.redis.flushdb()
            results = [("cold", await measure(st, stack, inst, cold=True)),
                       ("rescan, same hour", await measure(st, stack, inst, cold=False))]
    print(f"{repos} repositories, {len(REGISTRY)} policy types, latency {latency * 1000:.0f} ms,"
          f" secondary limits on (900 points/min), clock x{speed:g}, org default workflow "
          f"token {org_default!r}")
    for label, (paid, graphql, secondary, elapsed) in results:
        total = sum(v for k, v in paid.items() if k != "repository listing")
        print(f"\n{label}: {total / repos:.3f} paid REST requests per repository "
              f"(target {'<= 3' if label == 'cold' else '<= 0.1'}), GraphQL "
              f"{graphql / repos:.3f} points per repository, {secondary} secondary-limit "
              f"answers, {elapsed:.1f} s ({elapsed * speed / 60:.1f} GitHub minutes)")
        for source, count in paid.most_common():
            print(f"  {source:22s} {count:7d}  {count / repos:6.3f} per repository")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--speed", type=float, default=10)
    parser.add_argument("--org-default", choices=("write", "read"), default="write",
                        help="the organization's default workflow token permissions")
    args = parser.parse_args()
    with_redis(lambda url: run(args.repos, args.latency, args.speed, args.org_default, url))


if __name__ == "__main__":
    main()
