"""Every politeness limit holds for all the processes of a Redis crawl together, measured at the server: the
per-host in-flight cap (`concurrency.per_host`, a lease-based semaphore in Redis), a Retry-After pause
seen by one process (kept in Redis by the same script that pops), and the adaptive rate a process learns from
429s (it becomes the host's shared rate). The cap and the pause are measured on one Redis and on a 3-master
Redis Cluster (the journaled, sharded layout). The configured shared rate has its own test in
test_frontier_redis.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.demo.site import SiteServer
from tests.frontier._backends import RedisClusterServers, RedisServer
from tests.frontier._crawl import CrawlProcess, count_lines, finish_all, max_overlap, write_job
from tests.frontier._ratelimited import RateLimitedServer

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    with SiteServer(tls=False, pages=10) as server:
        yield server


@pytest.fixture(params=["redis", "redis-cluster"])
def shared(request: pytest.FixtureRequest) -> RedisServer | RedisClusterServers:
    """The Redis the two processes share: one server, or a 3-master cluster."""
    server: RedisServer | RedisClusterServers = request.getfixturevalue(
        {"redis": "redis_server", "redis-cluster": "redis_cluster"}[request.param]
    )
    return server


def _two_workers(tmp_path: Path, site: SiteServer, redis: RedisServer | RedisClusterServers, start: list[str],
                 per_host: int) -> int:  # fmt: skip
    """Run two `crawler run` processes on one Redis crawl of `start`; returns the items both wrote."""
    files = {w: tmp_path / f"items-{w}.jsonl" for w in ("A", "B")}
    procs = []
    for w, items in files.items():
        job = write_job(tmp_path / f"job-{w}.yaml", site.url, items=items, frontier=redis.url,
                        name=f"polite-{tmp_path.name}", start_urls=start, scope={"max_depth": 0},
                        concurrency={"workers": 8, "per_host": per_host},
                        retry={"attempts": 3, "backoff": {"initial": 0.05, "max": 0.2}, "max_retry_after": 10})  # fmt: skip
        procs.append(CrawlProcess(job, env={"CRAWLER_WORKER": w}, name=f"worker-{w}").start())
    finish_all(procs, 90)
    assert all(count_lines([f]) for f in files.values()), "both processes took part"
    return count_lines(files.values())


@pytest.mark.timeout(120)
def test_per_host_caps_the_requests_in_flight_of_all_processes_together(
    site: SiteServer, shared: RedisServer | RedisClusterServers, tmp_path: Path
) -> None:
    site.clear_log()
    start = [f"{site.url}/slow/150?n={i}" for i in range(40)]
    assert _two_workers(tmp_path, site, shared, start, per_host=2) == 40
    slow = [e for e in site.log("/slow/") if e["t_end"] is not None]
    assert len(slow) == 40
    # Each process alone would allow 2: together they would reach 4 without the shared semaphore.
    assert max_overlap(slow) <= 2, max_overlap(slow)
    assert max_overlap(slow) == 2, "the cap is a cap, not a serialisation"


@pytest.mark.timeout(120)
def test_a_retry_after_seen_by_one_process_pauses_all_of_them(
    site: SiteServer, shared: RedisServer | RedisClusterServers, tmp_path: Path
) -> None:
    site.reset()
    key = tmp_path.name
    start = [f"{site.url}/retry-after/{key}?status=429&after=2&times=1"]
    start += [f"{site.url}/slow/100?n={i}" for i in range(60)]
    assert _two_workers(tmp_path, site, shared, start, per_host=3) == 61
    log = site.log()
    first, *retried = [e for e in log if e["path"].startswith("/retry-after/")]
    assert first["status"] == 429 and len(retried) == 1 and retried[0]["status"] == 200
    answered = first["t_end"]
    # Requests already on their way when the 429 was read may still arrive; then nobody starts one until the
    # Retry-After (2 s) is over, whichever process it is.
    during = [e for e in log if answered + 0.3 < e["t"] < answered + 1.8]
    assert during == [], [(round(e["t"] - answered, 2), e["path"]) for e in during]
    assert retried[0]["t"] >= answered + 1.8
    assert any(e["t"] > answered + 2 for e in log if e["path"].startswith("/slow/")), "the crawl went on after"


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_the_rate_learnt_from_429s_holds_for_all_processes_together(redis_server: RedisServer, tmp_path: Path) -> None:
    limit = 25  # the server serves 25 requests a second in all, and answers 429 (no Retry-After) past that
    with RateLimitedServer(limit) as server:
        files = {w: tmp_path / f"items-{w}.jsonl" for w in ("A", "B")}
        procs = []
        for w, items in files.items():
            job = write_job(tmp_path / f"job-{w}.yaml", server.url, items=items, frontier=redis_server.url,
                            name=f"adaptive-{tmp_path.name}", start_urls=[f"{server.url}/p/{i}" for i in range(400)],
                            scope={"max_depth": 0}, rate_limit={"per_host": "200/s"},
                            concurrency={"workers": 8, "per_host": 8}, http={"http2": False, "headers": {"X-Worker": w}},
                            retry={"attempts": 20, "backoff": {"initial": 0.2, "max": 1.0}})  # fmt: skip
            procs.append(CrawlProcess(job, env={"CRAWLER_WORKER": w}, name=f"worker-{w}").start())
        finish_all(procs, 120)
        hits = list(server.hits)
    assert count_lines(files.values()) == 400
    first_429 = next(h.t for h in hits if h.status == 429)
    # Once both processes have met the limit and learnt the host's rate (a few seconds), measure the rest.
    steady = [h for h in hits if h.t >= first_429 + 4.0]
    span = steady[-1].t - steady[0].t
    assert span > 5, f"the steady part is {span:.1f}s: the test measures too little"
    by_worker = Counter(h.worker for h in steady)
    throttled = sum(h.status == 429 for h in steady)
    rate = len(steady) / span
    print(f"\n{limit}/s allowed: {rate:.1f} requests/s sent by both together over {span:.1f}s "
          f"({dict(by_worker)}), {throttled / len(steady):.0%} answered 429; all {len(hits)} requests: "
          f"{sum(h.status == 429 for h in hits)} answered 429")  # fmt: skip
    assert set(by_worker) == {"A", "B"} and min(by_worker.values()) > 0.2 * len(steady), "both kept crawling"
    # One learnt rate for the host, enforced for both: together they send about the limit, not twice it, and
    # few requests are refused. (Two processes learning apart would each probe up to the limit.)
    assert rate <= 1.25 * limit, rate
    assert throttled <= 0.2 * len(steady), throttled
