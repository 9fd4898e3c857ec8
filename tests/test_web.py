"""The web process over a real socket, against a real Redis and a real SQLite database."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, web
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import JobDef

from app.db.models import Base, Installation, Repository, Scan
from app.db.session import get_engine, sessionmaker
from app.embedded_redis import free_port
from app.services.deliveries import DELIVERY_MARKER_TTL
from app.settings import Settings, SettingsError
from app.web import create_app
from app.web.webhooks import MAX_BODY_BYTES, WEBHOOK_PATH
from tests.ops import serve

SECRET = "s3cret"
FAKE_PEM = "-----BEGIN RSA PRIVATE KEY-----\nnot-a-real-key\n-----END RSA PRIVATE KEY-----"

Client = Callable[..., AbstractAsyncContextManager[ClientSession]]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)


def make_settings(redis_url: str, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url, "DATABASE_URL": database_url,
        "SESSION_SECRET": "web-test-session-secret-0123456789abcdef",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers_for(
    body: bytes, event: str = "push", delivery: str | None = None, secret: str = SECRET
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
    }


def push_body(installation_id: int = 42) -> bytes:
    return json.dumps({
        "ref": "refs/heads/main",
        "repository": {"id": 7, "full_name": "acme/widgets"},
        "installation": {"id": installation_id},
    }).encode()


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[ArqRedis]:
    """A separate arq connection to inspect what the web process enqueued."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    yield pool
    await pool.aclose()


