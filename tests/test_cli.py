"""The command line, run as a user runs it (`python -m app ...` in a subprocess): offline
config checks, and a foreground scan against the fake GitHub that, with --dry-run, reads and
judges and changes nothing."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.services.store import ensure_installation
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.stack import SESSION_SECRET, WEBHOOK_SECRET, Stack, running_stack

ROOT = Path(__file__).parents[1]
CONFIG = """\
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
  - name: License
    type: file_exists
    action: create-issue
    params: {any_of: [LICENSE, LICENSE.md]}
    exclude: [svc-b]
exemptions:
  - repos: [svc-c]
    policies: [Require AGENTS.md]
    reason: being retired
"""


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", *args, cwd=ROOT, env=env or dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_check_config_names_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "config.yaml"
    good.write_text(CONFIG)
    code, out, _ = await run("check-config", str(good))
    assert (code, out.splitlines()[0]) == (0, f"{good}: valid, 2 policies")

    bad = tmp_path / "broken.yaml"
    bad.write_text(CONFIG.replace("any_of:", "anyof:").replace("reason: being retired",
                                                             "expires: 2027-01-01"))
    code, _, err = await run("check-config", str(bad))
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0].startswith("broken.yaml:8: policies[1].params.anyof: unknown key 'anyof'")
    assert lines[1] == "broken.yaml:11: exemptions[0]: missing required key 'reason'"
    code, _, err = await run("check-config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read" in err


@pytest.fixture
async def stack(fake_github: FakeGitHub, redis_url: str,
                any_database_url: str) -> AsyncIterator[Stack]:
    async with running_stack(github_url=fake_github.url, app_id=fake_github.app_id,
                             private_key=fake_github.private_key_pem, redis_url=redis_url,
                             database_url=any_database_url) as s:
        yield s


async def test_foreground_scan(stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [
        {"name": ".github", "files": {"config.yaml": CONFIG, "AGENTS.md": "x",
                                      "LICENSE": "MIT"}},
        {"name": "svc-a", "files": {"LICENSE.md": "MIT"}},
        {"name": "svc-b", "files": {"AGENTS.md": "x"}},
        {"name": "svc-c", "files": {}},
    ])
    # Known to the deployment (as its installation event records it), not scanned yet.
    async with stack.db() as db, db.begin():
        row = await ensure_installation(db, inst.id,
                                        hooks.installation(st, inst)["installation"]["account"])
        row.active = True
    env = {**os.environ, "APP_ID": str(fake_github.app_id),
           "PRIVATE_KEY": fake_github.private_key_pem, "WEBHOOK_SECRET": WEBHOOK_SECRET,
           "GITHUB_API_URL": fake_github.url, "SESSION_SECRET": SESSION_SECRET,
           "DATABASE_URL": stack.settings.DATABASE_URL, "REDIS_URL": str(stack.settings.REDIS_URL),
           "LOG_LEVEL": "WARNING"}
    def writes() -> list[str]:
        # Minting the installation token is the only POST a read may make.
        return [f"{r.method} {r.path}" for r in st.log if r.method != "GET"
                and r.path != "/graphql" and not r.path.endswith("/access_tokens")]


    code, out, err = await run("scan", "--installation", str(inst.id), "--dry-run", env=env)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[1:] if line.startswith("acme/")]
    table = {(r[0], " ".join(r[1:3]) if r[1] == "Require" else r[1]): line
             for r, line in zip(rows, [x for x in out.splitlines()[1:]
                                       if x.startswith("acme/")], strict=True)}
    assert "FAIL" in table[("acme/svc-a", "Require AGENTS.md")]
    assert "pass" in table[("acme/svc-a", "License")]
    assert "out of scope" in table[("acme/svc-b", "License")]
    assert "exempt (being retired, no expiry)" in table[("acme/svc-c", "Require AGENTS.md")]
    assert "FAIL" in table[("acme/svc-c", "License")]
    assert out.strip().endswith("failing (dry run: nothing recorded, no action taken)")
    # Nothing written anywhere: no GitHub write, no violation, no scan recorded.
    assert writes() == []
    assert await stack.violations() == [] and await stack.scans() == []

    # One repository, recorded: its violations are stored, and the actions queued.
    code, out, err = await run("scan", "--installation", str(inst.id), "--repo",
                               "acme/svc-c", env=env)
    assert code == 0, err
    assert "(recorded; actions queued for the workers)" in out
    assert sorted(v.state for v in await stack.violations()) == ["exempt", "open"]
    await stack.drain()
    assert [i.title for i in st.issues("acme/svc-c")] == ["Policy violation: License"]

    code, _, err = await run("scan", env=env)
    assert code == 2 and "--installation" in err
