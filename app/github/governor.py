"""The rate governor and the conditional-request cache: one per installation, in Redis.

Every request any process makes for an installation passes `Governor.acquire` first and
`Governor.release` after, so ten workers behave like one careful client (principle 5).

Limits enforced (GitHub's numbers are the defaults of `Limits`; tests and benches shrink them)
- primary: the REST (`core`), `graphql` and `search` budgets as the last response reported
  them (`x-ratelimit-remaining` / `-reset` / `-resource`), less the requests in flight.
  Spent: wait until the reset. Waits longer than `max_inline_wait` raise `RateLimited`, which
  jobs turn into a deferred retry.
- secondary (https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api):
  at most `max_concurrent` requests in flight; REST points per minute (GET/HEAD/OPTIONS 1,
  other methods 5; a 304 is free of primary budget but GitHub does not exempt it from the
  per-minute points, so it costs its point here too); GraphQL points per minute (query 1,
  mutation 5), by default charged to the REST window as well because the fake GitHub counts
  both in one window (`graphql_in_rest_window=False` follows GitHub's documented separate
  budgets); content-creating requests per minute and per hour.
- `retry-after` and secondary-limit answers: a shared "blocked until" for the installation.

Windows are exact sliding logs. A request is entered when it is admitted and counts until
one window span after its response arrived (it reached GitHub before that, so the entry
always expires no earlier than GitHub's own): a burst goes through immediately up to the
limit, and a request over it is told the exact time the oldest entries expire. Nothing
rounds down to "per second", so the governor is as fast as the limits allow and no faster.

One Redis round trip per request in the common case: the `acquire` Lua script checks every
limit, reserves the request in each window and returns the cached response for a GET, all
at once. `release` (lease returned, window entry stamped with the completion time, budget
from the headers, cache write) is queued and sent in the background, pipelined with other
releases or with this process's next `acquire`. Only a 403/429 answer is released before the
caller sees it, so the retry that follows already sees the spent budget or the block.

Keys, all under the hash tag `{<installation id>}` (or `{app}`) so one script touches one slot:
  pe:gh:{I}:st        hash   blk (blocked until, ms), wt/why (longest wait announced),
                             <res>:rem, <res>:rst (ms), <res>:pend (in flight), sum:<window>
  pe:gh:{I}:lease     zset   "<res>|<rid>" -> lease expiry (ms); a crashed process's slots
                             come back after `lease_seconds`
  pe:gh:{I}:w:pts|gql|cm|ch  zset  "<rid>:<cost>" -> completion time (ms; the lease expiry
                             while in flight): REST points, GraphQL points, content per
                             minute, content per hour
  pe:gh:{I}:c:<digest> hash  e (ETag), h (JSON of content-type/link/etag/last-modified),
                             b (body), o (tag of the credential the ETag was issued to)
  pe:gh:{I}:cidx      zset   digest -> last use (ms), the LRU order
  pe:gh:{I}:csz       hash   digest -> bytes accounted;   pe:gh:{I}:cbytes  total bytes
Clocks: every timestamp is Redis's `TIME`, so processes on different hosts agree.

The cache holds response bodies of private repositories: Redis is trusted storage here, as
it already is for installation tokens. It is bounded per installation by `CacheLimits`:
bodies over `max_body_bytes` are not stored, entries live `ttl_seconds` after their last
use, and past `max_entries` or `max_bytes` the least recently used entries are evicted. (The
operator's `maxmemory` bounds Redis as a whole; this bounds what one installation can take.)

GitHub's ETags are specific to the token that asked, and installation tokens live an hour:
an ETag from the previous token only gets a 200. So an entry records `o`, a one-way tag of
the credential its ETag came with (`credential_tag`; never the credential, and never in a
key), and keeps `Last-Modified` where GitHub sends it (the repository, file contents, an
issue), which does not depend on the token. The client sends If-None-Match while the token
is the one that got the ETag, If-Modified-Since alone once it is not (GitHub answers 304
only when every validator sent holds, so both together would not help), and a 304 with the
new token's ETag re-tags the entry. Last-Modified is kept only when the response's Date is a
later second: a change within the same second would not move it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import hashlib
import itertools
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from app.github.errors import RateLimited

log = logging.getLogger(__name__)

APP_SCOPE = "app"
CACHED_HEADERS = ("content-type", "link", "etag", "last-modified")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WINDOWS = ("pts", "gql", "cm", "ch")
_KEY_COUNT = 10  # what Governor._keys returns: st, lease, 4 windows, 4 cache keys
# Reasons for which a waiter is woken by this process's own releases, not just its timer.
_WAKE_ON_RELEASE = frozenset({"concurrency", "primary budget nearly spent"})


@dataclass(frozen=True)
class Limits:
    """What the governor allows per installation; GitHub's documented numbers by default."""

    max_concurrent: int = 100
    points_per_minute: int = 900  # REST
    read_points: int = 1  # GET, HEAD, OPTIONS
    write_points: int = 5  # POST, PATCH, PUT, DELETE
    graphql_points_per_minute: int = 2000
    graphql_query_points: int = 1
    graphql_mutation_points: int = 5
    # Also charge GraphQL requests' points to the REST window. GitHub documents separate
    # per-minute budgets; the fake GitHub (and perhaps GitHub) shares one: a GraphQL query is
    # 1 point in 100 repositories' worth, so being safe costs next to nothing.
    graphql_in_rest_window: bool = True
    content_per_minute: int = 80
    content_per_hour: int = 500
    # Bulk requests (issue filing after a scan) leave this share of the content budget to
    # interactive ones (pull-request checks, command replies), so a first scan that files
    # thousands of issues over hours never holds up a check for more than a moment.
    interactive_content_share: float = 0.25
    # A bulk request waits in-process at most this long, then its job is deferred: a job
    # waiting out the content budget would hold a worker slot that interactive work needs.
    bulk_max_inline_wait: float = 5.0
    minute_seconds: float = 60.0
    hour_seconds: float = 3600.0
    # A request's slot is taken back after this long even if its process died; it must
    # exceed the HTTP client's total timeout.
    lease_seconds: float = 120.0
    # Longer waits are not slept in-process: `RateLimited` is raised (the job is deferred).
    # Above two per-minute windows: waiting out a full window in-process is cheap, while a
    # deferred batch loses the requests it already made in this window.
    max_inline_wait: float = 150.0
    # Poll interval while waiting on requests of other processes to finish.
    poll_seconds: float = 0.05
    # Added to GitHub's x-ratelimit-reset, for clock skew.
    primary_margin_seconds: float = 1.0


