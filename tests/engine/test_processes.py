"""`concurrency.processes: N`: N engine processes over one fingerprint-sharded frontier."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from crawler import Job
from crawler.engine.processes import shard_job


def _write_job(tmp_path: Path, site_url: str, extra: str = "") -> tuple[Path, Path]:
    items = tmp_path / "items.jsonl"
    job = tmp_path / "job.yaml"
    job.write_text(
        f"start_urls: ['{site_url}/']\n"
        "scope: {robots_txt: false}\n"
        "concurrency: {workers: 16, per_host: 16}\n"
        "extract: {fields: {title: title}}\n"
        f"output: {{items: '{items}', stats: '{tmp_path / 'stats.json'}'}}\n" + extra
    )
    return job, items


def _run(job: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crawler", "run", str(job), "--progress", "off", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_two_processes_fetch_every_page_exactly_once(site_factory, tmp_path: Path) -> None:
    site = site_factory(tls=False, pages=600)
    job, items = _write_job(tmp_path, site.url, "rate_limit: {per_host: unlimited}\n")
    done = _run(job, "--processes", "2")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in items.read_text().splitlines()]
    expected = {site.url + "/"} | {f"{site.url}/page/{n}" for n in range(600)}
    assert sorted(r["url"] for r in records) == sorted(expected)
    paths = [e["path"] for e in site.log() if e["path"] == "/" or e["path"].startswith("/page/")]
    assert len(paths) == len(set(paths)) == 601
    # Both processes did work: their connections come from two client sockets at least.
    assert len({e["client"] for e in site.log()}) >= 2
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["pages"] == 601 and stats["items"] == 601


def test_rate_and_max_pages_hold_in_total(site_factory, tmp_path: Path) -> None:
    site = site_factory(tls=False, pages=600)
    job, items = _write_job(tmp_path, site.url, "rate_limit: {per_host: 20/s}\n")
    done = _run(job, "--processes", "2", "--set", "scope.max_pages=41")
    assert done.returncode == 0, done.stderr
    assert len(items.read_text().splitlines()) <= 41
    times = sorted(e["t"] for e in site.log() if e["path"] == "/" or e["path"].startswith("/page/"))
    assert len(times) <= 41
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u - t < 1.0) <= 22  # 20/s in total, one token of slack each


def test_shard_job_splits_totals() -> None:
    job = Job.model_validate({"start_urls": ["http://e.com/"], "concurrency": {"workers": 64, "per_host": 9},
                              "rate_limit": {"per_host": "10/s", "hosts": {"a.com": "3/s", "b.com": "unlimited"}},
                              "scope": {"max_pages": 7}})
    parts = [shard_job(job, i, 2) for i in range(2)]
    assert [p.concurrency.workers for p in parts] == [32, 32]
    assert [p.scope.max_pages for p in parts] == [4, 3]
    assert parts[0].rate_limit.per_host.per_second == 5
    assert parts[0].rate_limit.hosts["a.com"].per_second == 1.5
    assert parts[0].rate_limit.hosts["b.com"] is None
    assert parts[0].concurrency.processes == 1
