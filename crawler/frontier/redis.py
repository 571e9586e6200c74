"""The distributed frontier: any number of processes share one crawl's queues, seen set and rate limits in Redis.

Keys, all under `crawler:{JOB}:` (the braces make the job name a Redis Cluster hash tag, so every key of
a crawl lives in one slot and the Lua scripts below may touch any of them):

    seq                  STRING  last request id (INCR)
    req                  HASH    id -> "<score> <host> <Request.to_dict() as JSON>"  (queued or leased)
    q:<host>             ZSET    queued ids of a host; score = -priority * 2**32 + id (priority, then FIFO)
    ready                ZSET    hosts with queued work; score = earliest start (ms, Redis clock)
    tat                  HASH    host -> GCRA theoretical arrival time (ms): the shared per-host rate
    leased               ZSET    leased ids; score = lease expiry (ms, Redis clock)
    owner                HASH    leased id -> worker identity
    worker:<id>:leases   SET     ids leased by one worker (released when it restarts or closes)
    worker:<id>:alive    STRING  present while the worker runs (TTL min(lease, 15 s), renewed)
    workers              HASH    worker -> JSON {host, pid, items, started}
    checkpoint           HASH    worker -> JSON checkpoint ({"items_offset": N} of that worker's file)
    seen:<hhhh>          SET     fingerprints whose top 16 bits are hhhh, as their low 48 bits: 65,536
                                 small integer sets that Redis stores as packed intsets (8 bytes a URL)
    stats                HASH    queued, pushed, seen, acked, requeued, lost_leases
    done                 HASH    host -> pages acked

Every state change is one Lua script, so it is atomic across processes: push (dedup + enqueue), pop
(token bucket + lease), ack (release + checkpoint), renew, and reclaim (expired leases back to their
host's queue, run by every process as part of looking for ready hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis

from crawler.frontier.base import FrontierBase
from crawler.model.request import Request
from crawler.model.seen import CompactSeenSet

__all__ = ["RedisFrontier", "WorkerBusy"]

log = logging.getLogger("crawler.frontier")

DEFAULT_LEASE_SECONDS = 60.0
# A worker's liveness key outlives it by at most this: a restarted worker waits this long for its identity.
_ALIVE_SECONDS = 15.0
_SEEN_BUCKET_BITS = 16
_SEEN_MEMBER_MASK = (1 << (64 - _SEEN_BUCKET_BITS)) - 1
_PRIORITY_LIMIT = 1 << 20  # keeps -priority * 2**32 + id exact in a double
# Like the local HostLimiter: a bucket holds 0.1 s of requests, so 20/s is spread over the second.
_BUCKET_SECONDS = 0.1
_MAX_READY_HOSTS = 256
_PUSH_BATCH = 1000
_READY_HORIZON_MS = 1000  # also list hosts that may start within this, to know when to wake up
_READY_CACHE_SECONDS = 0.2  # reuse the ready hosts of the last reply for this long: one round trip a pop
_CLOCK_SLACK = 0.002
_IDLE_POLL_SECONDS = 0.05
_RECLAIM_BATCH = 200


class WorkerBusy(RuntimeError):
    """The worker identity is held by a live process."""


# Lua shared by the scripts: the current Redis time in ms, and putting one leased id back on its queue.
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function requeue(prefix, id, ready, leased, owner, req, stats)
  local who = redis.call('HGET', owner, id)
  redis.call('ZREM', leased, id)
  redis.call('HDEL', owner, id)
  if who then redis.call('SREM', prefix .. 'worker:' .. who .. ':leases', id) end
  local rec = redis.call('HGET', req, id)
  if rec then
    local score, host = string.match(rec, '^(%S+) (%S+) ')
    redis.call('ZADD', prefix .. 'q:' .. host, score, id)
    redis.call('ZADD', ready, 'NX', 0, host)
    redis.call('HINCRBY', stats, 'queued', 1)
    redis.call('HINCRBY', stats, 'requeued', 1)
  end
end
local function reclaim(prefix, now, ready, leased, owner, req, stats)
  local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', now, 'LIMIT', 0, RECLAIM_BATCH)
  for _, id in ipairs(expired) do requeue(prefix, id, ready, leased, owner, req, stats) end
end
local function list_ready(ready, now, horizon, max_hosts, out)
  local hosts = redis.call('ZRANGEBYSCORE', ready, '-inf', now + horizon, 'WITHSCORES', 'LIMIT', 0, max_hosts)
  for _, v in ipairs(hosts) do out[#out + 1] = v end
  return out
end
""".replace("RECLAIM_BATCH", str(_RECLAIM_BATCH))