@pytest.fixture
def client(redis_url: str, database_url: str) -> Client:
    """`async with client(**settings_overrides) as session:` a served app (owns its pool)."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[ClientSession]:
        return serve(create_app(make_settings(redis_url, database_url, **overrides)))

    return factory


async def post(session: ClientSession, body: bytes, headers: dict[str, str]) -> ClientResponse:
    async with session.post(WEBHOOK_PATH, data=body, headers=headers) as resp:
        await resp.read()
        return resp


async def jobs(queue: ArqRedis) -> list[JobDef]:
    return await queue.queued_jobs()


# --- accepted deliveries ------------------------------------------------------------------


async def test_valid_delivery_enqueues_one_job(client: Client, queue: ArqRedis) -> None:
    body = json.dumps({
        "action": "created", "installation": {"id": 99}, "comment": {"body": "hi"},
    }).encode()
    delivery = str(uuid.uuid4())
    async with client() as session:
        resp = await post(session, body, headers_for(body, "issue_comment", delivery))
        assert resp.status == 202
        assert await resp.json() == {"status": "queued"}

    [job] = await jobs(queue)
    assert job.function == "handle_webhook"
    assert job.args == (delivery, "issue_comment", "created", 99, body)
    assert job.kwargs == {}
    assert job.job_id == f"webhook:{delivery}"
    ttl = await queue.ttl(f"pe:delivery:{delivery}")
    assert DELIVERY_MARKER_TTL - 60 < ttl <= DELIVERY_MARKER_TTL


async def test_handled_event_without_action_or_installation(
    client: Client, queue: ArqRedis
) -> None:
    body = json.dumps({"ref": "refs/heads/main", "installation": {"id": "not-an-int"}}).encode()
    async with client() as session:
        resp = await post(session, body, headers_for(body, "push", "d-1"))
        assert resp.status == 202
    [job] = await jobs(queue)
    assert job.args == ("d-1", "push", None, None, body)


async def test_duplicate_delivery(client: Client, queue: ArqRedis) -> None:
    body = push_body()
    headers = headers_for(body, "push", "dup-1")
    async with client() as session:
        first = await post(session, body, headers)
        second = await post(session, body, headers)
        assert first.status == 202
        assert second.status == 200
        assert await second.json() == {"status": "duplicate"}
    assert len(await jobs(queue)) == 1


async def test_unhandled_event_is_recorded_without_body(client: Client, queue: ArqRedis) -> None:
    body = json.dumps({"action": "created", "sponsorship": {"tier": "gold"}}).encode()
    async with client() as session:
        resp = await post(session, body, headers_for(body, "sponsorship", "sp-1"))
        assert resp.status == 202
        assert await resp.json() == {"status": "ignored"}
    [job] = await jobs(queue)
    assert job.function == "handle_webhook"
    assert job.args == ("sp-1", "sponsorship", "created", None, None)


async def test_ping(client: Client, queue: ArqRedis) -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    async with client() as session:
        resp = await post(session, body, headers_for(body, "ping", "ping-1"))
        assert resp.status == 200
        assert await resp.json() == {"ok": True, "zen": "Keep it logically awesome."}
    [job] = await jobs(queue)
    assert job.args == ("ping-1", "ping", None, None, None)


async def test_form_encoded_delivery_is_decoded(client: Client, queue: ArqRedis) -> None:
    from urllib.parse import urlencode

    payload = push_body(installation_id=5)
    body = urlencode({"payload": payload.decode()}).encode()
    headers = headers_for(body, "push", "form-1")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with client() as session:
        resp = await post(session, body, headers)
        assert resp.status == 202
    [job] = await jobs(queue)
    assert job.args == ("form-1", "push", None, 5, payload)


@pytest.mark.parametrize(
    "body",
    [
        b'{"installation": {"id": 3}, "n": 123456789012345678901234567890}',
        b'{"installation": {"id": 3}, "s": "\\ud800"}',
        b'{"installation": {"id": 3}, "x": NaN}',
    ],
    ids=["huge-int", "lone-surrogate", "nan"],
)
async def test_json_the_fast_parser_refuses_is_still_accepted(
    client: Client, queue: ArqRedis, body: bytes
) -> None:
    """orjson is stricter than the json module; a body json accepts is not refused."""
    async with client() as session:
        resp = await post(session, body, headers_for(body, "push", "strict-1"))
        assert resp.status == 202
    [job] = await jobs(queue)
    assert job.args == ("strict-1", "push", None, 3, body)


async def test_body_of_exactly_25_mb_is_accepted(client: Client, queue: ArqRedis) -> None:
    prefix, suffix = b'{"installation": {"id": 1}, "pad": "', b'"}'
    body = prefix + b"x" * (MAX_BODY_BYTES - len(prefix) - len(suffix)) + suffix
    assert len(body) == MAX_BODY_BYTES
    async with client() as session:
        resp = await post(session, body, headers_for(body, "sponsorship", "big-1"))
        assert resp.status == 202
    assert len(await jobs(queue)) == 1


# --- rejected deliveries ------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda h, b: h.pop("X-Hub-Signature-256"), id="missing"),
        pytest.param(
            lambda h, b: h.update({"X-Hub-Signature-256": sign(b, "wrong")}), id="wrong-secret"
        ),
        pytest.param(
            lambda h, b: h.update({"X-Hub-Signature-256": sign(b + b" ")}), id="tampered-body"
        ),
        pytest.param(
            lambda h, b: h.update({"X-Hub-Signature-256": "sha256=zz\u00e9"}), id="garbage"
        ),
        pytest.param(
            lambda h, b: h.update({
                "X-Hub-Signature": "sha1=" + hmac.new(SECRET.encode(), b, hashlib.sha1).hexdigest()
            }) or h.pop("X-Hub-Signature-256"),
            id="sha1-only",
        ),
    ],
)
async def test_bad_signature_is_401(
    client: Client, queue: ArqRedis, mutate: Callable[[dict[str, str], bytes], object]
) -> None:
    body = push_body()
    headers = headers_for(body)
    mutate(headers, body)
    async with client() as session, session.post(WEBHOOK_PATH, data=body, headers=headers) as resp:
        assert resp.status == 401
        data = await resp.json()
    assert set(data) == {"error"}
    assert SECRET not in json.dumps(data)
    assert await jobs(queue) == []


@pytest.mark.parametrize("secret", [None, ""])
async def test_no_secret_configured_refuses_everything(
    client: Client, queue: ArqRedis, caplog: pytest.LogCaptureFixture, secret: str | None
) -> None:
    caplog.set_level(logging.INFO, logger="app.web")
    body = push_body()
    async with client(WEBHOOK_SECRET=secret) as session:
        for _ in range(3):
            # Even a body "signed" with an empty key must not pass.
            async with session.post(
                WEBHOOK_PATH, data=body, headers=headers_for(body, secret="")
            ) as resp:
                assert resp.status == 401
                assert "not configured" in (await resp.json())["error"]
    assert await jobs(queue) == []
    explanations = [r for r in caplog.records if "WEBHOOK_SECRET is not configured" in r.message]
    assert len(explanations) == 1


async def test_sha1_signature_alongside_valid_sha256_still_needs_sha256(
    client: Client, queue: ArqRedis
) -> None:
    body = push_body()
    headers = headers_for(body)
    headers["X-Hub-Signature"] = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    headers["X-Hub-Signature-256"] = sign(b"something else")
    async with client() as session:
        resp = await post(session, body, headers)
        assert resp.status == 401


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"action": "opened",', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"just a string"', "not a JSON object"),
        (b"", "not valid JSON"),
    ],
)
async def test_bad_json_is_400(
    client: Client, queue: ArqRedis, body: bytes, fragment: str
) -> None:
    async with client() as session:
        resp = await post(session, body, headers_for(body))
        assert resp.status == 400
        assert fragment in (await resp.json())["error"]
    assert await jobs(queue) == []


async def test_form_without_payload_field_is_400(client: Client, queue: ArqRedis) -> None:
    body = b"other=1"
    headers = headers_for(body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with client() as session:
        resp = await post(session, body, headers)
        assert resp.status == 400
    assert await jobs(queue) == []


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
async def test_missing_event_or_delivery_header_is_400(
    client: Client, queue: ArqRedis, header: str
) -> None:
    body = push_body()
    headers = headers_for(body)
    del headers[header]
    async with client() as session:
        resp = await post(session, body, headers)
        assert resp.status == 400
        assert header in (await resp.json())["error"]
    assert await jobs(queue) == []


async def test_overlong_delivery_id_is_400(client: Client, queue: ArqRedis) -> None:
    body = push_body()
    async with client() as session:
        resp = await post(session, body, headers_for(body, delivery="x" * 65))
        assert resp.status == 400
    assert await jobs(queue) == []


async def test_oversize_body_is_413(client: Client, queue: ArqRedis) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    async with client() as session:
        resp = await post(session, body, headers_for(body))
        assert resp.status == 413
        assert "error" in await resp.json()
    assert await jobs(queue) == []


async def test_oversize_chunked_body_is_413(client: Client, queue: ArqRedis) -> None:
    """No Content-Length: the limit is enforced while reading."""
    chunk = b"x" * (1024 * 1024)

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(26):
            yield chunk

    async with client() as session, session.post(
        WEBHOOK_PATH, data=stream(), headers=headers_for(b"", "push", "chunked-1")
    ) as resp:
        assert resp.status == 413
        assert "error" in await resp.json()
    assert await jobs(queue) == []


# --- Redis trouble ------------------------------------------------------------------------


@pytest.fixture
async def dead_redis() -> AsyncIterator[ArqRedis]:
    """An arq client pointing at a port where nothing listens."""
    pool = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    yield pool
    await pool.aclose()


async def test_redis_down_is_503_with_retry_after(
    redis_url: str, database_url: str, dead_redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.web")
    app = create_app(make_settings(redis_url, database_url), redis=dead_redis)
    body = push_body()
    async with serve(app) as session:
        resp = await post(session, body, headers_for(body, delivery="down-1"))
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) > 0
        assert "error" in await resp.json()
        async with session.get("/healthz") as health:
            assert health.status == 503
    assert any(r.levelno == logging.ERROR and "down-1" in r.message for r in caplog.records)


class FlakyArqRedis(ArqRedis):
    """Fails the first dedupe + enqueue script call, as if the connection dropped."""

    failures = 1

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection reset")
        return await super().evalsha(sha, numkeys, *keys_and_args)  # type: ignore[misc]


async def test_failed_enqueue_keeps_redelivery_possible(
    redis_url: str, database_url: str, queue: ArqRedis
) -> None:
    flaky = await create_pool(RedisSettings.from_dsn(redis_url))
    flaky.__class__ = FlakyArqRedis
    app = create_app(make_settings(redis_url, database_url), redis=flaky)
    body = push_body()
    headers = headers_for(body, delivery="flaky-1")
    try:
        async with serve(app) as session:
            assert (await post(session, body, headers)).status == 503
            # GitHub's redelivery carries the same delivery id: it must not be a "duplicate".
            assert (await post(session, body, headers)).status == 202
    finally:
        await flaky.aclose()
    assert len(await jobs(queue)) == 1


async def test_healthz(client: Client) -> None:
    async with client() as session, session.get("/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"ok": True}


async def test_caller_owned_pool_stays_open(
    redis_url: str, database_url: str, queue: ArqRedis
) -> None:
    async with serve(create_app(make_settings(redis_url, database_url), redis=queue)) as session:
        body = push_body()
        assert (await post(session, body, headers_for(body))).status == 202
    assert await queue.ping()


# --- logging ------------------------------------------------------------------------------


async def test_one_log_line_per_delivery_without_payload_or_secret(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="app.web")
    body = json.dumps({
        "action": "created", "installation": {"id": 1234}, "comment": {"body": "TOP-SECRET-TEXT"},
    }).encode()
    async with client() as session:
        resp = await post(session, body, headers_for(body, "issue_comment", "log-1"))
        assert resp.status == 202
    lines = [r for r in caplog.records if "log-1" in r.getMessage()]
    assert len(lines) == 1
    [line] = lines
    message = line.getMessage()
    assert line.levelno == logging.INFO
    for part in ("issue_comment", "created", "1234", "queued", "ms="):
        assert part in message
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "TOP-SECRET-TEXT" not in everything
    assert SECRET not in everything
    assert sign(body) not in everything


# --- home page ----------------------------------------------------------------------------


async def home_page(settings: Settings, database_url: str) -> str:
    """The dashboard's home page (asserting it answers 200), its engine disposed after."""
    try:
        async with serve(create_app(settings)) as session, session.get("/") as resp:
            assert resp.status == 200
            return await resp.text()
    finally:
        await get_engine(database_url).dispose()