LIMITS_ENV = "GITHUB_RATE_LIMITS"


def parse_limits(text: str, base: Limits | None = None) -> Limits:
    """`Limits` from "name=value,name=value" (e.g. "content_per_minute=1000"), over `base`.

    For GitHub Enterprise Server (whose secondary limits are the admin's) and for test
    setups whose fake GitHub enforces none. Raises ValueError naming a bad entry.
    """
    base = base or Limits()
    types = {f.name: type(getattr(base, f.name)) for f in dataclasses.fields(Limits)}
    changes: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in types:
            raise ValueError(f"{LIMITS_ENV}: unknown entry {item!r} (fields: {sorted(types)})")
        kind = types[name]
        try:
            if kind is bool:
                changes[name] = value.strip().lower() in ("1", "true", "yes", "on")
            else:
                changes[name] = kind(value.strip())
        except ValueError:
            raise ValueError(f"{LIMITS_ENV}: {name} needs a {kind.__name__}, not {value!r}"
                             ) from None
    return dataclasses.replace(base, **changes)


def limits_from_env(environ: Mapping[str, str] | None = None) -> Limits:
    """GitHub's limits, with the overrides in the GITHUB_RATE_LIMITS variable, if any."""
    env = os.environ if environ is None else environ
    return parse_limits(env.get(LIMITS_ENV, ""))


@dataclass(frozen=True)
class CacheLimits:
    """Bounds of the per-installation ETag cache (see the module docstring)."""

    max_body_bytes: int = 512 * 1024
    ttl_seconds: int = 7 * 24 * 3600
    max_entries: int = 50_000
    max_bytes: int = 64 * 1024 * 1024
    enabled: bool = True


@dataclass(frozen=True)
class Cost:
    """What one request costs in each budget."""

    resource: str  # primary budget: core | graphql | search
    rest_points: int
    graphql_points: int
    content: bool  # counts toward the content-creation limits

    def window_costs(self) -> tuple[int, int, int, int]:
        c = 1 if self.content else 0
        return self.rest_points, self.graphql_points, c, c

    @property
    def costs_text(self) -> str:
        return " ".join(str(c) for c in self.window_costs())


