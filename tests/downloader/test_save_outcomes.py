"""The crawl's `save:` when a name is taken, a path would leave `save.dir`, or the disk is full: the
allocator's collision policy (`save.on_collision`), per-URL kinds from the documented list (`file_exists`,
`unsafe_path`), and a full disk (a real tmpfs) stopping the crawl as a full items file does. Never
`internal_error` or `stage_error`. A full disk under `crawler download --warc` stops the run the same way."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from crawler.fetch.names import origin_of
from tests.cli.conftest import crawler_command
from tests.engine.test_output_faults import _small_filesystem

from .app import file_bytes
from .conftest import run_cli
from .servers import EdgeServer


def _crawl(tmp_path: Path, urls: list[str], save: dict[str, Any], timeout: float = 60) -> tuple[
        subprocess.CompletedProcess[str], dict[str, Any]]:  # fmt: skip
    job = {"name": "save-outcomes", "start_urls": urls, "http": {"http2": False},
           "scope": {"robots_txt": False, "max_depth": 0}, "rate_limit": {"per_host": "unlimited"},
           "save": {"match": ["/echo/", "/file/"], **save},
           "output": {"items": "items.jsonl", "stats": "stats.json"}}  # fmt: skip
    (tmp_path / "job.yaml").write_text(json.dumps(job))
    done = subprocess.run([*crawler_command(), "run", "job.yaml", "--progress", "off"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    stats_path = tmp_path / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    return done, stats


def _stranger(tmp_path: Path, edge: EdgeServer, name: str) -> Path:
    path = tmp_path / "files" / f"127.0.0.1_{edge.port}" / "echo" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not from the crawl")
    return path


def test_on_collision_overwrite_replaces_a_strangers_file(edge: EdgeServer, tmp_path: Path) -> None:
    url = edge.url + "/echo/over.bin"
    stranger = _stranger(tmp_path, edge, "over.bin")

    done, stats = _crawl(tmp_path, [url], {"dir": "files", "on_collision": "overwrite"})

    assert done.returncode == 0, done.stderr
    assert stranger.read_bytes() == b"/echo/over.bin" and origin_of(stranger) == url
    assert sorted(p.name for p in stranger.parent.iterdir()) == ["over.bin"]
    assert stats["errors"] == {}


def test_on_collision_fail_fails_the_url_as_file_exists(edge: EdgeServer, tmp_path: Path) -> None:
    taken, free = edge.url + "/echo/taken.bin", edge.url + "/echo/free.bin"
    stranger = _stranger(tmp_path, edge, "taken.bin")

    done, stats = _crawl(tmp_path, [taken, free], {"dir": "files", "on_collision": "fail"})

    assert stats["errors"] == {"file_exists": 1}  # the other URL is saved
    assert stranger.read_bytes() == b"not from the crawl"
    assert sorted(p.name for p in stranger.parent.iterdir()) == ["free.bin", "taken.bin"]
    assert "Traceback" not in done.stderr and "internal" not in done.stderr


def test_a_symlink_out_of_save_dir_fails_the_url_as_unsafe_path(edge: EdgeServer, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / f"127.0.0.1_{edge.port}").symlink_to(outside)

    done, stats = _crawl(tmp_path, [edge.url + "/echo/escape.bin"], {"dir": "files"})

    assert done.returncode == 1
    assert stats["errors"] == {"unsafe_path": 1}
    assert list(outside.rglob("*")) == []  # nothing written through the link
    assert "unsafe_path" in done.stderr and "Traceback" not in done.stderr


def test_a_full_disk_under_save_dir_stops_the_crawl_cleanly(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    size = 100_000
    urls = [edge.url_for(f"/file/f{i}.bin", size=size, seed=key, key=f"{key}-{i}") for i in range(8)]
    with _small_filesystem(tmp_path / "small", "256k") as small:
        started = time.monotonic()
        done, _ = _crawl(tmp_path, urls, {"dir": str(small / "files")})

        assert done.returncode == 1, done.stderr[-3000:]
        assert time.monotonic() - started < 30
        assert "No space left on device" in done.stderr and "Traceback" not in done.stderr
        assert "internal_error" not in done.stderr and "stage_error" not in done.stderr
        saved = [p for p in (small / "files").rglob("*") if p.is_file()]
        assert not [p for p in saved if p.name.endswith(".part")]  # the torn file was deleted
        assert 0 < len(saved) < len(urls)
        for path in saved:  # what was saved is whole
            assert path.read_bytes() == file_bytes(key, 0, size)
        items = (tmp_path / "items.jsonl").read_text().splitlines()
        assert len(items) == len(saved)  # an item for each whole file, none for the rest


def test_a_full_disk_under_the_download_warc_stops_the_run(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    urls = [edge.url_for(f"/file/w{i}.bin", size=150_000, seed=key, key=f"{key}-{i}") for i in range(4)]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    with _small_filesystem(tmp_path / "small", "256k") as small:
        run = run_cli("-i", str(tmp_path / "urls.txt"), "-d", str(tmp_path / "out"), "-j", "1",
                      "--warc", str(small / "dl.warc"))  # fmt: skip

    assert run.returncode == 1
    assert "stopped: cannot write the WARC archive" in run.stderr and "No space left on device" in run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
