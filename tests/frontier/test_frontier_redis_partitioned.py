"""Host-partitioned workers (`?partitions=N`): each live worker owns a consistent-hash share of the partitions,
pulls only from them, and holds politeness itself; a joining worker gets its share, the old owner gives back
what it had pulled and hands the lock over once its requests there are done. At the server, the in-flight cap
holds across two real processes without any shared semaphore."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.demo.site import SiteServer
from crawler.frontier.redis import RedisFrontier, read_status
from crawler.frontier.redis_partitions import LocalQueues, owned_partitions
from crawler.model.request import Request
from tests.frontier._backends import Backend, RedisServer
from tests.frontier._crawl import CrawlProcess, count_lines, finish_all, max_overlap, write_job

pytestmark = pytest.mark.redis

HOSTS = [f"h{i}.test" for i in range(40)]


def two_each(host: str) -> int:
    return 2


async def _partitioned(backend: Backend, worker: str, partitions: int = 16) -> Any:
    assert backend.redis is not None
    f = await RedisFrontier.connect(f"{backend.redis.url}?lease=30&partitions={partitions}", backend.job,
                                    worker=worker)  # fmt: skip
    backend.opened.append(f)
    return f


async def _drain(f: Any, *, ack: bool = True) -> list[Request]:
    out: list[Request] = []
    while batch := await f.pop_ready(50, two_each):
        out += batch
        if ack:
            await f.ack(batch, {"items_offset": len(out)})
    return out


def test_rendezvous_gives_every_partition_to_exactly_one_worker_and_moves_little() -> None:
    workers = ["a", "b", "c"]
    shares = {w: owned_partitions(w, workers, 64) for w in workers}
    assert set().union(*shares.values()) == set(range(64))
    assert sum(len(s) for s in shares.values()) == 64, "disjoint"
    assert all(12 <= len(s) <= 32 for s in shares.values()), {w: len(s) for w, s in shares.items()}
    grown = {w: owned_partitions(w, [*workers, "d"], 64) for w in [*workers, "d"]}
    for w in workers:
        assert grown[w] <= shares[w], "a joining worker only takes partitions, never swaps them"
    assert owned_partitions("a", ["a"], 8) == set(range(8))


def test_local_queues_serve_hosts_in_turn_within_their_budget() -> None:
    q = LocalQueues()
    for i in range(6):
        q.add(Request.make(f"http://a.test/{i}"))
    q.add(Request.make("http://b.test/0"))
    first = q.pop_ready(3, lambda h: 1)
    assert [r.host for r in first] == ["a.test", "b.test"], "one each, every host in turn"
    assert [r.url for r in q.pop_ready(10, lambda h: 0 if h == "b.test" else 2)] == [
        "http://a.test/1", "http://a.test/2"]  # fmt: skip
    taken = q.take(lambda host: host != "a.test")
    assert [r.url for r in taken] == ["http://a.test/3", "http://a.test/4", "http://a.test/5"] and len(q) == 0


async def test_each_worker_pulls_only_the_hosts_of_its_own_partitions(redis_backend: Backend) -> None:
    workers = [await _partitioned(redis_backend, w) for w in ("a", "b", "c")]
    assert all(not f.shares_rates for f in workers), "politeness is each worker's own"
    await workers[0].push_many([Request.make(f"http://{h}/{i}") for h in HOSTS for i in range(3)])
    assert redis_backend.redis is not None
    queued = await read_status(redis_backend.redis.url, redis_backend.job, top_hosts=100)
    assert sorted(h["host"] for h in queued["hosts"]) == sorted(HOSTS) and {h["queued"] for h in queued["hosts"]} == {3}
    await asyncio.sleep(1.1)  # every worker's view of the members is fresh at its next pop
    got = await asyncio.gather(*(_drain(f) for f in workers))
    assert sorted(r.url for batch in got for r in batch) == sorted(f"http://{h}/{i}" for h in HOSTS for i in range(3))
    layout = workers[0].layout
    assert redis_backend.redis is not None
    status = await read_status(redis_backend.redis.url, redis_backend.job)
    assert status["done"] == 120 and status["queued"] == 0 and status["shards"] == 1
    for f, batch in zip(workers, got, strict=True):
        mine = owned_partitions(f.worker, ["a", "b", "c"], layout.partitions)
        assert {layout.partition_of(r.host) for r in batch} <= mine
    assert sum(bool(batch) for batch in got) >= 2, "the hosts are spread over the workers"


async def test_a_joining_worker_gets_its_share_and_the_old_owner_hands_it_over(redis_backend: Backend) -> None:
    a = await _partitioned(redis_backend, "a")
    await a.push_many([Request.make(f"http://{h}/{i}") for h in HOSTS for i in range(4)])
    early = await a.pop_ready(10, two_each)  # a owns everything and pulls a batch of it
    assert early and len(a._local) > 0
    b = await _partitioned(redis_backend, "b")
    by_worker: dict[str, list[Request]] = defaultdict(list)
    by_worker["b"] += await b.pop_ready(50, two_each)  # what a has not locked (pulled from) yet
    await b.ack(by_worker["b"], {"items_offset": 1})
    await asyncio.sleep(1.1)
    await a.ack(early, {"items_offset": 1})  # a's requests in flight there are done: the locks can go
    for _ in range(200):
        progressed = False
        for f in (a, b):
            batch = await f.pop_ready(50, two_each)
            if batch:
                progressed = True
                by_worker[f.worker] += batch
                await f.ack(batch, {"items_offset": 2})
        if not progressed and await a.size() == 0:
            break
        await asyncio.sleep(0.02)
    everything = [r.url for r in early] + [r.url for batch in by_worker.values() for r in batch]
    assert sorted(everything) == sorted(f"http://{h}/{i}" for h in HOSTS for i in range(4)), "each exactly once"
    layout = a.layout
    b_share = owned_partitions("b", ["a", "b"], layout.partitions)
    assert by_worker["b"] and {layout.partition_of(r.host) for r in by_worker["b"]} <= b_share
    assert not {layout.partition_of(r.host) for r in by_worker["a"]} & b_share, "a gave b's partitions up"


# -- two real processes: the in-flight cap holds without a shared semaphore ---------------------------------------


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    with SiteServer(tls=False, pages=10) as server:
        yield server


@pytest.mark.timeout(120)
def test_partitioned_workers_hold_the_in_flight_cap_of_a_host_together(
    site: SiteServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    site.clear_log()
    files = {w: tmp_path / f"items-{w}.jsonl" for w in ("A", "B")}
    procs = []
    for w, items in files.items():
        job = write_job(tmp_path / f"job-{w}.yaml", site.url, items=items,
                        frontier=f"{redis_server.url}?partitions=16", name=f"parted-{tmp_path.name}",
                        start_urls=[f"{site.url}/slow/150?n={i}" for i in range(40)], scope={"max_depth": 0},
                        concurrency={"workers": 8, "per_host": 2})  # fmt: skip
        procs.append(CrawlProcess(job, env={"CRAWLER_WORKER": w}, name=f"worker-{w}").start())
    finish_all(procs, 90)
    assert count_lines(files.values()) == 40
    slow = [e for e in site.log("/slow/") if e["t_end"] is not None]
    assert len(slow) == 40
    # One host, one partition, one owner at a time: each process's own limiter caps it at 2, and the other
    # never reaches it (a handover waits for the old owner's requests there to finish).
    assert max_overlap(slow) == 2, max_overlap(slow)
