"""`crawler run` end to end through the console script against the hypercorn test site: outputs, stats,
exit codes, one log line per failed URL, startup errors, Ctrl-C / SIGTERM, progress display."""

from __future__ import annotations

import gzip
import json
import os
import pty
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from crawler.demo.site import SiteServer
from tests.cli.conftest import Cli, crawler_command, write_job


def _job(site: SiteServer, extra: str = "", start: str = "/") -> str:
    return (f"name: t\nstart_urls: ['{site.url_for(start)}']\nhttp: {{http2: false}}\n"
            f"extract: {{fields: {{title: title, price: '.price'}}}}\n{extra}")  # fmt: skip


def _jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_run_writes_items_stats_and_a_summary(cli: Cli, tmp_path: Path, http1_site: SiteServer) -> None:
    write_job(tmp_path, _job(http1_site, "scope: {max_pages: 25}\nrate_limit: {per_host: unlimited}\n"
                                         "output: {items: out/items.jsonl, stats: out/stats.json}\n"))  # fmt: skip
    proc = cli("run", "job.yaml")
    assert proc.returncode == 0, proc.stderr
    items = _jsonl(tmp_path / "out/items.jsonl")
    assert len(items) == 25
    assert {"url", "status", "depth", "fetched_at", "title", "price"} <= set(items[0])
    stats = json.loads((tmp_path / "out/stats.json").read_text())
    assert stats["pages"] == 25 and stats["items"] == 25 and stats["statuses"] == {"200": 25}
    assert stats["hosts"] == {http1_site.host_key: 25}
    for needle in ("pages 25", "items 25", "pages/s", "statuses  200: 25", "pages per host:", "items: "):
        assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_flag_and_formats(cli: Cli, tmp_path: Path, http1_site: SiteServer) -> None:
    write_job(tmp_path, _job(http1_site, "scope: {max_pages: 5}\nrate_limit: {per_host: unlimited}\n"))
    assert cli("run", "job.yaml", "-o", "a.csv").returncode == 0
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0] == "url,status,depth,fetched_at,title,price" and len(lines) == 6
    assert cli("run", "job.yaml", "-o", "b.jsonl.gz").returncode == 0
    assert len(gzip.decompress((tmp_path / "b.jsonl.gz").read_bytes()).splitlines()) == 5
    assert cli("run", "job.yaml", "-o", "c.jsonl", "--set", "output.overwrite=false").returncode == 0
    assert cli("run", "job.yaml", "-o", "c.jsonl", "--set", "output.overwrite=false").returncode == 0
    assert len(_jsonl(tmp_path / "c.jsonl")) == 10, "overwrite: false appends"
    assert cli("run", "job.yaml", "-o", "c.jsonl").returncode == 0
    assert len(_jsonl(tmp_path / "c.jsonl")) == 5, "overwrite: true (the default) replaces"


