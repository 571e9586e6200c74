"""Redis going away mid-crawl: the real `crawler run` pauses while Redis is down, renews its leases when it is
back and finishes exactly once (Redis with an AOF, killed -9 and restarted 5 s later by the test); when Redis
stays down it exits 1 shortly after `?outage=SECONDS`, with one message and no error per page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.demo.site import SiteServer
from tests.frontier._backends import RedisServer, start_redis
from tests.frontier._crawl import (
    CrawlProcess,
    assert_exactly_once,
    count_lines,
    item_urls,
    site_urls,
    write_job,
)

pytestmark = pytest.mark.redis

PAGES = 500


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    with SiteServer(tls=False, pages=PAGES) as server:
        yield server


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    """A private Redis with an AOF fsynced on every write: this test kills it."""
    server = start_redis(appendonly=True)
    try:
        yield server
    finally:
        server.stop()


def _crawl(tmp_path: Path, site: SiteServer, redis: RedisServer, outage: float) -> tuple[CrawlProcess, Path]:
    items = tmp_path / "items.jsonl"
    # A rate keeps the crawl going for several seconds, so that Redis dies in the middle of it.
    job = write_job(tmp_path / "job.yaml", site.url, items=items, frontier=f"{redis.url}?outage={outage}",
                    rate_limit={"per_host": "80/s"}, concurrency={"workers": 8, "per_host": 8})  # fmt: skip
    return CrawlProcess(job, env={"CRAWLER_WORKER": "w1"}).start(), items


def _wait_for_lines(proc: CrawlProcess, items: Path, lines: int) -> None:
    deadline = time.monotonic() + 60
    while count_lines([items]) < lines:
        assert proc.running, f"the crawl ended before Redis was killed:\n{proc.output()}"
        assert time.monotonic() < deadline, f"no progress:\n{proc.output()}"
        time.sleep(0.02)


@pytest.mark.timeout(120)
def test_a_crawl_rides_out_a_redis_restart_and_writes_every_page_once(
    site: SiteServer, aof_redis: RedisServer, tmp_path: Path
) -> None:
    proc, items = _crawl(tmp_path, site, aof_redis, outage=30)
    try:
        _wait_for_lines(proc, items, 100)
        aof_redis.kill9()
        time.sleep(5)
        assert proc.running, "the crawl waits for Redis"
        aof_redis.restart()
        assert proc.wait(90) == 0, proc.output()
    finally:
        proc.stop()
    log = proc.output()
    assert_exactly_once(item_urls([items]), site_urls(site.url, PAGES))
    assert log.count("is unreachable") == 1, log
    assert "is back after" in log and "leases renewed" in log
    assert "leases expired" not in log, "no lease was lost to the outage"
    assert "failed in a stage" not in log and "Traceback" not in log


@pytest.mark.timeout(60)
def test_a_crawl_gives_up_past_the_outage_limit_with_one_message(
    site: SiteServer, aof_redis: RedisServer, tmp_path: Path
) -> None:
    proc, items = _crawl(tmp_path, site, aof_redis, outage=3)
    try:
        _wait_for_lines(proc, items, 50)
        aof_redis.kill9()
        killed = time.monotonic()
        code = proc.wait(30)
        took = time.monotonic() - killed
    finally:
        proc.stop()
    log = proc.output()
    assert code == 1, log
    assert took < 3 + 5, f"exited {took:.1f}s after Redis died, with a 3 s limit"
    assert log.count("past the outage limit of 3s") == 1, log
    assert "crawl aborted: FrontierUnavailable: Redis at 127.0.0.1:" in log
    assert "failed in a stage" not in log and "Traceback" not in log
