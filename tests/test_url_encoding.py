"""Names that GitHub allows and URLs do not: labels, team slugs, file paths and branch
names with spaces, "#", "?", "%", "/" and non-ASCII text reach the fake GitHub as one path
segment (or one query value) each, through the app's real action and access code.

The fake GitHub routes like GitHub: aiohttp matches the percent-encoded path segment by
segment and hands the handler the decoded value, so a name that was not encoded lands on
another resource (or its "?" starts the query, its "#" cuts the URL) and the test sees a
404 where GitHub would answer 404 too. Its request log keeps the decoded path and the
query string apart, which is what the assertions read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy import update

from app.config.loader import ConfigError, parse_config
from app.config.models import AccessControl, OrgConfig
from app.db.models import Installation, Violation
from app.github.client import GitHub
from app.services.access import TEAM, grant_for
from app.services.rest_reads import fetch_file
from app.services.scan_requests import request_full_scan
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState, RequestRecord
from tests.stack import Stack, services_for

HASHY = "policy enforcer #1?%"  # a space, a fragment, a query and a stray percent sign
SLASHY = "area/ci ünï"  # a slash (common in label names) and non-ASCII text

CONFIG = f"""\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
    issue_details:
      labels: ["{HASHY}", "{SLASHY}", ".."]
