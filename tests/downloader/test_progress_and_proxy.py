"""What a user of `crawler download` sees and configures on day one (issue 13): plain progress lines when
stderr is not a terminal, `--proxy` through a real forwarding proxy (tinyproxy), and the library's typed
front door."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import crawler
from crawler.downloader import DownloadProgress, download
from tests.http.tinyproxy import TinyProxy

from .app import file_sha256
from .conftest import run_cli
from .servers import EdgeServer

_LINE = re.compile(
    r"^files (\d+)/1  ([\d.]+) (B|kB|MB)  [\d.]+ (B|kB|MB)/s  ETA (\d+:\d\d|--:--)  (\d) active$"
)
_UNIT = {"B": 1, "kB": 1e3, "MB": 1e6}


def test_plain_progress_lines_when_stderr_is_not_a_terminal(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    url = edge.url_for("/file/p.bin", size=1_000_000, seed=key, key=key, rate=350_000)

    run = run_cli(url, "-d", str(tmp_path), "--progress-interval", "0.5")  # stderr is a pipe

    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    progress = [m for m in map(_LINE.match, lines[:-1]) if m]
    assert len(progress) >= 3 and len(progress) == len(lines) - 1, run.stderr
    received = [float(m.group(2)) * _UNIT[m.group(3)] for m in progress]
    assert received == sorted(received) and received[-1] > received[0]
    assert all(m.group(1) == "0" and m.group(6) == "1" for m in progress)
    assert any(m.group(5) != "--:--" for m in progress)  # a length is known: an ETA is shown
    assert lines[-1].startswith("1 downloaded, 0 skipped, 0 failed; 1.0 MB in ")


def test_json_results_on_stdout_keep_the_progress_lines_on_stderr(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    url = edge.url_for("/file/j.bin", size=600_000, seed=key, key=key, rate=350_000)

    run = run_cli(url, "-d", str(tmp_path), "--json", "--progress-interval", "0.5")

    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["bytes"] for line in run.stdout.splitlines()] == [600_000]
    lines = run.stderr.splitlines()
    assert len([m for m in map(_LINE.match, lines[:-1]) if m]) >= 2, run.stderr
    assert lines[-1].startswith("1 downloaded")


def test_progress_off_and_quiet_print_no_progress(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/q.bin", size=300_000, seed=key, key=key, rate=400_000)

    off = run_cli(url, "-d", str(tmp_path / "a"), "--progress", "off", "--progress-interval", "0.2")
    quiet = run_cli(url, "-d", str(tmp_path / "b"), "-q", "--progress-interval", "0.2")

    assert off.returncode == quiet.returncode == 0
    assert off.stderr.splitlines() == [off.stderr.strip()] and off.stderr.startswith("1 downloaded")
    assert quiet.stderr == ""


def test_proxy_flag_sends_the_download_through_a_forwarding_proxy(
    edge: EdgeServer, forward_proxy: TinyProxy, key: str, tmp_path: Path
) -> None:
    url = edge.url_for("/file/via.bin", size=200_000, seed=key, key=key)

    run = run_cli(url, "-d", str(tmp_path), "--proxy", forward_proxy.url, "--json")

    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["status"] == "ok" and record["sha256"] == file_sha256(key, 0, 200_000)
    assert ("GET", url) in forward_proxy.requests()
    assert len(edge.requests_for(key)) == 1


def test_a_proxy_that_is_not_a_url_is_a_usage_error(tmp_path: Path) -> None:
    run = run_cli("http://example.com/x", "-d", str(tmp_path), "--proxy", "localhost")

    assert run.returncode == 2 and "--proxy 'localhost' must be a URL" in run.stderr


def test_the_library_front_door_is_typed_and_exports_the_progress_snapshot() -> None:
    assert crawler.DownloadProgress is DownloadProgress and crawler.download is download
    assert "DownloadProgress" in crawler.__all__
    signature = inspect.signature(download)
    kinds = {p.kind for p in signature.parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values())
    assert {"max_time", "speed_limit", "speed_time", "collision", "http", "retry"} <= set(
        signature.parameters
    )
