"""pytest fixtures for the fake GitHub server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakegithub.server import FakeGitHub


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    """A started fake GitHub on 127.0.0.1 (fresh state per test); `fake_github.url` is the API."""
    async with FakeGitHub() as gh:
        yield gh
