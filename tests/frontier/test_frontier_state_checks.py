"""A damaged `state:` is refused, never silently restarted: the real `crawler run` against a state broken
behind its back exits 2 with a message naming the problem and `--fresh`, and leaves the state and the items
file as they were; `--fresh` then starts over."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crawler.demo.site import SiteServer
from tests.frontier._crawl import REPO_ROOT, assert_exactly_once, item_urls, site_urls, write_job

PAGES = 100


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    with SiteServer(tls=False, pages=PAGES) as server:
        yield server


@pytest.fixture(scope="module")
def stopped_crawl(site: SiteServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A crawl stopped by `max_pages` with work left in its state: each test damages a copy of it."""
    work = tmp_path_factory.mktemp("stopped")
    job = _job(work, site)
    first = _run(job, "--set", "scope.max_pages=30")
    assert first.returncode == 0, first.stderr[-3000:]
    return work


def _job(work: Path, site: SiteServer) -> Path:
    return write_job(work / "job.yaml", site.url, items=work / "items.jsonl", state=str(work / "state"),
                     concurrency={"workers": 4, "per_host": 4})  # fmt: skip


def _run(job: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crawler", "run", str(job), "--progress", "off", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip


def _sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _truncate(db: Path) -> None:
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        extra.unlink(missing_ok=True)
    db.write_bytes(b"")


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "dropped queue table": (lambda db: _sql(db, "DROP TABLE queue"), "the 'queue' table is missing"),
    "empty database file": (_truncate, "the database file is empty (0 bytes)"),
    "queue row without url": (
        lambda db: _sql(db, "UPDATE queue SET data = '{\"depth\": 1}' WHERE id = (SELECT min(id) FROM queue)"),
        "1 queued request row(s) are not requests",
    ),
    "queue row not JSON": (
        lambda db: _sql(db, "UPDATE queue SET data = 'garbage' WHERE id = (SELECT max(id) FROM queue)"),
        "is not JSON",
    ),
    "queue rows deleted": (
        lambda db: _sql(db, "DELETE FROM queue WHERE id IN (SELECT id FROM queue LIMIT 5)"),
        "requests pushed and not done",
    ),
    "unknown schema version": (
        lambda db: _sql(db, "UPDATE meta SET value = '99' WHERE key = 'schema'"), "schema version '99'"
    ),
    "not a database": (lambda db: db.write_bytes(b"x" * 4096), "SQLite cannot read it"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_state_is_refused_with_exit_2_until_fresh(
    site: SiteServer, stopped_crawl: Path, tmp_path: Path, damage: str
) -> None:
    shutil.copytree(stopped_crawl / "state", tmp_path / "state")
    shutil.copy(stopped_crawl / "items.jsonl", tmp_path / "items.jsonl")
    job = _job(tmp_path, site)
    items, db = tmp_path / "items.jsonl", tmp_path / "state" / "frontier.sqlite3"
    damage_it, message = DAMAGE[damage]
    damage_it(db)
    before_items = items.read_bytes()
    before_db = db.read_bytes()

    refused = _run(job)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert message in refused.stderr
    assert "rerun with --fresh" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert items.read_bytes() == before_items, "the items file is untouched"
    assert db.read_bytes() == before_db, "the state is neither repaired nor recreated"

    status = subprocess.run([sys.executable, "-m", "crawler", "status", str(job)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert status.returncode != 0 and message in status.stderr

    if damage in ("dropped queue table", "empty database file"):  # the way out, shown twice (not per case)
        fresh = _run(job, "--fresh")
        assert fresh.returncode == 0, fresh.stderr[-3000:]
        assert_exactly_once(item_urls([items]), site_urls(site.url, PAGES))


def test_a_state_closed_mid_crawl_passes_its_checks(site: SiteServer, tmp_path: Path) -> None:
    """The counters are committed with the rows they count, whichever way the crawl stopped."""
    job = _job(tmp_path, site)
    items = tmp_path / "items.jsonl"
    for max_pages in (1, 30):
        assert _run(job, "--set", f"scope.max_pages={max_pages}").returncode == 0
    done = _run(job)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_exactly_once(item_urls([items]), site_urls(site.url, PAGES))
