"""First run: registering the App with GitHub's manifest flow, against the fake GitHub."""

from __future__ import annotations

import html
import json
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from app.settings import Settings
from app.web import create_app
from tests.fakegithub.server import FakeGitHub
from tests.stack import SESSION_SECRET


@pytest.fixture
async def unregistered(fake_github: FakeGitHub, redis_url: str, database_url: str,
                       tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """The web app with no App credentials yet; (its URL, its .env path)."""
    env_path = tmp_path / ".env"
    env_path.write_text("LOG_LEVEL=INFO\n")
    settings = Settings(_env_file=None, REDIS_URL=redis_url, DATABASE_URL=database_url,
                        SESSION_SECRET=SESSION_SECRET, GITHUB_URL=fake_github.url,
                        GITHUB_API_URL=fake_github.url)
    runner = web.AppRunner(create_app(settings, env_path=env_path))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", env_path
    finally:
        await runner.cleanup()


def _form(page: str, marker: str) -> tuple[str, dict[str, str]]:
    match = re.search(rf'<form method="post" action="([^"]+)" {marker}>(.*?)</form>', page,
                      re.S)
    assert match, f"no form {marker}"
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', match.group(2)))
    return html.unescape(match.group(1)), {k: html.unescape(v) for k, v in fields.items()}


async def test_manifest_flow_registers_and_writes_env(unregistered: tuple[str, Path],
                                                      fake_github: FakeGitHub) -> None:
    base, env_path = unregistered
    st = fake_github.state
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/") as resp:
            page = await resp.text()
        assert "Register the GitHub App" in page
        action, fields = _form(page, 'data-register="user"')
        assert action.startswith(f"{fake_github.url}/settings/apps/new?state=")
        manifest: dict[str, Any] = json.loads(fields["manifest"])
        assert manifest["hook_attributes"]["url"] == f"{base}/api/github/webhooks"
        assert manifest["redirect_url"] == f"{base}/setup/callback"
        assert manifest["callback_urls"] == [f"{base}/login/callback"]
        assert manifest["default_permissions"]["members"] == "read"
        assert "push" in manifest["default_events"]
        # The browser is signed in on github.com and posts the manifest there.
        async with http.post(f"{fake_github.url}/session",
                             data={"login": "founder", "return_to": "/"}):
            pass
        async with http.post(action, data=fields) as resp:
            confirm = await resp.text()
        assert "Create GitHub App" in confirm
        target = re.search(r'<form action="([^"]+)" method="post">', confirm)
        assert target is not None
        async with http.post(f"{fake_github.url}{target.group(1)}",
                             data={"name": "policy-enforcer"}) as resp:
            done = await resp.text()
            assert resp.status == 200 and resp.url.path == "/setup/callback"
        assert "is registered" in done and "installations/new" in done
        # The credentials went to .env (owner-only), never to the page.
        env = env_path.read_text()
        assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
        assert "LOG_LEVEL=INFO" in env  # other lines kept
        assert f'APP_ID="{st.app_id}"' in env
        assert f'GITHUB_CLIENT_ID="{st.client_id}"' in env
        assert f'GITHUB_CLIENT_SECRET="{st.client_secret}"' in env
        assert st.webhook_secret is not None and f'WEBHOOK_SECRET="{st.webhook_secret}"' in env
        assert "BEGIN RSA PRIVATE KEY" in env or "BEGIN PRIVATE KEY" in env
        for secret in (st.client_secret, st.webhook_secret, "PRIVATE KEY"):
            assert secret not in done
        # .env loads back into settings: the App is registered.
        settings = Settings(_env_file=str(env_path), SESSION_SECRET=SESSION_SECRET)
        assert st.app_id == settings.APP_ID and settings.has_app_credentials
        assert settings.private_key_pem() == st.private_key_pem.strip() + "\n"
        # The code was single use: replaying the callback fails without touching .env.
        async with http.get(str(resp.url)) as again:
            assert again.status in (400, 404)
        # Registered: the flow is closed until the restart that reads .env.
        async with http.get(f"{base}/") as resp:
            assert "data-register" not in await resp.text()


async def test_callback_with_a_foreign_state_is_refused(unregistered: tuple[str, Path]) -> None:
    base, env_path = unregistered
    async with aiohttp.ClientSession() as http, \
            http.get(f"{base}/setup/callback", params={"code": "x", "state": "y"}) as r:
        assert r.status == 400
    assert "APP_ID" not in env_path.read_text()


async def test_registration_is_only_offered_on_loopback(unregistered: tuple[str, Path]) -> None:
    base, _ = unregistered
    async with aiohttp.ClientSession() as http:
        # Through a proxy, the peer is not this machine: no registration form.
        headers = {"X-Forwarded-For": "203.0.113.9"}
        async with http.get(f"{base}/", headers=headers) as resp:
            page = await resp.text()
        assert "data-register" not in page and "only on this machine" in page
        async with http.get(f"{base}/setup/callback", headers=headers,
                            params={"code": "x", "state": "y"}) as resp:
            assert resp.status == 404
        # A proxy on this machine that adds no header still forwards the public Host, or
        # its own header.
        for headers in ({"Host": "enforcer.example.com"}, {"X-Real-IP": "203.0.113.9"},
                        {"Via": "1.1 proxy"}):
            async with http.get(f"{base}/", headers=headers) as resp:
                assert "data-register" not in await resp.text(), headers
        async with http.get(f"{base}/", headers={"Host": "localhost:3000"}) as resp:
            assert "data-register" in await resp.text()
