"""A fake GitHub REST API (aiohttp, real sockets) and webhook builders for the test suite."""

from tests.fakegithub.server import FakeGitHub, create_app
from tests.fakegithub.state import FakeState

__all__ = ["FakeGitHub", "FakeState", "create_app"]
