"""One specification for every frontier backend: memory, SQLite and Redis all pass these tests."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from typing import Any

from crawler.frontier.base import FrontierBackend
from crawler.model.request import Request
from tests.frontier._backends import Backend


def req(url: str, **kwargs: Any) -> Request:
    return Request.make(url, **kwargs)


def unlimited(host: str) -> int:
    return 1000


async def drain(frontier: FrontierBackend, *, budget: Any = unlimited, limit: int = 1000) -> list[Request]:
    out: list[Request] = []
    while True:
        batch = await frontier.pop_ready(limit, budget)
        if not batch:
            return out
        out += batch


def urls(requests: list[Request]) -> list[str]:
    return [r.url for r in requests]


async def test_the_lifecycle_hooks_are_the_protocol(backend: Backend) -> None:
    f = await backend.open()
    assert isinstance(f, FrontierBackend)
    assert f.shares_rates is backend.shares_rates
    assert (f.worker is not None) is backend.shared, "a shared crawl names its workers; one process needs no name"
    f.bind(lambda: None, lambda host: 5.0 if host == "slow.test" else None)
    await f.push_many([req(f"http://slow.test/{i}") for i in range(10)] + [req("http://fast.test/1")])
    batch = await f.pop_ready(100, lambda host: 10)
    hosts = Counter(r.host for r in batch)
    wait = f.next_wakeup()
    if f.shares_rates:
        # The backend holds the rate for every process: at 5/s one request now, the next one 0.2 s later.
        assert hosts == {"slow.test": 1, "fast.test": 1}
        assert wait is not None and 0.05 < wait <= 0.25, wait
    else:
        # The engine's own limiter holds the rate (through `budget`); the backend has nothing to wait for, but
        # a host-partitioned worker with nothing pulled looks again shortly: others push to its partitions.
        assert hosts == {"slow.test": 10, "fast.test": 1}
        assert wait is None or (backend.shared and wait <= 0.1), wait
    await f.ack(batch, {"items_offset": 0})
    await f.close()
    await f.close()  # closing twice is harmless: the engine and its owner may both close


async def test_push_many_counts_only_new_urls(backend: Backend) -> None:
    f = await backend.open()
    assert await f.push_many([req("http://a.test/1"), req("http://a.test/2"), req("http://a.test/1")]) == 2
    assert await f.push_many([req("http://a.test/2"), req("http://A.test:80/1#frag")]) == 0
    assert await f.size() == 2


async def test_dont_filter_requests_bypass_dedup(backend: Backend) -> None:
    f = await backend.open()
    await f.push_many([req("http://a.test/x")])
    assert await f.push_many([req("http://a.test/x", dont_filter=True)]) == 1
    assert urls(await drain(f)) == ["http://a.test/x", "http://a.test/x"]


async def test_a_host_is_served_by_priority_then_in_push_order(backend: Backend) -> None:
    f = await backend.open()
    await f.push_many([req("http://a.test/low1"), req("http://a.test/high", priority=5),
                       req("http://a.test/low2"), req("http://a.test/mid", priority=1)])  # fmt: skip
    await f.push_many([req("http://a.test/low3")])
    popped = []
    while batch := await f.pop_ready(1, unlimited):
        popped += batch
    assert urls(popped) == ["http://a.test/high", "http://a.test/mid", "http://a.test/low1",
                            "http://a.test/low2", "http://a.test/low3"]  # fmt: skip


async def test_pop_ready_respects_limit_and_each_hosts_budget(backend: Backend) -> None:
    f = await backend.open()
    await f.push_many([req(f"http://{h}.test/{i}") for h in "abc" for i in range(5)])
    budgets = {"a.test": 2, "b.test": 0, "c.test": 10}
    batch = await f.pop_ready(100, lambda h: budgets[h])
    assert Counter(r.host for r in batch) == {"a.test": 2, "c.test": 5}
    assert len(await f.pop_ready(1, lambda h: budgets[h])) == 1
    budgets["b.test"] = 3
    batch = await f.pop_ready(100, lambda h: budgets[h])
    assert Counter(r.host for r in batch)["b.test"] == 3
    assert await f.size() == 15


async def test_hosts_take_turns(backend: Backend) -> None:
    f = await backend.open()
    await f.push_many([req(f"http://big.test/{i}") for i in range(50)] + [req("http://small.test/0")])
    first = []
    for _ in range(4):
        first += await f.pop_ready(1, unlimited)
    assert "small.test" in {r.host for r in first}, "one big host must not starve the others"


async def test_ack_finishes_requests_and_size_reaches_zero(backend: Backend) -> None:
    f = await backend.open()
    await f.push_many([req(f"http://a.test/{i}") for i in range(10)])
    popped = await drain(f)
    assert len(popped) == 10
    assert await f.size() == 10, "leased requests still count until acked"
    await f.ack(popped[:4], {"items_offset": 100})
    assert await f.size() == 6
    await f.ack(popped[4:], {"items_offset": 250})
    assert await f.size() == 0
    if backend.persistent:
        assert await f.checkpoint() == {"items_offset": 250}
    else:
        assert await f.checkpoint() is None


async def test_urls_pushed_after_being_finished_stay_deduplicated(backend: Backend) -> None:
    f = await backend.open()
    await f.push_many([req("http://a.test/1")])
    await f.ack(await drain(f), {"items_offset": 1})
    assert await f.push_many([req("http://a.test/1"), req("http://a.test/2")]) == 1


async def test_concurrent_poppers_never_get_the_same_request(backend: Backend) -> None:
    # Redis: four workers on one crawl; memory and SQLite: four tasks on one frontier.
    frontiers = [await backend.open() for _ in range(4)] if backend.shared else [await backend.open()] * 4
    await frontiers[0].push_many([req(f"http://h{i % 7}.test/{i}") for i in range(700)])
    got: list[list[Request]] = [[] for _ in frontiers]

    async def worker(i: int) -> None:
        f = frontiers[i]
        while True:
            batch = await f.pop_ready(5, lambda h: 2)
            if not batch:
                if await f.size() == 0:
                    return
                await asyncio.sleep(0.001)
                continue
            got[i] += batch
            await asyncio.sleep(0)
            await f.ack(batch, {"items_offset": 0})

    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(4))), 60)
    everything = [r.url for batch in got for r in batch]
    assert len(everything) == 700
    assert len(set(everything)) == 700
    if backend.shares_rates:
        assert all(got), "every worker got a share"  # host-partitioned workers: those owning the 7 hosts


# -- bounded memory: past the bound, requests wait on disk -----------------------------------------------------


async def test_past_the_memory_bound_requests_wait_on_disk_and_come_back_in_order(bounded_backend: Backend) -> None:
    f: Any = await bounded_backend.open(memory_queue=20)
    reqs = [req(f"http://h{i % 3}.test/{i}", referer=f"http://h{i % 3}.test/") for i in range(600)]
    for start in range(0, 600, 50):
        await f.push_many(reqs[start : start + 50])
    assert f.queued_in_memory == 20
    assert f.queued_on_disk == 580
    popped: dict[str, list[int]] = defaultdict(list)
    peak = 0
    while batch := await f.pop_ready(7, unlimited):
        peak = max(peak, f.queued_in_memory)
        for r in batch:
            popped[r.host].append(int(r.url.rsplit("/", 1)[1]))
            assert r.referer == f"http://{r.host}/"
        await f.ack(batch, {"items_offset": 0})
    # A refill reads a small chunk per host (64 requests, or whole blocks of one push just past that).
    assert peak <= 20 + 3 * 100, "a refill reads a small chunk per host, not the whole backlog"
    for host, numbers in popped.items():
        assert numbers == sorted(numbers), f"{host} served out of push order"
    assert sum(len(v) for v in popped.values()) == 600
    assert await f.size() == 0
    assert await f.push_many(reqs[:10]) == 0, "what went through the disk is still deduplicated"


# -- persistence: a restart (SQLite) or another worker (Redis) gets what a crashed process held --------------


async def test_leased_requests_of_a_crashed_process_are_handed_out_again(persistent_backend: Backend) -> None:
    backend = persistent_backend
    f = await backend.open(worker="crashing", lease=1.0)
    await f.push_many([req(f"http://a.test/{i}") for i in range(6)])
    popped = await drain(f)
    await f.ack(popped[:2], {"items_offset": 20})
    await backend.crash(f)

    g = await backend.open(worker="other", lease=1.0)
    assert await g.size() == 4
    again: list[Request] = []
    deadline = asyncio.get_running_loop().time() + 10
    while len(again) < 4 and asyncio.get_running_loop().time() < deadline:
        again += await g.pop_ready(100, unlimited)
        await asyncio.sleep(0.05)  # Redis: the lease expires after 1 s
    assert sorted(urls(again)) == sorted(urls(popped[2:]))
    await g.ack(again, {"items_offset": 99})
    assert await g.size() == 0


async def test_the_checkpoint_is_stored_with_the_acks(persistent_backend: Backend) -> None:
    backend = persistent_backend
    f = await backend.open(worker="w1", lease=1.0)
    await f.push_many([req("http://a.test/1"), req("http://a.test/2")])
    a, b = await drain(f)
    await f.ack([a], {"items_offset": 42})
    await backend.crash(f)  # the ack was committed; nothing after it
    g = await backend.open(worker="w1", lease=1.0, wait=5) if backend.shared else await backend.open()
    assert await g.checkpoint() == {"items_offset": 42}
    assert urls(await drain(g)) == [b.url]


async def test_links_pushed_before_a_crash_survive_with_the_ack(persistent_backend: Backend) -> None:
    backend = persistent_backend
    f = await backend.open(worker="w1", lease=1.0)
    await f.push_many([req("http://a.test/")])
    (page,) = await drain(f)
    await f.push_many([req("http://a.test/child1"), req("http://a.test/child2")])  # the page's links
    await f.ack([page], {"items_offset": 10})
    await backend.crash(f)
    g = await backend.open(worker="w1", lease=1.0, wait=5) if backend.shared else await backend.open()
    assert sorted(urls(await drain(g))) == ["http://a.test/child1", "http://a.test/child2"]
    assert await g.push_many([req("http://a.test/"), req("http://a.test/child1")]) == 0


async def test_close_hands_back_unfinished_work_at_once(persistent_backend: Backend) -> None:
    backend = persistent_backend
    f = await backend.open(worker="w1", lease=30.0)
    await f.push_many([req(f"http://a.test/{i}") for i in range(3)])
    popped = await drain(f)
    await f.ack(popped[:1], {"items_offset": 5})
    await f.close()  # stopped mid-crawl: two requests popped and never finished
    backend.opened.remove(f)
    g = await backend.open(worker="w2", lease=30.0)
    assert await g.size() == 2
    assert sorted(urls(await drain(g))) == sorted(urls(popped[1:])), "not after the 30 s lease: at once"


async def test_the_seen_set_survives_a_restart(persistent_backend: Backend) -> None:
    backend = persistent_backend
    f = await backend.open(worker="w1")
    await f.push_many([req(f"http://a.test/{i}") for i in range(100)])
    await f.ack(await drain(f), {"items_offset": 1})
    await f.close()
    backend.opened.remove(f)
    g = await backend.open(worker="w1")
    assert await g.push_many([req(f"http://a.test/{i}") for i in range(150)]) == 50


async def test_a_large_push_is_taken_whole(backend: Backend) -> None:
    f = await backend.open()
    urls_in = [f"http://h{i % 5}.test/{i}" for i in range(3500)]
    assert await f.push_many([req(u) for u in urls_in + urls_in[:100]]) == 3500
    assert sorted(urls(await drain(f))) == sorted(urls_in)
