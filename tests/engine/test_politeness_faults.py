"""The crawl against servers that throttle and stall: it adapts its rate, honours Retry-After without a
retry storm, and always ends (max_pages with retries pending, a trickling body, a host that never answers)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.downloader.servers import NginxServer, find_nginx

pytestmark = pytest.mark.timeout(120)

PAGES = 60


def _site(root: Path, pages: int = PAGES) -> None:
    """`/limited/0.html` links to every other page: 16 workers can all go at once."""
    site = root / "limited"
    site.mkdir(parents=True)
    links = "".join(f'<a href="{i}.html">{i}</a>' for i in range(1, pages))
    (site / "0.html").write_text(f"<html><head><title>0</title></head><body>{links}</body></html>")
    for i in range(1, pages):
        (site / f"{i}.html").write_text(f"<html><head><title>{i}</title></head><body>page {i}</body></html>")


# nginx's own rate limiter, as a real site deploys it: 5 requests/s per client, a burst of 5, and
# 429 + Retry-After: 1 for what is above it.
LIMITED = """limit_req_zone $binary_remote_addr zone=perclient:1m rate=5r/s;
    limit_req_status 429;"""
LIMITED_LOCATION = """location /limited/ {
            limit_req zone=perclient burst=5 nodelay;
            add_header Retry-After 1 always;
        }"""


@pytest.fixture(scope="module")
def limited_nginx(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if find_nginx() is None:
        pytest.fail("nginx is not installed (apt-get install nginx-light)")
    root = tmp_path_factory.mktemp("limited-site")
    _site(root)
    with NginxServer(root, http_extra=LIMITED, server_extra=LIMITED_LOCATION) as server:
        yield server


def _run(job: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crawler", "run", str(job), "--progress", "off", *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _job(tmp_path: Path, start: str, **extra: str) -> Path:
    lines = [
        "name: faults",
        f"start_urls: ['{start}']",
        "concurrency: {workers: 16, per_host: 16}",
        "scope: {robots_txt: false}",
        f"output: {{items: '{tmp_path / 'items.jsonl'}', stats: '{tmp_path / 'stats.json'}'}}",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    path = tmp_path / "job.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_adaptive_rate_meets_an_nginx_rate_limit_without_a_retry_storm(
        limited_nginx: NginxServer, tmp_path: Path, record_property: pytest.RecordProperty) -> None:  # fmt: skip
    before = len(limited_nginx.requests())
    job = _job(tmp_path, limited_nginx.url_for("/limited/0.html"))
    started = time.monotonic()
    run = _run(job)
    wall = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-3000:]
    seen = limited_nginx.requests()[before:]
    throttled = [r for r in seen if r["status"] == "429"]
    # The figures of README "Reliability" (python -m tests.faults.status reads them from the JUnit XML).
    record_property("answers_429", len(throttled))
    record_property("requests", len(seen))
    record_property("wall_s", round(wall, 1))
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert len({i["url"] for i in items}) == PAGES
    # Issue 10's targets: at most 20 answers of 429 (109 before AIMD), wall <= 1.5 x (60 pages / 5 per s).
    assert len(throttled) <= 20, f"{len(throttled)} answers of 429 in {len(seen)} requests"
    assert wall <= 1.5 * PAGES / 5, f"{wall:.1f}s"
    stats = json.loads((tmp_path / "stats.json").read_text())
    (rate,) = stats["rates"].values()
    record_property("learnt_rate", round(rate, 1))
    assert 1 <= rate <= 10  # what it learnt is near the server's 5/s


def test_max_pages_with_retries_pending_ends(limited_nginx: NginxServer, tmp_path: Path) -> None:
    # Retries that already hold a max_pages reservation used to be starved: 5 of 8 runs never ended.
    job = _job(tmp_path, limited_nginx.url_for("/limited/0.html"), rate_limit="{per_host: unlimited}")
    for _ in range(3):
        run = _run(job, "--set", "scope.max_pages=30", timeout=60)
        assert run.returncode == 0, run.stderr[-3000:]
        stats = json.loads((tmp_path / "stats.json").read_text())
        assert stats["pages"] == 30
        assert "scope.max_pages 30 reached" in run.stderr
