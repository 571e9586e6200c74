"""The retry decision the downloader shares with the crawl engine, seen at the server: Retry-After on a
429/503 pauses the whole host; on a 500 it delays only the request that got it (RFC 9110 section 10.2.3;
see `crawler/politeness/retry.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crawler import RetryConfig
from crawler.downloader import download

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