# KEYS: seq req ready stats, then the queue and seen keys the requests refer to.
# ARGV: six per request: seen key index (0: dont_filter), seen member, queue key index, host, priority, data.
_PUSH = """
local added, fresh_seen = 0, 0
for b = 0, #ARGV - 1, 6 do
  local sk = tonumber(ARGV[b + 1])
  local fresh = true
  if sk > 0 then
    fresh = redis.call('SADD', KEYS[sk], ARGV[b + 2]) == 1
    if fresh then fresh_seen = fresh_seen + 1 end
  end
  if fresh then
    local id = redis.call('INCR', KEYS[1])
    local score = string.format('%d', id - tonumber(ARGV[b + 5]) * 4294967296)
    local host = ARGV[b + 4]
    redis.call('HSET', KEYS[2], id, score .. ' ' .. host .. ' ' .. ARGV[b + 6])
    redis.call('ZADD', KEYS[tonumber(ARGV[b + 3])], score, id)
    redis.call('ZADD', KEYS[3], 'NX', 0, host)
    added = added + 1
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[4], 'queued', added)
  redis.call('HINCRBY', KEYS[4], 'pushed', added)
end
if fresh_seen > 0 then redis.call('HINCRBY', KEYS[4], 'seen', fresh_seen) end
return added
"""

# KEYS: ready leased owner req stats. ARGV: prefix, max hosts, horizon ms.
# Puts expired leases back, then returns {now, 0, host, start, host, start, ...}: the hosts with queued work
# that may start within the horizon, longest-waiting first (same shape as the reply of _POP).
_READY = (
    _PRELUDE
    + """
local now = now_ms()
reclaim(ARGV[1], now, KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return list_ready(KEYS[1], now, tonumber(ARGV[3]), tonumber(ARGV[2]), {tostring(now), 0})
"""
)

# KEYS: ready req leased owner my-leases tat stats, then one queue key per host.
# ARGV: worker, lease ms, limit, prefix, max hosts, horizon ms, then four per host: host, allowance,
# interval ms (0: unlimited), tau ms. Per host, a GCRA token bucket shared by every process: k requests may
# start now when tat + (k - 1) * interval - tau <= now; each start moves tat one interval on.
# Returns {now, 2 * popped, id, record, ..., then the ready hosts as _READY lists them}.
_POP = (
    _PRELUDE
    + """
local now = now_ms()
reclaim(ARGV[4], now, KEYS[1], KEYS[3], KEYS[4], KEYS[2], KEYS[7])
local exp = now + tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local out, taken = {}, 0
local i = 0
for b = 6, #ARGV - 1, 4 do
  i = i + 1
  if taken >= limit then break end
  local host = ARGV[b + 1]
  local allow = math.min(tonumber(ARGV[b + 2]), limit - taken)
  local interval = tonumber(ARGV[b + 3])
  local tau = tonumber(ARGV[b + 4])
  local qk = KEYS[7 + i]
  local tat = now
  if interval > 0 then
    tat = math.max(tonumber(redis.call('HGET', KEYS[6], host) or '0'), now)
    local k = math.floor((now + tau - tat) / interval) + 1
    if k < allow then allow = k end
  end
  local n = 0
  if allow > 0 then
    local popped = redis.call('ZPOPMIN', qk, allow)
    n = #popped / 2
    for j = 1, n do
      local id = popped[2 * j - 1]
      redis.call('ZADD', KEYS[3], exp, id)
      redis.call('HSET', KEYS[4], id, ARGV[1])
      redis.call('SADD', KEYS[5], id)
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGET', KEYS[2], id)
    end
    taken = taken + n
  end
  if n > 0 then
    redis.call('HINCRBY', KEYS[7], 'queued', -n)
    if interval > 0 then
      tat = tat + n * interval
      redis.call('HSET', KEYS[6], host, tat)
    end
  end
  if redis.call('ZCARD', qk) == 0 then
    redis.call('ZREM', KEYS[1], host)
  elseif interval > 0 then
    redis.call('ZADD', KEYS[1], 'XX', tat - tau, host)
  elseif n > 0 then
    redis.call('ZADD', KEYS[1], 'XX', now, host)
  end
end
local reply = {tostring(now), #out}
for _, v in ipairs(out) do reply[#reply + 1] = v end
return list_ready(KEYS[1], now, tonumber(ARGV[6]), tonumber(ARGV[5]), reply)
"""
)

