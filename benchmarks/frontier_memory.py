"""Frontier memory: bytes per URL with 1M and 10M URLs seen and queued. Synthetic URLs, no network.

Each case runs in a fresh interpreter and reports the growth of its resident set (RSS, from /proc) while
the structure is built, divided by the number of URLs ("total"), and the growth over the second half of
the build divided by the URLs added in it ("marginal": what one more URL costs, once fixed costs such as
the SQLite page cache and the bounded in-memory queue are paid). Inputs are generated in batches and
dropped, so only the structure stays.

    seen-set      the compact seen set alone (crawler.model.seen.CompactSeenSet), random 64-bit fingerprints
    python-set    a plain set[int] of the same fingerprints, for comparison
    memory        MemoryFrontier as a crawl runs it: N requests pushed and queued, 100,000 held in memory
                  (packed per host), the rest spilled to its temporary file; then all of them popped back
                  ("drain": pops per second through the spill); peak RSS of the whole process
    memory-packed MemoryFrontier with no spill: all N requests packed in memory (what a queued request costs)
    sqlite        SqliteFrontier: N requests pushed and queued (seen set in memory, queue on disk);
                  also reports the state directory's bytes per URL
    redis         RedisFrontier against a private redis-server (if installed): the server's used_memory
                  per URL, seen set only (dedup buckets) and seen + queued

    python -m benchmarks.frontier_memory                       # 1M for every case, 10M for the compact ones
    python -m benchmarks.frontier_memory --sizes 1000000 --cases seen-set sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

BATCH = 20_000
CASES = ["seen-set", "python-set", "memory", "memory-packed", "sqlite", "redis"]
# Every case fits a small machine at 10M except the unbounded one (~0.7 GB): that one only with --all-big.
BIG_CASES = ["seen-set", "python-set", "memory", "sqlite", "redis"]


def peak_rss() -> int:
    """The process's peak resident set so far, in bytes (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def urls(n: int) -> Iterator[list[str]]:
    """Crawl-like URLs over 1,000 hosts, in batches."""
    for start in range(0, n, BATCH):
        yield [f"https://shop{i % 1000}.example.com/catalog/item/{i}?ref=list&page={i % 97}"
               for i in range(start, min(n, start + BATCH))]  # fmt: skip


def requests(n: int) -> Iterator[list[Any]]:
    """Requests as the link extractor builds them: canonical URLs, a referer, fingerprint and host filled."""
    from crawler.model.request import Request
    from crawler.model.url import fingerprint, host_key

    for batch in urls(n):
        yield [Request(url=u, depth=1, referer=f"https://{host_key(u)}/catalog/", host=host_key(u),
                       fingerprint=fingerprint(u)) for u in batch]  # fmt: skip


def fingerprints(n: int) -> Iterator[list[int]]:
    rng = random.Random(12345)
    for start in range(0, n, BATCH):
        yield [rng.getrandbits(64) for _ in range(min(BATCH, n - start))]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- one case, in a fresh interpreter ------------------------------------------------------------------------


