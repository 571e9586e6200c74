"""The distributed frontier: any number of processes share one crawl's queues, seen set and politeness limits in
Redis, one server or a Redis Cluster.

The crawl's keys are split into small global keys, under `crawler:{JOB}:`, and shards, each under a hash tag
of its own, `crawler:{TAG}:` (see `crawler.frontier.redis_layout`: one shard whose tag is the job on one
server, so every key shares one slot; several, spread over the masters, on a cluster). A host and all its URLs
belong to one shard. Global keys:

    layout               STRING  {"shards": [TAG, ...]}: written once by the first process
    workers              HASH    worker -> JSON {host, pid, items, started}
    beat                 HASH    worker -> "<Redis time ms> <pages/s> <acked>": its last heartbeat
    checkpoint           HASH    worker -> JSON checkpoint ({"items_offset": N} of that worker's file)
    journal              HASH    worker -> "shard:id,id;shard:id": the ids its last checkpoint covers
                                 (journaled crawls only: see Exactly-once below)
    worker:<id>:alive    STRING  present while the worker runs (TTL min(lease, 15 s), renewed)

Keys of each shard:

    seq                  STRING  last request id of the shard (INCR)
    req                  HASH    id -> "<score> <host> <Request.to_dict() as JSON>"  (queued or leased)
    q:<host>             ZSET    queued ids of a host; score = -priority * 2**32 + id (priority, then FIFO)
    ready                ZSET    hosts with queued work; score = earliest start (ms, the shard's Redis clock)
    tat                  HASH    host -> GCRA theoretical arrival time (ms): the shared per-host rate
    rate                 HASH    host -> GCRA interval (ms) set by the last worker whose own rate for it changed
    pause                HASH    host -> until when (ms) every worker holds it (Retry-After)
    slots                HASH    host -> requests in flight, all workers together (capped at per_host)
    slot                 HASH    leased id -> host, while the id holds one of its host's slots
    waiting              HASH    host -> "<worker> <ms>": a worker its cap held back, served next (fairness)
    leased               ZSET    leased ids; score = lease expiry (ms)
    limbo                SET     expired leases of a journaled crawl, until their worker's journal is read
    owner                HASH    leased id -> worker identity
    worker:<id>:leases   SET     ids leased by one worker
    seen:<hhhh>          SET     fingerprints whose top bits are hhhh, as their low bits: small integer sets
                                 that Redis stores as packed intsets (8 bytes a URL)
    stats                HASH    queued, pushed, seen, acked, requeued, lost_leases
    done                 HASH    host -> pages acked

A request's token (`Request.token`) is its shard's id with the shard folded in (`Layout.token`).

Exactly-once. On one slot, an ack finishes the requests and stores the worker's checkpoint in one script. When
the shards span slots (a cluster), a commit is journaled: (1) one script in the global slot stores the
checkpoint together with the ids it covers (`journal`); (2) one ack script per shard finishes them. A
worker that dies between the two leaves its committed ids leased; when their leases expire they go to the
shard's `limbo`, not back to a queue, and the first process to see them there (once the worker's liveness
key is gone) reads the worker's journal: committed ids are finished, the others queued again. A restarted
worker, and `crawler status --repair`, replay the journal first. So a page is finished exactly when its item
is below its worker's checkpoint, as on one slot.

Outages: every call rides out a Redis outage (connection refused or reset, a timeout, a server still loading
its AOF, a cluster without quorum) by waiting and retrying with backoff for up to `?outage=SECONDS` (default
60): the crawl pauses. When Redis answers again, this worker's leases are renewed before anything else, so no
process reclaims them; past the limit, or if Redis came back without the crawl's data, the calls raise
`FrontierUnavailable`.

Every state change is one Lua script (`crawler/frontier/lua/*.lua`) within one slot, so it is atomic across
processes: push (dedup + enqueue), pop (the shared limits + lease), ack (finish + checkpoint), commit (journal
+ checkpoint), renew, beat, release, and reclaim (expired leases back to their queue or to limbo, run by every
process as part of looking for ready hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import orjson
from redis import exceptions as redis_errors

from crawler.frontier.base import FrontierBase, FrontierUnavailable
from crawler.frontier.redis_client import open_client, split_url
from crawler.frontier.redis_layout import Layout, key_prefix
from crawler.frontier.redis_ops import discard, parse_journal, read_status, repair
from crawler.frontier.redis_partitions import LocalQueues, owned_partitions
from crawler.frontier.redis_scripts import SCRIPTS
from crawler.model.request import Request
from crawler.model.seen import CompactSeenSet

__all__ = ["RedisFrontier", "WorkerBusy", "key_prefix", "read_status", "repair"]

T = TypeVar("T")

log = logging.getLogger("crawler.frontier")

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_OUTAGE_SECONDS = 60.0
# What an outage looks like from here (BusyLoadingError, a server still loading its AOF, is a ConnectionError;
# a cluster that lost a master answers CLUSTERDOWN, or TRYAGAIN while its slots move).
_OUTAGE_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ClusterDownError,
                  redis_errors.TryAgainError)  # fmt: skip
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 2.0
# A worker's liveness key outlives it by at most this: a restarted worker waits this long for its identity.
_ALIVE_SECONDS = 15.0
_PRIORITY_LIMIT = 1 << 20  # keeps -priority * 2**32 + id exact in a double
_MAX_READY_HOSTS = 256
_PUSH_BATCH = 1000
_READY_HORIZON_MS = 1000  # also list hosts that may start within this, to know when to wake up
_READY_CACHE_SECONDS = 0.2  # reuse the ready hosts of the last reply for this long: one round trip a pop
_CLOCK_SLACK = 0.002
_IDLE_POLL_SECONDS = 0.05
_SETTLE_EVERY = 1.0  # look at a shard's limbo at most this often
# Host-partitioned workers: how often to read the live workers (a joining one gets its share this fast), and
# how many pulled requests to keep at hand (four pops' worth, within these bounds), at most so many per host.
_MEMBERS_EVERY = 1.0
_PULL_MIN, _PULL_MAX, _PULL_PER_HOST = 64, 1024, 16


class WorkerBusy(RuntimeError):
    """The worker identity is held by a live process."""


class _Shard:
    """One shard's keys, and what this process knows of it: the hosts ready there (from its last reply, on the
    local clock), the slots to give back and the pauses to send with the next call."""

    __slots__ = ("ack_keys", "index", "k_leased", "k_limbo", "k_my_leases", "k_owner", "k_stats", "pauses",
                 "pop_keys", "prefix", "push_keys", "ready", "ready_at", "release_keys", "releases",
                 "settled_at")  # fmt: skip

    def __init__(self, index: int, prefix: str, worker: str) -> None:
        p = self.prefix = prefix
        self.index = index
        self.k_leased, self.k_owner, self.k_stats, self.k_limbo = p + "leased", p + "owner", p + "stats", p + "limbo"
        self.k_my_leases = f"{p}worker:{worker}:leases"
        ready, req = p + "ready", p + "req"
        # The pop script names the shard's other keys from its prefix: each argument costs the client.
        self.pop_keys = [ready, self.k_my_leases]
        # `checkpoint` here is the global one when the shard shares the job's slot (ack stores it), else unused.
        self.ack_keys = [ready, req, self.k_leased, self.k_owner, self.k_my_leases, self.k_stats,
                         p + "checkpoint", p + "done", p + "slots", p + "slot"]  # fmt: skip
        self.release_keys = [ready, self.k_leased, self.k_owner, req, self.k_stats, self.k_my_leases,
                             p + "slots", p + "slot"]  # fmt: skip
        self.push_keys = [p + "seq", req, ready, self.k_stats]
        self.ready: list[tuple[str, float]] = []  # (host, local monotonic start), soonest first
        self.ready_at = 0.0
        self.releases: list[int] = []  # ids whose host slot goes back with the next call
        self.pauses: dict[str, float] = {}  # host -> seconds to pause it for, sent with the next call
        self.settled_at = 0.0


class RedisFrontier(FrontierBase):
    """Frontier shared through Redis by every process of a crawl (see the module docstring for keys).

    `worker` is this process's identity: its leases, its checkpoint (the offset of its own items file) and
    the `{worker}` placeholder in `output.items` are keyed by it. It is, in order: the `worker` argument,
    `$CRAWLER_WORKER`, the lowest free `HOST-N` slot when `items` contains `{worker}`, `HOST:ITEMS-PATH`,
    or a one-off `HOST-PID-RANDOM` (a crawl without an items file has nothing to resume).
    """

    def __init__(self, client: Any, layout: Layout, worker: str, *, lease_timeout: float,
                 items: str | None = None, outage_limit: float = DEFAULT_OUTAGE_SECONDS,
                 per_host: int | None = None, where: str = "Redis", cluster: bool = False) -> None:  # fmt: skip
        self.job_name = layout.job
        self.layout = layout
        self.cluster = cluster
        # In-flight requests per host for all processes together (a lease-based semaphore); 0: no cap here.
        self.per_host = per_host or 0
        self._rates_seen: dict[str, float] = {}  # host -> the last GCRA interval this worker's own limiter gave
        self.worker: str = worker
        self.items = items
        self.lease_timeout = lease_timeout
        self.outage_limit = outage_limit
        self._r = client
        self._where = where
        self._outage_since: float | None = None  # monotonic time of the first failure of the current outage
        self._outage_error = ""
        self._gave_up: FrontierUnavailable | None = None
        self._reconnect_lock = asyncio.Lock()
        p = self._prefix = layout.prefix
        self._k_checkpoint, self._k_journal = p + "checkpoint", p + "journal"
        self._k_workers, self._k_beat, self._k_members = p + "workers", p + "beat", p + "members"
        self._k_alive = f"{p}worker:{worker}:alive"
        self._alive_value = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # What the scripts need to know of the crawl's design (see keys_of in lua/prelude.lua).
        self._mode = ("j" if layout.journaled else "") + ("p" if layout.partitioned else "") or "-"
        self.partitioned = layout.partitioned
        # Host-partitioned workers hold politeness themselves (the engine's limiter); see redis_partitions.
        self.shares_rates = not layout.partitioned
        self._local = LocalQueues()
        self._members: tuple[str, ...] = ()
        self._members_at = 0.0
        self._owned: dict[int, list[int]] = {}  # shard -> partitions this worker owns there
        self._owned_set: set[int] = set()
        self._handover: set[int] = set()  # partitions lost to another worker, to unlock once drained
        self._pulled_at = 0.0
        self._pull_dry = False  # the last pull found nothing
        self._want = _PULL_MIN
        self._shards = [_Shard(i, prefix, worker) for i, prefix in enumerate(layout.prefixes)]
        self._scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}
        self._outstanding: dict[int, Request] = {}  # token -> request, leased by this worker
        self._acking: set[int] = set()  # tokens whose ack is on its way: a renewal racing it may not find them
        # Journaled crawls: ids committed (in the journal) whose ack on their shard has not been applied yet.
        self._unapplied: dict[int, list[int]] = {}
        self._acked = 0  # pages this worker acked, and when and at what count it last sent a heartbeat
        self._beat_at, self._beat_acked = time.monotonic(), 0
        self._ack_lock = asyncio.Lock()
        self._settling = False
        self._rate_of: Callable[[str], float | None] | None = None
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

        `url` is a redis-py URL, or `redis+cluster://host:port,host:port` (a `redis://` URL of a cluster node
        works too: see `crawler.frontier.redis_client`); `?lease=SECONDS` sets the lease timeout (default 60 s):
        how long the work of a crashed process stays leased before others take it; `?outage=SECONDS` how long
        to wait out a Redis outage before giving up (default 60 s); `?shards=N` the number of shards of a new
        crawl (default: one on a server, one per master on a cluster); `?partitions=N` starts a new crawl with
        host-partitioned workers (`crawler.frontier.redis_partitions`). `wait` bounds how long to wait for the
        identity's previous holder to expire (default: its liveness timeout, at most 15 s). `per_host` caps
        each host's requests in flight across every process (`concurrency.per_host`).
        """
        target = split_url(url)
        lease = float(target.options.get("lease", lease_timeout or DEFAULT_LEASE_SECONDS))
        outage = float(target.options.get("outage", DEFAULT_OUTAGE_SECONDS))
        shards = int(target.options["shards"]) if "shards" in target.options else None
        partitions = int(target.options["partitions"]) if "partitions" in target.options else None
        client, cluster = await open_client(target)
        try:
            layout = await Layout.load(client, job_name, cluster=cluster, shards=shards, partitions=partitions)
            identity = await _claim_identity(client, job_name, worker, items, lease,
                                             _alive_seconds(lease) + 1.0 if wait is None else wait)  # fmt: skip
            self = cls(client, layout, identity, lease_timeout=lease, items=items, outage_limit=outage,
                       per_host=per_host, where=target.where, cluster=cluster)  # fmt: skip
            await self._start()
        except BaseException:
            await client.aclose()
            raise
        return self

    async def _start(self) -> None:
        items = _absolute(self.items.replace("{worker}", self.worker)) if self.items else None
        info = {"host": socket.gethostname(), "pid": os.getpid(), "items": items, "started": time.time()}
        await self._r.hset(self._k_workers, self.worker, orjson.dumps(info).decode())
        # What a previous run under this identity committed is finished, the rest of its leases queued again.
        committed = parse_journal(await self._r.hget(self._k_journal, self.worker)) if self.layout.journaled else {}
        released = sum(await asyncio.gather(*(self._release(sh, committed.get(sh.index, ())) for sh in self._shards)))
        if committed:
            await self._r.hdel(self._k_journal, self.worker)
        if released:
            log.info(
                "worker %s: %d requests leased by its previous run are queued again", self.worker, released
            )
        await self.renew()  # the first heartbeat: `crawler status` shows the worker at once
        if self.partitioned:
            await self._refresh_members()  # a member from now on: the others make room before it pops
        self._keepalive = asyncio.create_task(self._renew_forever(), name=f"frontier-leases-{self.worker}")

    async def _release(self, shard: _Shard, committed: Iterable[int] = (), ids: Iterable[int] = ()) -> int:
        """Finish `committed` and put this worker's leases among `ids` (none: all of them) back on the queues."""
        done = list(committed)
        return int(await self._scripts["release"](keys=shard.release_keys, args=[
            shard.prefix, self.worker, self._mode, len(done), *done, *ids]))  # fmt: skip

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
                    by_shard = self._by_shard(self._outstanding)
                    await asyncio.gather(*(self._release(self._shards[s], self._unapplied.get(s, ()), ids)
                                           for s, ids in by_shard.items()))  # fmt: skip
                    self._outstanding.clear()
                if self.partitioned:
                    await self._leave()
                await self._r.delete(self._k_alive)
        except _OUTAGE_ERRORS as exc:
            log.warning("worker %s: could not hand back its leases (%s): they expire within %gs",
                        self.worker, _describe(exc), self.lease_timeout)  # fmt: skip
        finally:
            await self._r.aclose()

    def _by_shard(self, tokens: Iterable[int]) -> dict[int, list[int]]:
        """Tokens grouped by shard, as each shard's own ids."""
        out: dict[int, list[int]] = defaultdict(list)
        split = self.layout.split
        for token in tokens:
            shard, rid = split(token)
            out[shard].append(rid)
        return out

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
        released = 0
        token = self.layout.token
        for sh in self._shards:
            leased = await self._r.smembers(sh.k_my_leases)
            orphans = [rid for rid in map(int, leased) if token(sh.index, rid) not in self._outstanding]
            if orphans:
                released += await self._release(sh, self._unapplied.get(sh.index, ()), orphans)
        return released

    def _give_up(self, why: str) -> None:
        self._gave_up = FrontierUnavailable(
            f"{why}: giving up. Pages this worker did not finish go back to the queue when its leases expire "
            f"({self.lease_timeout:g}s); rerun it to continue the crawl"
        )
        raise self._gave_up

    @staticmethod
    async def discard(url: str, job_name: str, *, force: bool = False) -> int:
        """Delete every key of the crawl (`crawler run --fresh`); refuses while a worker is alive."""
        return await discard(url, job_name, force=force, busy=WorkerBusy)

    # Per-host rates are GCRA buckets in Redis, consulted by the pop script: one rate for all processes.
    shares_rates = True

    def bind(self, wake: Callable[[], None], rate_of: Callable[[str], float | None]) -> None:
        """Take per-host rates from the engine's limiter (`rate_of(host)`, Crawl-delay included)."""
        self._rate_of = rate_of

    # -- the four verbs ----------------------------------------------------------------------------

    async def push_many(self, requests: Iterable[Request]) -> int:
        """Push, coalesced: the pushes of every worker that arrive while a push is on its way go out together
        in the next script call per shard (one round trip for many pages' links), and each caller waits for
        its own."""
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
                    fresh = await self._push_all(requests)
                except Exception as exc:  # FrontierUnavailable included: every waiting caller gets it
                    for _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                at = 0
                for batch, done in group:
                    if not done.done():
                        done.set_result(sum(fresh[at : at + len(batch)]))
                    at += len(batch)

    async def _push_all(self, requests: list[Request]) -> list[bool]:
        """Push `requests` to their shards (one script call per shard and batch, concurrently); whether each
        was new, in order."""
        fresh = [False] * len(requests)
        if self.layout.shards == 1:
            groups = {0: list(range(len(requests)))}
        else:
            groups = defaultdict(list)
            shard_of = self.layout.shard_of
            for i, req in enumerate(requests):
                groups[shard_of(req.host)].append(i)
        calls = []
        for shard, indexes in groups.items():
            for start in range(0, len(indexes), _PUSH_BATCH):  # one call must not hold Redis long
                calls.append(self._push_batch(self._shards[shard], requests, indexes[start : start + _PUSH_BATCH]))
        for indexes, flags in [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls):
            for i, flag in zip(indexes, flags, strict=True):
                fresh[i] = flag == "1"
        return fresh

    async def _push_batch(self, shard: _Shard, requests: list[Request], indexes: list[int]) -> tuple[list[int], str]:
        partitioned = self.partitioned
        partition_of = self.layout.partition_of
        seen_bucket = self.layout.seen_bucket
        args: list[str] = ["p" if partitioned else "-"]
        sent: list[int] = []
        for i in indexes:
            req = requests[i]
            if req.dont_filter:
                bucket, member = "-", 0
            else:
                fp = req.fingerprint
                sent.append(fp)
                bucket, member = seen_bucket(fp)
            priority = max(-_PRIORITY_LIMIT, min(_PRIORITY_LIMIT, req.priority))
            host = req.host
            partition = partition_of(host) if partitioned else 0
            # One argument a request, the seen and queue keys named by the script from the shard's prefix (see
            # push.lua): redis-py's cost is per argument, not per byte.
            args.append(f"{bucket} {member} {priority} {partition} {host} {orjson.dumps(req.to_dict()).decode()}")
        script = self._scripts["push"]
        flags = str(await self._call(lambda: script(keys=shard.push_keys, args=args)))
        for fp in sent:
            self._known.add(fp)
        return indexes, flags

    async def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        if limit <= 0:
            return []
        if self.partitioned:
            return await self._pop_partitioned(limit, budget)
        now = time.monotonic()
        stale = [sh for sh in self._shards if now - sh.ready_at >= _READY_CACHE_SECONDS]
        if stale:
            await self._refresh(stale)  # which hosts are ready
        picks = self._pick(limit, budget)
        if not picks and len(stale) < len(self._shards):
            await self._refresh([sh for sh in self._shards if sh not in stale])
            picks = self._pick(limit, budget)
        if not picks:
            return []
        calls = [self._pop(self._shards[s], shard_picks, sum(p[1] for p in shard_picks))
                 for s, shard_picks in picks.items()]  # fmt: skip
        replies = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        out: list[Request] = []
        for shard, reply in zip(picks, replies, strict=True):
            self._take_requests(shard, reply, out)
        if not out:
            for sh in self._shards:
                sh.ready_at = 0.0  # look again next time rather than trust the cached hosts
        return out

    def _take_requests(self, shard: int, reply: list[Any], out: list[Request]) -> None:
        """The requests a pop or pull reply leased to this worker, appended to `out` (and now outstanding)."""
        outstanding = self._outstanding
        known = self._known
        token = self.layout.token
        for i in range(3, 3 + int(reply[2]), 2):
            rid = token(shard, int(reply[i]))
            record = reply[i + 1]
            if record is None:  # cannot happen: a queued id always has its record
                continue
            req = Request.from_dict(orjson.loads(record.split(" ", 2)[2]))
            req.token = rid
            outstanding[rid] = req
            known.add(req.fingerprint)
            out.append(req)

    async def _refresh(self, shards: list[_Shard]) -> None:
        if len(shards) == 1:
            await self._pop(shards[0], [], 0)
        else:
            await asyncio.gather(*(self._pop(sh, [], 0) for sh in shards))

    async def _pop(self, shard: _Shard, picks: list[tuple[str, int, float, int]], limit: int) -> list[Any]:
        """One call of the pop script on one shard (with no picks: only its ready hosts), carrying the slots
        given back and the pauses asked for since the last call; caches the shard's ready hosts of the reply."""
        releases, shard.releases = shard.releases, []
        pauses, shard.pauses = shard.pauses, {}
        args: list[Any] = [self.worker, int(self.lease_timeout * 1000), limit, shard.prefix, _MAX_READY_HOSTS,
                           _READY_HORIZON_MS, self.per_host, self._mode, ",".join(map(str, releases)),
                           len(pauses)]  # fmt: skip
        for host, seconds in pauses.items():
            args += (host, int(seconds * 1000))
        for host, allowance, interval, share in picks:
            args.append(f"{allowance} {interval!r} {share} {host}")
        script = self._scripts["pop"]
        reply: list[Any] = await self._call(lambda: script(keys=shard.pop_keys, args=args))
        self._take_ready(shard, reply, 3 + int(reply[2]))
        await self._maybe_settle(shard, reply)
        return reply

    async def _maybe_settle(self, shard: _Shard, reply: list[Any]) -> None:
        """A pop or pull reply says the shard has leases in limbo: settle them (at most once a second)."""
        if int(reply[1]) and not self._settling and time.monotonic() - shard.settled_at >= _SETTLE_EVERY:
            shard.settled_at = time.monotonic()
            self._settling = True
            try:
                await self._settle_limbo(shard)
            finally:
                self._settling = False

    def _take_ready(self, shard: _Shard, reply: list[Any], start: int) -> None:
        """Cache a shard's ready hosts of a pop reply, with their start times on the local clock."""
        now = time.monotonic()
        offset = now - float(reply[0]) / 1000  # the shard's Redis ms -> local monotonic seconds
        shard.ready = [(reply[i], float(reply[i + 1]) / 1000 + offset) for i in range(start, len(reply), 2)]
        shard.ready_at = now

    def _ready_hosts(self) -> Iterator[tuple[str, float, int]]:
        """(host, start, shard) of every cached ready host, soonest first."""
        if len(self._shards) == 1:
            for host, start in self._shards[0].ready:
                yield host, start, 0
            return
        lists = [[(start, host, sh.index) for host, start in sh.ready] for sh in self._shards if sh.ready]
        for start, host, shard in heapq.merge(*lists):
            yield host, start, shard

    def _pick(self, limit: int, budget: Callable[[str], int]) -> dict[int, list[tuple[str, int, float, int]]]:
        """Per shard, (host, allowance, GCRA interval ms, share) for the cached hosts that may start now, at
        most `limit` requests in all. `share` is 1 when this worker's own rate for the host changed
        (Crawl-delay, an adaptive step): the new rate then becomes the one every process uses; otherwise the
        shared rate wins."""
        now = time.monotonic() + _CLOCK_SLACK
        rates = self._rate_of
        seen = self._rates_seen
        picks: dict[int, list[tuple[str, int, float, int]]] = {}
        wanted = 0
        for host, start, shard in self._ready_hosts():
            if start > now:
                continue
            allowance = min(budget(host), limit - wanted)
            if allowance <= 0:
                continue
            rate = rates(host) if rates is not None else None
            interval = 1000.0 / rate if rate else 0.0
            before = seen.get(host)
            seen[host] = interval
            picks.setdefault(shard, []).append((host, allowance, interval, int(before is not None and before != interval)))
            wanted += allowance
            if wanted >= limit:
                break
        return picks

    def release(self, request: Request) -> None:
        """The engine is done with `request` (its fetch and stages ended and no retry waits): its host's slot
        goes back to all processes with the next call to its shard."""
        if self.per_host and request.token is not None and not self.partitioned:
            shard, rid = self.layout.split(request.token)
            self._shards[shard].releases.append(rid)

    def pause(self, host: str, seconds: float) -> None:
        """`host` asked to wait `seconds` (Retry-After): every process holds it, from the next call on."""
        if self.partitioned:
            return  # only this worker fetches from the host: the engine's own limiter holds the pause
        shard = self._shards[self.layout.shard_of(host)]
        shard.pauses[host] = max(seconds, shard.pauses.get(host, 0.0))
        shard.ready_at = 0.0

    async def ack(self, requests: Sequence[Request], checkpoint: dict[str, Any] | None = None) -> None:
        tokens = [r.token for r in requests if r.token is not None]
        payload = orjson.dumps(checkpoint).decode() if checkpoint is not None else ""
        if not tokens and not payload:
            return
        # Serialised: a later checkpoint (a larger offset) must never be overwritten by an earlier one.
        async with self._ack_lock:
            self._acking.update(tokens)
            try:
                if self.layout.journaled:
                    lost = await self._ack_journaled(tokens, payload)
                else:
                    shard = self._shards[0]
                    script = self._scripts["ack"]
                    args = [self.worker, payload, shard.prefix, self._mode, ",".join(map(str, tokens))]
                    lost = int(await self._call(lambda: script(keys=shard.ack_keys, args=args)))
            except FrontierUnavailable:
                # Nothing acked: these pages are fetched again after a restart, as after a crash (the items
                # past the checkpoint are cut off then). The error itself reaches the engine once, elsewhere.
                return
            finally:
                self._acking.difference_update(tokens)
        self._acked += len(tokens) - lost
        for token in tokens:
            self._outstanding.pop(token, None)
        if lost:
            log.warning("worker %s: %d finished requests had been re-leased to another worker after this "
                        "worker's lease expired (stalled longer than %gs?): they may be in the output twice",
                        self.worker, lost, self.lease_timeout)  # fmt: skip

    async def _ack_journaled(self, tokens: list[int], payload: str) -> int:
        """The two steps of a commit across slots: the checkpoint with the ids it covers (the journal), then
        one ack per shard. Ids whose ack failed stay in `_unapplied` and go into the next journal entry."""
        pending = self._unapplied
        for shard, ids in self._by_shard(tokens).items():
            pending.setdefault(shard, []).extend(ids)
        if payload:
            entry = ";".join(f"{s}:{','.join(map(str, ids))}" for s, ids in pending.items() if ids)
            script = self._scripts["commit"]
            await self._call(lambda: script(keys=[self._k_checkpoint, self._k_journal],
                                            args=[self.worker, payload, entry]))  # fmt: skip
        ack = self._scripts["ack"]

        async def apply(shard: _Shard, ids: list[int]) -> int:
            lost = int(await self._call(lambda: ack(keys=shard.ack_keys,
                                                    args=[self.worker, "", shard.prefix, self._mode,
                                                          ",".join(map(str, ids))])))  # fmt: skip
            pending.pop(shard.index, None)
            return lost

        results = await asyncio.gather(*(apply(self._shards[s], ids) for s, ids in list(pending.items()) if ids),
                                       return_exceptions=True)  # fmt: skip
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(r for r in results if isinstance(r, int))

    async def size(self) -> int:
        """Requests queued or leased by any process: 0 only when the whole crawl is done."""

        async def read(shard: _Shard) -> int:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.hget(shard.k_stats, "queued")
                pipe.zcard(shard.k_leased)
                if self.layout.journaled:
                    pipe.scard(shard.k_limbo)
                replies = await pipe.execute()
            return int(replies[0] or 0) + sum(int(n) for n in replies[1:])

        counts = await asyncio.gather(*(self._call(functools.partial(read, sh)) for sh in self._shards))
        return sum(counts)

    async def checkpoint(self) -> dict[str, Any] | None:
        raw = await self._call(lambda: self._r.hget(self._k_checkpoint, self.worker))
        return orjson.loads(raw) if raw else None

    def next_wakeup(self) -> float | None:
        """Seconds until this process should look again: the next rate-limited host's start, or a short poll
        when nothing is queued (another process may push, or a lease expire). None: a local event will do."""
        if self.partitioned:
            return None if len(self._local) else _IDLE_POLL_SECONDS
        soonest: float | None = None
        for sh in self._shards:
            if sh.ready:
                start = sh.ready[0][1]
                soonest = start if soonest is None else min(soonest, start)
        if soonest is None:
            return _IDLE_POLL_SECONDS
        now = time.monotonic()
        return None if soonest <= now else soonest - now

    @property
    def leased_here(self) -> int:
        return len(self._outstanding)

    # -- host-partitioned workers ---------------------------------------------------------------------

    async def _pop_partitioned(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        """Serve from the requests pulled from this worker's partitions, within the engine's budget (its own
        limiter holds politeness); pull more when they run low."""
        now = time.monotonic()
        if now - self._members_at >= _MEMBERS_EVERY:
            await self._refresh_members()
        self._want = min(_PULL_MAX, max(self._want, 4 * limit))
        local = self._local
        if len(local) < self._want // 2 and (not self._pull_dry or now - self._pulled_at >= _IDLE_POLL_SECONDS):
            await self._pull(self._want - len(local))
        return local.pop_ready(limit, budget)

    async def _refresh_members(self) -> None:
        """Read the live workers (renewing this one's membership) and, when they changed, which partitions are
        this worker's: what it pulled from the ones it lost goes back, and their locks are handed over."""
        script = self._scripts["members"]
        alive_ms = int(_alive_seconds(self.lease_timeout) * 1000)
        members = tuple(sorted(await self._call(lambda: script(keys=[self._k_members], args=[self.worker, alive_ms]))))
        self._members_at = time.monotonic()
        if members == self._members and self._owned:
            return
        self._members = members
        owned = owned_partitions(self.worker, members, self.layout.partitions)
        lost = self._owned_set - owned
        self._owned_set = owned
        shards = self.layout.shards
        self._owned = {}
        for p in sorted(owned):
            self._owned.setdefault(p % shards, []).append(p)
        if lost:
            partition_of = self.layout.partition_of
            back = self._local.take(lambda host: partition_of(host) not in lost)
            for req in back:
                self._outstanding.pop(req.token, None)
            if back:
                by_shard = self._by_shard(r.token for r in back)
                await asyncio.gather(*(self._call(functools.partial(self._release, self._shards[s], (), ids))
                                       for s, ids in by_shard.items()))  # fmt: skip
            self._handover |= lost
            log.info("worker %s: %d workers; %d of %d partitions are this one's (%d handed over, %d pulled "
                     "requests given back)", self.worker, len(members), len(owned), self.layout.partitions,
                     len(lost), len(back))  # fmt: skip
        self._handover -= owned
        if self._handover:
            await self._pull(0)  # hand over the locks of what has drained

    def _drained(self) -> dict[int, list[int]]:
        """Per shard, the partitions being handed over that this worker has nothing left in flight in."""
        if not self._handover:
            return {}
        busy = {self.layout.partition_of(r.host) for r in self._outstanding.values()}
        drained = self._handover - busy
        self._handover -= drained
        out: dict[int, list[int]] = {}
        for p in drained:
            out.setdefault(p % self.layout.shards, []).append(p)
        return out

    async def _pull(self, want: int) -> None:
        """Lease up to `want` queued requests from this worker's partitions (one call per shard), into the
        local queues; hand over the locks of drained partitions on the way."""
        drained = self._drained()
        shards = sorted(set(self._owned) | set(drained))
        if not shards:
            return
        each = -(-want // len(shards)) if want > 0 else 0
        replies = await asyncio.gather(*(self._pull_shard(self._shards[s], each, self._owned.get(s, []),
                                                          drained.get(s, [])) for s in shards))  # fmt: skip
        got: list[Request] = []
        for s, reply in zip(shards, replies, strict=True):
            self._take_requests(s, reply, got)
        for req in got:
            self._local.add(req)
        self._pulled_at = time.monotonic()
        self._pull_dry = want > 0 and not got

    async def _pull_shard(self, shard: _Shard, limit: int, owned: list[int], drained: list[int]) -> list[Any]:
        script = self._scripts["pull"]
        args: list[Any] = [self.worker, int(self.lease_timeout * 1000), limit, self.per_host or _PULL_PER_HOST,
                           int(_alive_seconds(self.lease_timeout) * 1000), shard.prefix, self._mode, len(owned),
                           *owned, *drained]  # fmt: skip
        keys = [shard.push_keys[1], shard.k_leased, shard.k_owner, shard.k_my_leases, shard.k_stats]
        reply: list[Any] = await self._call(lambda: script(keys=keys, args=args))
        await self._maybe_settle(shard, reply)
        return reply

    async def _leave(self) -> None:
        """Closing: leave the members (the others take this worker's partitions at once) and unlock them all."""
        await self._scripts["members"](keys=[self._k_members], args=[self.worker, 0])
        for s, owned in self._owned.items():
            await self._pull_shard(self._shards[s], 0, [], [*owned, *self._handover])
        self._owned = {}

    # -- limbo (journaled crawls) --------------------------------------------------------------------

    async def _settle_limbo(self, shard: _Shard) -> None:
        """Settle the expired leases waiting in a shard's limbo: for each worker whose liveness key is gone,
        finish the ids its journal committed and queue the rest again. A live worker's stay (it renews them)."""

        async def read() -> tuple[list[str], list[str | None]]:
            ids = list(await self._r.smembers(shard.k_limbo))
            owners = await self._r.hmget(shard.k_owner, ids) if ids else []
            return ids, list(owners)

        ids, owners = await self._call(read)
        by_owner: dict[str, list[int]] = defaultdict(list)
        stray: list[str] = []
        for rid, owner in zip(ids, owners, strict=True):
            if owner is None:
                stray.append(rid)  # finished or requeued meanwhile: nothing is owed to anyone
            else:
                by_owner[owner].append(int(rid))
        if stray:
            await self._call(lambda: self._r.srem(shard.k_limbo, *stray))
        for owner, rids in by_owner.items():
            if owner == self.worker:
                mine = [r for r in rids if self.layout.token(shard.index, r) not in self._outstanding]
                if mine:  # ours but never received: as after an outage
                    await self._call(functools.partial(self._release, shard, (), mine))
                continue
            back = await self._call(functools.partial(self._settle_for, shard, owner, rids))
            if back is not None:
                log.info("worker %s is gone: %d of its expired leases finished (committed), %d queued again",
                         owner, len(rids) - back, back)  # fmt: skip

    async def _settle_for(self, shard: _Shard, owner: str, rids: list[int]) -> int | None:
        """Settle `owner`'s ids in limbo on `shard` from its journal, unless it is alive (a stalled worker may
        still commit them; its liveness key expires soon). Returns how many went back to a queue."""
        if await self._r.exists(f"{self._prefix}worker:{owner}:alive"):
            return None
        committed = parse_journal(await self._r.hget(self._k_journal, owner)).get(shard.index, [])
        return int(await self._scripts["release"](keys=_worker_release_keys(shard, owner), args=[
            shard.prefix, owner, self._mode, len(committed), *committed, *rids]))  # fmt: skip

    # -- leases ------------------------------------------------------------------------------------

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
        lease_ms = int(self.lease_timeout * 1000)
        beat = self._scripts["beat"](keys=[self._k_alive, self._k_beat], args=[
            self.worker, self._alive_value, int(_alive_seconds(self.lease_timeout) * 1000),
            f"{rate:.2f} {self._acked}"])  # fmt: skip
        renew = self._scripts["renew"]
        shards = list(self._by_shard(self._outstanding).items())
        replies = await asyncio.gather(beat, *(renew(keys=[sh.k_leased, sh.k_owner, sh.k_limbo],
                                                     args=[self.worker, lease_ms, *ids])
                                               for sh, ids in ((self._shards[s], ids) for s, ids in shards)))  # fmt: skip
        token = self.layout.token
        lost = [token(s, int(rid)) for (s, _), reply in zip(shards, replies[1:], strict=True) for rid in reply]
        # An id acked while this renewal ran is no longer ours, and rightly so.
        lost = [t for t in lost if t in self._outstanding and t not in self._acking]
        if lost:
            log.warning("worker %s: %d leases expired before they could be renewed; another worker may fetch "
                        "those pages too", self.worker, len(lost))  # fmt: skip


def _worker_release_keys(shard: _Shard, worker: str) -> list[str]:
    """The release script's keys for another worker's leases on `shard`."""
    keys = list(shard.release_keys)
    keys[5] = f"{shard.prefix}worker:{worker}:leases"
    return keys


async def _claim_identity(client: Any, job_name: str, worker: str | None, items: str | None,
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

