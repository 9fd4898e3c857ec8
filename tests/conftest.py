"""Shared fixtures: a real Redis (private unless REDIS_URL is set) and a real database."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from app.embedded_redis import EmbeddedRedis
from app.settings import async_database_url
from tests.fakegithub.server import FakeGitHub
from tests.fakegithub.state import FakeState
from tests.procs import PROCESS_LOGS
from tests.stack import SESSION_SECRET, WEBHOOK_SECRET, Stack, running_stack

pytest_plugins = ["tests.fakegithub.fixtures"]

# The fake GitHub enforces secondary limits only where a test switches them on; the app's
# governor is relaxed to match, so large test orgs are not paced at GitHub's 80 issues a
# minute. Tests of the governor set their own limits.
RELAXED_LIMITS = "points_per_minute=1000000,content_per_minute=1000000,content_per_hour=1000000"
os.environ.setdefault("GITHUB_RATE_LIMITS", RELAXED_LIMITS)


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """REDIS_URL when set, otherwise a private redis-server for the whole session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
async def redis_url(redis_server_url: str) -> AsyncIterator[str]:
    """A clean Redis database for one test (flushed before and after)."""
    client = aioredis.Redis.from_url(redis_server_url)
    await client.flushdb()
    yield redis_server_url
    await client.flushdb()
    await client.aclose()


# PostgreSQL joins the parameters only when it is configured, so nothing is skipped.
_BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(params=_BACKENDS)
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Storage tests run on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL too."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/test.db"
    return async_database_url(os.environ["TEST_DATABASE_URL"])


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for one test."""
    return f"sqlite+aiosqlite:///{tmp_path}/test.db"


@pytest.fixture
async def stack(request: pytest.FixtureRequest, fake_github: FakeGitHub, redis_url: str,
                database_url: str) -> AsyncIterator[Stack]:
    """The whole app against the fake GitHub; a test module may set STACK_SETTINGS."""
    async with running_stack(github_url=fake_github.url, app_id=fake_github.app_id,
                             private_key=fake_github.private_key_pem, redis_url=redis_url,
                             database_url=database_url,
                             **getattr(request.module, "STACK_SETTINGS", {})) as s:
        yield s


# ----------------------------------------------------------------------------- secrets
# No secret may reach a log: after each test, what its fake GitHub issued (installation and
# user tokens, the App's private key, client secret and webhook secret) and the stack's own
# secrets are looked for in every record logged meanwhile in this process (a root handler
# for the whole session) and in the output of every process the test started; the run
# fails at its end if one was found, saying which kind and where, never the value.
class _SessionLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str]] = []  # (logger, text), since the test began

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string still shows its parts
            text = f"{record.msg} {record.args}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        self.records.append((record.name, text))


_SESSION_LOG = _SessionLog()
_LEAKS: list[str] = []
_FIRST_LOG = [0]  # index into PROCESS_LOGS of the running test's first process log


def _issued_secrets(values: Iterable[object]) -> list[tuple[str, str]]:
    """(kind, value) of every secret the fakes among a test's fixtures issued."""
    states = [v.state if isinstance(v, FakeGitHub) else v for v in values
              if isinstance(v, FakeGitHub | FakeState)]
    found = [("webhook secret", WEBHOOK_SECRET), ("session secret", SESSION_SECRET)]
    for st in {id(s): s for s in states}.values():
        found += [("private key", line) for line in st.private_key_pem.splitlines()
                  if len(line) >= 16 and not line.startswith("-----")]
        found += [("installation token", token) for token in st.tokens]
        found += [("user access token", token) for token in st.user_tokens]
        found.append(("client secret", st.client_secret))
        if st.webhook_secret:
            found.append(("webhook secret", st.webhook_secret))
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    root = logging.getLogger()
    root.addHandler(_SESSION_LOG)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)  # what the app's processes log by default


def pytest_runtest_logstart(nodeid: str) -> None:
    _SESSION_LOG.records.clear()
    _FIRST_LOG[0] = len(PROCESS_LOGS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    funcargs: dict[str, object] = getattr(item, "funcargs", None) or {}
    secrets = _issued_secrets(funcargs.values())
    tmp = funcargs.get("tmp_path")
    try:
        yield
    finally:
        _look_for_leaks(item.nodeid, secrets, tmp if isinstance(tmp, Path) else None)


def _look_for_leaks(nodeid: str, secrets: list[tuple[str, str]], tmp: Path | None) -> None:
    files = set(PROCESS_LOGS[_FIRST_LOG[0]:])
    if tmp is not None and tmp.exists():
        files.update(tmp.rglob("*.log"))  # logs of processes other helpers started
    texts = [(f"a record of logger {name!r}", text) for name, text in _SESSION_LOG.records]
    texts += [(f"{path.name} ({path})", path.read_text(errors="replace"))
              for path in sorted(files) if path.is_file()]
    _SESSION_LOG.records.clear()
    for kind, value in secrets:
        for where, text in texts:
            if value in text:
                _LEAKS.append(f"{kind} found in {where}, during {nodeid}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_SESSION_LOG)
    if not _LEAKS:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.line("")
        reporter.write_sep("=", "secrets leaked into logs", red=True, bold=True)
    for leak in sorted(set(_LEAKS)):
        if reporter is not None:
            reporter.write_line(leak, red=True)
        else:
            print(f"secret leaked into a log: {leak}", file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
