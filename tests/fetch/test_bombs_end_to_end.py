"""Bombs of every shape against the real `crawler run` (a subprocess): pages, robots.txt and sitemaps, with
stacked, unknown and hidden codings. Each case asserts the crawl ends, the error kind, what the server saw,
and that the process's peak RSS (`tests.peak_rss`) stays under 250 MB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fetch.bombs import MIB, br, gzip, gzip_zeros, raw_deflate, zstd_
from tests.fetch.rawserver import RawServer, crawler_run

pytestmark = pytest.mark.timeout(120)

RSS_LIMIT_MB = 250
GIB = 1024


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    with RawServer() as srv:
        yield srv


# Content-Encoding -> the body (each decodes to 1 GiB or more of zeros).
PAGE_BOMBS: dict[str, Callable[[], bytes]] = {
    "gzip": lambda: gzip_zeros(GIB),
    "gzip, gzip": lambda: gzip(gzip_zeros(4 * GIB)),
    "deflate, gzip": lambda: gzip(raw_deflate(bytes(GIB * MIB // 4))),
    "identity, gzip": lambda: gzip_zeros(GIB),
    "br": lambda: br(bytes(GIB * MIB // 4)),
    "zstd": lambda: zstd_(bytes(GIB * MIB // 4)),
}


def _job(url: str, **extra: object) -> dict[str, object]:
    return {"start_urls": [url], "scope": {"robots_txt": False}, "retry": {"attempts": 1}, **extra}


@pytest.mark.parametrize("coding", list(PAGE_BOMBS))
def test_page_bombs_end_as_body_too_large_within_the_memory_bound(
    server: RawServer, tmp_path: Path, coding: str
) -> None:
    path = f"/bomb/{coding.replace(', ', '-')}"
    server.canned(path, PAGE_BOMBS[coding](), content_type="text/html", content_encoding=coding)
    result = crawler_run(_job(server.url + path), tmp_path)
    assert result.errors == {"body_too_large": 1}, result.stderr[-2000:]
    assert result.code == 1
    assert result.peak_rss_mb < RSS_LIMIT_MB, f"{coding}: peak RSS {result.peak_rss_mb:.0f} MB"
    assert server.log[-1].headers["accept-encoding"] == "gzip, deflate, br, zstd"


def test_an_unknown_coding_is_a_decoding_error(server: RawServer, tmp_path: Path) -> None:
    server.canned("/bogus", b"whatever", content_type="text/html", content_encoding="gzip, x-bogus")
    result = crawler_run(_job(server.url + "/bogus"), tmp_path)
    assert result.errors == {"decoding_error": 1}
    assert "unsupported Content-Encoding 'x-bogus'" in result.stderr


def test_robots_txt_bomb_is_cut_at_500_kib_and_the_crawl_goes_on(server: RawServer, tmp_path: Path) -> None:
    # robots.txt of the bomb host: 4 GiB of "Disallow: /private\n"-free zeros behind gzip, gzip.
    with RawServer() as host:
        host.canned("/robots.txt", gzip(gzip_zeros(4 * GIB)), content_type="text/plain", content_encoding="gzip, gzip")
        host.canned("/", b"<html><title>home</title></html>", content_type="text/html")
        result = crawler_run({"start_urls": [host.url + "/"]}, tmp_path)
        assert result.code == 0 and result.errors == {}, result.stderr[-2000:]
        assert host.paths() == ["/robots.txt", "/"]
    assert result.peak_rss_mb < RSS_LIMIT_MB


@pytest.mark.parametrize("coding", ["gzip", "identity"])
def test_robots_txt_rules_in_the_first_500_kib_apply_and_the_rest_is_ignored(
    server: RawServer, tmp_path: Path, coding: str
) -> None:
    rules = b"User-agent: *\nDisallow: /private\n"
    padding = b"# " + b"x" * 600 * 1024 + b"\n"
    late = b"User-agent: *\nDisallow: /late\n"
    body = rules + padding + late
    with RawServer() as host:
        host.canned("/robots.txt", gzip(body) if coding == "gzip" else body, content_type="text/plain",
                    content_encoding=coding)  # fmt: skip
        page = b'<html><a href="/private/a">p</a><a href="/late/b">l</a></html>'
        host.canned("/", page, content_type="text/html")
        host.canned("/late/b", b"<html>late</html>", content_type="text/html")
        result = crawler_run({"start_urls": [host.url + "/"]}, tmp_path)
        assert result.code == 0
        assert "/private/a" not in host.paths(), "a rule within the first 500 KiB holds"
        assert "/late/b" in host.paths(), "a rule past 500 KiB is ignored (RFC 9309 §2.5)"
        assert result.stats["robots_denied"] == 1