async def test_home_without_credentials_explains_registration(client: Client) -> None:
    async with client() as session, session.get("/", headers={"Host": "pe.example.com"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        text = await resp.text()
    # Asked for a public host name: not this machine's browser, so the steps by hand.
    assert "register by hand" in text and "data-register" not in text
    assert "http://pe.example.com/api/github/webhooks" in text
    for name in ("APP_ID", "PRIVATE_KEY", "WEBHOOK_SECRET", "restart"):
        assert name in text
    assert SECRET not in text


async def test_home_escapes_the_host_header(client: Client) -> None:
    host = 'x"><script>alert(1)</script>'
    async with client() as session, session.get("/", headers={"Host": host}) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;" in text or "&#34;&gt;&lt;script" in text


async def _create_tables(database_url: str) -> None:
    async with get_engine(database_url).begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


async def test_signed_out_home_shows_only_the_sign_in(redis_url: str, database_url: str) -> None:
    """Installations, config errors and scan triggers are no one's business signed out."""
    await _create_tables(database_url)
    async with sessionmaker(database_url)() as db, db.begin():
        db.add(Installation(id=1, account_login="acme", config_status="invalid",
                            config_error="line 3: secret-ish config value"))
        await db.flush()
        db.add(Repository(id=10, installation_id=1, full_name="acme/private-widgets"))
        await db.flush()
        db.add(Scan(installation_id=1, kind="full", trigger="command:someone", total=3,
                    started_at=datetime(2024, 5, 1, tzinfo=UTC)))
    text = await home_page(make_settings(redis_url, database_url, APP_ID=1,
                                         PRIVATE_KEY=FAKE_PEM, GITHUB_CLIENT_ID="Iv1.x",
                                         GITHUB_CLIENT_SECRET="y" * 40), database_url)
    assert "Sign in with GitHub" in text and 'href="/login"' in text
    for leak in ("acme", "private-widgets", "config value", "someone", "Register"):
        assert leak not in text


async def test_pages_say_when_the_database_is_not_migrated(
    redis_url: str, database_url: str
) -> None:
    settings = make_settings(redis_url, database_url, APP_ID=1, PRIVATE_KEY=FAKE_PEM)
    async with serve(create_app(settings)) as session, \
            session.get("/badge/acme/x.svg") as resp:
        assert resp.status == 503
        text = await resp.text()
    assert "not been migrated" in text and database_url not in text


async def test_pages_say_when_the_database_is_unreachable(redis_url: str) -> None:
    url = "sqlite+aiosqlite:////proc/no-such-dir/test.db"
    settings = make_settings(redis_url, url, APP_ID=1, PRIVATE_KEY=FAKE_PEM)
    async with serve(create_app(settings)) as session, \
            session.get("/badge/acme/x.svg") as resp:
        assert resp.status == 503
        text = await resp.text()
    assert "not reachable" in text and "/proc/no-such-dir" not in text


async def test_a_route_added_without_an_access_level_is_refused(
    redis_url: str, database_url: str
) -> None:
    app = create_app(make_settings(redis_url, database_url))

    async def sneaky(request: web.Request) -> web.Response:
        return web.Response(text="org data")

    app.router.add_get("/sneaky", sneaky)
    async with serve(app) as session, session.get("/sneaky") as resp:
        assert resp.status == 403
        assert "org data" not in await resp.text()


def test_create_app_requires_a_strong_session_secret(redis_url: str, database_url: str) -> None:
    with pytest.raises(SettingsError, match=r"^SESSION_SECRET: not set"):
        create_app(make_settings(redis_url, database_url, SESSION_SECRET=None))
    for weak in ("short", "a" * 40):
        with pytest.raises(Exception, match="SESSION_SECRET"):
            make_settings(redis_url, database_url, SESSION_SECRET=weak)


def test_create_app_requires_a_redis_url(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings = Settings(_env_file=None, DATABASE_URL=database_url)
    with pytest.raises(SettingsError, match="REDIS_URL"):
        create_app(settings)


def test_error_texts_on_pages_are_masked() -> None:
    from app.web.render import templates

    page = templates.from_string("{{ text | redact }}").render(
        text="BadRequest 401: token ghs_0123456789abcdefghijABCDEFGHIJ was refused")
    assert "ghs_***" in page and "0123456789abcdef" not in page
