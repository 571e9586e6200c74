"""What only the SQLite frontier promises: a backlog on disk survives a restart, one process per state
directory, fingerprints stored as signed integers, status readable while a crawl runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.frontier.sqlite import SqliteFrontier, StateLocked, read_status
from crawler.model.request import Request


def unlimited(host: str) -> int:
    return 1000


def _files_in(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.exists() else []


async def test_a_restart_with_a_backlog_on_disk_resumes_it(tmp_path: Path) -> None:
    f = await SqliteFrontier.open(tmp_path, memory_queue=5)
    await f.push_many([Request.make(f"http://a.test/{i}") for i in range(40)])
    first = await f.pop_ready(10, unlimited)
    await f.ack(first[:6], {"items_offset": 6})
    await f.close()  # 4 popped and never acked: queued again on reopen
    g = await SqliteFrontier.open(tmp_path, memory_queue=5)
    assert await g.size() == 34
    rest = []
    while batch := await g.pop_ready(100, unlimited):
        rest += batch
    assert sorted(r.url for r in rest) == sorted(f"http://a.test/{i}" for i in range(6, 40))
    await g.close()


async def test_one_process_per_state_directory(tmp_path: Path) -> None:
    f = await SqliteFrontier.open(tmp_path)
    with pytest.raises(StateLocked, match="in use by another process"):
        await SqliteFrontier.open(tmp_path)
    with pytest.raises(StateLocked):
        SqliteFrontier.discard(tmp_path)
    await f.close()
    g = await SqliteFrontier.open(tmp_path)
    await g.close()
    assert SqliteFrontier.discard(tmp_path)
    assert not _files_in(tmp_path)


async def test_fingerprints_above_2_63_round_trip_through_the_signed_column(tmp_path: Path) -> None:
    f = await SqliteFrontier.open(tmp_path)
    big = Request.make("http://a.test/x")
    big.fingerprint = (1 << 64) - 5
    small = Request.make("http://a.test/y")
    small.fingerprint = 5
    await f.push_many([big, small])
    await f.ack([], {"items_offset": 0})
    await f.close()
    g = await SqliteFrontier.open(tmp_path)
    assert (1 << 64) - 5 in g._seen and 5 in g._seen
    assert await g.push_many([big, small]) == 0
    await g.close()


async def test_status_reads_committed_progress_while_the_frontier_is_open(tmp_path: Path) -> None:
    assert read_status(tmp_path / "nothing") is None
    f = await SqliteFrontier.open(tmp_path)
    await f.push_many([Request.make(f"http://{h}.test/{i}") for h in "ab" for i in range(5)])
    done = await f.pop_ready(3, unlimited)
    await f.ack(done, {"items_offset": 123})
    status = read_status(tmp_path)
    assert status is not None
    assert status["running"] is True
    assert status["done"] == 3 and status["queued"] == 7 and status["seen"] == 10
    assert status["checkpoint"] == {"items_offset": 123}
    assert {h["host"] for h in status["hosts"]} == {"a.test", "b.test"}
    await f.close()
    closed = read_status(tmp_path)
    assert closed is not None and closed["running"] is False


async def test_pages_are_remembered_with_the_ack_and_read_back(tmp_path: Path) -> None:
    from crawler.frontier.base import KnownPage, PageMemory

    frontier = await SqliteFrontier.open(tmp_path / "state")
    assert isinstance(frontier, PageMemory)
    reqs = [Request.make(f"https://h{i % 3}.example/p{i}", depth=i % 4) for i in range(2500)]
    reqs.append(Request.make("https://h0.example/sitemap.xml", meta={"sitemap": True}))
    frontier.remember_pages([KnownPage(r, f'"e{i}"', None if i % 2 else "Mon, 01 Jan 2024 00:00:00 GMT")
                             for i, r in enumerate(reqs)])  # fmt: skip
    await frontier.ack([])
    await frontier.close()
    frontier = await SqliteFrontier.open(tmp_path / "state")
    known = {k.request.url: k for k in frontier.known_pages()}
    await frontier.close()
    assert len(known) == 2501
    assert known["https://h1.example/p7"].etag == '"e7"' and known["https://h1.example/p7"].last_modified is None
    assert known["https://h1.example/p7"].request.depth == 3
    assert known["https://h0.example/sitemap.xml"].request.meta == {"sitemap": True}