# KEYS: ready req leased owner my-leases stats checkpoint done. ARGV: worker, checkpoint JSON or '', prefix, ids.
# Returns how many acked ids were no longer leased by this worker and had been taken by another one.
_ACK = """
local me, prefix = ARGV[1], ARGV[3]
local acked, lost = 0, 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local who = redis.call('HGET', KEYS[4], id)
  local rec = redis.call('HGET', KEYS[2], id)
  local finish = false
  if who == me then
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('SREM', KEYS[5], id)
    finish = rec ~= false
  elseif who then
    lost = lost + 1            -- re-leased by another worker after our lease expired: it finishes it
  elseif rec then
    -- our lease expired and the id went back to its queue: take it out, the work is done
    local host = string.match(rec, '^%S+ (%S+) ')
    local qk = prefix .. 'q:' .. host
    if redis.call('ZREM', qk, id) == 1 then
      redis.call('HINCRBY', KEYS[6], 'queued', -1)
      if redis.call('ZCARD', qk) == 0 then redis.call('ZREM', KEYS[1], host) end
    end
    finish = true
  else
    lost = lost + 1            -- already acked by the worker that took it over
  end
  if finish then
    local host = string.match(rec, '^%S+ (%S+) ')
    redis.call('HDEL', KEYS[2], id)
    redis.call('HINCRBY', KEYS[8], host, 1)
    acked = acked + 1
  end
end
if acked > 0 then redis.call('HINCRBY', KEYS[6], 'acked', acked) end
if lost > 0 then redis.call('HINCRBY', KEYS[6], 'lost_leases', lost) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[7], me, ARGV[2]) end
return lost
"""

# KEYS: leased owner alive. ARGV: worker, lease ms, alive value, alive ms, ids. Returns ids no longer ours.
_RENEW = (
    _PRELUDE
    + """
local exp = now_ms() + tonumber(ARGV[2])
local lost = {}
for i = 5, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', exp, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return lost
"""
)

# KEYS: ready leased owner req stats my-leases. ARGV: prefix, worker, ids (none: every lease of the worker).
# Puts a worker's leases back on their queues: at start (a previous run under this identity died) and
# at close (requests popped but not finished).
_RELEASE = (
    _PRELUDE
    + """
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('SMEMBERS', KEYS[6])
end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('HGET', KEYS[3], id) == ARGV[2] then
    requeue(ARGV[1], id, KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
    n = n + 1
  end
end
return n
"""
)