class Growth:
    """RSS growth over the whole build, and over its second half (the marginal cost of one more URL)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done = 0
        self.base = rss()
        self.half: int | None = None

    def step(self, count: int) -> None:
        self.done += count
        if self.half is None and self.done >= self.n // 2:
            self.half, self.half_done = rss(), self.done

    def result(self) -> dict[str, float]:
        now = rss()
        out = {"rss_bytes_per_url": (now - self.base) / self.n}
        if self.half is not None and self.done > self.half_done:
            out["marginal_bytes_per_url"] = (now - self.half) / (self.done - self.half_done)
        return out


def run_case(case: str, n: int) -> dict[str, Any]:
    started = time.perf_counter()
    out: dict[str, Any] = {"case": case, "urls": n}
    if case == "seen-set":
        from crawler.model.seen import CompactSeenSet

        growth = Growth(n)
        seen = CompactSeenSet()
        for batch in fingerprints(n):
            seen.update(batch)
            growth.step(len(batch))
        out.update(growth.result())
        out["table_bytes_per_url"] = seen.nbytes / len(seen)
    elif case == "python-set":
        growth = Growth(n)
        plain: set[int] = set()
        for batch in fingerprints(n):
            plain.update(batch)
            growth.step(len(batch))
        out.update(growth.result())
    elif case in ("memory", "memory-packed"):
        from crawler.frontier.memory import MemoryFrontier

        growth = Growth(n)
        frontier = MemoryFrontier(memory_queue=n if case == "memory-packed" else 100_000)

        async def build() -> None:
            for batch in requests(n):
                await frontier.push_many(batch)
                growth.step(len(batch))

        asyncio.run(build())
        out.update(growth.result())
        out["queued_in_memory"] = frontier.queued_in_memory
        out["packed_bytes_per_url"] = frontier._queues.nbytes() / max(1, frontier.queued_in_memory)
        if case == "memory":
            out["drain_pops_per_s"] = asyncio.run(drain(frontier, n))
        out["peak_rss_mb"] = peak_rss() / 1e6
    elif case == "sqlite":
        from crawler.frontier.sqlite import SqliteFrontier

        state = Path(tempfile.mkdtemp(prefix="frontier-memory-"))
        try:

            async def build() -> dict[str, Any]:
                growth = Growth(n)
                frontier = await SqliteFrontier.open(state)
                for batch in requests(n):
                    await frontier.push_many(batch)
                    await frontier.ack([], None)  # a crawl commits every flush interval
                    growth.step(len(batch))
                result: dict[str, Any] = {**growth.result(), "queued_in_memory": frontier.queued_in_memory}
                await frontier.close()
                return result

            out.update(asyncio.run(build()))
            out["disk_bytes_per_url"] = dir_bytes(state) / n
        finally:
            shutil.rmtree(state, ignore_errors=True)
    elif case == "redis":
        out.update(redis_case(n))
    else:
        raise SystemExit(f"unknown case {case}")
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


async def drain(frontier: Any, n: int) -> float:
    """Pop (and ack) every queued request as a crawl would, 64 at a time; returns pops per second."""
    started = time.perf_counter()
    popped = 0
    while batch := await frontier.pop_ready(64, lambda host: 16):
        popped += len(batch)
        await frontier.ack(batch)
    assert popped == n, (popped, n)
    return popped / (time.perf_counter() - started)


def redis_case(n: int) -> dict[str, Any]:
    exe = shutil.which("redis-server")
    if exe is None:
        return {"skipped": "redis-server is not installed"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="frontier-memory-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        return asyncio.run(measure_redis(f"redis://127.0.0.1:{port}/0", n))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


async def measure_redis(url: str, n: int) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from crawler.frontier.redis import RedisFrontier, key_prefix

    client = aioredis.from_url(url)
    try:
        for _ in range(100):
            try:
                await client.ping()
                break
            except Exception:  # not listening yet
                await asyncio.sleep(0.05)
        base = (await client.info("memory"))["used_memory"]
        # Seen set alone: the dedup buckets, as the push script fills them.
        prefix = key_prefix("bench")
        for batch in fingerprints(n):
            pipe = client.pipeline(transaction=False)
            buckets: dict[int, list[int]] = {}
            for fp in batch:
                buckets.setdefault(fp >> 48, []).append(fp & ((1 << 48) - 1))
            for b, members in buckets.items():
                pipe.sadd(f"{prefix}seen:{b:04x}", *members)
            await pipe.execute()
        seen_used = (await client.info("memory"))["used_memory"] - base
        await client.flushdb()
        base = (await client.info("memory"))["used_memory"]
        frontier = await RedisFrontier.connect(url, "bench2", worker="bench")
        for batch in requests(n):
            await frontier.push_many(batch)
        queued_used = (await client.info("memory"))["used_memory"] - base
        await frontier.close()
        return {"seen_bytes_per_url": seen_used / n, "seen_and_queued_bytes_per_url": queued_used / n}
    finally:
        await client.aclose()


# -- the table ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    parser.add_argument("--all-big", action="store_true", help="also run the memory frontier at 10M (~5 GB)")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one[0], int(args.one[1]))))
        return
    rows = []
    for n in args.sizes:
        for case in args.cases:
            if n > 1_000_000 and case not in BIG_CASES and not args.all_big:
                continue
            proc = subprocess.run([sys.executable, "-m", "benchmarks.frontier_memory", "--one", case, str(n)],
                                  cwd=REPO_ROOT, capture_output=True, text=True)  # fmt: skip
            if proc.returncode != 0:
                print(f"{case} {n}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(proc.stdout)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print("\n| case | URLs | bytes per URL (total / marginal) | notes | build time |")
    print("|---|---:|---:|---|---:|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['case']} | {r['urls']:,} | - | {r['skipped']} | - |")
            continue
        if r["case"] == "redis":
            main_figure = f"{r['seen_bytes_per_url']:.1f}"
            notes = (
                f"Redis used_memory, seen set only; seen + queued: {r['seen_and_queued_bytes_per_url']:.0f}"
            )
        else:
            main_figure = (
                f"{r['rss_bytes_per_url']:.1f} / {r.get('marginal_bytes_per_url', float('nan')):.1f}"
            )
            notes = "process RSS growth"
            if "peak_rss_mb" in r:
                notes += (f"; peak RSS {r['peak_rss_mb']:.0f} MB; {r['queued_in_memory']:,} in memory, "
                          f"packed {r['packed_bytes_per_url']:.0f} B each")  # fmt: skip
            if "drain_pops_per_s" in r:
                notes += f"; drained at {r['drain_pops_per_s']:,.0f} pops/s"
            if "table_bytes_per_url" in r:
                notes += f"; tables {r['table_bytes_per_url']:.1f}"
            if "disk_bytes_per_url" in r:
                notes += (
                    f"; on disk {r['disk_bytes_per_url']:.0f}; {r['queued_in_memory']:,} queued in memory"
                )
        print(f"| {r['case']} | {r['urls']:,} | {main_figure} | {notes} | {r['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
