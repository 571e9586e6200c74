"""Operating a Redis crawl from outside its workers: `crawler status` (read_status), `crawler status --repair`
(repair: the leases of dead workers back on their queues at once) and `crawler run --fresh` (discard). Each
opens its own client, on one server or a cluster, and reads the crawl's layout without creating one."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import orjson

from crawler.frontier.redis_client import open_client, split_url
from crawler.frontier.redis_layout import Layout
from crawler.frontier.redis_scripts import SCRIPTS

__all__ = ["discard", "parse_journal", "read_status", "repair"]


def parse_journal(entry: str | None) -> dict[int, list[int]]:
    """A worker's journal entry, `"shard:id,id;shard:id"`, as shard -> ids."""
    out: dict[int, list[int]] = {}
    if not entry:
        return out
    for part in entry.split(";"):
        shard, _, ids = part.partition(":")
        if ids:
            out[int(shard)] = [int(i) for i in ids.split(",")]
    return out


async def _open(url: str, job_name: str) -> tuple[Any, Layout]:
    client, _ = await open_client(split_url(url))
    try:
        return client, await Layout.read(client, job_name)
    except BaseException:
        await client.aclose()
        raise


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def discard(url: str, job_name: str, *, force: bool = False, busy: type[Exception] = RuntimeError) -> int:
    """Delete every key of the crawl, global and in every shard; refuses (raises `busy`) while a worker is alive."""
    client, layout = await _open(url, job_name)
    try:
        if not force:
            pattern = _glob_escape(layout.prefix) + "worker:*:alive"
            alive = [k async for k in client.scan_iter(match=pattern, count=1000)]
            if alive:
                raise busy(f"{len(alive)} worker(s) of job {job_name!r} are running; stop them first")
        deleted = 0
        prefixes = [layout.prefix] + [p for p in layout.prefixes if p != layout.prefix]
        for prefix in prefixes:
            batch: list[str] = []
            async for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await client.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await client.unlink(*batch)
        return deleted
    finally:
        await client.aclose()


async def repair(url: str, job_name: str) -> list[dict[str, Any]]:
    """`crawler status --repair`: for every worker whose liveness key has expired (no heartbeat for 15 s: dead,
    or frozen), finish what its journal committed and put its other leases back on their queues now instead of
    when they expire. Returns, per such worker, how many requests went back, with its items file and
    checkpoint (the caller trims the file)."""
    client, layout = await _open(url, job_name)
    p = layout.prefix
    release = client.register_script(SCRIPTS["release"])
    mode = ("j" if layout.journaled else "") + ("p" if layout.partitioned else "") or "-"
    out = []
    try:
        workers = await client.hgetall(p + "workers")
        checkpoints = await client.hgetall(p + "checkpoint")
        for w, info_raw in workers.items():
            if await client.exists(f"{p}worker:{w}:alive"):
                continue
            committed = parse_journal(await client.hget(p + "journal", w)) if layout.journaled else {}
            requeued = 0
            for shard, sp in enumerate(layout.prefixes):
                done = committed.get(shard, [])
                requeued += int(await release(
                    keys=[sp + "ready", sp + "leased", sp + "owner", sp + "req", sp + "stats",
                          f"{sp}worker:{w}:leases", sp + "slots", sp + "slot"],
                    args=[sp, w, mode, len(done), *done]))  # fmt: skip
            if committed:
                await client.hdel(p + "journal", w)
            info = orjson.loads(info_raw)
            cp = orjson.loads(checkpoints[w]) if w in checkpoints else None
            out.append({"worker": w, "requeued": requeued, "host": info.get("host"), "items": info.get("items"),
                        "checkpoint": cp})  # fmt: skip
    finally:
        await client.aclose()
    return out


async def _read_shard(client: Any, prefix: str) -> tuple[dict[str, str], int, dict[str, str], dict[str, int],
                                                         dict[str, str]]:  # fmt: skip
    """(stats, leased, done, queued per ready host, owner per leased id) of one shard."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(prefix + "stats")
        pipe.zcard(prefix + "leased")
        pipe.scard(prefix + "limbo")
        pipe.hgetall(prefix + "done")
        pipe.zrange(prefix + "ready", 0, -1)
        pipe.hgetall(prefix + "owner")
        pipe.zrange(prefix + "pwork", 0, -1)
        stats, leased, limbo, done, ready, owners, pwork = await pipe.execute()
    if pwork:  # host-partitioned workers list a partition's hosts with work in pready:<p>
        async with client.pipeline(transaction=False) as pipe:
            for p in pwork:
                pipe.zrange(f"{prefix}pready:{p}", 0, -1)
            ready = [h for hosts in await pipe.execute() for h in hosts]
    queued: dict[str, int] = {}
    if ready:
        async with client.pipeline(transaction=False) as pipe:
            for h in ready:
                pipe.zcard(f"{prefix}q:{h}")
            queued = dict(zip(ready, await pipe.execute(), strict=True))
    return stats, int(leased) + int(limbo), done, queued, owners


async def read_status(url: str, job_name: str, *, top_hosts: int = 10) -> dict[str, Any]:
    """Shared progress of a crawl, for `crawler status`: every shard's counters summed."""
    client, layout = await _open(url, job_name)
    p = layout.prefix
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(p + "workers")
            pipe.hgetall(p + "checkpoint")
            pipe.hgetall(p + "beat")
            workers, checkpoints, beats = await pipe.execute()
        clock = await client.time() if not hasattr(client, "nodes_manager") else await _cluster_time(client, p)
        alive = await asyncio.gather(*(client.exists(f"{p}worker:{w}:alive") for w in workers))
        shards = await asyncio.gather(*(_read_shard(client, sp) for sp in layout.prefixes))
    finally:
        await client.aclose()
    totals: dict[str, int] = defaultdict(int)
    leased = 0
    done: dict[str, int] = defaultdict(int)
    queued_by_host: dict[str, int] = {}
    leased_by: dict[str, int] = defaultdict(int)
    for stats, shard_leased, shard_done, queued, owners in shards:
        for k, v in stats.items():
            totals[k] += int(v)
        leased += shard_leased
        for h, n in shard_done.items():
            done[h] += int(n)
        queued_by_host.update(queued)
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
    hosts = sorted(set(queued_by_host) | set(done), key=lambda h: (-queued_by_host.get(h, 0), -done.get(h, 0)))
    return {
        "backend": "redis",
        "job": job_name,
        "shards": layout.shards,
        "queued": totals["queued"],
        "leased": leased,
        "done": totals["acked"],
        "pushed": totals["pushed"],
        "seen": totals["seen"],
        "requeued": totals["requeued"],
        "lost_leases": totals["lost_leases"],
        "workers": worker_rows,
        "hosts": [
            {"host": h, "queued": queued_by_host.get(h, 0), "done": done.get(h, 0)}
            for h in hosts[:top_hosts]
        ],
    }


async def _cluster_time(client: Any, prefix: str) -> Any:
    """TIME of the master holding the crawl's global keys (the clock its heartbeats were written with)."""
    node = client.get_node_from_key(prefix + "beat")
    return await client.time(target_nodes=node)

