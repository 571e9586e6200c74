"""The in-memory frontier: dedup by canonical fingerprint, host-aware pops."""

from crawler import MemoryFrontier, Request


async def test_frontier_dedups_by_canonical_fingerprint() -> None:
    f = MemoryFrontier()
    added = await f.push_many([Request.make("http://e.com/a"), Request.make("HTTP://E.COM:80/a#x"),
                               Request.make("http://e.com/b")])
    assert added == 2
    assert await f.size() == 2


async def test_pop_ready_skips_hosts_without_budget() -> None:
    f = MemoryFrontier()
    await f.push_many([Request.make(f"http://slow.com/{i}") for i in range(10)])
    await f.push_many([Request.make(f"http://fast.com/{i}") for i in range(3)])
    batch = await f.pop_ready(8, lambda host: 0 if host == "slow.com" else 8)
    assert [r.host for r in batch] == ["fast.com"] * 3
    assert await f.size() == 13  # popped requests stay counted until acked
    await f.ack(batch)
    assert await f.size() == 10


async def test_pop_ready_round_robins_hosts_and_respects_priority() -> None:
    f = MemoryFrontier()
    await f.push_many([Request.make(f"http://a.com/{i}") for i in range(5)])
    await f.push_many([Request.make("http://b.com/low"), Request.make("http://b.com/high", priority=5)])
    batch = await f.pop_ready(4, lambda host: 1)
    assert [r.host for r in batch[:2]] == ["a.com", "b.com"]
    assert batch[1].url == "http://b.com/high"
