"""Deduplicate a delivery and enqueue its arq job in ONE Redis round trip.

arq's ``ArqRedis.enqueue_job`` costs about four round trips (WATCH, EXISTS, MULTI/EXEC,
plus the ``SET NX`` of our dedupe marker before it); on the web path each redis-py round
trip is worth about a third of the request budget. This Lua script (sent with EVALSHA)
does the same work atomically:

1. the delivery marker ``pe:delivery:{id}`` exists -> 0 (duplicate), nothing written;
2. arq holds a job or a result under the job id -> the marker is set, 2 (duplicate);
3. otherwise the job is written exactly as ``enqueue_job`` writes it (``ZADD`` to the
   queue, scored ahead of bulk work (``app.services.queue.interactive_score``), and
   ``SET arq:job:{id}``) and the marker is set
   with its TTL -> 1 (queued). Unlike arq's default, the job key has no expiry: a delivery
   waits for a worker however long none runs (arq deletes the key when the job is done).

Redis does not roll a script back when a command in it fails, so the writes go in the
order that cannot strand anything: ``ZADD`` (the only one that can fail, on a key of the
wrong type) first, the marker last. A failed script therefore never leaves a marker
without a job behind it, and GitHub's redelivery of the same id is accepted.

The job bytes are built in Python with arq's own ``serialize_job`` and the pool's
serializer, so an unchanged arq worker runs the job.

Deliveries that arrive while a call is in flight share the next round trip: they are
sent together as one pipeline of EVALSHA commands (each delivery keeps its own script
call and its own answer). Under light load every delivery goes out alone at once; under
heavy load the per-call overhead of redis-py is paid once per batch instead of once per
delivery.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.exceptions import NoScriptError

from app.services.queue import interactive_score

QUEUED: Final = 1
DUPLICATE: Final = 0
JOB_EXISTS: Final = 2

# KEYS: marker, job key, result key, queue. ARGV: marker TTL (s), job bytes,
# job expiry (ms; 0: none), score (ms), job id.
DEDUPE_AND_ENQUEUE_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if redis.call('EXISTS', KEYS[2], KEYS[3]) ~= 0 then
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
  return 2
end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
if ARGV[3] == '0' then
  redis.call('SET', KEYS[2], ARGV[2])
else
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return 1
"""

# Upper bound on the Redis work of one delivery; past it GitHub gets a 503.
REDIS_TIMEOUT_SECONDS: Final = 5.0
# The most deliveries sent in one round trip (bounds the size of one pipeline).
MAX_BATCH: Final = 256
# Round trips in flight at once: while one waits for Redis, the next batch is on its way.
MAX_IN_FLIGHT: Final = 2

_Call = tuple[tuple[Any, ...], "asyncio.Future[int]"]


class DeliveryQueue:
    """The one-round-trip dedupe + enqueue, bound to one arq pool and one event loop.

    Honours the pool's arq settings as ``enqueue_job`` does: ``job_serializer`` and
    ``default_queue_name``. `expires_ms` is the job's expiry (0, the default: never, so a
    delivery is not lost however long the workers are down).
    """

    def __init__(self, redis: ArqRedis, timeout: float = REDIS_TIMEOUT_SECONDS,
                 expires_ms: int = 0) -> None:
        self.redis = redis
        self.timeout = timeout
        self.expires_ms = expires_ms
        self._script = redis.register_script(DEDUPE_AND_ENQUEUE_LUA)
        self._pending: list[_Call] = []
        self._senders: set[asyncio.Task[None]] = set()

    async def dedupe_and_enqueue(
        self,
        marker_key: str,
        marker_ttl_seconds: int,
        job_id: str,
        function: str,
        *args: Any,
    ) -> int:
        """QUEUED, DUPLICATE (marker seen) or JOB_EXISTS (arq still holds that job id).

        Raises redis-py errors, OSError or TimeoutError (after `timeout` seconds) when
        Redis cannot do it.
        """
        redis = self.redis
        enqueue_time_ms = timestamp_ms()
        job = serialize_job(function, args, {}, None, enqueue_time_ms,
                            serializer=redis.job_serializer)
        call_args = (4, marker_key, job_key_prefix + job_id, result_key_prefix + job_id,
                     redis.default_queue_name, marker_ttl_seconds, job,
                     self.expires_ms, interactive_score(enqueue_time_ms), job_id)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((call_args, future))
        if len(self._senders) < MAX_IN_FLIGHT:
            sender = asyncio.get_running_loop().create_task(self._send_all())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await future

    async def _send_all(self) -> None:
        """Send what is pending, one round trip at a time, until nothing is left."""
        while self._pending:
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            try:
                async with asyncio.timeout(self.timeout):
                    results = await self._send(batch)
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # Redis unreachable, timed out...: the whole batch fails
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller went away; its delivery is in Redis anyway
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(int(result))

    async def _send(self, batch: list[_Call]) -> list[Any]:
        script = self._script
        if len(batch) == 1:
            [(call_args, _)] = batch
            try:
                return [await self.redis.evalsha(script.sha, *call_args)]  # type: ignore[misc]
            except NoScriptError:
                script.sha = await self.redis.script_load(script.script)
                return [await self.redis.evalsha(script.sha, *call_args)]  # type: ignore[misc]
        results = await self._pipeline(script.sha, batch)
        if any(isinstance(r, NoScriptError) for r in results):
            # Redis lost its script cache (restart, SCRIPT FLUSH): load it and redo those.
            # A NOSCRIPT call did nothing, so running it again is safe.
            script.sha = await self.redis.script_load(script.script)
            again = [call for call, r in zip(batch, results, strict=True)
                     if isinstance(r, NoScriptError)]
            redone = iter(await self._pipeline(script.sha, again))
            results = [next(redone) if isinstance(r, NoScriptError) else r for r in results]
        return results

    async def _pipeline(self, sha: str, batch: list[_Call]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_args, _ in batch:
                pipe.evalsha(sha, *call_args)
            return list(await pipe.execute(raise_on_error=False))