"""


def gets(st: FakeState, path: str) -> list[RequestRecord]:
    return [r for r in st.log if r.method == "GET" and r.path == path]


# --- labels, through the create-issue action ---------------------------------------------------


async def test_labels_with_reserved_characters_are_found_created_and_kept(
    stack: Stack, fake_github: FakeGitHub
) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": CONFIG, "AGENTS.md": "x"}},
        {"name": "svc-new", "files": {}},  # the labels do not exist yet
        {"name": "svc-old", "files": {}},  # they do, in colours of their own
    ])
    for name in (HASHY, SLASHY):
        st.add_label("acme/svc-old", name, color="0e8a16")

    status, _ = await stack.deliver("installation", hooks.installation(st, inst))
    assert status == 202
    await stack.drain()

    for repo in ("acme/svc-new", "acme/svc-old"):
        [issue] = st.issues(repo)
        assert issue.state == "open" and issue.labels == [HASHY, SLASHY, ".."]
        labels = st.repo(repo).labels
        assert sorted(labels) == sorted(n.lower() for n in (HASHY, SLASHY, ".."))
        # Each label was asked for at its own URL: the decoded path is the whole name, and
        # nothing of it spilled into a query string.
        for name in (HASHY, SLASHY):
            [asked] = gets(st, f"/repos/{repo}/labels/{name}")
            assert asked.query == ""
            assert asked.status == (200 if repo == "acme/svc-old" else 404)
    # Found: left as they were. Not found: created with the App's colour. ".." cannot be
    # addressed by path at all (URL resolution would turn it into the repository itself),
    # so it is created without asking, and gets the App's colour too.
    assert {lab.name: lab.color for lab in st.repo("acme/svc-old").labels.values()} == {
        HASHY: "0e8a16", SLASHY: "0e8a16", "..": "d93f0b"}
    assert {lab.color for lab in st.repo("acme/svc-new").labels.values()} == {"d93f0b"}
    # No GET .../labels/.. resolved into the repository itself.
    assert not [r for r in st.log if r.path.rstrip("/") in ("/repos/acme/svc-new",
                                                            "/repos/acme/svc-old")]

    # The database forgets the issues: they are found again by their marker (the bot's
    # login, "[bot]" and all, as the creator filter), not filed twice.
    async with stack.db() as db, db.begin():
        await db.execute(update(Violation).values(issue_number=None, reconciled={}))
    posts = st.count_requests("POST", "/repos/acme/svc-new/issues")
    await request_full_scan(services_for(stack), inst.id, "user")
    await stack.drain()
    assert st.count_requests("POST", "/repos/acme/svc-new/issues") == posts
    assert [len(st.issues(r)) for r in ("acme/svc-new", "acme/svc-old")] == [1, 1]
    assert all(v.issue_number for v in await stack.violations("open"))
    listed = gets(st, "/repos/acme/svc-new/issues")
    assert listed and all(f"creator={st.bot_login}&" in r.query for r in listed), listed


# --- team slugs, through the access check ---------------------------------------------------------


@pytest.fixture
async def github(fake_github: FakeGitHub, redis_url: str) -> AsyncIterator[GitHub]:
    redis = aioredis.Redis.from_url(redis_url)
    client = GitHub(api_url=fake_github.url, redis=redis, app_id=fake_github.app_id,
                    private_key=fake_github.private_key_pem)
    try:
        yield client
    finally:
        await client.close()
        await redis.aclose()


def org_installation(st: FakeState) -> Installation:
    fake = st.add_installation("acme", ["svc"])
    fake.permissions["members"] = "read"
    return Installation(id=fake.id, account_login="acme", account_type="Organization")


async def test_a_config_team_is_asked_at_its_own_url(fake_github: FakeGitHub,
                                                     github: GitHub) -> None:
    """The characters the config allows in a slug besides letters and digits ("." and
    "_"), from a real config.yaml."""
    st = fake_github.state
    inst = org_installation(st)
    st.add_team("acme", "core.team_1", ["dana"])
    st.add_org_member("acme", "erin")
    cfg = parse_config("access_control:\n  authorized_team: acme/core.team_1\npolicies: []\n")

    assert (await grant_for(github, github.redis, inst, cfg, "dana", 0)).role == TEAM
    assert (await grant_for(github, github.redis, inst, cfg, "erin", 0)).role is None
    assert [r.status for r in gets(st, "/orgs/acme/teams/core.team_1/memberships/dana")] == [200]
    assert [r.status for r in gets(st, "/orgs/acme/teams/core.team_1/memberships/erin")] == [404]


async def test_a_team_slug_with_reserved_characters_stays_one_segment(
    fake_github: FakeGitHub, github: GitHub
) -> None:
    """GitHub derives slugs from team names with only [a-z0-9._-] left, and the config
    refuses anything else, so this cannot come from GitHub or a config.yaml: the config is
    built past its validation, and the fake holds a team GitHub could not have. What it
    shows is that whatever the slug holds, the check asks about that team and no other
    resource ("#" would cut the URL, "?" start a query, "/" and ".." climb the path)."""
    with pytest.raises(ConfigError, match="team"):
        parse_config(f"access_control:\n  authorized_team: acme/{HASHY}\npolicies: []\n")
    st = fake_github.state
    inst = org_installation(st)
    st.add_team("acme", HASHY, ["dana"])
    st.add_org_member("acme", "erin")
    for slug in (HASHY, "x/../../memberships"):
        cfg = OrgConfig.model_construct(
            access_control=AccessControl.model_construct(authorized_team=f"acme/{slug}"),
            policies=(), public_badges=False)
        dana = await grant_for(github, github.redis, inst, cfg, "dana", 0)
        erin = await grant_for(github, github.redis, inst, cfg, "erin", 0)
        # Only the team's member gets in: erin is an active org member, and a slug that
        # climbed to /orgs/acme/memberships/erin would have let her in.
        assert (dana.role, erin.role) == ((TEAM, None) if slug == HASHY else (None, None))
        for user in ("dana", "erin"):
            [asked] = gets(st, f"/orgs/acme/teams/{slug.lower()}/memberships/{user}")
            assert asked.query == ""


# --- file paths and branch names, through the snapshot's file read ------------------------------


async def test_a_file_path_and_branch_with_reserved_characters_are_read(
    fake_github: FakeGitHub, github: GitHub
) -> None:
    """Git allows "#", "%" and "/" in branch names and anything but NUL in file paths.
    A "%41" in a name stays "%41": decoded once, by the server, never twice."""
    st = fake_github.state
    fake = st.add_installation("acme", [{
        "name": "svc", "default_branch": "release/#1%",
        "files": {f"docs/{HASHY}/ünï.md": "hashy", "docs/100%41 sure.md": "percent"},
    }])
    gh = github.installation(fake.id)
    assert await fetch_file(gh, "acme/svc", f"docs/{HASHY}/ünï.md", "release/#1%") == "hashy"
    assert await fetch_file(gh, "acme/svc", "docs/100%41 sure.md", "release/#1%") == "percent"
    assert await fetch_file(gh, "acme/svc", "docs/100A sure.md", "release/#1%") is None
    [asked] = gets(st, f"/repos/acme/svc/contents/docs/{HASHY}/ünï.md")
    assert (asked.status, asked.query) == (200, "ref=release/#1%")  # decoded, like the path
