"""The retry decision and the adaptive rate the downloader shares with the crawl engine, seen at the server:
Retry-After on a 429/503 pauses the whole host and lowers its rate; on a 500 it delays only the request that
got it (RFC 9110 section 10.2.3; see `crawler/politeness/retry.py` and `limiter.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crawler import RetryConfig
from crawler.downloader import Downloader, download

from .app import file_sha256
from .servers import EdgeServer


async def _later(first: str, second: str, delay: float) -> AsyncIterator[str]:
    yield first
    await asyncio.sleep(delay)  # the first answer (and its Retry-After) is in before the second starts
    yield second


@pytest.mark.parametrize(("code", "pauses_host"), [(503, True), (429, True), (500, False)])
async def test_retry_after_pauses_the_host_only_for_429_and_503(
    edge: EdgeServer, key: str, tmp_path: Path, code: int, pauses_host: bool
) -> None:
    flaky = edge.url_for("/flaky/a.bin", size=1000, seed=key, key=key, fail=1, code=code, retry_after=1)
    other = edge.url_for("/file/b.bin", size=1000, seed=key, key=key + "b")

    results = await download(_later(flaky, other, 0.3), tmp_path, jobs=2,
                             retry=RetryConfig(attempts=3, backoff={"initial": 0.01, "jitter": 0}))  # fmt: skip

    assert [r.status for r in results] == ["ok", "ok"]
    assert results[0].sha256 == file_sha256(key, 0, 1000)
    flaky_hits = edge.requests_for(key)
    [other_hit] = edge.requests_for(key + "b")
    assert [h["status"] for h in flaky_hits] == [code, 200]
    t0 = flaky_hits[0]["t"]
    assert flaky_hits[1]["t"] - t0 >= 0.95  # the request that got Retry-After waits for it either way
    if pauses_host:
        assert other_hit["t"] - t0 >= 0.95  # the whole host waited
    else:
        assert other_hit["t"] - t0 < 0.8  # only the one request waited


async def _after_the_429(first: str, flaky: str, rest: list[str]) -> AsyncIterator[str]:
    yield first
    await asyncio.sleep(0.3)  # the first file is answered: the host was accepting about 1 request a second
    yield flaky
    await asyncio.sleep(0.2)  # the 429 is in
    for url in rest:
        yield url


async def test_a_429_lowers_the_hosts_rate_as_in_the_crawl(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    """429 + Retry-After goes through the crawl's adaptive rate (`HostLimiter.throttled`): the host pauses
    for the Retry-After, then its requests come at the rate it was accepting (about 1/s here, climbing
    back by 1/s each second of good answers), not at the configured 10/s."""
    first = edge.url_for("/file/first.bin", size=1000, seed=key, key=key + "-first")
    flaky = edge.url_for("/flaky/busy.bin", size=1000, seed=key, key=key, fail=1, code=429, retry_after=1)
    rest = [edge.url_for(f"/file/n{i}.bin", size=1000, seed=key, key=f"{key}-{i}") for i in range(4)]

    async with Downloader(tmp_path, jobs=6, rate_limit="10/s",
                          retry=RetryConfig(attempts=3, backoff={"initial": 0.01, "jitter": 0})) as d:  # fmt: skip
        results = [r async for r in d.run(_after_the_429(first, flaky, rest))]
        learnt = d.limiter.learnt_rates()

    assert sorted(r.status for r in results) == ["ok"] * 6
    hits = sorted((r for r in edge.log() if r["query"].get("key", "").startswith(key)), key=lambda r: r["t"])
    [throttle] = [r for r in hits if r["status"] == 429]
    after = [r["t"] - throttle["t"] for r in hits if r["t"] > throttle["t"]]
    assert len(after) == 5  # the retry and the four others
    assert min(after) >= 0.95  # the whole host waited for the Retry-After
    # At the configured 10/s the five would span 0.4 s; at the adapted rate (1/s, then 2/s, 3/s) about 1 s.
    assert max(after) - min(after) >= 0.8
    assert 0 < learnt[edge.host_key] <= 4