def key_prefix(job_name: str) -> str:
    """`crawler:{JOB}:`: the prefix of every key of a crawl (the job name is the Cluster hash tag)."""
    return f"crawler:{{{job_name}}}:"


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """Separate our options (`?lease=SECONDS`) from the URL handed to redis-py."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k in ("lease",):
            ours[k] = v
        else:
            rest.append((k, v))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


class RedisFrontier(FrontierBase):
    """Frontier shared through Redis by every process of a crawl (see the module docstring for keys).

    `worker` is this process's identity: its leases, its checkpoint (the offset of its own items file) and
    the `{worker}` placeholder in `output.items` are keyed by it. It is, in order: the `worker` argument,
    `$CRAWLER_WORKER`, the lowest free `HOST-N` slot when `items` contains `{worker}`, `HOST:ITEMS-PATH`,
    or a one-off `HOST-PID-RANDOM` (a crawl without an items file has nothing to resume).
    """

    def __init__(self, client: aioredis.Redis, job_name: str, worker: str, *, lease_timeout: float,
                 items: str | None = None) -> None:  # fmt: skip
        self.job_name = job_name
        self.worker: str = worker
        self.items = items
        self.lease_timeout = lease_timeout
        self._r = client
        p = self._prefix = key_prefix(job_name)
        self._k_seq, self._k_req, self._k_ready = p + "seq", p + "req", p + "ready"
        self._k_tat, self._k_leased, self._k_owner = p + "tat", p + "leased", p + "owner"
        self._k_stats, self._k_checkpoint, self._k_done = p + "stats", p + "checkpoint", p + "done"
        self._k_workers = p + "workers"
        self._k_my_leases = f"{p}worker:{worker}:leases"
        self._k_alive = f"{p}worker:{worker}:alive"
        self._alive_value = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._push_script = client.register_script(_PUSH)
        self._ready_script = client.register_script(_READY)
        self._pop_script = client.register_script(_POP)
        self._ack_script = client.register_script(_ACK)
        self._renew_script = client.register_script(_RENEW)
        self._release_script = client.register_script(_RELEASE)
        self._outstanding: dict[int, Request] = {}
        self._ack_lock = asyncio.Lock()
        self._rate_of: Callable[[str], float | None] | None = None
        # Hosts with queued work and when each may start (local monotonic time), from the last reply.
        self._ready: list[tuple[str, float]] = []
        self._ready_at = 0.0
        # Fingerprints pushed or popped by this process: certainly in the shared seen set already.
        self._known = CompactSeenSet()
        self._keepalive: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    @classmethod
    async def connect(cls, url: str, job_name: str, *, worker: str | None = None, items: str | None = None,
                      lease_timeout: float | None = None, wait: float | None = None) -> RedisFrontier:  # fmt: skip
        """Connect, claim a worker identity, and put back what a previous run under it left leased.

        `url` is a redis-py URL; `?lease=SECONDS` sets the lease timeout (default 60 s): how long the
        work of a crashed process stays leased before others take it. `wait` bounds how long to wait for
        the identity's previous holder to expire (default: its liveness timeout, at most 15 s).
        """
        redis_url, opts = _split_url(url)
        lease = float(opts.get("lease", lease_timeout or DEFAULT_LEASE_SECONDS))
        client = aioredis.from_url(redis_url, decode_responses=True)
        try:
            await client.ping()
            identity = await _claim_identity(client, job_name, worker, items, lease,
                                             _alive_seconds(lease) + 1.0 if wait is None else wait)  # fmt: skip
            self = cls(client, job_name, identity, lease_timeout=lease, items=items)
            await self._start()
        except BaseException:
            await client.aclose()
            raise
        return self

    async def _start(self) -> None:
        items = _absolute(self.items.replace("{worker}", self.worker)) if self.items else None
        info = {"host": socket.gethostname(), "pid": os.getpid(), "items": items, "started": time.time()}
        await self._r.hset(self._k_workers, self.worker, orjson.dumps(info).decode())
        released = await self._release_script(keys=self._release_keys(), args=[self._prefix, self.worker])
        if released:
            log.info(
                "worker %s: %d requests leased by its previous run are queued again", self.worker, released
            )
        self._keepalive = asyncio.create_task(self._renew_forever(), name=f"frontier-leases-{self.worker}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        try:
            if self._outstanding:
                # Popped but not finished (stopped mid-crawl): let the other processes have them now.
                await self._release_script(keys=self._release_keys(),
                                           args=[self._prefix, self.worker, *self._outstanding])  # fmt: skip
                self._outstanding.clear()
            await self._r.delete(self._k_alive)
        finally:
            await self._r.aclose()

    @staticmethod
    async def discard(url: str, job_name: str, *, force: bool = False) -> int:
        """Delete every key of the crawl (`crawler run --fresh`); refuses while a worker is alive."""
        redis_url, _ = _split_url(url)
        client = aioredis.from_url(redis_url, decode_responses=True)
        try:
            pattern = _glob_escape(key_prefix(job_name)) + "*"
            if not force:
                alive = [k async for k in client.scan_iter(match=pattern[:-1] + "worker:*:alive", count=1000)]
                if alive:
                    raise WorkerBusy(
                        f"{len(alive)} worker(s) of job {job_name!r} are running; stop them first"
                    )
            deleted = 0
            batch: list[str] = []
            async for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await client.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await client.unlink(*batch)
            return deleted
        finally:
            await client.aclose()

    # Per-host rates are GCRA buckets in Redis, consulted by the pop script: one rate for all processes.
    shares_rates = True

    def bind(self, wake: Callable[[], None], rate_of: Callable[[str], float | None]) -> None:
        """Take per-host rates from the engine's limiter (`rate_of(host)`, Crawl-delay included)."""
        self._rate_of = rate_of

    # -- the four verbs ----------------------------------------------------------------------------

    async def push_many(self, requests: Iterable[Request]) -> int:
        known = self._known
        batch: list[Request] = []
        added = 0
        for req in requests:
            if not req.dont_filter and req.fingerprint in known:
                continue  # pushed or popped here before, so in the shared seen set: no round trip
            batch.append(req)
            if len(batch) >= _PUSH_BATCH:  # one script call must not hold Redis for long
                added += await self._push_batch(batch)
                batch = []
        if batch:
            added += await self._push_batch(batch)
        return added

    async def _push_batch(self, requests: list[Request]) -> int:
        keys = [self._k_seq, self._k_req, self._k_ready, self._k_stats]
        index: dict[str, int] = {}
        args: list[Any] = []
        prefix = self._prefix
        sent: list[int] = []

        def key_index(key: str) -> int:
            i = index.get(key)
            if i is None:
                keys.append(key)
                i = index[key] = len(keys)
            return i

        for req in requests:
            if req.dont_filter:
                seen_idx, member = 0, 0
            else:
                fp = req.fingerprint
                sent.append(fp)
                seen_idx = key_index(f"{prefix}seen:{fp >> (64 - _SEEN_BUCKET_BITS):04x}")
                member = fp & _SEEN_MEMBER_MASK
            priority = max(-_PRIORITY_LIMIT, min(_PRIORITY_LIMIT, req.priority))
            args += (seen_idx, member, key_index(f"{prefix}q:{req.host}"), req.host, priority,
                     orjson.dumps(req.to_dict()).decode())  # fmt: skip
        added = int(await self._push_script(keys=keys, args=args))
        for fp in sent:
            self._known.add(fp)
        return added

    async def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        if limit <= 0:
            return []
        rates = self._rate_of
        cached = time.monotonic() - self._ready_at < _READY_CACHE_SECONDS
        if not cached:
            await self._refresh_ready()
        picks = self._pick(limit, budget, rates)
        if not picks and cached:
            await self._refresh_ready()
            picks = self._pick(limit, budget, rates)
        if not picks:
            return []
        keys = [self._k_ready, self._k_req, self._k_leased, self._k_owner, self._k_my_leases, self._k_tat,
                self._k_stats]  # fmt: skip
        args: list[Any] = [self.worker, int(self.lease_timeout * 1000), limit, self._prefix, _MAX_READY_HOSTS,
                           _READY_HORIZON_MS]  # fmt: skip
        for host, allowance, interval, tau in picks:
            keys.append(f"{self._prefix}q:{host}")
            args += (host, allowance, interval, tau)
        reply = await self._pop_script(keys=keys, args=args)
        n = int(reply[1])
        self._take_ready(reply, 2 + n)
        out: list[Request] = []
        outstanding = self._outstanding
        known = self._known
        for i in range(2, 2 + n, 2):
            rid = int(reply[i])
            record = reply[i + 1]
            if record is None:  # cannot happen: a queued id always has its record
                continue
            req = Request.from_dict(orjson.loads(record.split(" ", 2)[2]))
            req.token = rid
            outstanding[rid] = req
            known.add(req.fingerprint)
            out.append(req)
        if not out:
            self._ready_at = 0.0  # look again next time rather than trust the cached hosts
        return out

    async def _refresh_ready(self) -> None:
        reply = await self._ready_script(keys=[self._k_ready, self._k_leased, self._k_owner, self._k_req,
                                               self._k_stats],
                                         args=[self._prefix, _MAX_READY_HOSTS, _READY_HORIZON_MS])  # fmt: skip
        self._take_ready(reply, 2)

    def _take_ready(self, reply: list[Any], start: int) -> None:
        """Cache the ready hosts of a _READY or _POP reply, with their start times on the local clock."""
        now = time.monotonic()
        offset = now - float(reply[0]) / 1000  # Redis ms -> local monotonic seconds
        self._ready = [(reply[i], float(reply[i + 1]) / 1000 + offset) for i in range(start, len(reply), 2)]
        self._ready_at = now

    def _pick(self, limit: int, budget: Callable[[str], int],
              rates: Callable[[str], float | None] | None) -> list[tuple[str, int, float, float]]:  # fmt: skip
        """(host, allowance, GCRA interval ms, tau ms) for the cached hosts that may start now."""
        now = time.monotonic() + _CLOCK_SLACK
        picks = []
        wanted = 0
        for host, start in self._ready:
            if start > now:
                continue
            allowance = budget(host)
            if allowance <= 0:
                continue
            rate = rates(host) if rates is not None else None
            if rate:
                interval = 1000.0 / rate
                tau = (max(1.0, rate * _BUCKET_SECONDS) - 1.0) * interval
            else:
                interval = tau = 0.0
            picks.append((host, allowance, interval, tau))
            wanted += allowance
            if wanted >= limit:
                break
        return picks

    async def ack(self, requests: Sequence[Request], checkpoint: dict[str, Any] | None = None) -> None:
        ids = [r.token for r in requests if r.token is not None]
        payload = orjson.dumps(checkpoint).decode() if checkpoint is not None else ""
        if not ids and not payload:
            return
        # Serialised: a later checkpoint (a larger offset) must never be overwritten by an earlier one.
        async with self._ack_lock:
            lost = await self._ack_script(keys=[self._k_ready, self._k_req, self._k_leased, self._k_owner,
                                                self._k_my_leases, self._k_stats, self._k_checkpoint,
                                                self._k_done],
                                          args=[self.worker, payload, self._prefix, *ids])  # fmt: skip
        for rid in ids:
            self._outstanding.pop(rid, None)
        if lost:
            log.warning("worker %s: %d finished requests had been re-leased to another worker after this "
                        "worker's lease expired (stalled longer than %gs?): they may be in the output twice",
                        self.worker, lost, self.lease_timeout)  # fmt: skip

    async def size(self) -> int:
        """Requests queued or leased by any process: 0 only when the whole crawl is done."""
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hget(self._k_stats, "queued")
            pipe.zcard(self._k_leased)
            queued, leased = await pipe.execute()
        return int(queued or 0) + int(leased)

    async def checkpoint(self) -> dict[str, Any] | None:
        raw = await self._r.hget(self._k_checkpoint, self.worker)
        return orjson.loads(raw) if raw else None

    def next_wakeup(self) -> float | None:
        """Seconds until this process should look again: the next rate-limited host's start, or a short poll
        when nothing is queued (another process may push, or a lease expire). None: a local event will do."""
        if not self._ready:
            return _IDLE_POLL_SECONDS
        now = time.monotonic()
        if any(start <= now for _, start in self._ready):
            return None
        return max(0.0, min(start for _, start in self._ready) - now)

    @property
    def leased_here(self) -> int:
        return len(self._outstanding)

    # -- leases ------------------------------------------------------------------------------------

    def _release_keys(self) -> list[str]:
        return [self._k_ready, self._k_leased, self._k_owner, self._k_req, self._k_stats, self._k_my_leases]

    async def _renew_forever(self) -> None:
        """Renew this worker's leases (in flight or waiting for a retry) and its liveness key."""
        period = _alive_seconds(self.lease_timeout) / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep renewing: a blip must not end the crawl
                log.warning("worker %s: renewing leases failed: %s", self.worker, exc)

    async def renew(self) -> None:
        lost = await self._renew_script(keys=[self._k_leased, self._k_owner, self._k_alive],
                                        args=[self.worker, int(self.lease_timeout * 1000), self._alive_value,
                                              int(_alive_seconds(self.lease_timeout) * 1000),
                                              *self._outstanding])  # fmt: skip
        if lost:
            log.warning("worker %s: %d leases expired before they could be renewed; another worker may fetch "
                        "those pages too", self.worker, len(lost))  # fmt: skip


