"""Prometheus metrics (prefix `policy_enforcer_`), exposed by the web process at /metrics.

Two modes, chosen by prometheus-client when it is first imported:

- single process (PROMETHEUS_MULTIPROC_DIR unset): each process keeps its own values; the
  web process exposes what it counted itself (and, under `python -m app dev`, the worker
  running in the same process).
- multiprocess (PROMETHEUS_MULTIPROC_DIR set, in the environment of every web and worker
  process of the host, before they start): every process writes its values to files in
  that directory and /metrics adds them up (MultiProcessCollector). The directory must
  exist and be emptied before the processes start (each deploy); counters of processes
  that exited stay counted, as Prometheus expects of counters. No metric here is a
  multiprocess "live" gauge, so nothing needs `mark_process_dead` on exit.

Counted where things happen (cheap: one labelled counter or histogram update):
  webhooks_received_total{event,outcome}       app/web/webhooks.py, one per delivery
  github_requests_total{status}                app/github/client.py, one per HTTP answer
  job_duration_seconds{function}               observe_job(), from the job wrapper
  job_failures_total{function,outcome}         observe_job(), outcome retry | failed
  scan_duration_seconds{kind}                  observe_scan(), when a scan record closes
Computed at scrape time (render_metrics reads Redis and the database first):
  github_rate_limit_remaining{installation,resource}   the rate governor's Redis state
  open_violations{account,policy}                       the violations table, cached 15 s
  scrape_collector_success{collector}                   1, or 0 when that read failed
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, as prometheus-client serves it by default.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The open-violations query runs at most this often per process and database.
VIOLATIONS_CACHE_SECONDS = 15.0
# Each scrape-time read gives up after this long (its gauges are left out of that scrape).
SCRAPE_TIMEOUT_SECONDS = 5.0
# SCAN's COUNT hint: keys Redis examines per round trip while looking for governor state.
SCAN_COUNT = 1000
GOVERNOR_STATE_MATCH = "pe:gh:{*}:st"  # app/github/governor.py: Governor._keys

_multiproc_dir = os.environ.get(MULTIPROC_ENV)
if _multiproc_dir:
    # The value files are created on first use, in the middle of a request or a job.
    os.makedirs(_multiproc_dir, exist_ok=True)

JOB_OUTCOMES = ("success", "retry", "failed")
SCAN_KINDS = ("full", "repo")

WEBHOOKS = Counter(
    "policy_enforcer_webhooks_received", "Webhook deliveries received, by event and outcome "
    "(event '-' when the delivery was not authenticated).", ["event", "outcome"])
GITHUB_REQUESTS = Counter(
    "policy_enforcer_github_requests", "HTTP answers from GitHub, by status ('error': none, "
    "the connection failed or timed out).", ["status"])
JOB_DURATION = Histogram(
    "policy_enforcer_job_duration_seconds", "Duration of arq jobs, by function.", ["function"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
JOB_FAILURES = Counter(
    "policy_enforcer_job_failures", "arq jobs that failed, by function and outcome (retry: "
    "deferred to try again; failed: given up).", ["function", "outcome"])
SCAN_DURATION = Histogram(
    "policy_enforcer_scan_duration_seconds", "Duration of scans, from start to the last "
    "repository counted, by kind (full / repo).", ["kind"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200))

# Label children, looked up once per label set: the webhook path pays a dict lookup and an
# increment, not prometheus-client's label validation and lock. Every label domain is
# bounded (see the callers), so these stay small.
_webhook_children: dict[tuple[str, str], Any] = {}
_status_children: dict[int, Any] = {}
_STATUS_LABELS = {s: str(s) for s in (200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404,
                                      409, 410, 422, 429, 500, 502, 503, 504)}
_failed_once = False


def _metric_failed(what: str, exc: Exception) -> None:
    """A metric that cannot be recorded (an unwritable multiprocess directory) must not
    fail the request or job that counts it: say so once."""
    global _failed_once
    if not _failed_once:
        _failed_once = True
        log.error("metrics: cannot record %s (%s: %s); further failures are not logged",
                  what, type(exc).__name__, exc)


def observe_webhook(event: str, outcome: str) -> None:
    """One webhook delivery. `event` must come from an authenticated delivery (else '-')."""
    child = _webhook_children.get((event, outcome))
    try:
        if child is None:
            child = _webhook_children[(event, outcome)] = WEBHOOKS.labels(event, outcome)
        child.inc()
    except Exception as exc:
        _metric_failed("a webhook", exc)


def status_label(status: int) -> str:
    """The common statuses as themselves, any other as its class ('3xx', '5xx')."""
    label = _STATUS_LABELS.get(status)
    if label is None:
        label = f"{status // 100}xx" if 100 <= status <= 599 else "other"
    return label


def observe_github_response(status: int | None) -> None:
    """One answer from GitHub; None when no answer came (connection error, timeout)."""
    key = -1 if status is None else status
    child = _status_children.get(key)
    try:
        if child is None:
            label = "error" if status is None else status_label(status)
            child = _status_children[key] = GITHUB_REQUESTS.labels(label)
        child.inc()
    except Exception as exc:
        _metric_failed("a GitHub answer", exc)


def observe_job(function: str, seconds: float, outcome: str) -> None:
    """One finished try of an arq job: `function` is its name (bounded: the worker's
    function list), `outcome` success | retry | failed (anything else counts as failed)."""
    try:
        JOB_DURATION.labels(function).observe(max(0.0, seconds))
        if outcome != "success":
            JOB_FAILURES.labels(function, outcome if outcome in JOB_OUTCOMES else "failed").inc()
    except Exception as exc:
        _metric_failed("a job", exc)


def observe_scan(kind: str, seconds: float) -> None:
    """One scan closed (status ok or errored); `kind` full | repo."""
    try:
        SCAN_DURATION.labels(kind if kind in SCAN_KINDS else "other").observe(max(0.0, seconds))
    except Exception as exc:
        _metric_failed("a scan", exc)


# ---------------------------------------------------------------------------- scrape time


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _rate_limits_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "policy_enforcer_github_rate_limit_remaining",
        "GitHub's primary rate-limit budget left in the current window, as the last answer "
        "reported it, by installation id ('app': the App's own requests) and resource.",
        labels=["installation", "resource"])


def _open_violations_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "policy_enforcer_open_violations",
        "Open violations, by installation account (login) and policy name.",
        labels=["account", "policy"])


async def _rate_limits(redis: Any) -> Metric:
    """Remaining primary budget per installation and resource, for every budget window the
    governor has seen that has not reset yet (after a reset the budget is full again, and
    GitHub only tells how full with the next answer)."""
    family = _rate_limits_family()
    keys = [key async for key in redis.scan_iter(match=GOVERNOR_STATE_MATCH, count=SCAN_COUNT)]
    if not keys:
        return family
    seconds, micros = await redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    prefix, suffix = len("pe:gh:{"), len("}:st")
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        async with redis.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.hgetall(key)
            states = await pipe.execute()
        for key, state in zip(chunk, states, strict=True):
            scope = _text(key)[prefix:-suffix]
            fields = {_text(k): _text(v) for k, v in state.items()}
            for name, remaining in sorted(fields.items()):
                if not name.endswith(":rem"):
                    continue
                resource = name.removesuffix(":rem")
                try:
                    reset_ms, value = float(fields.get(f"{resource}:rst", "0")), float(remaining)
                except ValueError:
                    continue
                if reset_ms > now_ms:
                    family.add_metric([scope, resource], value)
    return family


_violations_cache: dict[str, tuple[float, Metric]] = {}
# One per event loop (a lock is bound to the loop that first waits on it).
_violations_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary())


def clear_cache() -> None:
    """Forget the cached open-violation counts (tests)."""
    _violations_cache.clear()


async def _open_violations(database_url: str) -> Metric:
    """Open violations per installation (account login) and policy, at most every
    VIOLATIONS_CACHE_SECONDS per process: a scrape every few seconds costs no query."""
    cached = _violations_cache.get(database_url)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    lock = _violations_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:  # concurrent scrapes share one query
        cached = _violations_cache.get(database_url)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        family = await _query_open_violations(database_url)
        _violations_cache[database_url] = (time.monotonic() + VIOLATIONS_CACHE_SECONDS, family)
        return family


async def _query_open_violations(database_url: str) -> Metric:
    from sqlalchemy import func, select

    from app.db.models import Installation, Violation
    from app.db.session import get_engine

    query = (
        select(Installation.id, Installation.account_login, Violation.policy, func.count())
        .join(Installation, Installation.id == Violation.installation_id)
        .where(Violation.state == "open", Installation.active.is_(True))
        .group_by(Installation.id, Installation.account_login, Violation.policy)
    )
    async with get_engine(database_url).connect() as conn:
        rows = (await conn.execute(query)).all()
    counts: dict[tuple[str, str], int] = {}
    for inst_id, login, policy, count in rows:
        labels = (login or str(inst_id), policy)
        counts[labels] = counts.get(labels, 0) + int(count)
    family = _open_violations_family()
    for (account, policy), count in sorted(counts.items()):
        family.add_metric([account, policy], count)
    return family


class _Exposition(Collector):
    """What one scrape renders: this process's registry (or the multiprocess aggregate)
    followed by the families read at scrape time."""

    def __init__(self, base: Any, extra: Iterable[Metric]) -> None:
        self._base = base
        self._extra = list(extra)

    def collect(self) -> Iterator[Metric]:
        yield from self._base.collect()
        yield from self._extra


async def _read(name: str, work: Awaitable[Metric] | None) -> Metric | None:
    if work is None:
        return None
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
            return await work
    except Exception as exc:
        # Class name only: driver messages may carry hosts or credentials.
        log.warning("metrics: reading %s failed (%s)", name, type(exc).__name__)
        return None


async def render_metrics(redis: Any, database_url: str | None) -> tuple[bytes, str]:
    """The /metrics body and its content type.

    `redis`: a redis.asyncio client (the arq pool) or None; `database_url`: the database
    or None. A read that fails (or is None) leaves its gauges out of this scrape and sets
    scrape_collector_success{collector=...} to 0.
    """
    limits, violations = await asyncio.gather(
        _read("rate limits from Redis", None if redis is None else _rate_limits(redis)),
        _read("open violations from the database",
              _open_violations(database_url) if database_url else None),
    )
    success = GaugeMetricFamily(
        "policy_enforcer_scrape_collector_success",
        "Whether this scrape's read of a scrape-time source succeeded (1) or not (0).",
        labels=["collector"])
    success.add_metric(["rate_limits"], 0 if limits is None else 1)
    success.add_metric(["open_violations"], 0 if violations is None else 1)
    # The same families on every scrape, even when a read failed.
    extra = [_rate_limits_family() if limits is None else limits,
             _open_violations_family() if violations is None else violations, success]

    path = os.environ.get(MULTIPROC_ENV)
    base: Any = (MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]
                 if path else REGISTRY)
    # Reading the multiprocess files (or /proc for the process metrics) is blocking I/O.
    body = await asyncio.to_thread(generate_latest, _Exposition(base, extra))
    return body, CONTENT_TYPE
