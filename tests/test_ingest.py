"""The one-round-trip dedupe + enqueue script (app.web.enqueue) against a real Redis, with
real arq workers running what it wrote."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import pickle
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name, expires_extra_ms
from arq.jobs import Job, JobStatus
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from sqlalchemy import select

from app.db.models import WebhookDelivery
from app.embedded_redis import free_port
from app.services.deliveries import DELIVERY_MARKER_TTL, delivery_marker_key, webhook_job_id
from app.services.queue import due_ms, interactive_score
from app.settings import Settings
from app.web import create_app
from app.web.app import create_runner
from app.web.enqueue import DUPLICATE, JOB_EXISTS, MAX_IN_FLIGHT, QUEUED, DeliveryQueue
from app.web.webhooks import JOB_FUNCTION, WEBHOOK_PATH, sign
from tests.stack import Stack

BODY = json.dumps({"ref": "refs/heads/main", "installation": {"id": 42}}).encode()


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    yield pool
    await pool.aclose()


async def enqueue(queue: DeliveryQueue, delivery_id: str, event: str = "push",
                  action: str | None = None, installation_id: int | None = 42,
                  body: bytes | None = BODY) -> int:
    return await queue.dedupe_and_enqueue(
        delivery_marker_key(delivery_id), DELIVERY_MARKER_TTL, webhook_job_id(delivery_id),
        JOB_FUNCTION, delivery_id, event, action, installation_id, body)


async def test_one_job_with_the_right_id_args_score_and_ttls(pool: ArqRedis) -> None:
    before = time.time() * 1000
    assert await enqueue(DeliveryQueue(pool), "d-1", action="opened") == QUEUED
    after = time.time() * 1000

    [job] = await pool.queued_jobs()
    assert job.function == JOB_FUNCTION
    assert job.args == ("d-1", "push", "opened", 42, BODY)
    assert job.kwargs == {}
    assert job.job_id == "webhook:d-1"
    assert job.job_try is None
    assert before - 1 <= job.enqueue_time.timestamp() * 1000 <= after + 1
    # Scored ahead of bulk work (arq runs the lowest score first); due at once.
    assert job.score == interactive_score(int(job.enqueue_time.timestamp() * 1000))
    [(member, score)] = await pool.zrange(default_queue_name, 0, -1, withscores=True)
    assert member == b"webhook:d-1"
    assert before - 1 <= due_ms(score) <= after + 1

    # arq's own expiry for an undeferred job: one day; the marker keeps its own TTL.
    # No expiry (arq's default is a day): the delivery waits however long no worker runs.
    assert await pool.pttl("arq:job:webhook:d-1") == -1
    marker_ttl = await pool.ttl("pe:delivery:d-1")
    assert DELIVERY_MARKER_TTL - 60 < marker_ttl <= DELIVERY_MARKER_TTL
    assert await Job("webhook:d-1", pool).status() == JobStatus.queued


async def test_same_keys_and_bytes_as_arq_enqueue_job(pool: ArqRedis) -> None:
    """What the script writes is what arq's enqueue_job writes, enqueue time aside."""
    args = ("d-2", "issue_comment", "created", 7, BODY)
    assert await pool.enqueue_job(JOB_FUNCTION, *args, _job_id="arq-made") is not None
    assert await enqueue(DeliveryQueue(pool), *args[:4], body=BODY) == QUEUED

    ours, theirs = "arq:job:webhook:d-2", "arq:job:arq-made"
    assert await pool.type(ours) == await pool.type(theirs) == b"string"
    ours_job = pickle.loads(await pool.get(ours))
    theirs_job = pickle.loads(await pool.get(theirs))
    assert set(ours_job) == set(theirs_job) == {"t", "f", "a", "k", "et"}
    assert {k: v for k, v in ours_job.items() if k != "et"} == \
        {k: v for k, v in theirs_job.items() if k != "et"}
    # arq's job expires a day after it is due; ours never does, unless asked.
    assert await pool.pttl(ours) == -1
    assert expires_extra_ms - 60_000 < await pool.pttl(theirs) <= expires_extra_ms
    assert await enqueue(DeliveryQueue(pool, expires_ms=expires_extra_ms), "d-3",
                         "push", None, 7, body=BODY) == QUEUED
    assert abs(await pool.pttl("arq:job:webhook:d-3") - await pool.pttl(theirs)) < 5_000
    scores = dict(await pool.zrange(default_queue_name, 0, -1, withscores=True))
    assert scores[b"webhook:d-2"] == interactive_score(ours_job["et"])
    assert scores[b"arq-made"] == theirs_job["et"]


async def test_duplicate_delivery_id_is_refused(pool: ArqRedis) -> None:
    queue = DeliveryQueue(pool)
    assert await enqueue(queue, "dup") == QUEUED
    assert await enqueue(queue, "dup", body=b'{"other": 1}') == DUPLICATE
    [job] = await pool.queued_jobs()
    assert job.args[4] == BODY


