"""WARC output (issue 13, point 5): every crawled page once, as WARC/1.1 request + response records with
WARC-Target-URI, WARC-Date and verified digests, one gzip member per record, rotated at a size; read back
with warcio's ArchiveIterator. Against nginx (gzip on) through the console script, and the HTTP/2 test
site through the library."""

from __future__ import annotations

import gzip
import random
import string
import zlib
from pathlib import Path
from typing import Any

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler import Crawler, HttpConfig, Job, OutputConfig, ScopeConfig
from crawler.demo.site import SiteServer
from tests.features.conftest import Cli, SiteFactory, job_yaml, write_page

pytestmark = pytest.mark.timeout(120)


def _read(files: list[Path]) -> list[dict[str, Any]]:
    records = []
    for path in files:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, check_digests=True):
                body = rec.content_stream().read()
                records.append({"type": rec.rec_type, "file": path.name, "headers": dict(rec.rec_headers.headers),
                                "protocol": rec.rec_headers.protocol, "http": rec.http_headers, "body": body,
                                "digest_ok": rec.digest_checker.passed})  # fmt: skip
    return records


def _gzip_members(path: Path) -> int:
    data, n = path.read_bytes(), 0
    while data:
        d = zlib.decompressobj(31)
        d.decompress(data)
        assert d.eof
        data, n = d.unused_data, n + 1
    return n


def _check(records: list[dict[str, Any]], pages: set[str]) -> dict[str, dict[str, Any]]:
    responses = {r["headers"]["WARC-Target-URI"]: r for r in records if r["type"] == "response"}
    assert len(responses) == len([r for r in records if r["type"] == "response"])  # each page once
    assert set(responses) == pages
    requests = [r for r in records if r["type"] == "request"]
    ids = {r["headers"]["WARC-Record-ID"] for r in responses.values()}
    assert len(requests) == len(responses) and {r["headers"]["WARC-Concurrent-To"] for r in requests} == ids
    for r in records:
        assert r["protocol"] == "WARC/1.1" and r["headers"]["WARC-Date"].endswith("Z")
        assert r["digest_ok"] is not False
    for r in responses.values():
        assert r["headers"]["WARC-Payload-Digest"].startswith("sha1:") and r["digest_ok"] is True
    return responses


def test_crawl_writes_a_rotated_warc_read_back_by_warcio(cli: Cli, tmp_path: Path, static_site: SiteFactory) -> None:
    root = tmp_path / "www"
    rng = random.Random(13)
    write_page(root, "/", "Home", [f"/p{i}.html" for i in range(30)] + ["/missing.html"])
    for i in range(30):
        # ~12 KB of random words a page (~5 KB gzipped): several files at 40 KB.
        words = " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(2000))
        write_page(root, f"/p{i}.html", f"Page {i}", ["/"], body=f"<p>{words}</p>")
    site = static_site(root, gzip=True)
    job_yaml(tmp_path, f"start_urls: ['{site.url}/']\nhttp: {{http2: false}}\nrate_limit: {{per_host: unlimited}}\n"
                       "scope: {robots_txt: false}\n"
                       "output: {items: items.jsonl, warc: out/crawl.warc.gz, warc_max_size: 40KB}\n")  # fmt: skip
    proc = cli("run", "job.yaml", "--progress", "off")
    assert proc.returncode == 0, proc.stderr
    files = sorted((tmp_path / "out").glob("crawl-*.warc.gz"))
    assert len(files) >= 3 and files[0].name == "crawl-00000.warc.gz"
    assert all(f.stat().st_size < 40_000 + 20_000 for f in files)  # rotated once past the size
    records = _read(files)
    assert sum(_gzip_members(f) for f in files) == len(records)  # one gzip member per record
    assert next(r["type"] for r in records if r["file"] == files[1].name) == "warcinfo"
    pages = {f"{site.url}/", f"{site.url}/missing.html"} | {f"{site.url}/p{i}.html" for i in range(30)}
    responses = _check(records, pages)
    page = responses[f"{site.url}/p3.html"]
    assert page["http"].get_statuscode() == "200"
    assert page["http"].get_header("Content-Encoding") is None  # stored decoded, consistently
    assert page["body"] == (root / "p3.html").read_bytes()
    assert responses[f"{site.url}/missing.html"]["http"].get_statuscode() == "404"
    request = next(r for r in records if r["type"] == "request" and r["headers"]["WARC-Target-URI"] == page["headers"]["WARC-Target-URI"])  # fmt: skip
    assert request["http"].protocol == "GET" and request["http"].get_header("Referer") == f"{site.url}/"
    assert request["http"].get_header("User-Agent").startswith("crawler/")
    assert gzip.decompress(files[0].read_bytes()).startswith(b"WARC/1.1\r\nWARC-Type: warcinfo")


async def test_library_warc_over_http2(h2_site: SiteServer, tmp_path: Path) -> None:
    out = tmp_path / "crawl.warc.gz"
    job = Job(start_urls=[h2_site.url + "/"], http=HttpConfig(verify=h2_site.ca_path), scope=ScopeConfig(max_pages=25),
              output=OutputConfig(warc=str(out)))  # fmt: skip
    async with Crawler(job) as crawler:
        urls = {page.url async for page in crawler.crawl()}
    assert len(urls) == 25
    records = _read([out])
    responses = _check(records, urls)
    assert {r["headers"]["WARC-Protocol"] for r in responses.values()} == {"http/2"}


def test_warc_name_is_checked(cli: Cli, tmp_path: Path) -> None:
    job_yaml(tmp_path, "start_urls: ['http://127.0.0.1:1/']\noutput: {warc: out/crawl.gz}\n")
    proc = cli("check", "job.yaml")
    assert proc.returncode == 2 and "ends in .warc.gz" in proc.stderr
