"""The distributed frontier: any number of processes share one crawl's queues, seen set and rate limits in Redis.

Keys, all under `crawler:{JOB}:` (the braces make the job name a Redis Cluster hash tag, so every key of
a crawl lives in one slot and the Lua scripts below may touch any of them):

    seq                  STRING  last request id (INCR)
    req                  HASH    id -> "<score> <host> <Request.to_dict() as JSON>"  (queued or leased)
    q:<host>             ZSET    queued ids of a host; score = -priority * 2**32 + id (priority, then FIFO)
    ready                ZSET    hosts with queued work; score = earliest start (ms, Redis clock)
    tat                  HASH    host -> GCRA theoretical arrival time (ms): the shared per-host rate
    rate                 HASH    host -> GCRA interval (ms) set by the last worker whose own rate for it changed
    pause                HASH    host -> until when (ms) every worker holds it (Retry-After)
    slots                HASH    host -> requests in flight, all workers together (capped at per_host)
    slot                 HASH    leased id -> host, while the id holds one of its host's slots
    waiting              HASH    host -> "<worker> <ms>": a worker its cap held back, served next (fairness)
    leased               ZSET    leased ids; score = lease expiry (ms, Redis clock)
    owner                HASH    leased id -> worker identity
    worker:<id>:leases   SET     ids leased by one worker (released when it restarts or closes)
    worker:<id>:alive    STRING  present while the worker runs (TTL min(lease, 15 s), renewed)
    workers              HASH    worker -> JSON {host, pid, items, started}
    beat                 HASH    worker -> "<Redis time ms> <pages/s> <acked>": its last heartbeat (renewal)
    checkpoint           HASH    worker -> JSON checkpoint ({"items_offset": N} of that worker's file)
    seen:<hhhh>          SET     fingerprints whose top 16 bits are hhhh, as their low 48 bits: 65,536
                                 small integer sets that Redis stores as packed intsets (8 bytes a URL)
    stats                HASH    queued, pushed, seen, acked, requeued, lost_leases
    done                 HASH    host -> pages acked

Outages: every call rides out a Redis outage (connection refused or reset, a timeout, a server still loading
its AOF) by waiting and retrying with backoff for up to `?outage=SECONDS` (default 60): the crawl pauses.
When Redis answers again, this worker's leases are renewed before anything else, so no process reclaims them;
past the limit, or if Redis came back without the crawl's data, the calls raise `FrontierUnavailable`.

Every state change is one Lua script (`crawler/frontier/lua/*.lua`, read once at import and shipped in the
wheel), so it is atomic across processes: push (dedup + enqueue), pop (token bucket + lease), ack (release +
checkpoint), renew, and reclaim (expired leases back to their host's queue, run by every process as part of
looking for ready hosts).
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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from crawler.frontier.base import FrontierBase, FrontierUnavailable
from crawler.model.request import Request
from crawler.model.seen import CompactSeenSet

__all__ = ["RedisFrontier", "WorkerBusy"]

T = TypeVar("T")

log = logging.getLogger("crawler.frontier")

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_OUTAGE_SECONDS = 60.0
# What an outage looks like from here (BusyLoadingError, a server still loading its AOF, is a ConnectionError).
_OUTAGE_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 2.0
_SOCKET_TIMEOUT, _CONNECT_TIMEOUT = 10.0, 5.0
# A worker's liveness key outlives it by at most this: a restarted worker waits this long for its identity.
_ALIVE_SECONDS = 15.0
_SEEN_BUCKET_BITS = 16
_SEEN_MEMBER_MASK = (1 << (64 - _SEEN_BUCKET_BITS)) - 1
_PRIORITY_LIMIT = 1 << 20  # keeps -priority * 2**32 + id exact in a double
# Like the local HostLimiter: a bucket holds 0.1 s of requests, so 20/s is spread over the second.
_MAX_READY_HOSTS = 256
_PUSH_BATCH = 1000
_READY_HORIZON_MS = 1000  # also list hosts that may start within this, to know when to wake up
_READY_CACHE_SECONDS = 0.2  # reuse the ready hosts of the last reply for this long: one round trip a pop
_CLOCK_SLACK = 0.002
_IDLE_POLL_SECONDS = 0.05


class WorkerBusy(RuntimeError):
    """The worker identity is held by a live process."""


def _load_script(name: str) -> str:
    """The source of `lua/<name>.lua`, with the shared prelude in front when it uses it. Read once, at import."""
    text = (_LUA / f"{name}.lua").read_text(encoding="utf-8")
    return (_LUA / "prelude.lua").read_text(encoding="utf-8") + text if name in _USES_PRELUDE else text


# Every state change is one script, so it is atomic across processes. The sources ship in the wheel
# (crawler/frontier/lua/*.lua); each file's header states its KEYS, ARGV and reply.
_LUA = resources.files("crawler.frontier") / "lua"
_USES_PRELUDE = frozenset({"pop", "ack", "renew", "release"})
_SCRIPTS = {name: _load_script(name) for name in ("push", "pop", "ack", "renew", "release")}


def key_prefix(job_name: str) -> str:
    """`crawler:{JOB}:`: the prefix of every key of a crawl (the job name is the Cluster hash tag)."""
    return f"crawler:{{{job_name}}}:"


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """Separate our options (`?lease=SECONDS`, `?outage=SECONDS`) from the URL handed to redis-py."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k in ("lease", "outage"):
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
                 items: str | None = None, outage_limit: float = DEFAULT_OUTAGE_SECONDS,
                 per_host: int | None = None) -> None:  # fmt: skip
        self.job_name = job_name
        # In-flight requests per host for all processes together (a lease-based semaphore); 0: no cap here.
        self.per_host = per_host or 0
        self._releases: list[int] = []  # ids whose host slot goes back with the next pop
        self._pauses: dict[str, float] = {}  # host -> seconds to pause it for, sent with the next pop
        self._rates_seen: dict[str, float] = {}  # host -> the last GCRA interval this worker's own limiter gave
        self.worker: str = worker
        self.items = items
        self.lease_timeout = lease_timeout
        self.outage_limit = outage_limit
        self._r = client
        kwargs = client.connection_pool.connection_kwargs
        self._where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        self._outage_since: float | None = None  # monotonic time of the first failure of the current outage
        self._outage_error = ""
        self._gave_up: FrontierUnavailable | None = None
        self._reconnect_lock = asyncio.Lock()
        p = self._prefix = key_prefix(job_name)
        self._k_seq, self._k_req, self._k_ready = p + "seq", p + "req", p + "ready"
        self._k_tat, self._k_leased, self._k_owner = p + "tat", p + "leased", p + "owner"
        self._k_slots, self._k_slot, self._k_pause, self._k_rate = p + "slots", p + "slot", p + "pause", p + "rate"
        self._k_stats, self._k_checkpoint, self._k_done = p + "stats", p + "checkpoint", p + "done"
        self._k_workers, self._k_beat = p + "workers", p + "beat"
        self._k_my_leases = f"{p}worker:{worker}:leases"
        self._k_alive = f"{p}worker:{worker}:alive"
        self._alive_value = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._push_script = client.register_script(_SCRIPTS["push"])
        self._pop_script = client.register_script(_SCRIPTS["pop"])
        self._ack_script = client.register_script(_SCRIPTS["ack"])
        self._renew_script = client.register_script(_SCRIPTS["renew"])
        self._release_script = client.register_script(_SCRIPTS["release"])
        self._outstanding: dict[int, Request] = {}
        self._acking: set[int] = set()  # ids whose ack is on its way: a renewal racing it may not find them
        self._acked = 0  # pages this worker acked, and when and at what count it last sent a heartbeat
        self._beat_at, self._beat_acked = time.monotonic(), 0
        self._ack_lock = asyncio.Lock()
        self._rate_of: Callable[[str], float | None] | None = None
        # Hosts with queued work and when each may start (local monotonic time), from the last reply.
        self._ready: list[tuple[str, float]] = []
        self._ready_at = 0.0
        # Fingerprints pushed or popped by this process: certainly in the shared seen set already.
        self._known = CompactSeenSet()
        self._keepalive: asyncio.Task[None] | None = None
        self._push_queue: list[tuple[list[Request], asyncio.Future[int]]] = []
        self._push_wanted = asyncio.Event()
        self._pusher: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    @classmethod
    async def connect(cls, url: str, job_name: str, *, worker: str | None = None, items: str | None = None,
                      lease_timeout: float | None = None, wait: float | None = None,
                      per_host: int | None = None) -> RedisFrontier:  # fmt: skip
        """Connect, claim a worker identity, and put back what a previous run under it left leased.

        `url` is a redis-py URL; `?lease=SECONDS` sets the lease timeout (default 60 s): how long the
        work of a crashed process stays leased before others take it; `?outage=SECONDS` how long to wait
        out a Redis outage before giving up (default 60 s). `wait` bounds how long to wait for the identity's
        previous holder to expire (default: its liveness timeout, at most 15 s). `per_host` caps each host's
        requests in flight across every process (`concurrency.per_host`).
        """
        redis_url, opts = _split_url(url)
        lease = float(opts.get("lease", lease_timeout or DEFAULT_LEASE_SECONDS))
        outage = float(opts.get("outage", DEFAULT_OUTAGE_SECONDS))
        client = aioredis.from_url(redis_url, decode_responses=True, socket_timeout=_SOCKET_TIMEOUT,
                                   socket_connect_timeout=_CONNECT_TIMEOUT)  # fmt: skip
        try:
            await client.ping()
            identity = await _claim_identity(client, job_name, worker, items, lease,
                                             _alive_seconds(lease) + 1.0 if wait is None else wait)  # fmt: skip
            self = cls(client, job_name, identity, lease_timeout=lease, items=items, outage_limit=outage,
                       per_host=per_host)
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
        await self.renew()  # the first heartbeat: `crawler status` shows the worker at once
        self._keepalive = asyncio.create_task(self._renew_forever(), name=f"frontier-leases-{self.worker}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in (self._keepalive, self._pusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for _, done in self._push_queue:
            done.cancel()
        try:
            if self._gave_up is None and self._outage_since is None:
                if self._outstanding:
                    # Popped but not finished (stopped mid-crawl): let the other processes have them now.
                    await self._release_script(keys=self._release_keys(),
                                               args=[self._prefix, self.worker, *self._outstanding])  # fmt: skip
                    self._outstanding.clear()
                await self._r.delete(self._k_alive)
        except _OUTAGE_ERRORS as exc:
            log.warning("worker %s: could not hand back its leases (%s): they expire within %gs",
                        self.worker, _describe(exc), self.lease_timeout)  # fmt: skip
        finally:
            await self._r.aclose()

    # -- outages -----------------------------------------------------------------------------------

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation, riding out an outage: wait and retry with backoff (the caller, and so the
        crawl, pauses) until Redis answers or `outage_limit` passes; then raise `FrontierUnavailable`."""
        delay = _BACKOFF_FIRST
        while True:
            if self._gave_up is not None:
                raise self._gave_up
            if self._outage_since is not None:
                await self._reconnect()
                if self._outage_since is not None:  # still down
                    left = self.outage_limit - (time.monotonic() - self._outage_since)
                    await asyncio.sleep(max(0.0, min(delay, left + 0.01)))
                    delay = min(delay * 2, _BACKOFF_MAX)
                    continue
            try:
                return await operation()
            except _OUTAGE_ERRORS as exc:
                self._outage_began(exc)

    def _outage_began(self, exc: BaseException) -> None:
        self._outage_error = _describe(exc)
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("Redis at %s is unreachable (%s): the crawl pauses; retrying for up to %gs",
                        self._where, self._outage_error, self.outage_limit)  # fmt: skip

    async def _reconnect(self) -> None:
        """One attempt (one task at a time) to end the outage: the crawl's data must be there, and this worker's
        leases are renewed before any other call may reclaim them."""
        async with self._reconnect_lock:
            if self._outage_since is None or self._gave_up is not None:
                return
            down = time.monotonic() - self._outage_since
            if down > self.outage_limit:
                self._give_up(f"Redis at {self._where} has been unreachable for {down:.0f}s "
                              f"({self._outage_error}), past the outage limit of {self.outage_limit:g}s "
                              "(?outage=SECONDS in the frontier URL)")  # fmt: skip
            try:
                known = await self._r.hexists(self._k_workers, self.worker)
                if not known:
                    self._give_up(f"Redis at {self._where} came back without this crawl's data (restarted "
                                  "without persistence, or the keys were deleted)")  # fmt: skip
                await self.renew()
                orphans = await self._release_orphans()
            except _OUTAGE_ERRORS as exc:
                self._outage_error = _describe(exc)
                return
            log.warning("Redis at %s is back after %.1fs: leases renewed%s, the crawl goes on", self._where, down,
                        f", {orphans} popped but never received queued again" if orphans else "")  # fmt: skip
            self._outage_since = None

    async def _release_orphans(self) -> int:
        """Requests leased to this worker that it never received (a pop whose reply was lost with the
        connection): back on their queues now, not when their lease expires."""
        leased = await self._r.smembers(self._k_my_leases)
        orphans = [rid for rid in leased if int(rid) not in self._outstanding]
        if not orphans:
            return 0
        return int(await self._release_script(keys=self._release_keys(), args=[self._prefix, self.worker, *orphans]))

    def _give_up(self, why: str) -> None:
        self._gave_up = FrontierUnavailable(
            f"{why}: giving up. Pages this worker did not finish go back to the queue when its leases expire "
            f"({self.lease_timeout:g}s); rerun it to continue the crawl"
        )
        raise self._gave_up

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
        """Push, coalesced: the pushes of every worker that arrive while a push is on its way go out together
        in the next script call (one round trip for many pages' links), and each caller waits for its own."""
        known = self._known
        # Pushed or popped here before, so in the shared seen set already: no round trip for those.
        batch = [req for req in requests if req.dont_filter or req.fingerprint not in known]
        if not batch:
            return 0
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._push_queue.append((batch, done))
        self._push_wanted.set()
        if self._pusher is None:
            self._pusher = asyncio.create_task(self._push_forever(), name=f"frontier-push-{self.worker}")
        return await done

    async def _push_forever(self) -> None:
        while True:
            await self._push_wanted.wait()
            self._push_wanted.clear()
            while self._push_queue:
                group, self._push_queue = self._push_queue, []
                requests = [req for batch, _ in group for req in batch]
                try:
                    flags = ""
                    for start in range(0, len(requests), _PUSH_BATCH):  # one call must not hold Redis long
                        flags += await self._push_batch(requests[start : start + _PUSH_BATCH])
                except Exception as exc:  # FrontierUnavailable included: every waiting caller gets it
                    for _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                at = 0
                for batch, done in group:
                    if not done.done():
                        done.set_result(flags.count("1", at, at + len(batch)))
                    at += len(batch)

    async def _push_batch(self, requests: list[Request]) -> str:
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
        flags = str(await self._call(lambda: self._push_script(keys=keys, args=args)))
        for fp in sent:
            self._known.add(fp)
        return flags

    async def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        if limit <= 0:
            return []
        cached = time.monotonic() - self._ready_at < _READY_CACHE_SECONDS
        if not cached:
            await self._pop([], 0)  # which hosts are ready
        picks = self._pick(limit, budget)
        if not picks and cached:
            await self._pop([], 0)
            picks = self._pick(limit, budget)
        if not picks:
            return []
        reply = await self._pop(picks, limit)
        n = int(reply[1])
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

    async def _pop(self, picks: list[tuple[str, int, float, int]], limit: int) -> list[Any]:
        """One call of the pop script (with no picks: only the ready hosts), carrying the slots given back
        and the pauses asked for since the last call; caches the ready hosts of the reply."""
        releases, self._releases = self._releases, []
        pauses, self._pauses = self._pauses, {}
        keys = [self._k_ready, self._k_req, self._k_leased, self._k_owner, self._k_my_leases, self._k_tat,
                self._k_stats, self._k_slots, self._k_slot, self._k_pause, self._k_rate]  # fmt: skip
        args: list[Any] = [self.worker, int(self.lease_timeout * 1000), limit, self._prefix, _MAX_READY_HOSTS,
                           _READY_HORIZON_MS, self.per_host, len(releases), *releases, len(pauses)]  # fmt: skip
        for host, seconds in pauses.items():
            args += (host, int(seconds * 1000))
        for host, allowance, interval, share in picks:
            keys.append(f"{self._prefix}q:{host}")
            args += (host, allowance, interval, share)
        reply: list[Any] = await self._call(lambda: self._pop_script(keys=keys, args=args))
        self._take_ready(reply, 2 + int(reply[1]))
        return reply

    def _take_ready(self, reply: list[Any], start: int) -> None:
        """Cache the ready hosts of a pop reply, with their start times on the local clock."""
        now = time.monotonic()
        offset = now - float(reply[0]) / 1000  # Redis ms -> local monotonic seconds
        self._ready = [(reply[i], float(reply[i + 1]) / 1000 + offset) for i in range(start, len(reply), 2)]
        self._ready_at = now

    def _pick(self, limit: int, budget: Callable[[str], int]) -> list[tuple[str, int, float, int]]:
        """(host, allowance, GCRA interval ms, share) for the cached hosts that may start now. `share` is 1 when
        this worker's own rate for the host changed (Crawl-delay, an adaptive step): the new rate then becomes
        the one every process uses; otherwise the shared rate wins."""
        now = time.monotonic() + _CLOCK_SLACK
        rates = self._rate_of
        seen = self._rates_seen
        picks = []
        wanted = 0
        for host, start in self._ready:
            if start > now:
                continue
            allowance = budget(host)
            if allowance <= 0:
                continue
            rate = rates(host) if rates is not None else None
            interval = 1000.0 / rate if rate else 0.0
            before = seen.get(host)
            seen[host] = interval
            picks.append((host, allowance, interval, int(before is not None and before != interval)))
            wanted += allowance
            if wanted >= limit:
                break
        return picks

    def release(self, request: Request) -> None:
        """The engine is done with `request` (its fetch and stages ended and no retry waits): its host's slot
        goes back to all processes with the next call."""
        if self.per_host and request.token is not None:
            self._releases.append(request.token)

    def pause(self, host: str, seconds: float) -> None:
        """`host` asked to wait `seconds` (Retry-After): every process holds it, from the next call on."""
        self._pauses[host] = max(seconds, self._pauses.get(host, 0.0))
        self._ready_at = 0.0

    async def ack(self, requests: Sequence[Request], checkpoint: dict[str, Any] | None = None) -> None:
        ids = [r.token for r in requests if r.token is not None]
        payload = orjson.dumps(checkpoint).decode() if checkpoint is not None else ""
        if not ids and not payload:
            return
        keys = [self._k_ready, self._k_req, self._k_leased, self._k_owner, self._k_my_leases, self._k_stats,
                self._k_checkpoint, self._k_done, self._k_slots, self._k_slot]  # fmt: skip
        args = [self.worker, payload, self._prefix, *ids]
        # Serialised: a later checkpoint (a larger offset) must never be overwritten by an earlier one.
        async with self._ack_lock:
            self._acking.update(ids)
            try:
                lost = await self._call(lambda: self._ack_script(keys=keys, args=args))
            except FrontierUnavailable:
                # Nothing acked: these pages are fetched again after a restart, as after a crash (the items
                # past the checkpoint are cut off then). The error itself reaches the engine once, elsewhere.
                return
            finally:
                self._acking.difference_update(ids)
        self._acked += len(ids) - int(lost)
        for rid in ids:
            self._outstanding.pop(rid, None)
        if lost:
            log.warning("worker %s: %d finished requests had been re-leased to another worker after this "
                        "worker's lease expired (stalled longer than %gs?): they may be in the output twice",
                        self.worker, lost, self.lease_timeout)  # fmt: skip

    async def size(self) -> int:
        """Requests queued or leased by any process: 0 only when the whole crawl is done."""

        async def read() -> list[Any]:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.hget(self._k_stats, "queued")
                pipe.zcard(self._k_leased)
                return await pipe.execute()

        queued, leased = await self._call(read)
        return int(queued or 0) + int(leased)

    async def checkpoint(self) -> dict[str, Any] | None:
        raw = await self._call(lambda: self._r.hget(self._k_checkpoint, self.worker))
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
        return [self._k_ready, self._k_leased, self._k_owner, self._k_req, self._k_stats, self._k_my_leases,
                self._k_slots, self._k_slot]

    async def _renew_forever(self) -> None:
        """Renew this worker's leases (in flight or waiting for a retry) and its liveness key; through an
        outage, `_call` waits (and renews first thing when Redis is back)."""
        period = _alive_seconds(self.lease_timeout) / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self._call(self.renew)
            except FrontierUnavailable:
                return  # the engine hears of it from its own calls
            except redis_errors.RedisError as exc:  # anything else: keep renewing, a blip must not end the crawl
                log.warning("worker %s: renewing leases failed: %s", self.worker, _describe(exc))

    async def renew(self) -> None:
        now = time.monotonic()
        rate = (self._acked - self._beat_acked) / max(now - self._beat_at, 1e-3)
        self._beat_at, self._beat_acked = now, self._acked
        lost = await self._renew_script(keys=[self._k_leased, self._k_owner, self._k_alive, self._k_beat],
                                        args=[self.worker, int(self.lease_timeout * 1000), self._alive_value,
                                              int(_alive_seconds(self.lease_timeout) * 1000),
                                              f"{rate:.2f} {self._acked}", *self._outstanding])  # fmt: skip
        # An id acked while this renewal ran is no longer ours, and rightly so.
        lost = [rid for rid in lost if int(rid) in self._outstanding and int(rid) not in self._acking]
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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _alive_seconds(lease: float) -> float:
    return min(lease, _ALIVE_SECONDS)


def _absolute(path: str) -> str:
    return os.path.abspath(path)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def repair(url: str, job_name: str) -> list[dict[str, Any]]:
    """`crawler status --repair`: for every worker whose liveness key has expired (no heartbeat for 15 s: dead,
    or frozen), put its leases back on their queues now instead of when they expire. Returns, per such worker,
    how many requests went back, with its items file and checkpoint (the caller trims the file)."""
    redis_url, _ = _split_url(url)
    client = aioredis.from_url(redis_url, decode_responses=True, socket_timeout=_SOCKET_TIMEOUT,
                               socket_connect_timeout=_CONNECT_TIMEOUT)  # fmt: skip
    p = key_prefix(job_name)
    release = client.register_script(_SCRIPTS["release"])
    out = []
    try:
        workers = await client.hgetall(p + "workers")
        checkpoints = await client.hgetall(p + "checkpoint")
        for name, info_raw in workers.items():
            w = name if isinstance(name, str) else name.decode()
            if await client.exists(f"{p}worker:{w}:alive"):
                continue
            requeued = await release(keys=[p + "ready", p + "leased", p + "owner", p + "req", p + "stats",
                                           f"{p}worker:{w}:leases", p + "slots", p + "slot"], args=[p, w])  # fmt: skip
            info = orjson.loads(info_raw)
            cp = orjson.loads(checkpoints[w]) if w in checkpoints else None
            out.append({"worker": w, "requeued": int(requeued), "host": info.get("host"), "items": info.get("items"),
                        "checkpoint": cp})  # fmt: skip
    finally:
        await client.aclose()
    return out


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
            pipe.hgetall(p + "beat")
            pipe.time()
            stats, leased, workers, checkpoints, done, ready, owners, beats, clock = await pipe.execute()
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
    now_ms = int(clock[0]) * 1000 + int(clock[1]) // 1000
    worker_rows = []
    for (w, info_raw), is_alive in zip(workers.items(), alive, strict=True):
        info = orjson.loads(info_raw)
        cp = orjson.loads(checkpoints[w]) if w in checkpoints else None
        beat_ms, rate, acked = beats[w].split()[:3] if w in beats else ("", "0", "0")
        worker_rows.append({"worker": w, "alive": bool(is_alive), "host": info.get("host"), "pid": info.get("pid"),
                            "items": info.get("items"), "leased": leased_by.get(w, 0), "checkpoint": cp,
                            "pages_per_second": float(rate), "acked": int(acked),
                            # Seconds since its last heartbeat (a live worker beats every few seconds).
                            "lag": round((now_ms - int(beat_ms)) / 1000, 1) if beat_ms else None})  # fmt: skip
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