async def test_existing_job_or_result_is_refused_and_marked(pool: ArqRedis) -> None:
    """The marker expired (or was lost) but arq still holds the job or its result."""
    queue = DeliveryQueue(pool)
    assert await enqueue(queue, "old") == QUEUED
    await pool.delete(delivery_marker_key("old"))
    assert await enqueue(queue, "old") == JOB_EXISTS
    assert await pool.exists(delivery_marker_key("old")) == 1
    assert len(await pool.queued_jobs()) == 1

    await pool.set("arq:result:webhook:done", b"x")
    assert await enqueue(queue, "done") == JOB_EXISTS
    assert await pool.exists("arq:job:webhook:done") == 0
    assert len(await pool.queued_jobs()) == 1


async def test_failed_script_leaves_no_marker(pool: ArqRedis) -> None:
    """Redis does not roll a script back; the writes are ordered so nothing is stranded."""
    queue = DeliveryQueue(pool)
    await pool.set(default_queue_name, "not a sorted set")
    with pytest.raises(ResponseError):
        await enqueue(queue, "broken")
    assert await pool.exists(delivery_marker_key("broken"), "arq:job:webhook:broken") == 0
    await pool.delete(default_queue_name)
    assert await enqueue(queue, "broken") == QUEUED


async def test_script_flushed_from_redis_is_loaded_again(pool: ArqRedis) -> None:
    queue = DeliveryQueue(pool)
    assert await enqueue(queue, "a") == QUEUED
    await pool.script_flush()
    assert await enqueue(queue, "b") == QUEUED
    assert len(await pool.queued_jobs()) == 2


async def test_honours_the_pool_serializer_and_queue_name(redis_url: str) -> None:
    settings = RedisSettings.from_dsn(redis_url)
    pool = await create_pool(settings, job_serializer=lambda d: pickle.dumps(d, protocol=2),
                             default_queue_name="pe:test-queue")
    try:
        assert await enqueue(DeliveryQueue(pool), "q-1") == QUEUED
        assert await pool.zcard("pe:test-queue") == 1
        assert await pool.zcard(default_queue_name) == 0
        raw = await pool.get("arq:job:webhook:q-1")
        assert raw[:2] == b"\x80\x02"  # pickle protocol 2
    finally:
        await pool.aclose()


async def test_jobs_run_on_a_real_arq_worker(pool: ArqRedis, redis_url: str) -> None:
    ran: list[tuple[Any, ...]] = []

    async def handle_webhook(ctx: dict[str, Any], delivery_id: str, event: str,
                             action: str | None, installation_id: int | None,
                             body: bytes | None) -> None:
        ran.append((ctx["job_id"], ctx["job_try"], delivery_id, event, action,
                    installation_id, body))

    queue = DeliveryQueue(pool)
    assert await enqueue(queue, "w-1", action="created") == QUEUED
    assert await enqueue(queue, "w-2", event="sponsorship", installation_id=None,
                         body=None) == QUEUED
    worker = Worker(functions=[func(handle_webhook, name=JOB_FUNCTION)],
                    redis_settings=RedisSettings.from_dsn(redis_url), burst=True,
                    poll_delay=0.01, handle_signals=False, keep_result=0)
    try:
        await worker.main()
    finally:
        await worker.close()
    assert worker.jobs_complete == 2 and worker.jobs_failed == 0
    assert sorted(ran) == [
        ("webhook:w-1", 1, "w-1", "push", "created", 42, BODY),
        ("webhook:w-2", 1, "w-2", "sponsorship", None, None, None),
    ]
    assert await pool.zcard(default_queue_name) == 0
    # The job is gone with its result not kept: the marker alone still refuses the id.
    assert await enqueue(queue, "w-1") == DUPLICATE


async def test_the_app_worker_runs_deliveries_from_the_web_process(stack: Stack) -> None:
    """create_worker (tasks.worker) picks up and finishes what the web process queued."""
    ping_id, other_id = str(uuid.uuid4()), str(uuid.uuid4())
    status, _ = await stack.deliver("ping", {"zen": "Design for failure.", "hook_id": 1},
                                    ping_id)
    assert status == 200
    status, answer = await stack.deliver("sponsorship", {"action": "created"}, other_id)
    assert (status, answer) == (202, {"status": "ignored"})
    assert await stack.drain() == 2
    async with stack.db() as db:
        rows = {r.delivery_id: r for r in await db.scalars(select(WebhookDelivery))}
    assert rows[ping_id].event == "ping" and rows[ping_id].outcome == "pong"
    assert rows[other_id].action == "created" and rows[other_id].outcome == "ignored"


class CountingArqRedis(ArqRedis):
    commands: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


async def test_one_redis_round_trip_per_delivery(redis_url: str, tmp_path: Any) -> None:
    import aiohttp
    from aiohttp.test_utils import TestServer

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    pool.__class__ = CountingArqRedis
    counting = cast(CountingArqRedis, pool)
    counting.commands = []
    settings = Settings(_env_file=None, WEBHOOK_SECRET="s", REDIS_URL=redis_url,
                        SESSION_SECRET="ingest-test-session-secret-0123456789ab",
                        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/t.db")
    app: web.Application = create_app(settings, redis=counting)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            for delivery in ("rt-1", "rt-1", "rt-2"):
                headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
                           "X-Hub-Signature-256": sign("s", BODY),
                           "Content-Type": "application/json"}
                async with http.post(server.make_url(WEBHOOK_PATH), data=BODY,
                                     headers=headers) as resp:
                    assert resp.status in (200, 202)
    finally:
        await server.close()
        await counting.aclose()
    assert counting.commands == ["EVALSHA"] * 3