def test_set_overrides_reach_the_crawl(cli: Cli, tmp_path: Path, http1_site: SiteServer) -> None:
    write_job(tmp_path, _job(http1_site, "output: {items: items.jsonl}\n"))
    proc = cli("run", "job.yaml", "--set", "scope.max_pages=7", "--set", "rate_limit.per_host=500/s",
               "--set", "extract.fields={h1: h1}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    items = _jsonl(tmp_path / "items.jsonl")
    assert len(items) == 7 and "h1" in items[0] and "title" not in items[0]


def test_error_rate_above_max_error_rate_exits_1(cli: Cli, tmp_path: Path, http1_site: SiteServer) -> None:
    urls = [http1_site.url_for(p) for p in ("/status/404?a", "/status/404?b", "/status/410", "/page/0")]
    write_job(tmp_path, f"start_urls: {json.dumps(urls)}\nextract: {{links: null}}\nhttp: {{http2: false}}\n")
    proc = cli("run", "job.yaml")
    assert proc.returncode == 1, proc.stderr
    assert "above max_error_rate" in proc.stderr and "Traceback" not in proc.stderr
    assert "http_404: 2" in proc.stderr and "e.g. " + urls[0] in proc.stderr
    assert cli("run", "job.yaml", "--set", "max_error_rate=0.8").returncode == 0
    assert cli("run", "job.yaml", "--max-error-rate", "0.5").returncode == 1
    assert cli("run", "job.yaml", "--set", "max_error_rate=null").returncode == 0


def test_a_failed_url_is_one_log_line_with_the_reason(
    cli: Cli, tmp_path: Path, http1_site: SiteServer
) -> None:
    dead = "http://127.0.0.1:9/nothing-listens-here"
    write_job(tmp_path, f"start_urls: ['{dead}', '{http1_site.url_for('/page/1')}']\nextract: {{links: null}}\n"
                        "retry: {attempts: 1}\nhttp: {http2: false}\nmax_error_rate: 0.9\n"
                        "robots: {unavailable_wait: 0}\n")  # fmt: skip
    proc = cli("run", "job.yaml")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if dead in ln and "e.g." not in ln]
    assert len(lines) == 1, proc.stderr
    assert "connect" in lines[0].lower() or "refused" in lines[0].lower()
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("setup", "args", "needle"), [
    ("file", ["--set", "output.items=blocker/items.jsonl"], "cannot start"),
    ("file", ["--log-file", "blocker/crawl.log"], "cannot write the log file"),
    ("", ["--set", "stages=['no_such_module_xyz:stage']"], "no_such_module_xyz"),
    ("", ["--set", "concurrency.workers=-1"], "concurrency.workers"),
])  # fmt: skip
def test_startup_problems_exit_2_without_a_traceback(cli: Cli, tmp_path: Path, http1_site: SiteServer, setup: str,
                                                     args: list[str], needle: str) -> None:  # fmt: skip
    if setup == "file":
        (tmp_path / "blocker").write_text("a file where a directory is needed")
    write_job(tmp_path, _job(http1_site, "scope: {max_pages: 2}\n"))
    proc = cli("run", "job.yaml", *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_mid_crawl_exits_130_with_whole_lines(tmp_path: Path, http1_site: SiteServer,
                                                         signum: signal.Signals) -> None:  # fmt: skip
    # 20 pages/s over 200 pages: about 10 s of crawl, stopped after a second or so.
    write_job(
        tmp_path,
        _job(http1_site, "rate_limit: {per_host: 20/s}\noutput: {items: items.jsonl, stats: stats.json}\n"),
    )
    proc = subprocess.Popen([*crawler_command(), "run", "job.yaml"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    items = tmp_path / "items.jsonl"
    deadline = time.monotonic() + 20
    while not (items.exists() and items.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signum)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=20)
    assert time.monotonic() - sent < 8, "stops within a few seconds"
    assert proc.returncode == 130, err
    rows = _jsonl(items)  # every line parses: no torn record
    assert 0 < len(rows) < 200
    assert "interrupted" in err and "Traceback" not in err
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["interrupted"] is True and stats["items"] == len(rows)


def test_plain_progress_lines_when_not_a_terminal(cli: Cli, tmp_path: Path, http1_site: SiteServer) -> None:
    write_job(
        tmp_path, _job(http1_site, "log_every: 0.2\nscope: {max_pages: 30}\nrate_limit: {per_host: 30/s}\n")
    )
    proc = cli("run", "job.yaml")
    assert proc.returncode == 0, proc.stderr
    progress = [ln for ln in proc.stderr.splitlines() if "crawler.progress" in ln]
    assert len(progress) >= 3, proc.stderr
    assert all("pages " in ln and "queued " in ln and "in-flight " in ln and "/s" in ln for ln in progress)
    assert "\x1b[" not in proc.stderr, "no terminal escapes in a pipe"


def test_live_progress_on_a_terminal(tmp_path: Path, http1_site: SiteServer) -> None:
    write_job(tmp_path, _job(http1_site, "scope: {max_pages: 30}\nrate_limit: {per_host: 20/s}\n"))
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen([*crawler_command(), "run", "job.yaml"], cwd=tmp_path, stdin=slave, stdout=slave,
                            stderr=slave, env=env)  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert proc.wait(timeout=30) == 0
    reader.join(timeout=5)
    os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "in flight" in screen and "pages/s" in screen, "the live panel was drawn"
    assert "pages per host:" in screen, "then the summary"


def test_run_paginates_an_api_and_reads_sitemaps(cli: Cli, tmp_path: Path) -> None:
    from tests.pipelines.apisite import ITEMS, ApiServer

    with ApiServer() as api:
        write_job(tmp_path, f"start_urls: ['{api.url}/next/items']\nstart_sitemaps: ['{api.url}/sitemaps/index.xml']\n"
                            "scope: {robots_txt: false}\nhttp: {http2: false}\npaginate: {next_field: links.next}\n"
                            "extract: {items_path: data.results, json: {id: id}}\n"
                            "output: {items: items.jsonl, stats: stats.json}\n")  # fmt: skip
        proc = cli("run", "job.yaml")
    assert proc.returncode == 0, proc.stderr
    rows = _jsonl(tmp_path / "items.jsonl")
    assert sorted(r["id"] for r in rows if "id" in r) == list(range(ITEMS))
    assert not [r for r in rows if "/sitemaps/" in str(r["url"])], "no item for a sitemap"
    assert len([r for r in rows if "/p/" in str(r["url"])]) == 6