async def _claim_identity(client: aioredis.Redis, job_name: str, worker: str | None, items: str | None,
                          lease: float, wait: float) -> str:  # fmt: skip
    prefix = key_prefix(job_name)
    value = f"{socket.gethostname()}:{os.getpid()}"
    ttl = int(_alive_seconds(lease) * 1000)
    explicit = worker or os.environ.get("CRAWLER_WORKER") or None
    host = socket.gethostname()
    if explicit is None and items is not None and "{worker}" in items:
        # The lowest free slot on this machine: a restarted process takes over a dead one's file.
        n = 0
        while not await client.set(f"{prefix}worker:{host}-{n}:alive", value, nx=True, px=ttl):
            n += 1
        return f"{host}-{n}"
    if explicit is None and items is not None:
        explicit = f"{host}:{_absolute(items)}"
    if explicit is None:
        identity = f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
        await client.set(f"{prefix}worker:{identity}:alive", value, px=ttl)
        return identity
    deadline = time.monotonic() + wait
    announced = False
    while not await client.set(f"{prefix}worker:{explicit}:alive", value, nx=True, px=ttl):
        if time.monotonic() >= deadline:
            holder = await client.get(f"{prefix}worker:{explicit}:alive")
            raise WorkerBusy(f"worker identity {explicit!r} of job {job_name!r} is held by a running process "
                             f"({holder!s}); give this one another identity (CRAWLER_WORKER) or items file")  # fmt: skip
        if not announced:
            log.info("worker identity %r is still held (a crashed run?): waiting up to %.0fs for it to expire",
                     explicit, wait)  # fmt: skip
            announced = True
        await asyncio.sleep(min(0.5, lease / 4))
    return explicit


