"""Faults on our side of the wire: a full disk under the items file or the state, kill -9 at full speed,
a body that trickles, a host that never answers. Each ends cleanly, loses nothing and says why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.demo.site import SiteServer
from crawler.frontier.sqlite import read_status
from tests.frontier._crawl import (
    CrawlProcess,
    assert_exactly_once,
    count_lines,
    item_urls,
    site_urls,
    wait_until,
    write_job,
)

pytestmark = pytest.mark.timeout(180)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


class RawServer:
    """An asyncio TCP server on a loopback port, in a thread, running `handler` per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            with contextlib.suppress(Exception):
                await self.handler(reader, writer)
            writer.close()

        server = self._loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> RawServer:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


async def _read_head(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 1 MB body at one byte a second: never a read timeout, never an end."""
    await _read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1000000\r\n\r\n")
    while True:
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.5)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts the connection, reads the request, never answers."""
    await _read_head(reader)
    await asyncio.sleep(3600)


def _crawl(job: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crawler", "run", str(job), "--progress", "off", *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_a_trickling_body_ends_at_the_whole_request_deadline(tmp_path: Path) -> None:
    with RawServer(_trickle) as server:
        job = write_job(tmp_path / "job.yaml", server.url.rstrip("/"), items=tmp_path / "items.jsonl",
                        http={"http2": False, "timeout": {"read": 5, "total": 2}},
                        retry={"attempts": 2, "backoff": {"initial": 0.05, "max": 0.1}},
                        output={"stats": str(tmp_path / "stats.json")})  # fmt: skip
        started = time.monotonic()
        run = _crawl(job)
        took = time.monotonic() - started
        assert server.connections == 2  # the first attempt and one retry
    assert run.returncode == 1, run.stderr[-2000:]  # every URL failed: above max_error_rate
    assert took < 15
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["errors"] == {"total_timeout": 1}


def test_a_stalled_crawl_says_what_it_waits_for_and_stops(tmp_path: Path) -> None:
    with RawServer(_silent) as server:
        job = write_job(tmp_path / "job.yaml", server.url.rstrip("/"), items=tmp_path / "items.jsonl",
                        http={"http2": False, "timeout": {"read": 60, "total": 60}},
                        output={"stats": str(tmp_path / "stats.json")})  # fmt: skip
        started = time.monotonic()
        run = _crawl(job, "--stall-timeout", "2")
        took = time.monotonic() - started
    assert run.returncode == 1, run.stderr[-2000:]
    assert took < 15
    assert "waiting for:" in run.stderr and "1 requests in flight" in run.stderr
    assert "stalled: no request finished for 2s" in run.stderr
    assert json.loads((tmp_path / "stats.json").read_text())["stalled"] is True


# -- a full disk ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `path` (the test runs as root, as CI does); fails loudly otherwise."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    with SiteServer(tls=False, pages=3000) as server:
        yield server


def test_a_full_disk_under_the_items_stops_cleanly_and_the_rerun_resumes_exactly_once(
    site: SiteServer, tmp_path: Path
) -> None:
    with _small_filesystem(tmp_path / "small", "256k") as small:
        filler = small / "filler"
        filler.write_bytes(b"\0" * 150_000)  # leaves ~100 kB: the items stop fitting after a few hundred
        items = small / "items.jsonl"
        job = write_job(tmp_path / "job.yaml", site.url, items=items, state=str(tmp_path / "state"))
        started = time.monotonic()
        first = _crawl(job)
        assert first.returncode == 1, first.stderr[-3000:]
        assert time.monotonic() - started < 30
        assert "No space left on device" in first.stderr and "Traceback" not in first.stderr
        data = items.read_bytes()
        assert data.endswith(b"\n")  # whole lines only
        written = [json.loads(line) for line in data.splitlines()]
        assert 0 < len(written) < 3000
        filler.unlink()  # free the space
        # The kept state and the items file resume: every page exactly once in the end.
        with _small_filesystem(tmp_path / "big", "64m") as big:
            (big / "items.jsonl").write_bytes(data)
            job = write_job(tmp_path / "job.yaml", site.url, items=big / "items.jsonl",
                            state=str(tmp_path / "state"))  # fmt: skip
            second = _crawl(job, timeout=120)
            assert second.returncode == 0, second.stderr[-3000:]
            assert_exactly_once(item_urls([big / "items.jsonl"]), site_urls(site.url, 3000))


def test_a_full_disk_under_the_state_stops_cleanly(site: SiteServer, tmp_path: Path) -> None:
    with _small_filesystem(tmp_path / "small", "512k") as small:
        job = write_job(tmp_path / "job.yaml", site.url, items=tmp_path / "items.jsonl", state=str(small / "state"))
        started = time.monotonic()
        run = _crawl(job)
        assert run.returncode == 1, run.stderr[-3000:]
        assert time.monotonic() - started < 30
        assert "cannot save the crawl state" in run.stderr and "Traceback" not in run.stderr
        assert (tmp_path / "items.jsonl").read_bytes().endswith(b"\n")


# -- checkpoints at full speed --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_site() -> Iterator[SiteServer]:
    with SiteServer(tls=False, pages=20_000) as server:
        yield server


@pytest.mark.timeout(420)
def test_checkpoints_keep_up_with_an_unlimited_crawl_killed_ten_times(big_site: SiteServer, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    state = tmp_path / "state"
    job = write_job(tmp_path / "job.yaml", big_site.url, items=items, state=str(state),
                    output={"flush_every": 0.5})  # fmt: skip
    done: list[int] = []
    rng = random.Random(7)
    for _ in range(10):
        proc = CrawlProcess(job, name="run").start()
        # Once this run is crawling (its items pass what the last checkpoint covered), let it run for more
        # than one flush interval at full speed, then kill it: its checkpoint must have moved.
        start_lines = (done[-1] if done else 0) + 50
        wait_until(lambda p=proc, n=start_lines: count_lines([items]) > n or not p.running,  # type: ignore[misc]
                   timeout=60, what="the run to crawl", procs=[proc])
        time.sleep(0.6 + 0.6 * rng.random())
        if not proc.running:
            break
        proc.kill9()
        status = read_status(state)
        assert status is not None
        done.append(status["done"])
    assert len(done) >= 5, f"the crawl finished after {len(done)} kills: make the site bigger"
    # Progress is saved while the dispatcher is busy: every run adds to what the state holds.
    assert all(b > a for a, b in zip([0, *done], done, strict=False)), done
    final = CrawlProcess(job, name="run").start()
    assert final.wait(timeout=150) == 0, final.output()
    assert_exactly_once(item_urls([items]), site_urls(big_site.url, 20_000))
