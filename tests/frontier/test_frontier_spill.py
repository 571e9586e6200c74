"""The memory frontier past its bound (`memory_queue`): a crawl whose queue spills to the temporary file still
fetches every page exactly once, in-process and through `crawler run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crawler import Crawler, Job
from crawler.frontier.memory import MemoryFrontier
from tests.frontier._crawl import REPO_ROOT, assert_exactly_once, item_urls, site_urls, write_job

PAGES = 400


def _job(tmp_path: Path, url: str, **extra: object) -> Path:
    return write_job(tmp_path / "job.yaml", url, items=tmp_path / "items.jsonl",
                     concurrency={"workers": 8, "per_host": 8}, **extra)  # type: ignore[arg-type]  # fmt: skip


async def test_a_crawl_past_the_memory_bound_fetches_every_page_once(site_factory, tmp_path: Path) -> None:
    site = site_factory(tls=False, pages=PAGES)
    job = Job.from_yaml(_job(tmp_path, site.url))
    frontier = MemoryFrontier(memory_queue=20)
    async with Crawler(job, frontier=frontier) as crawler:
        await crawler.run()
    assert frontier.spilled > PAGES // 2, "most of the queue went through the temporary file"
    assert frontier.queued_in_memory == 0 and await frontier.size() == 0
    assert_exactly_once(item_urls([tmp_path / "items.jsonl"]), site_urls(site.url, PAGES))
    paths = [e["path"] for e in site.log() if e["path"] == "/" or e["path"].startswith("/page/")]
    assert len(paths) == len(set(paths)) == PAGES + 1


def test_memory_queue_is_a_job_key_and_leaves_no_file_behind(site_factory, tmp_path: Path) -> None:
    site = site_factory(tls=False, pages=PAGES)
    job = _job(tmp_path, site.url, memory_queue=20)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(scratch), "SQLITE_TMPDIR": str(scratch)}
    done = subprocess.run([sys.executable, "-m", "crawler", "run", str(job), "--progress", "off"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "more than 20 requests queued (memory_queue): the rest wait in a temporary file" in done.stderr
    assert_exactly_once(item_urls([tmp_path / "items.jsonl"]), site_urls(site.url, PAGES))
    assert list(scratch.iterdir()) == [], "the spill file is unlinked as soon as it is created"