def _alive_seconds(lease: float) -> float:
    return min(lease, _ALIVE_SECONDS)


def _absolute(path: str) -> str:
    return os.path.abspath(path)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def read_status(url: str, job_name: str, *, top_hosts: int = 10) -> dict[str, Any]:
    """Shared progress of a crawl, for `crawler status`."""
    redis_url, _ = _split_url(url)
    client = aioredis.from_url(redis_url, decode_responses=True)
    p = key_prefix(job_name)
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(p + "stats")
            pipe.zcard(p + "leased")
            pipe.hgetall(p + "workers")
            pipe.hgetall(p + "checkpoint")
            pipe.hgetall(p + "done")
            pipe.zrange(p + "ready", 0, -1)
            pipe.hgetall(p + "owner")
            stats, leased, workers, checkpoints, done, ready, owners = await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            for w in workers:
                pipe.exists(f"{p}worker:{w}:alive")
            for h in ready:
                pipe.zcard(f"{p}q:{h}")
            replies = await pipe.execute()
    finally:
        await client.aclose()
    alive = replies[: len(workers)]
    queued_by_host = dict(zip(ready, replies[len(workers) :], strict=True))
    leased_by: dict[str, int] = defaultdict(int)
    for w in owners.values():
        leased_by[w] += 1
    worker_rows = []
    for (w, info_raw), is_alive in zip(workers.items(), alive, strict=True):
        info = orjson.loads(info_raw)
        cp = orjson.loads(checkpoints[w]) if w in checkpoints else None
        worker_rows.append({"worker": w, "alive": bool(is_alive), "host": info.get("host"), "pid": info.get("pid"),
                            "items": info.get("items"), "leased": leased_by.get(w, 0), "checkpoint": cp})  # fmt: skip
    hosts = sorted(
        set(queued_by_host) | set(done), key=lambda h: (-queued_by_host.get(h, 0), -int(done.get(h, 0)))
    )
    return {
        "backend": "redis",
        "job": job_name,
        "queued": int(stats.get("queued", 0)),
        "leased": int(leased),
        "done": int(stats.get("acked", 0)),
        "pushed": int(stats.get("pushed", 0)),
        "seen": int(stats.get("seen", 0)),
        "requeued": int(stats.get("requeued", 0)),
        "lost_leases": int(stats.get("lost_leases", 0)),
        "workers": worker_rows,
        "hosts": [
            {"host": h, "queued": queued_by_host.get(h, 0), "done": int(done.get(h, 0))}
            for h in hosts[:top_hosts]
        ],
    }
