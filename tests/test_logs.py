"""LOG_FORMAT=json: one JSON object per line, with the ids bound by log_context, masked as
the text format is (secrets, GitHub tokens, tracebacks). Also a webhook delivery's lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from app.logs import (
    ContextFilter,
    RedactingJsonFormatter,
    bind_log_fields,
    log_context,
    log_fields,
    log_handler,
    setup_logging,
)
from app.settings import Settings
from app.web.webhooks import WEBHOOK_PATH
from tests.fakegithub.server import FakeGitHub
from tests.ops import ops_app, ops_settings, serve, signed_delivery
from tests.stack import Stack

# A secret with characters JSON escapes, so it is masked in its escaped form too.
WEBHOOK_SECRET = 'hook-"secret"\\with-escapes'
METRICS_TOKEN = "metrics-token-0123456789abcdef"
PEM_BODY = "MIIEowIBAAKCAQEAx1y2z3ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd"
PRIVATE_KEY = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
GITHUB_TOKEN = "ghs_" + "A1b2C3d4E5f6G7h8I9j0" * 2
JSON_ESCAPED_SECRET = json.dumps(WEBHOOK_SECRET)[1:-1]


def settings(log_format: str = "json") -> Settings:
    return Settings(_env_file=None, WEBHOOK_SECRET=WEBHOOK_SECRET, PRIVATE_KEY=PRIVATE_KEY,
                    METRICS_TOKEN=METRICS_TOKEN, LOG_FORMAT=log_format)


class Captured:
    def __init__(self, logger: logging.Logger, stream: io.StringIO) -> None:
        self.logger = logger
        self.stream = stream

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            record = json.loads(line)  # one complete object per line
            assert isinstance(record, dict)
            out.append(record)
        return out


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[Captured]:
    """A logger writing through log_handler(settings(...)) into a string."""
    log_format = getattr(request, "param", "json")
    stream = io.StringIO()
    handler = log_handler(settings(log_format), stream)
    logger = logging.getLogger(f"tests.logs.{request.node.name}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield Captured(logger, stream)
    logger.removeHandler(handler)


def test_one_json_object_per_line_with_the_bound_ids(captured: Captured) -> None:
    log = captured.logger
    log.info("outside")
    with log_context(delivery_id="d-1", installation_id=42):
        log.info("in a delivery: %s", "multi\nline")
        with log_context(job_id="scan_repo:7", installation_id=43, unknown=None):
            log.warning("in a job")
            bind_log_fields(repository="acme/widgets")
            log.info("bound later")
        log.info("back in the delivery", extra={"installation_id": 99})
    log.info("outside again")
    lines = captured.lines()
    assert [line["message"] for line in lines] == [
        "outside", "in a delivery: multi\nline", "in a job", "bound later",
        "back in the delivery", "outside again"]
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
        assert line["logger"] == log.name
        assert line["time"].endswith("+00:00")
    outside, delivery, job, later, back, again = lines
    assert "delivery_id" not in outside and "installation_id" not in outside
    assert (delivery["delivery_id"], delivery["installation_id"]) == ("d-1", 42)
    assert delivery["level"] == "INFO" and job["level"] == "WARNING"
    assert (job["delivery_id"], job["job_id"], job["installation_id"]) == ("d-1", "scan_repo:7",
                                                                           43)
    assert "unknown" not in job
    assert later["repository"] == "acme/widgets"
    assert "job_id" not in back and "repository" not in back
    assert back["installation_id"] == 99  # the call's own extra wins
    assert "delivery_id" not in again and log_fields() == {}


async def test_bindings_belong_to_their_task(captured: Captured) -> None:
    async def job(job_id: str, delay: float) -> None:
        with log_context(job_id=job_id):
            await asyncio.sleep(delay)
            captured.logger.info("done %s", job_id)

    await asyncio.gather(job("a", 0.02), job("b", 0.0), job("c", 0.01))
    lines = captured.lines()
    assert sorted((line["message"], line["job_id"]) for line in lines) == [
        ("done a", "a"), ("done b", "b"), ("done c", "c")]


def test_secrets_and_tokens_are_masked_in_json(captured: Captured) -> None:
    log = captured.logger
    log.info("secret %s key line %s token %s metrics %s", WEBHOOK_SECRET, PEM_BODY,
             GITHUB_TOKEN, METRICS_TOKEN)
    log.info("the whole key: %s", PRIVATE_KEY)
    try:
        raise RuntimeError(f"call failed with token {GITHUB_TOKEN} and {WEBHOOK_SECRET}")
    except RuntimeError:
        log.exception("request failed")
    with log_context(installation_id=1, job_id=f"job-with-{GITHUB_TOKEN}"):
        log.info("bound fields are masked too")
    text = captured.text()
    for secret in (WEBHOOK_SECRET, JSON_ESCAPED_SECRET, PEM_BODY, GITHUB_TOKEN, METRICS_TOKEN,
                   GITHUB_TOKEN[4:]):
        assert secret not in text, secret
    first, whole, failed, bound = captured.lines()
    assert first["message"] == "secret *** key line *** token ghs_*** metrics ***"
    assert "***" in whole["message"]
    assert failed["message"] == "request failed"
    assert "Traceback" in failed["exc_info"] and "RuntimeError" in failed["exc_info"]
    assert "ghs_***" in failed["exc_info"] and "***" in failed["exc_info"]
    assert bound["job_id"] == "job-with-ghs_***"


@pytest.mark.parametrize("captured", ["text"], indirect=True)
def test_text_format_is_unchanged(captured: Captured) -> None:
    with log_context(delivery_id="d-2", installation_id=7):
        captured.logger.info("token %s secret %s", GITHUB_TOKEN, WEBHOOK_SECRET)
    [line] = captured.text().splitlines()
    assert line.endswith(f"INFO {captured.logger.name}: token ghs_*** secret ***")
    assert "d-2" not in line


def test_setup_logging_installs_the_json_handler() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging._srcfile, logging.logThreads,
             logging.logProcesses, logging.logMultiprocessing,
             logging.getLogger("alembic").level)
    try:
        setup_logging(settings("json"))
        [handler] = root.handlers
        assert isinstance(handler.formatter, RedactingJsonFormatter)
        assert any(isinstance(f, ContextFilter) for f in handler.filters)
    finally:
        (root.handlers[:], level, logging._srcfile, logging.logThreads, logging.logProcesses,
         logging.logMultiprocessing, alembic) = saved
        root.setLevel(level)
        logging.getLogger("alembic").setLevel(alembic)


# --- a webhook delivery's lines -----------------------------------------------------------


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    yield pool
    await pool.aclose()


async def test_webhook_lines_carry_delivery_and_installation(
        pool: ArqRedis, redis_url: str, database_url: str) -> None:
    stream = io.StringIO()
    handler = log_handler(settings("json"), stream)
    logger = logging.getLogger("app.web.webhooks")
    saved_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        app = ops_app(ops_settings(redis_url, database_url), pool, database_url)
        async with serve(app) as session:
            body, headers = signed_delivery("push", installation_id=4242,
                                            delivery_id="delivery-json-1")
            async with session.post(WEBHOOK_PATH, data=body, headers=headers) as resp:
                assert resp.status == 202
            bad = {**headers, "X-GitHub-Delivery": "delivery-json-2",
                   "X-Hub-Signature-256": "sha256=" + "0" * 64}
            async with session.post(WEBHOOK_PATH, data=body, headers=bad) as resp:
                assert resp.status == 401
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_delivery = {line.get("delivery_id"): line for line in lines}
    accepted = by_delivery["delivery-json-1"]
    assert accepted["installation_id"] == 4242
    assert "outcome=queued" in accepted["message"] and accepted["level"] == "INFO"
    refused = by_delivery["delivery-json-2"]
    assert "installation_id" not in refused  # the payload was never read
    assert refused["level"] == "WARNING"
    assert log_fields() == {}


async def test_job_lines_carry_job_and_installation(stack: Stack,
                                                    fake_github: FakeGitHub) -> None:
    """A worker's log lines, in JSON, name the job and the installation it works for."""
    from tests.fakegithub import webhooks as hooks
    from tests.test_e2e import build_org

    out = io.StringIO()
    handler = log_handler(settings("json"), out)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        inst, _ = build_org(fake_github.state, n=2)
        status, _ = await stack.deliver("installation", hooks.installation(fake_github.state,
                                                                           inst))
        assert status == 202
        await stack.drain()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    scans = [r for r in records if "full scan" in r["message"] and "batches" in r["message"]]
    assert scans and scans[0]["installation_id"] == inst.id
    assert str(scans[0]["job_id"]).startswith("scan-installation:")