@dataclass(frozen=True)
class CachedResponse:
    etag: str
    headers: dict[str, str]
    body: bytes
    owner: str = ""  # `credential_tag` of the credential the ETag was issued to


@dataclass
class Ticket:
    """An admitted request: hand it back to `release` once its response (or error) is in."""

    scope: str
    member: str
    cost: Cost
    digest: str | None = None
    cached: CachedResponse | None = None
    owner: str = ""  # `credential_tag` of the credential this request carries


@dataclass
class GovernorStats:
    """Counters for benchmarks and tests (this process only)."""

    acquired: int = 0
    acquire_round_trips: int = 0  # awaited before a request could be sent
    released: int = 0
    release_round_trips: int = 0  # sent in the background (or piggybacked: not counted)
    piggybacked: int = 0  # releases sent in the same round trip as an acquire
    waits: int = 0
    waited_seconds: float = 0.0
    cache_hits: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _is_mutation(body: bytes) -> bool:
    try:
        query = json.loads(body or b"{}").get("query", "")
    except (ValueError, AttributeError):
        return False
    return isinstance(query, str) and query.lstrip().startswith("mutation")


def classify(method: str, url: str, body: bytes, limits: Limits) -> Cost:
    """The budgets a request draws on, by GitHub's rules."""
    path = urlsplit(url).path.rstrip("/")
    if method == "POST" and path.endswith("/graphql"):
        mutation = _is_mutation(body)
        points = limits.graphql_mutation_points if mutation else limits.graphql_query_points
        return Cost("graphql", points if limits.graphql_in_rest_window else 0, points,
                    mutation)
    resource = "search" if "/search/" in path else "core"
    points = limits.read_points if method in _READ_METHODS else limits.write_points
    # Content-creating: issues, comments, labels, reactions, pull requests, ... Counting
    # every POST (bar token creation) and file writes errs on the safe side.
    content = (method == "POST" and not path.endswith("/access_tokens")) or (
        method == "PUT" and "/contents/" in path
    )
    return Cost(resource, points, 0, content)


def cache_digest(method: str, url: str, accept: str) -> str:
    return hashlib.sha1(f"{method} {url}\n{accept}".encode(), usedforsecurity=False).hexdigest()


def credential_tag(authorization: str) -> str:
    """A short one-way tag of a request's credential, to know whose ETag a cache entry
    holds. Not reversible (a keyed 64-bit digest of a long random token), not a key."""
    return hashlib.blake2b(authorization.encode(), digest_size=8,
                           person=b"pe-etag-owner").hexdigest()


def _http_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.replace(tzinfo=parsed.tzinfo or UTC).timestamp()


def usable_last_modified(headers: Mapping[str, str]) -> str | None:
    """The response's Last-Modified if If-Modified-Since can rely on it: it is whole
    seconds, so only a Date in a later second shows that nothing changed after it within
    its second (a Last-Modified in the future, e.g. a commit's skewed clock, is not kept)."""
    last_modified = _header(headers, "last-modified")
    modified, date = _http_seconds(last_modified), _http_seconds(_header(headers, "date"))
    if modified is None or date is None or date <= modified:
        return None
    return last_modified


