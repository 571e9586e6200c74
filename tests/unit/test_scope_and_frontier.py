"""Scope rules and the in-memory frontier's host-aware pops."""

from crawler import Job, MemoryFrontier, Request
from crawler.config.job import ScopeConfig
from crawler.politeness.scope import Scope


def test_allowed_domains_default_to_start_hosts_and_cover_subdomains() -> None:
    scope = Scope(ScopeConfig(), ["https://Example.com:8443/start"])
    assert scope.allows("https://example.com/x", "example.com", 1)
    assert scope.allows("https://docs.example.com/x", "docs.example.com", 1)
    assert not scope.allows("https://evil.com/x", "evil.com", 1)
    assert not scope.allows("https://notexample.com/x", "notexample.com", 1)


def test_allow_deny_and_depth() -> None:
    scope = Scope(ScopeConfig(allow=[r"/docs/"], deny=[r"\.pdf$"], max_depth=2), ["http://e.com/"])
    assert scope.allows("http://e.com/docs/a", "e.com", 2)
    assert not scope.allows("http://e.com/docs/a", "e.com", 3)
    assert not scope.allows("http://e.com/blog/a", "e.com", 1)
    assert not scope.allows("http://e.com/docs/a.pdf", "e.com", 1)


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


def test_job_defaults_match_the_contract() -> None:
    job = Job(start_urls=["https://127.0.0.1:8443/"])
    assert job.http.http2 is True
    assert job.retry.statuses == [429, 500, 502, 503, 504]
    assert job.concurrency.workers == 64 and job.concurrency.per_host == 16
    assert job.scope.robots_txt is True
    assert job.extract.links == "a[href]"
