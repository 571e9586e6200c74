"""Where the keys of a Redis crawl live: the small global keys under the job's hash tag, and the work (per-host
queues, requests, leases, seen-set buckets, per-host politeness) in shards, each under a hash tag of its own.

    crawler:{JOB}:...        global: layout, workers, beat, checkpoint, journal, worker:<id>:alive
    crawler:{TAG}:...        one shard: everything about the hosts that hash to it (see crawler.frontier.redis)

A host belongs to exactly one partition (`partition_of`, a CRC-32 of its name) and so to one shard (the
partition's), and so does every URL of it: a
push, a pop and an ack each touch one shard, and every Lua script runs within one hash slot. The seen set is
sharded the same way (a URL's fingerprint always comes with the same host), so dedup stays exact.

On one Redis server a crawl has one shard whose tag is the job name: every key shares one slot, and an ack
stores the worker's checkpoint in the same script (the layout of the first releases). On a Redis Cluster a
crawl has `?shards=N` shards (default: one per master), with tags `JOB#i` picked at creation so that each
master holds as many shards as any other; the acks of a worker then span slots, and are journaled (see
`commit.lua`). The layout is written once, by the first process (`crawler:{JOB}:layout`), and every later
process reads it, so all of them agree whatever their options say. `?partitions=N` starts a crawl with
host-partitioned workers (see `crawler.frontier.redis_partitions`): N partitions, as many in every shard.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

import orjson
from redis.crc import key_slot

__all__ = ["Layout", "key_prefix"]

log = logging.getLogger("crawler.frontier")

_SHARDS_PER_MASTER = 1
_MAX_SHARDS = 1024
_MAX_PARTITIONS = 65_536


def key_prefix(tag: str) -> str:
    """`crawler:{TAG}:`: the prefix of every key under one hash tag (the job name, or a shard's tag)."""
    return f"crawler:{{{tag}}}:"


class Layout:
    """The shards of one crawl: their tags and key prefixes, which shard a host belongs to, how a request id is
    made globally unique (`token`), and the seen-set bucket of a fingerprint."""

    __slots__ = ("_host_partition", "job", "journaled", "partitioned", "partitions", "prefix", "prefixes",
                 "seen_bits", "shards", "tags")  # fmt: skip

    def __init__(self, job: str, tags: list[str], partitions: int | None = None) -> None:
        if not 1 <= len(tags) <= _MAX_SHARDS:
            raise ValueError(f"a crawl has 1 to {_MAX_SHARDS} shards, not {len(tags)}")
        if partitions is not None and not 1 <= partitions <= _MAX_PARTITIONS:
            raise ValueError(f"a crawl has 1 to {_MAX_PARTITIONS} partitions, not {partitions}")
        self.job = job
        self.tags = list(tags)
        self.shards = len(tags)
        # Host-partitioned workers (`?partitions=N`): hosts fall in N partitions (partition p in shard p % S),
        # each pulled by one worker. Otherwise every worker pops any host, under the shared limits.
        self.partitioned = partitions is not None
        self.partitions = partitions if partitions is not None else self.shards
        self.prefix = key_prefix(job)
        self.prefixes = [key_prefix(t) for t in tags]
        # One shard in the job's own slot: an ack and its checkpoint are one script. Otherwise journaled.
        self.journaled = self.prefixes != [self.prefix]
        # About 65,536 buckets over all shards: each a small Redis intset (8 bytes a URL) whatever the count.
        self.seen_bits = 16 if self.shards == 1 else max(8, 16 - (self.shards - 1).bit_length())
        self._host_partition: dict[str, int] = {}

    def partition_of(self, host: str) -> int:
        """The partition of a host key (`name[:port]`): by its name alone, so one site's ports share it."""
        partition = self._host_partition.get(host)
        if partition is None:
            name = host.rpartition(":")[0] if ":" in host and not host.endswith("]") else host
            partition = zlib.crc32(name.encode()) % self.partitions if self.partitions > 1 else 0
            if len(self._host_partition) > 100_000:  # a cache, not a registry of every host ever seen
                self._host_partition.clear()
            self._host_partition[host] = partition
        return partition

    def shard_of(self, host: str) -> int:
        """The shard a host's keys live in (its partition's)."""
        return self.partition_of(host) % self.shards if self.shards > 1 else 0

    def token(self, shard: int, rid: int) -> int:
        """A request's id across the crawl (`Request.token`): its shard's own id, with the shard folded in."""
        return rid * self.shards + shard

    def split(self, token: int) -> tuple[int, int]:
        """(shard, the shard's own id) of a token."""
        rid, shard = divmod(token, self.shards)
        return shard, rid

    def seen(self, shard: int, fingerprint: int) -> tuple[str, int]:
        """The seen-set key and member of a fingerprint: its top `seen_bits` bits name the bucket, the rest is
        the member (an integer, so the bucket stays a packed intset)."""
        bucket, member = self.seen_bucket(fingerprint)
        return f"{self.prefixes[shard]}seen:{bucket}", member

    def seen_bucket(self, fingerprint: int) -> tuple[str, int]:
        """The seen-set bucket of a fingerprint (the key's last part, after `seen:`) and its member there."""
        bits = self.seen_bits
        return f"{fingerprint >> (64 - bits):0{(bits + 3) // 4}x}", fingerprint & ((1 << (64 - bits)) - 1)

    def to_json(self) -> str:
        stored: dict[str, Any] = {"shards": self.tags}
        if self.partitioned:
            stored["partitions"] = self.partitions
        return orjson.dumps(stored).decode()

    @classmethod
    def from_json(cls, job: str, text: str) -> Layout:
        stored = orjson.loads(text)
        return cls(job, list(stored["shards"]), stored.get("partitions"))

    @classmethod
    async def read(cls, client: Any, job: str) -> Layout:
        """The crawl's stored layout, or the one-server layout when it has none (not started yet, or started
        before layouts were stored: the same keys). Never writes."""
        stored = await client.get(key_prefix(job) + "layout")
        return cls.from_json(job, stored) if stored else cls(job, [job])

    @classmethod
    async def load(cls, client: Any, job: str, *, cluster: bool, shards: int | None,
                   partitions: int | None = None) -> Layout:  # fmt: skip
        """The crawl's layout: the stored one, or (first process) a new one, stored for the others."""
        key = key_prefix(job) + "layout"
        stored = await client.get(key)
        if stored is None:
            tags = await _choose_tags(client, job, cluster=cluster, shards=shards)
            if partitions is not None:
                partitions = -(-max(partitions, len(tags)) // len(tags)) * len(tags)  # as many in every shard
            fresh = cls(job, tags, partitions)
            if await client.set(key, fresh.to_json(), nx=True):
                if fresh.shards > 1 or fresh.partitioned:
                    log.info("crawl %r: %d shards (%s)%s", job, fresh.shards, ", ".join(fresh.tags),
                             f", {fresh.partitions} host partitions" if fresh.partitioned else "")  # fmt: skip
                return fresh
            stored = await client.get(key)  # another process created it first: theirs wins
        layout = cls.from_json(job, stored)
        if shards is not None and shards != layout.shards:
            log.warning("crawl %r already has %d shards: ?shards=%d is ignored", job, layout.shards, shards)
        if (partitions is not None) != layout.partitioned:
            log.warning("crawl %r was started %s: this process works the same way", job,
                        "with host-partitioned workers" if layout.partitioned else "with shared politeness")  # fmt: skip
        return layout


async def _choose_tags(client: Any, job: str, *, cluster: bool, shards: int | None) -> list[str]:
    """One tag (the job's) on one server unless `shards` asks for more; on a cluster `shards` tags (default one
    per master: more only help a crawl that will outgrow its cluster, at a round trip per shard per pop), picked so that the masters hold equal numbers of them (as the slots are assigned now)."""
    if not cluster:
        return [job] if not shards or shards == 1 else [f"{job}#{i}" for i in range(shards)]
    masters = _masters_by_slot(client)
    owners = sorted(set(masters.values()))
    count = shards or _SHARDS_PER_MASTER * len(owners)
    if count == 1:
        return [job]
    quota = {m: -(-count // len(owners)) for m in owners}  # ceil: each master takes at most this many
    tags: list[str] = []
    i = 0
    while len(tags) < count and i < 100_000:
        tag = f"{job}#{i}"
        i += 1
        owner = masters.get(key_slot(f"{key_prefix(tag)}x".encode()))
        if owner is not None and quota[owner] > 0:
            quota[owner] -= 1
            tags.append(tag)
    return tags


def _masters_by_slot(client: Any) -> dict[int, str]:
    """slot -> the name of the master that serves it, from the cluster client's slot map."""
    out: dict[int, str] = {}
    for slot, nodes in client.nodes_manager.slots_cache.items():
        if nodes:
            out[slot] = nodes[0].name
    return out
