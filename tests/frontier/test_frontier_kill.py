"""Kill -9 at several moments, then resume: the union of the output is every page exactly once.

Each test runs real `crawler run` processes against the test site on loopback, kills them with SIGKILL
at different points (before the first commit, mid-crawl, near the end), restarts them, and reads the
item files back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.demo.site import SiteServer
from tests.frontier._crawl import (
    CrawlProcess,
    assert_exactly_once,
    count_lines,
    item_urls,
    site_urls,
    wait_until,
    write_job,
)

PAGES = 1000


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    with SiteServer(tls=False, pages=PAGES) as server:
        yield server


def _kill_when(
    proc: CrawlProcess, condition_lines: int | None, items: list[Path], after: float | None
) -> bool:
    """Kill -9 once `items` hold `condition_lines` lines (or `after` seconds); False if it finished first."""
    start = time.monotonic()
    while proc.running:
        if after is not None and time.monotonic() - start >= after:
            break
        if condition_lines is not None and count_lines(items) >= condition_lines:
            break
        time.sleep(0.003)
    if not proc.running:
        return False
    proc.kill9()
    return True


@pytest.mark.slow
def test_sqlite_crawl_killed_four_times_writes_every_page_once(site: SiteServer, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    job = write_job(tmp_path / "job.yaml", site.url, items=items, state=str(tmp_path / "state"),
                    rate_limit={"per_host": "250/s"})  # fmt: skip
    # Before anything is committed, then at growing amounts of output.
    moments: list[tuple[int | None, float | None]] = [(None, 0.05), (1, None), (300, None), (700, None)]
    kills = 0
    for lines, after in moments:
        proc = CrawlProcess(job, name="run").start()
        kills += _kill_when(proc, lines, [items], after)
    assert kills >= 3, "the crawl finished before it could be killed: make it slower"
    final = CrawlProcess(job, name="run").start()
    assert final.wait() == 0, final.output()
    assert_exactly_once(item_urls([items]), site_urls(site.url, PAGES))
    assert "resuming" in final.output()


@pytest.mark.slow
def test_sqlite_rerun_of_a_finished_crawl_writes_nothing_more(site: SiteServer, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    job = write_job(tmp_path / "job.yaml", site.url, items=items, state=str(tmp_path / "state"))
    assert CrawlProcess(job).start().wait() == 0
    before = items.read_bytes()
    urls = item_urls([items])
    assert_exactly_once(urls, site_urls(site.url, PAGES))
    assert CrawlProcess(job).start().wait() == 0
    assert items.read_bytes() == before
    # --fresh forgets the state: the crawl starts over and rewrites the file.
    assert CrawlProcess(job, "--fresh").start().wait() == 0
    assert item_urls([items]) == urls


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("design", ["redis", "cluster", "partitioned"])
def test_redis_workers_killed_and_restarted_write_every_page_once(
    site: SiteServer, tmp_path: Path, request: pytest.FixtureRequest, design: str
) -> None:
    # On the 3-master cluster the commits are journaled (checkpoint in one slot, acks in the shards'), so a
    # kill between the two is settled from the journal; partitioned workers hand their partitions over.
    server = request.getfixturevalue("redis_cluster" if design == "cluster" else "redis_server")
    frontier = f"{server.url}?lease=2" + ("&partitions=8" if design == "partitioned" else "")
    files = {w: tmp_path / f"items-{w}.jsonl" for w in ("A", "B")}
    jobs = {w: write_job(tmp_path / f"job-{w}.yaml", site.url, items=files[w], frontier=frontier,
                         name=f"kill-{tmp_path.name}", rate_limit={"per_host": "250/s"}) for w in files}  # fmt: skip

    def start(w: str) -> CrawlProcess:
        return CrawlProcess(jobs[w], env={"CRAWLER_WORKER": w}, name=f"worker-{w}").start()

    procs = {w: start(w) for w in files}
    everything = list(files.values())
    try:
        wait_until(lambda: count_lines(everything) >= 250, timeout=60, what="250 items", procs=procs.values())
        procs["A"].kill9()
        wait_until(lambda: count_lines(everything) >= 500, timeout=60, what="500 items", procs=procs.values())
        procs["B"].kill9()
        procs["A"] = start("A")  # takes its identity back once the dead run's liveness key expires
        time.sleep(0.5)
        procs["B"] = start("B")
        for w, proc in procs.items():
            assert proc.wait() == 0, f"worker {w}:\n{proc.output()}"
    finally:
        for proc in procs.values():
            proc.stop()
    assert_exactly_once(item_urls(everything), site_urls(site.url, PAGES))
    if design != "partitioned":  # one host: one partition, crawled by whichever worker owns it
        assert all(item_urls([f]) for f in everything), "both workers wrote pages"
