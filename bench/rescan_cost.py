"""What a full scan costs in GitHub requests and rate-limit points, cold and again.

GitHub's ETags are specific to the token that asked, and an installation token lives an
hour, so a nightly rescan meets a new token: its If-None-Match gets 200s, not 304s. The
fake GitHub does the same (token-specific ETags, Last-Modified on the repository, file
contents and issues, If-Modified-Since honoured there). For each organization default of
the workflow token ("write": one REST read per repository; "read": none), this measures
  cold            the first full scan (installation webhook)
  same hour       a rescan of the unchanged org with the same token, then a second one
  token rotated   a rescan after the token expired (the fake's token expired and the
                  app's cached copy gone, as an hour later), then a second one
and prints requests (REST + GraphQL, 304s included; token creation shown apart, it spends
the App's budget) and points charged to the installation's budgets (REST answers other
than 304 + GraphQL points), per repository, with where the paid REST requests went.

One in-process arq worker, real Redis (REDIS_URL or embedded), SQLite, policies log-only
(no issues filed), no latency or secondary limits (counts, not time, are measured).

    .venv/bin/python -m bench.rescan_cost [--repos 200]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter
from dataclasses import dataclass

from app.services.scan_requests import request_full_scan
from bench.common import with_redis
from bench.scan_scale import LOG_ONLY
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState
from tests.stack import Stack, running_stack, services_for
from tests.test_e2e import build_org

TOKEN_PATH = re.compile(r"^/app/installations/\d+/access_tokens$")


@dataclass
class Cost:
    label: str
    requests: int  # REST + GraphQL the installation sent, 304s included
    not_modified: int
    points: int  # installation's REST (not 304) + GraphQL points
    graphql: int  # GraphQL points alone
    tokens: int  # installation tokens created (the App's budget)
    paid: Counter[str]  # REST requests that spent budget, by endpoint


def endpoint(path: str) -> str:
    path = re.sub(r"^/repos/[^/]+/[^/]+", "/repos/{o}/{r}", path)
    return re.sub(r"^/orgs/[^/]+", "/orgs/{org}", path)


def spent(st: FakeState, installation_id: int) -> tuple[int, int]:
    key = f"installation:{installation_id}"
    return st.bucket(key, "core").used, st.bucket(key, "graphql").used


async def measure(label: str, st: FakeState, stack: Stack, installation_id: int,
                  cold: bool) -> Cost:
    st.clear_log()
    core0, gql0 = spent(st, installation_id)
    if cold:
        await stack.deliver("installation", hooks.installation(st, st.installations[
            installation_id]))
    else:
        await request_full_scan(services_for(stack), installation_id, "bench")
    await stack.drain()
    core1, gql1 = spent(st, installation_id)
    mine = [r for r in st.log if r.installation_id == installation_id]
    paid = Counter(endpoint(r.path) for r in mine
                   if r.status != 304 and r.path != "/graphql")
    return Cost(label, len(mine), sum(1 for r in mine if r.status == 304),
                (core1 - core0) + (gql1 - gql0), gql1 - gql0,
                sum(1 for r in st.log if TOKEN_PATH.match(r.path)), paid)


async def rotate_token(st: FakeState, stack: Stack, installation_id: int) -> None:
    """An hour later: GitHub's token has expired, and so has the app's cached copy of it
    (its Redis key lives until five minutes before expiry)."""
    st.expire_tokens(installation_id)
    await stack.redis.delete(f"pe:token:{installation_id}")


async def run_one(repos: int, org_default: str, redis_url: str) -> tuple[int, list[Cost]]:
    tmp = tempfile.mkdtemp()
    async with FakeGitHub() as gh:
        st = gh.state
        inst, expected = build_org(st, n=repos)
        st.set_file("acme/.github", "config.yaml", LOG_ONLY)
        st.set_org_workflow_permissions("acme", org_default)
        st.rate_limit.limit = st.rate_limit.graphql_limit = 10**7  # not what is measured
        async with running_stack(github_url=gh.url, app_id=gh.app_id,
                                 private_key=gh.private_key_pem, redis_url=redis_url,
                                 database_url=f"sqlite+aiosqlite:///{tmp}/rescan.db",
                                 LOG_LEVEL="WARNING") as stack:
            await stack.redis.flushdb()
            costs = [await measure("cold", st, stack, inst.id, cold=True)]
            for label in ("same hour", "same hour, again"):
                costs.append(await measure(label, st, stack, inst.id, cold=False))
            await rotate_token(st, stack, inst.id)
            costs.append(await measure("token rotated", st, stack, inst.id, cold=False))
            costs.append(await measure("rotated, again", st, stack, inst.id, cold=False))
        return len(expected), costs


async def run(repos: int, redis_url: str) -> None:
    print(f"{repos} scannable repositories (+ .github, an archived repository and a fork); "
          "policies log-only")
    print(f"{'org default':11s} {'scan':17s} {'requests':>8s} {'304':>5s} {'/repo':>6s} "
          f"{'points':>6s} {'/repo':>6s} {'GraphQL':>7s} {'tokens':>6s}  paid REST requests")
    for org_default in ("write", "read"):
        n, costs = await run_one(repos, org_default, redis_url)
        for c in costs:
            paid = ", ".join(f"{count} {path}" for path, count in c.paid.most_common())
            print(f"{org_default:11s} {c.label:17s} {c.requests:8d} {c.not_modified:5d} "
                  f"{c.requests / n:6.3f} {c.points:6d} {c.points / n:6.3f} {c.graphql:7d} "
                  f"{c.tokens:6d}  {paid or '-'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=200)
    args = parser.parse_args()
    with_redis(lambda url: run(args.repos, url))


if __name__ == "__main__":
    main()