# --- deliveries that arrive together share a round trip -----------------------------------


class PipelineCountingArqRedis(ArqRedis):
    """Counts the single EVALSHA calls and the pipelines the queue sends."""

    singles = 0
    pipelines = 0

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        self.singles += 1
        return await super().evalsha(sha, numkeys, *keys_and_args)  # type: ignore[misc]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        self.pipelines += 1
        return super().pipeline(transaction, shard_hint)


@pytest.fixture
async def counting_pool(redis_url: str) -> AsyncIterator[PipelineCountingArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    pool.__class__ = PipelineCountingArqRedis
    yield cast(PipelineCountingArqRedis, pool)
    await pool.aclose()


async def test_concurrent_deliveries_share_round_trips(
    counting_pool: PipelineCountingArqRedis,
) -> None:
    queue = DeliveryQueue(counting_pool)
    ids = [f"c-{i}" for i in range(200)]
    # The same id twice in one batch: the scripts run one after the other in Redis.
    results = await asyncio.gather(*(enqueue(queue, d) for d in [*ids, "c-7"]))
    assert results == [QUEUED] * 200 + [DUPLICATE]
    # 201 deliveries, at most one round trip per sender (not 201 round trips).
    assert counting_pool.singles + counting_pool.pipelines <= MAX_IN_FLIGHT
    jobs = {job.job_id: job for job in await counting_pool.queued_jobs()}
    assert set(jobs) == {f"webhook:{d}" for d in ids}
    assert all(jobs[f"webhook:{d}"].args[0] == d for d in ids)


async def test_a_lone_delivery_goes_out_at_once_as_one_evalsha(
    counting_pool: PipelineCountingArqRedis,
) -> None:
    queue = DeliveryQueue(counting_pool)
    assert await enqueue(queue, "alone-1") == QUEUED
    assert await enqueue(queue, "alone-2") == QUEUED
    assert (counting_pool.singles, counting_pool.pipelines) == (2, 0)


async def test_batched_calls_reload_a_flushed_script(pool: ArqRedis) -> None:
    queue = DeliveryQueue(pool)
    assert await enqueue(queue, "warm") == QUEUED
    await pool.script_flush()
    results = await asyncio.gather(*(enqueue(queue, f"f-{i}") for i in range(20)))
    assert results == [QUEUED] * 20
    assert len(await pool.queued_jobs()) == 21


async def test_redis_down_fails_every_delivery_of_the_batch() -> None:
    dead = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    try:
        queue = DeliveryQueue(dead)
        results = await asyncio.gather(*(enqueue(queue, f"x-{i}") for i in range(10)),
                                       return_exceptions=True)
    finally:
        await dead.aclose()
    assert all(isinstance(r, (RedisConnectionError, OSError)) for r in results), results


async def test_a_stuck_redis_times_out(redis_url: str) -> None:
    """A server that accepts the connection and never answers: TimeoutError, not a hang."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stuck = ArqRedis(host="127.0.0.1", port=port)
    try:
        queue = DeliveryQueue(stuck, timeout=0.2)
        started = time.monotonic()
        results = await asyncio.gather(*(enqueue(queue, f"s-{i}") for i in range(3)),
                                       return_exceptions=True)
        assert time.monotonic() - started < 2
    finally:
        await stuck.aclose()
        server.close()
    assert all(isinstance(r, TimeoutError) for r in results), results


async def test_a_caller_that_goes_away_does_not_break_the_batch(pool: ArqRedis) -> None:
    queue = DeliveryQueue(pool)
    tasks = [asyncio.create_task(enqueue(queue, f"g-{i}")) for i in range(5)]
    await asyncio.sleep(0)
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 2] == [QUEUED] * 4
    assert await enqueue(queue, "g-after") == QUEUED


# --- the web process's runner -------------------------------------------------------------


async def test_runner_leaves_webhooks_out_of_the_access_log(
    redis_url: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import aiohttp

    caplog.set_level(logging.INFO)
    settings = Settings(_env_file=None, WEBHOOK_SECRET="s", REDIS_URL=redis_url,
                        SESSION_SECRET="ingest-test-session-secret-0123456789ab",
                        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/t.db")
    runner = create_runner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "acc-1",
                       "X-Hub-Signature-256": sign("s", BODY),
                       "Content-Type": "application/json"}
            async with http.post(WEBHOOK_PATH, data=BODY, headers=headers) as resp:
                assert resp.status == 202
            async with http.get("/healthz") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
        gc.unfreeze()  # create_runner froze this test process's objects
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("/healthz" in line for line in access)
    assert not any(WEBHOOK_PATH in line for line in access)
    handler_lines = [r for r in caplog.records if "delivery=acc-1" in r.getMessage()]
    assert len(handler_lines) == 1
