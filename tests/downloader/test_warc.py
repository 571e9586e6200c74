"""WARC archives of downloads (`crawler download --warc`, `download(warc=...)`) and of the crawl's `save:`
files, through the crawl's writer (`crawler/output/warc.py`): every downloaded file once, as a response
record whose payload is the file (streamed from disk) and its request record, read back by warcio's
ArchiveIterator with passing digests."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.downloader import download
from tests.cli.conftest import crawler_command

from .app import file_sha256
from .conftest import GiB, NginxSite, run_cli, spawn_cli
from .servers import EdgeServer


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, check_digests=True):
            payload = hashlib.sha256()
            size = 0
            stream = rec.content_stream()
            while chunk := stream.read(1 << 16):
                payload.update(chunk)
                size += len(chunk)
            out.append({"type": rec.rec_type, "headers": dict(rec.rec_headers.headers), "http": rec.http_headers,
                        "sha256": payload.hexdigest(), "size": size, "digest_ok": rec.digest_checker.passed,
                        "problems": list(rec.digest_checker.problems)})  # fmt: skip
    return out


def _gzip_members(path: Path) -> int:
    data, n = path.read_bytes(), 0
    while data:
        d = zlib.decompressobj(31)
        d.decompress(data)
        assert d.eof
        data, n = d.unused_data, n + 1
    return n


def _responses(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Response records by target URI, each checked: digests pass, and its request record points at it."""
    responses = [r for r in records if r["type"] == "response"]
    by_uri = {r["headers"]["WARC-Target-URI"]: r for r in responses}
    assert len(by_uri) == len(responses)  # every file once
    for r in responses:
        assert r["digest_ok"] is True, r["problems"]
        assert r["headers"]["WARC-Payload-Digest"].startswith("sha1:")
        assert r["headers"]["WARC-Block-Digest"].startswith("sha1:")
    requests = [r for r in records if r["type"] == "request"]
    assert sorted(r["headers"]["WARC-Concurrent-To"] for r in requests) == sorted(
        r["headers"]["WARC-Record-ID"] for r in responses
    )
    return by_uri


def test_download_warc_holds_every_file_once_with_passing_digests(
    edge: EdgeServer, edge2: EdgeServer, key: str, tmp_path: Path
) -> None:
    sizes = {"plain.bin": 150_000, "split.bin": 700_000, "moved.bin": 90_000}
    seeds = {"plain.bin": key + "p", "split.bin": key + "s", "moved.bin": key + "m"}
    plain = edge.url_for("/file/plain.bin", size=sizes["plain.bin"], seed=key + "p", key=key + "p")
    split = edge.url_for("/file/split.bin", size=sizes["split.bin"], seed=key + "s", key=key + "s")
    moved = edge2.url_for("/file/moved.bin", size=sizes["moved.bin"], seed=key + "m", key=key + "m")
    via = edge.url_for("/redirect/moved.bin", to=moved, key=key + "r")
    (tmp_path / "urls.txt").write_text(f"{plain}\n{split}\n{via}\n")
    warc = tmp_path / "arch" / "downloads.warc.gz"

    run = run_cli("-i", str(tmp_path / "urls.txt"), "-d", str(tmp_path / "out"), "-x", "4", "-k", "100K",
                  "-H", "X-Api-Key: k1", "--warc", str(warc), "--json")  # fmt: skip

    assert run.returncode == 0, run.stderr
    results = {r["final_url"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert set(results) == {plain, split, moved} and results[split]["segments"] == 4
    records = _records(warc)
    assert _gzip_members(warc) == len(records)  # one gzip member per record
    assert [r["type"] for r in records].count("warcinfo") == 1
    responses = _responses(records)
    assert set(responses) == {plain, split, moved}
    for url, record in responses.items():
        name = url.rsplit("/", 1)[1].partition("?")[0]
        assert record["size"] == sizes[name]
        assert record["sha256"] == results[url]["sha256"] == file_sha256(seeds[name], 0, sizes[name])
        assert record["sha256"] == hashlib.sha256((tmp_path / "out" / name).read_bytes()).hexdigest()
        http = record["http"]
        assert http.get_statuscode() == "200" and http.get_header("Content-Range") is None
        assert http.get_header("Content-Length") == str(sizes[name])
    requests = {r["headers"]["WARC-Target-URI"]: r["http"] for r in records if r["type"] == "request"}
    assert all(h.get_header("Range") is None and h.get_header("If-Range") is None for h in requests.values())
    assert requests[plain].get_header("X-Api-Key") == "k1"
    assert requests[moved].get_header("X-Api-Key") is None  # the request as sent to the second origin


async def test_library_warc_plain_and_skipped_files_are_not_archived_again(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    url = edge.url_for("/file/once.bin", size=64_000, seed=key, key=key)
    first, second = tmp_path / "first.warc", tmp_path / "second.warc"

    [done] = await download([url], tmp_path / "out", warc=first)
    [again] = await download([url], tmp_path / "out", warc=second)

    assert done.status == "ok" and again.status == "skipped"
    responses = _responses(_records(first))
    assert list(responses) == [url] and responses[url]["sha256"] == file_sha256(key, 0, 64_000)
    assert first.read_bytes().startswith(b"WARC/1.1\r\n")  # .warc: not compressed
    assert second.name not in os.listdir(tmp_path)  # nothing was downloaded, nothing archived


def test_crawl_save_files_are_archived_from_disk(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    size = 400_000
    saved = edge.url_for("/file/doc.pdf", size=size, seed=key, key=key)
    job = {"name": "save-warc", "start_urls": [saved], "http": {"http2": False},
           "scope": {"robots_txt": False, "max_depth": 0}, "save": {"match": ["/file/"], "dir": "files"},
           "output": {"items": "items.jsonl", "warc": "crawl.warc.gz"}}  # fmt: skip
    (tmp_path / "job.yaml").write_text(json.dumps(job))

    done = subprocess.run([*crawler_command(), "run", "job.yaml", "--progress", "off"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip

    assert done.returncode == 0, done.stderr
    [item] = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    responses = _responses(_records(tmp_path / "crawl.warc.gz"))
    assert list(responses) == [saved]
    assert responses[saved]["size"] == size
    assert responses[saved]["sha256"] == file_sha256(key, 0, size)
    assert responses[saved]["sha256"] == hashlib.sha256(Path(item["file"]).read_bytes()).hexdigest()


def test_a_gibibyte_file_is_archived_with_flat_memory(
    nginx: NginxSite, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    warc = tmp_path / "big.warc.gz"
    proc = spawn_cli(nginx.url("sparse-1g.bin"), "-d", str(tmp_path), "--json", "--warc", str(warc),
                     workdir=tmp_path_factory.mktemp("p"))  # fmt: skip
    code, max_rss, out, err = proc.finish(timeout=180)

    assert code == 0, err.decode()
    assert json.loads(out)["bytes"] == GiB
    (tmp_path / "sparse-1g.bin").unlink()
    [response] = [r for r in _records(warc) if r["type"] == "response"]
    assert response["digest_ok"] is True and response["size"] == GiB
    assert response["sha256"] == "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14"  # zeros
    assert max_rss < 150e6, f"peak RSS {max_rss / 1e6:.0f} MB"  # the body is streamed, never held