def _ms(seconds: float) -> int:
    return max(0, math.ceil(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


_LUA_COMMON = """
-- Redis < 5 replicates scripts verbatim and refuses writes after TIME without this.
if redis.replicate_commands then redis.replicate_commands() end
local st = KEYS[1]
local t = redis.call('TIME')
local function cost_of(m) return tonumber(string.match(m, ':(%d+)$')) or 0 end
local function numbers(text)
  local out = {}
  for n in string.gmatch(text, '%S+') do out[#out + 1] = tonumber(n) end
  return out
end
"""

ACQUIRE_LUA = _LUA_COMMON + """
-- KEYS: st, lease, w:pts, w:gql, w:cm, w:ch, cache entry, cidx (csz, cbytes unused)
-- ARGV: 1 rid, 2 resource, 3 "max_concurrent lease_ms poll_ms margin_ms key_ttl" followed by
--       "limit span_ms" of each window, 4 "cost cost cost cost", 5 read cache '1'/'0', 6 digest
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid, res = ARGV[1], ARGV[2]
local cfg, window_costs = numbers(ARGV[3]), numbers(ARGV[4])
local max_conc, lease_ms, poll_ms, margin_ms, ttl = cfg[1], cfg[2], cfg[3], cfg[4], cfg[5]
local names = {'pts', 'gql', 'cm', 'ch'}

local function wait(ms, why)
  -- Announce waits worth showing (waiting_until); short ones are routine pacing.
  if ms >= 1000 then
    local wt = tonumber(redis.call('HGET', st, 'wt') or '0')
    if now + ms > wt then
      redis.call('HSET', st, 'wt', now + ms, 'why', why)
      if redis.call('TTL', st) < math.ceil(ms / 1000) + 60 then
        redis.call('EXPIRE', st, math.ceil(ms / 1000) + 60)
      end
    end
  end
  return {1, ms, why}
end

-- 1. retry-after / secondary-limit answer, shared by every process
local blk = tonumber(redis.call('HGET', st, 'blk') or '0')
if blk > now then return wait(blk - now, 'secondary rate limit (retry-after)') end

-- 2. concurrency; leases of crashed processes expire
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #dead > 0 then
  for _, m in ipairs(dead) do
    redis.call('HINCRBY', st, string.match(m, '^([^|]*)|') .. ':pend', -1)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
end
if redis.call('ZCARD', KEYS[2]) >= max_conc then return {1, poll_ms, 'concurrency'} end

-- 3. primary budget, as last reported, less the requests in flight
local rem = tonumber(redis.call('HGET', st, res .. ':rem') or '')
if rem then
  local rst = tonumber(redis.call('HGET', st, res .. ':rst') or '0')
  if rst > now then
    if rem <= 0 then return wait(rst - now + margin_ms, 'primary rate limit spent') end
    local pend = math.max(0, tonumber(redis.call('HGET', st, res .. ':pend') or '0'))
    if rem - pend <= 0 then return {1, poll_ms, 'primary budget nearly spent'} end
  end
end

-- 4. sliding windows: drop expired entries, then see whether this request fits
local sums, costs = {}, {}
local wait_ms, why = 0, ''
for i = 1, 4 do
  local limit, span, cost = cfg[4 + 2 * i], cfg[5 + 2 * i], window_costs[i]
  costs[i] = cost
  if cost > 0 then
    local key, f = KEYS[2 + i], 'sum:' .. names[i]
    local sum = tonumber(redis.call('HGET', st, f) or '-1')
    local old = redis.call('ZRANGEBYSCORE', key, '-inf', now - span)
    if #old > 0 then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
      for _, m in ipairs(old) do sum = sum - cost_of(m) end
    end
    if redis.call('ZCARD', key) == 0 then
      sum = 0
    elseif sum < 0 then  -- the running sum was lost (eviction): count again
      sum = 0
      for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do sum = sum + cost_of(m) end
    end
    sums[i] = sum
    redis.call('HSET', st, f, sum)
    if sum > 0 and sum + cost > limit then
      -- The exact wait: until enough of the oldest entries have expired. An entry still
      -- in flight expires a span after it completes, at least a span from now.
      local need = sum + cost - limit
      local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
      local freed, w = 0, span
      for j = 1, #entries, 2 do
        freed = freed + cost_of(entries[j])
        if freed >= need then
          w = math.min(tonumber(entries[j + 1]), now) + span - now
          break
        end
      end
      if w > wait_ms then wait_ms, why = w, names[i] end
    end
  end
end
if wait_ms > 0 then return wait(wait_ms, 'secondary limit ' .. why) end

-- 5. admitted: reserve a concurrency slot, budget and window entries
local exp = now + lease_ms
redis.call('ZADD', KEYS[2], exp, res .. '|' .. rid)
redis.call('HINCRBY', st, res .. ':pend', 1)
redis.call('EXPIRE', KEYS[2], ttl)
for i = 1, 4 do
  if costs[i] > 0 then
    redis.call('ZADD', KEYS[2 + i], exp, rid .. ':' .. costs[i])
    redis.call('HSET', st, 'sum:' .. names[i], sums[i] + costs[i])
    redis.call('EXPIRE', KEYS[2 + i], ttl)
  end
end
if redis.call('TTL', st) < ttl then redis.call('EXPIRE', st, ttl) end

-- 6. the cached response, for a conditional GET
if ARGV[5] == '1' then
  local e = redis.call('HMGET', KEYS[7], 'e', 'h', 'b', 'o')
  if e[1] then
    redis.call('ZADD', KEYS[8], 'XX', now, ARGV[6])
    return {0, 0, 'ok', e[1], e[2], e[3], e[4] or ''}
  end
end
return {0, 0, 'ok'}
"""

RELEASE_LUA = _LUA_COMMON + """
-- KEYS: st, lease, w:pts, w:gql, w:cm, w:ch, cache entry, cidx, csz, cbytes
-- ARGV: 1 rid, 2 resource, 3 "cost cost cost cost", 4 header resource, 5 remaining,
--       6 reset (s), 7 block ms, 8 "key_ttl cache_ttl max_entries max_bytes",
--       9 cache mode ('store'|'touch'|''), 10 etag, 11 headers, 12 body, 13 digest,
--       14 entry key prefix, 15 credential tag of the ETag
-- Completion time, rounded up: the entry must not expire before GitHub's does.
local now = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
local rid, res = ARGV[1], ARGV[2]
local window_costs, cfg = numbers(ARGV[3]), numbers(ARGV[8])
if redis.call('ZREM', KEYS[2], res .. '|' .. rid) == 1 then
  redis.call('HINCRBY', st, res .. ':pend', -1)
end
for i = 1, 4 do
  local cost = window_costs[i]
  if cost > 0 then redis.call('ZADD', KEYS[2 + i], 'XX', now, rid .. ':' .. cost) end
end

-- primary budget: a newer window replaces, the same window only goes down
if ARGV[5] ~= '' then
  local hres, rem, rst = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]) * 1000
  local cur = tonumber(redis.call('HGET', st, hres .. ':rst') or '0')
  if rst > cur then
    redis.call('HSET', st, hres .. ':rem', rem, hres .. ':rst', rst)
  elseif rst == cur then
    local old = tonumber(redis.call('HGET', st, hres .. ':rem') or '')
    if old == nil or rem < old then redis.call('HSET', st, hres .. ':rem', rem) end
  end
end

local block = tonumber(ARGV[7])
if block > 0 then
  if now + block > tonumber(redis.call('HGET', st, 'blk') or '0') then
    redis.call('HSET', st, 'blk', now + block)
  end
  local need = math.max(cfg[1], math.ceil(block / 1000) + 60)
  if redis.call('TTL', st) < need then redis.call('EXPIRE', st, need) end
end

local mode = ARGV[9]
if mode == '' then return 0 end
local entry, cidx, csz, cbytes = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local digest, prefix, cttl = ARGV[13], ARGV[14], cfg[2]
if mode == 'touch' then
  redis.call('EXPIRE', entry, cttl)
  return 0
end
local total = tonumber(redis.call('GET', cbytes) or '0')
local size = #ARGV[10] + #ARGV[11] + #ARGV[12] + #ARGV[15] + #digest + 64
local old = tonumber(redis.call('HGET', csz, digest) or '0')
redis.call('HSET', entry, 'e', ARGV[10], 'h', ARGV[11], 'b', ARGV[12], 'o', ARGV[15])
redis.call('EXPIRE', entry, cttl)
redis.call('HSET', csz, digest, size)
redis.call('ZADD', cidx, now, digest)
total = total - old + size
local function drop(d)
  total = total - tonumber(redis.call('HGET', csz, d) or '0')
  redis.call('HDEL', csz, d)
  redis.call('DEL', prefix .. d)
end
-- entries unused for the TTL have expired by themselves: forget them
local stale = redis.call('ZRANGEBYSCORE', cidx, '-inf', now - cttl * 1000)
if #stale > 0 then
  for _, d in ipairs(stale) do drop(d) end
  redis.call('ZREMRANGEBYSCORE', cidx, '-inf', now - cttl * 1000)
end
-- the bounds: least recently used first
local max_entries, max_bytes = cfg[3], cfg[4]
while total > max_bytes or redis.call('ZCARD', cidx) > max_entries do
  local p = redis.call('ZPOPMIN', cidx)
  if #p == 0 then break end
  drop(p[1])
end
if total < 0 then total = 0 end
redis.call('SET', cbytes, total, 'EX', cttl)
redis.call('EXPIRE', cidx, cttl)
redis.call('EXPIRE', csz, cttl)
return 0
"""

WAITING_LUA = _LUA_COMMON + """
-- KEYS: st   ARGV: 1 margin_ms   Returns {now, until} in ms (until 0: not waiting).
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local u = math.max(tonumber(redis.call('HGET', st, 'blk') or '0'),
                   tonumber(redis.call('HGET', st, 'wt') or '0'))
for _, r in ipairs({'core', 'graphql'}) do
  local rem = tonumber(redis.call('HGET', st, r .. ':rem') or '1')
  local rst = tonumber(redis.call('HGET', st, r .. ':rst') or '0')
  if rem <= 0 and rst > now then u = math.max(u, rst + tonumber(ARGV[1])) end
end
if u <= now then u = 0 end
return {now, u}
"""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


class Governor:
    """Admission control and ETag cache for every installation, shared through Redis.

    One per process (`GitHub.governor`); the API objects of all installations use it.
    """

    def __init__(self, redis: Redis, limits: Limits | None = None,
                 cache: CacheLimits | None = None) -> None:
        self.redis = redis
        self.limits = limits or Limits()
        self.cache = cache or CacheLimits()
        self.stats = GovernorStats()
        lim = self.limits
        self._windows: tuple[tuple[int, int], ...] = (
            (lim.points_per_minute, _ms(lim.minute_seconds)),
            (lim.graphql_points_per_minute, _ms(lim.minute_seconds)),
            (lim.content_per_minute, _ms(lim.minute_seconds)),
            (lim.content_per_hour, _ms(lim.hour_seconds)),
        )
        self._key_ttl = int(max(lim.hour_seconds, 3600) + lim.lease_seconds + 120)
        # The scripts' fixed arguments, packed once (fewer arguments: less to encode).
        self._acquire_cfg = " ".join(str(n) for n in (
            lim.max_concurrent, _ms(lim.lease_seconds), _ms(lim.poll_seconds),
            _ms(lim.primary_margin_seconds), self._key_ttl,
            *(n for window in self._windows for n in window)))
        share = min(max(lim.interactive_content_share, 0.0), 0.9)
        bulk_windows = (
            *self._windows[:2],
            (max(1, math.floor(lim.content_per_minute * (1 - share))), _ms(lim.minute_seconds)),
            (max(1, math.floor(lim.content_per_hour * (1 - share))), _ms(lim.hour_seconds)),
        )
        self._acquire_cfg_bulk = " ".join(str(n) for n in (
            lim.max_concurrent, _ms(lim.lease_seconds), _ms(lim.poll_seconds),
            _ms(lim.primary_margin_seconds), self._key_ttl,
            *(n for window in bulk_windows for n in window)))
        c = self.cache
        self._release_cfg = f"{self._key_ttl} {c.ttl_seconds} {c.max_entries} {c.max_bytes}"
        self._sources = {"acquire": ACQUIRE_LUA, "release": RELEASE_LUA,
                         "waiting": WAITING_LUA}
        # Redis names scripts by their SHA-1 (EVALSHA).
        self._shas = {name: hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest()
                      for name, src in self._sources.items()}
        self._ids = itertools.count(1)
        # Unique across processes and across governors of one process.
        self._id_prefix = f"{secrets.token_hex(6)}x"
        self._pending: list[tuple[str, list[Any]]] = []  # (scope, release args)
        self._flusher: asyncio.Task[None] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._released: dict[str, asyncio.Event] = {}

    # ------------------------------------------------------------------ keys
    @staticmethod
    def scope_of(installation_id: int | None) -> str:
        return APP_SCOPE if installation_id is None else str(installation_id)

    @staticmethod
    def _prefix(scope: str) -> str:
        return f"pe:gh:{{{scope}}}:"

    def _keys(self, scope: str, digest: str | None) -> list[str]:
        p = self._prefix(scope)
        return [f"{p}st", f"{p}lease", *(f"{p}w:{w}" for w in _WINDOWS),
                f"{p}c:{digest or '-'}", f"{p}cidx", f"{p}csz", f"{p}cbytes"]

    # ------------------------------------------------------------------ scripts
    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self.redis.evalsha(  # type: ignore[misc]
                self._shas[name], len(keys), *keys, *args)
        except NoScriptError:
            await self.redis.script_load(self._sources[name])
            return await self.redis.evalsha(  # type: ignore[misc]
                self._shas[name], len(keys), *keys, *args)

    async def _pipeline(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Run several scripts in one round trip; a reply is the exception if one failed."""
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for name, keys_and_args in calls:
                    pipe.evalsha(self._shas[name], _KEY_COUNT, *keys_and_args)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies):
                return replies
            for name in {n for n, _ in calls}:
                await self.redis.script_load(self._sources[name])
        return replies

    # ------------------------------------------------------------------ acquire
    async def acquire(self, scope: str, method: str, url: str, body: bytes = b"", *,
                      accept: str | None = None, cacheable: bool = False,
                      owner: str = "", bulk: bool = False) -> Ticket:
        """Wait until every limit admits this request, reserve it, and return the ticket.

        With `cacheable`, the ticket carries the cached response (ETag) if there is one;
        `owner` is the `credential_tag` of the request's credential, recorded with the ETag
        of the response. Raises `RateLimited` when the wait would be longer than
        `max_inline_wait` (`bulk_max_inline_wait` for a `bulk` request, which also sees the
        content windows less their reserves).
        """
        lim = self.limits
        cost = classify(method, url, body, lim)
        digest = (cache_digest(method, url, accept or "")
                  if cacheable and self.cache.enabled else None)
        member = f"{self._id_prefix}{next(self._ids):x}"
        keys = self._keys(scope, digest)
        args: list[Any] = [member, cost.resource,
                           self._acquire_cfg_bulk if bulk else self._acquire_cfg,
                           cost.costs_text, "1" if digest else "0", digest or ""]
        max_wait = lim.bulk_max_inline_wait if bulk else lim.max_inline_wait
        ticket = Ticket(scope, member, cost, digest, owner=owner)

        # Waiters queue per kind of request, so a POST waiting out the content limit does
        # not hold up this process's GETs.
        lock = self._locks.setdefault(f"{scope}:{cost.resource}:{cost.content}:{bulk}",
                                      asyncio.Lock())
        reply: list[Any] | None = None
        if not lock.locked():
            reply = await self._acquire_once(keys, args)
            if int(reply[0]) == 0:
                return self._admitted(ticket, reply)
        # Blocked: this process's waiters queue here, so one of them at a time asks Redis.
        if lock.locked():
            reply = None  # stale by the time this waiter's turn comes
        async with lock:
            while True:
                released = self._released.setdefault(scope, asyncio.Event())
                if reply is None:
                    reply = await self._acquire_once(keys, args)
                    if int(reply[0]) == 0:
                        return self._admitted(ticket, reply)
                wait = int(reply[1]) / 1000
                why = _text(reply[2])
                if wait > max_wait:
                    raise RateLimited(time.time() + wait, why)
                self.stats.waits += 1
                self.stats.waited_seconds += wait
                self.stats.reasons[why] = self.stats.reasons.get(why, 0) + 1
                if why in _WAKE_ON_RELEASE:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(released.wait(), wait)
                else:
                    await asyncio.sleep(wait + 0.001)
                reply = None

    async def _acquire_once(self, keys: list[str], args: list[Any]) -> list[Any]:
        self.stats.acquire_round_trips += 1
        batch = self._take_pending()
        if not batch:
            return list(await self._eval("acquire", keys, args))
        # Piggyback queued releases: same round trip, and they land before this acquire.
        self.stats.piggybacked += len(batch)
        try:
            replies = await self._pipeline([*(("release", a) for _, a in batch),
                                            ("acquire", [*keys, *args])])
        except BaseException:
            self._pending[:0] = batch  # not sent: the flusher or the next acquire will
            raise
        self._after_release(batch, replies[:-1])
        if isinstance(replies[-1], Exception):
            raise replies[-1]
        return list(replies[-1])

    def _admitted(self, ticket: Ticket, reply: list[Any]) -> Ticket:
        self.stats.acquired += 1
        if len(reply) >= 6:
            try:
                headers = json.loads(_text(reply[4]))
                owner = _text(reply[6]) if len(reply) >= 7 and reply[6] is not None else ""
                ticket.cached = CachedResponse(_text(reply[3]), dict(headers), _bytes(reply[5]),
                                               owner)
                self.stats.cache_hits += 1
            except ValueError:
                ticket.cached = None
        return ticket

    # ------------------------------------------------------------------ release
    def _release_args(self, ticket: Ticket, status: int, headers: Mapping[str, str] | None,
                      body: bytes | None, block_seconds: float) -> list[Any]:
        h = headers or {}
        resource = _header(h, "x-ratelimit-resource") or ticket.cost.resource
        remaining = _header(h, "x-ratelimit-remaining") or ""
        reset = _header(h, "x-ratelimit-reset") or "0"
        if not remaining.lstrip("-").isdigit() or not reset.isdigit():
            remaining, reset = "", "0"
        mode, etag, cached_headers, payload, owner = "", "", "", b"", ticket.owner
        cache = self.cache
        cached = ticket.cached
        if ticket.digest is not None:
            etag = _header(h, "etag") or ""
            if status == 304 and cached is not None:
                mode = "touch"
                kept = dict(cached.headers)
                if etag and (etag != cached.etag or ticket.owner != cached.owner):
                    # Not modified, but the ETag is now this credential's (a new token):
                    # keep it, so this token's next requests can send If-None-Match.
                    kept["etag"] = etag
                else:
                    etag, owner = cached.etag, cached.owner
                if (last_modified := usable_last_modified(h)) is not None:
                    # The body is the current one, so a Last-Modified that was too fresh to
                    # rely on when it was stored may be relied on now.
                    kept["last-modified"] = last_modified
                if kept != cached.headers or owner != cached.owner:
                    mode, payload, cached_headers = "store", cached.body, json.dumps(kept)
            elif (status == 200 and etag and body is not None
                    and len(body) <= cache.max_body_bytes):
                mode = "store"
                kept = {name: v for name in CACHED_HEADERS
                        if (v := _header(h, name)) is not None}
                if "last-modified" in kept and usable_last_modified(h) is None:
                    del kept["last-modified"]
                cached_headers = json.dumps(kept)
                payload = body
        keys = self._keys(ticket.scope, ticket.digest)
        return [*keys, ticket.member, ticket.cost.resource, ticket.cost.costs_text,
                resource, remaining, reset, _ms(block_seconds), self._release_cfg,
                mode, etag, cached_headers, payload, ticket.digest or "",
                f"{self._prefix(ticket.scope)}c:", owner]

    def release(self, ticket: Ticket, status: int = 0,
                headers: Mapping[str, str] | None = None, body: bytes | None = None) -> None:
        """Give the slot back and record the response; sent in the background."""
        self._pending.append(
            (ticket.scope, self._release_args(ticket, status, headers, body, 0.0)))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def release_now(self, ticket: Ticket, status: int,
                          headers: Mapping[str, str] | None = None,
                          block_seconds: float = 0.0) -> None:
        """Release and wait for it: the budget or block is visible to the next acquire."""
        batch = [*self._take_pending(),
                 (ticket.scope, self._release_args(ticket, status, headers, None,
                                                   block_seconds))]
        await self._send(batch)

    async def block(self, scope: str, seconds: float, reason: str = "") -> None:
        """No request for this scope before `seconds` from now (only ever extends)."""
        log.info("rate limit for %s: %s; blocked %.1f s", scope, reason or "blocked", seconds)
        ticket = Ticket(scope, "-", Cost("core", 0, 0, False))
        await self._send([(scope, self._release_args(ticket, 0, None, None, seconds))])

    def _take_pending(self) -> list[tuple[str, list[Any]]]:
        batch, self._pending = self._pending, []
        return batch

    async def _flush_loop(self) -> None:
        while self._pending:
            await self._send(self._take_pending())

    async def _send(self, batch: list[tuple[str, list[Any]]]) -> None:
        if not batch:
            return
        self.stats.release_round_trips += 1
        try:
            replies = await self._pipeline([("release", a) for _, a in batch])
        except Exception as exc:  # leases expire by themselves; nothing else is lost
            log.warning("rate governor: %d releases not recorded: %r", len(batch), exc)
            replies = []
        self._after_release(batch, replies)

    def _after_release(self, batch: list[tuple[str, list[Any]]], replies: list[Any]) -> None:
        self.stats.released += len(batch)
        for r in replies:
            if isinstance(r, Exception):
                log.warning("rate governor: release failed: %r", r)
        for scope in {s for s, _ in batch}:
            event = self._released.pop(scope, None)
            if event is not None:
                event.set()

    async def flush(self) -> None:
        """Send every queued release (call before closing, and in tests)."""
        while self._pending or (self._flusher is not None and not self._flusher.done()):
            if self._flusher is not None and not self._flusher.done():
                await asyncio.shield(self._flusher)
            else:
                await self._send(self._take_pending())

    # ------------------------------------------------------------------ state
    async def waiting_until(self, installation_id: int | None) -> float | None:
        """Epoch seconds (this host's clock) until which the installation waits on a
        rate limit of a second or more, or None."""
        keys = self._keys(self.scope_of(installation_id), None)[:1]
        now_ms, until_ms = (int(v) for v in await self._eval(
            "waiting", keys, [_ms(self.limits.primary_margin_seconds)]))
        if until_ms <= now_ms:
            return None
        return time.time() + (until_ms - now_ms) / 1000
