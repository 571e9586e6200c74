"""The Redis frontier on a real 3-master Redis Cluster: one crawl's shards spread evenly over the masters, every
script within one slot, and exactly-once kept across slots by the journaled commit (checkpoint + ids in the
worker's slot, then one ack per shard): a worker cut between the two has its committed pages finished, not
fetched again, by whoever finds their leases expired, by its own restart, or by `crawler status --repair`.
The crawls at the end run two real `crawler run` processes over a 64-host site on the cluster, with shared
politeness and with host-partitioned workers."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from crawler.frontier.redis import RedisFrontier, key_prefix, read_status, repair
from crawler.frontier.redis_client import split_url
from crawler.model.request import Request
from tests.frontier._backends import Backend, RedisClusterServers
from tests.frontier._crawl import CrawlProcess, assert_exactly_once, finish_all, item_urls, write_job
from tests.frontier.crawl_bench import StaticSite, nginx_available

pytestmark = pytest.mark.redis

HOSTS = [f"h{i}.test" for i in range(60)]


def unlimited(host: str) -> int:
    return 1000


def one_each(host: str) -> int:
    return 1


async def drain(f: Any) -> list[Request]:
    out: list[Request] = []
    while batch := await f.pop_ready(100, one_each):
        out += batch
    return out


def _master_of(cluster: RedisClusterServers, key: str) -> int:
    """Index of the master serving `key`'s slot, from the cluster's own slot table."""
    slot = key_slot(key.encode())
    client = cluster.nodes[0].client()
    try:
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return cluster.ports.index(int(master[1]))
    finally:
        client.close()
    raise AssertionError(f"no master serves slot {slot}")


async def _commit_without_acks(f: Any, requests: list[Request], offset: int) -> None:
    """What a worker killed between the two steps of a journaled commit leaves: the journal and checkpoint are
    written (step 1), the acks on the shards are not (step 2)."""
    entry = ";".join(f"{s}:{','.join(map(str, ids))}" for s, ids in f._by_shard(r.token for r in requests).items())
    await f._scripts["commit"](keys=[f._k_checkpoint, f._k_journal],
                               args=[f.worker, f'{{"items_offset": {offset}}}', entry])  # fmt: skip


def test_the_cluster_url_names_every_node_and_keeps_our_options() -> None:
    target = split_url("redis+cluster://user:pw@10.0.0.1:7000,10.0.0.2:7001/?lease=5&shards=9")
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert target.options == {"lease": "5", "shards": "9"}
    assert target.url == "redis://user:pw@10.0.0.1:7000/" and target.where == "10.0.0.1:7000,10.0.0.2:7001"


async def test_a_plain_redis_url_of_any_cluster_node_opens_the_whole_cluster(
    redis_cluster: RedisClusterServers, tmp_path: Path
) -> None:
    # Autodetection: the frontier asks the node (INFO cluster) and opens the cluster it belongs to.
    job = f"autodetect-{tmp_path.name}"
    urls = [f"redis://127.0.0.1:{port}/?lease=5" for port in redis_cluster.ports]
    first = await RedisFrontier.connect(urls[0], job, worker="a")
    second = await RedisFrontier.connect(urls[2], job, worker="b")
    try:
        assert first.cluster and second.cluster
        assert first.layout.shards == 3 and second.layout.prefixes == first.layout.prefixes
        assert Counter(_master_of(redis_cluster, p + "x") for p in first.layout.prefixes) == {0: 1, 1: 1, 2: 1}
        await first.push_many([Request.make(f"http://{h}/") for h in HOSTS])
        popped = await drain(second)
        assert sorted(r.url for r in popped) == sorted(f"http://{h}/" for h in HOSTS)
    finally:
        await first.close()
        await second.close()
        await RedisFrontier.discard(redis_cluster.url, job, force=True)


async def test_a_crawls_shards_are_spread_evenly_over_the_masters(cluster_backend: Backend) -> None:
    assert isinstance(cluster_backend.redis, RedisClusterServers)
    cluster = cluster_backend.redis
    f = await cluster_backend.open(worker="w")
    assert isinstance(f, RedisFrontier)
    assert f.cluster and f.layout.journaled and f.layout.shards == 3
    masters = Counter(_master_of(cluster, p + "x") for p in f.layout.prefixes)
    assert masters == {0: 1, 1: 1, 2: 1}, "one shard on each master"
    await f.push_many([Request.make(f"http://{h}/{i}") for h in HOSTS for i in range(3)])
    hosts_per_master = Counter(_master_of(cluster, f.layout.prefixes[f.layout.shard_of(h)] + "x") for h in HOSTS)
    assert set(hosts_per_master) == {0, 1, 2}
    # Every queue key of a host lives on its shard's master, with its seen bucket: one slot per script.
    for h in HOSTS[:10]:
        prefix = f.layout.prefixes[f.layout.shard_of(h)]
        assert key_slot(f"{prefix}q:{h}".encode()) == key_slot(f.layout.seen(f.layout.shard_of(h), 1)[0].encode())
    assert await f.size() == 180


async def test_a_commit_cut_after_its_journal_is_finished_by_whoever_finds_the_leases_expired(
    cluster_backend: Backend,
) -> None:
    a = await cluster_backend.open(worker="a", lease=1.0)
    b = await cluster_backend.open(worker="b", lease=1.0)
    await a.push_many([Request.make(f"http://{h}/p") for h in HOSTS[:12]])
    held = await a.pop_ready(8, one_each)
    assert len(held) == 8
    await _commit_without_acks(a, held[:5], 500)
    await cluster_backend.crash(a)
    # The liveness key expires on its own (a 1 s lease: a 1 s TTL); the leases too, and go to limbo.
    deadline = time.monotonic() + 10
    got: list[Request] = []
    while len(got) < 7 and time.monotonic() < deadline:
        got += await b.pop_ready(20, unlimited)
        await asyncio.sleep(0.1)
    # The 4 never popped, and the 3 popped but not committed; the 5 committed are done, not fetched again.
    assert sorted(r.url for r in got) == sorted({r.url for r in held[5:]} | {f"http://{h}/p" for h in HOSTS[:12]}
                                                - {r.url for r in held})  # fmt: skip
    await b.ack(got, {"items_offset": 1})
    assert await b.size() == 0
    assert cluster_backend.redis is not None
    status = await read_status(cluster_backend.redis.url, cluster_backend.job)
    assert status["done"] == 12 and status["requeued"] == 3 and status["shards"] == 3


async def test_a_restarted_worker_replays_its_journal_before_anything_else(cluster_backend: Backend) -> None:
    a = await cluster_backend.open(worker="a", lease=4.0)
    await a.push_many([Request.make(f"http://{h}/p") for h in HOSTS[:10]])
    held = await a.pop_ready(10, one_each)
    await _commit_without_acks(a, held[:6], 600)
    await cluster_backend.crash(a)
    again = await cluster_backend.open(worker="a", lease=4.0, wait=10)
    assert await again.checkpoint() == {"items_offset": 600}
    redo = await drain(again)
    assert sorted(r.url for r in redo) == sorted(r.url for r in held[6:]), "at once, and only the uncommitted"
    await again.ack(redo, {"items_offset": 700})
    assert await again.size() == 0


async def test_repair_finishes_what_a_dead_worker_committed_and_requeues_the_rest(cluster_backend: Backend) -> None:
    assert isinstance(cluster_backend.redis, RedisClusterServers)
    dead = await cluster_backend.open(worker="dead", lease=60.0)
    alive = await cluster_backend.open(worker="alive", lease=60.0)
    await dead.push_many([Request.make(f"http://{h}/p") for h in HOSTS[:9]])
    held = await dead.pop_ready(9, one_each)
    await _commit_without_acks(dead, held[:4], 40)
    await cluster_backend.crash(dead)
    await alive._r.delete(key_prefix(cluster_backend.job) + "worker:dead:alive")  # as if expired
    repaired = await repair(cluster_backend.redis.url, cluster_backend.job)
    assert [(r["worker"], r["requeued"], r["checkpoint"]) for r in repaired] == [("dead", 5, {"items_offset": 40})]
    again = await drain(alive)
    assert sorted(r.url for r in again) == sorted(r.url for r in held[4:]), "at once, not after 60 s"


# -- two real processes crawl a 64-host site on the cluster --------------------------------------------------


@pytest.fixture(scope="module")
def many_hosts_site() -> Iterator[StaticSite]:
    if not nginx_available():
        if os.environ.get("CI") or os.environ.get("CRAWLER_REQUIRE_NGINX"):
            pytest.fail("nginx is not installed (CRAWLER_REQUIRE_NGINX is set)", pytrace=False)
        pytest.skip("nginx is not installed")
    # Not under pytest's private temporary directory: nginx's workers (an unprivileged user) must read it.
    workdir = Path(tempfile.mkdtemp(prefix="crawler-hosts-"))
    try:
        with StaticSite(640, workdir, hosts=64) as site:
            yield site
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _commands_per_master(cluster: RedisClusterServers) -> list[int]:
    counts = []
    for client in cluster.clients():
        stats = client.info("commandstats")
        # The cluster's own housekeeping (CLUSTER SLOTS, INFO, CONFIG) is not the crawl's work.
        counts.append(sum(v["calls"] for k, v in stats.items() if k not in
                          ("cmdstat_cluster", "cmdstat_info", "cmdstat_config", "cmdstat_ping", "cmdstat_command")))  # fmt: skip
        client.close()
    return counts


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("design", ["shared", "partitioned"])
def test_two_processes_crawl_a_site_exactly_once_spread_evenly_over_three_masters(
    many_hosts_site: StaticSite, redis_cluster: RedisClusterServers, tmp_path: Path, design: str
) -> None:
    for client in redis_cluster.clients():
        client.config_resetstat()
        client.close()
    files = {w: tmp_path / f"items-{w}.jsonl" for w in ("A", "B")}
    procs = []
    for w, items in files.items():
        job = write_job(tmp_path / f"job-{w}.yaml", many_hosts_site.url, items=items, name=f"cluster-{tmp_path.name}",
                        frontier=redis_cluster.url + ("?partitions=48" if design == "partitioned" else ""), scope={"allowed_domains": many_hosts_site.hosts},
                        concurrency={"workers": 32, "per_host": 4})  # fmt: skip
        procs.append(CrawlProcess(job, env={"CRAWLER_WORKER": w}, name=f"worker-{w}").start())
    finish_all(procs, 180)
    assert_exactly_once(item_urls(files.values()), many_hosts_site.expected_urls())
    assert all(item_urls([f]) for f in files.values()), "both processes took part"
    counts = _commands_per_master(redis_cluster)
    pages = len(many_hosts_site.expected_urls())
    print(f"\n{design}: commands per master for {pages} pages: {counts} "
          f"({[round(c / pages, 1) for c in counts]} per page; max/min {max(counts) / min(counts):.2f})")  # fmt: skip
    assert min(counts) > 0 and max(counts) <= 1.5 * min(counts), counts
