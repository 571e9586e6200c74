"""Operating a distributed crawl: `crawler status` lists every worker with its liveness, pages/s and lag, and
`crawler status --repair` hands back a dead worker's leases at once and trims its items file, so the union
of the items files stays every page exactly once without restarting the dead worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.demo.site import SiteServer
from crawler.frontier.redis import key_prefix, read_status, repair
from crawler.model.request import Request
from tests.frontier._backends import Backend, RedisServer
from tests.frontier._crawl import (
    REPO_ROOT,
    CrawlProcess,
    assert_exactly_once,
    count_lines,
    item_urls,
    site_urls,
    wait_until,
    write_job,
)

pytestmark = pytest.mark.redis

PAGES = 400


def unlimited(host: str) -> int:
    return 1000


async def test_repair_requeues_only_the_leases_of_dead_workers(redis_backend: Backend) -> None:
    assert redis_backend.redis is not None
    dead = await redis_backend.open(worker="dead", lease=60.0)
    alive = await redis_backend.open(worker="alive", lease=60.0)
    await dead.push_many([Request.make(f"http://a.test/{i}") for i in range(6)])
    held = await dead.pop_ready(4, unlimited)
    kept = await alive.pop_ready(1, unlimited)
    assert len(held) == 4 and len(kept) == 1
    await dead.ack(held[:1], {"items_offset": 10})
    await redis_backend.crash(dead)  # kill -9: its leases stay for 60 s
    redis_backend.redis.client().delete(key_prefix(redis_backend.job) + "worker:dead:alive")  # as if expired

    repaired = await repair(redis_backend.redis.url, redis_backend.job)
    assert [(r["worker"], r["requeued"], r["checkpoint"]) for r in repaired] == [("dead", 3, {"items_offset": 10})]
    again = await alive.pop_ready(10, unlimited)
    never_popped = {f"http://a.test/{i}" for i in range(6)} - {r.url for r in held + kept}
    assert {r.url for r in again} == {r.url for r in held[1:]} | never_popped, "at once, not after 60 s"
    assert await repair(redis_backend.redis.url, redis_backend.job) == [
        {"worker": "dead", "requeued": 0, "host": repaired[0]["host"], "items": None,
         "checkpoint": {"items_offset": 10}}]  # fmt: skip


async def test_status_shows_each_workers_heartbeat_and_pace(redis_backend: Backend) -> None:
    assert redis_backend.redis is not None
    w = await redis_backend.open(worker="w")
    await w.push_many([Request.make(f"http://a.test/{i}") for i in range(20)])
    for _ in range(4):
        await w.ack(await w.pop_ready(5, unlimited), {"items_offset": 1})
    await w.renew()  # a heartbeat (the keepalive sends one every few seconds)
    status = await read_status(redis_backend.redis.url, redis_backend.job)
    (row,) = status["workers"]
    assert row["alive"] and row["acked"] == 20
    assert row["pages_per_second"] > 0
    assert row["lag"] is not None and 0 <= row["lag"] < 2


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    with SiteServer(tls=False, pages=PAGES) as server:
        yield server


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_repair_after_a_worker_dies_keeps_the_union_exactly_once(
    site: SiteServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    frontier = f"{redis_server.url}?lease=60"  # without --repair, the dead worker's pages would wait 60 s
    files = {w: tmp_path / f"items-{w}.jsonl" for w in ("A", "B")}
    jobs = {w: write_job(tmp_path / f"job-{w}.yaml", site.url, items=files[w], frontier=frontier,
                         name=f"repair-{tmp_path.name}", rate_limit={"per_host": "100/s"},
                         concurrency={"workers": 8, "per_host": 8}) for w in files}  # fmt: skip
    a = CrawlProcess(jobs["A"], env={"CRAWLER_WORKER": "A"}, name="worker-A").start()
    try:
        wait_until(lambda: count_lines([files["A"]]) >= 100, timeout=60, what="100 items", procs=[a])
        a.kill9()
        # Its liveness key lasts min(lease, 15 s) after the last heartbeat: a dead worker counts as dead then.
        prefix = key_prefix(f"repair-{tmp_path.name}")
        wait_until(lambda: not redis_server.client().exists(prefix + "worker:A:alive"), timeout=20,
                   what="A's liveness key to expire")  # fmt: skip
        repaired = subprocess.run([sys.executable, "-m", "crawler", "status", str(jobs["A"]), "--repair", "--json"],
                                  cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert repaired.returncode == 0, repaired.stderr
        assert "repair: worker A:" in repaired.stderr and "leased requests queued again" in repaired.stderr
        status = json.loads(repaired.stdout)
        assert status["leased"] == 0, "nothing is left leased to the dead worker"
        (row,) = status["workers"]
        assert not row["alive"]
        assert files["A"].stat().st_size == row["checkpoint"]["items_offset"], "A's file is cut to its checkpoint"

        started = time.monotonic()
        b = CrawlProcess(jobs["B"], env={"CRAWLER_WORKER": "B"}, name="worker-B").start()
        assert b.wait(90) == 0, b.output()
        assert time.monotonic() - started < 50, "B did not wait for A's leases to expire"
    finally:
        a.stop()
    assert_exactly_once(item_urls(files.values()), site_urls(site.url, PAGES))
