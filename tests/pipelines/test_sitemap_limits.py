"""The sitemaps stage under hostile input: a sitemap is gunzipped and capped whatever its Content-Type, a
bomb fails as body_too_large with bounded memory (`crawler run` in a subprocess), at most 50,000 URLs are
taken from one sitemap, and an endless chain of sitemap indexes ends at `scope.max_sitemap_depth`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.pipelines.sitemaps import MAX_SITEMAP_URLS, parse_sitemap
from tests.fetch.bombs import gzip, gzip_zeros
from tests.fetch.rawserver import Canned, RawServer, crawler_run
from tests.pipelines.conftest import run_job

pytestmark = pytest.mark.timeout(120)

RSS_LIMIT_MB = 250
GIB = 1024


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    with RawServer() as srv:
        yield srv


SITEMAP = b'<urlset><url><loc>{base}/p/1</loc></url><url><loc>{base}/p/2</loc></url></urlset>'


@pytest.mark.parametrize(
    ("content_type", "content_encoding"),
    [("application/gzip", None), ("application/xml", None), ("application/octet-stream", "gzip")],
)
def test_sitemap_bombs_fail_at_the_sitemap_cap_whatever_their_content_type(
    server: RawServer, tmp_path: Path, content_type: str, content_encoding: str | None
) -> None:
    # A gzip body inside an identity response (or inside a gzip coding): 1 GiB of zeros decoded.
    body = gzip_zeros(GIB) if content_encoding is None else gzip(gzip_zeros(GIB))
    headers = {"content_type": content_type}
    if content_encoding:
        headers["content_encoding"] = content_encoding
    path = f"/sitemap-bomb-{len(server.routes)}.xml.gz"
    server.canned(path, body, **headers)
    result = crawler_run({"start_sitemaps": [server.url + path], "scope": {"robots_txt": False}}, tmp_path)
    assert result.errors == {"body_too_large": 1}, result.stderr[-2000:]
    assert result.peak_rss_mb < RSS_LIMIT_MB


def test_a_gzipped_sitemap_served_as_application_gzip_is_read(server: RawServer, tmp_path: Path) -> None:
    server.canned("/p/1", b"<html>1</html>", content_type="text/html")
    server.canned("/p/2", b"<html>2</html>", content_type="text/html")
    server.canned("/real.xml.gz", gzip(SITEMAP.replace(b"{base}", server.url.encode())), content_type="application/gzip")
    result = crawler_run({"start_sitemaps": [server.url + "/real.xml.gz"], "scope": {"robots_txt": False}}, tmp_path)
    assert result.code == 0 and result.errors == {}
    assert result.stats["items"] == 2 and {"/p/1", "/p/2"} <= set(server.paths())


def test_at_most_50000_urls_are_taken_from_one_sitemap() -> None:
    body = b"<urlset>" + b"".join(b"<url><loc>http://e.com/%d</loc></url>" % i for i in range(60_000)) + b"</urlset>"
    kind, urls = parse_sitemap(body)
    assert kind == "urlset" and len(urls) == MAX_SITEMAP_URLS
    text = b"\n".join(b"http://e.com/%d" % i for i in range(60_000))
    assert len(parse_sitemap(text)[1]) == MAX_SITEMAP_URLS


async def test_an_endless_chain_of_sitemap_indexes_ends_at_the_nesting_depth(tmp_path: Path) -> None:
    def index(path: str) -> Canned:
        n = int(re.match(r"/s/(\d+)\.xml", path).group(1))  # type: ignore[union-attr]
        body = f"<sitemapindex><sitemap><loc>{srv.url}/s/{n + 1}.xml</loc></sitemap></sitemapindex>"
        return Canned(200, [("Content-Type", "application/xml")], body.encode())

    with RawServer() as srv:
        srv.fallback = index
        stats, _ = await run_job({"start_sitemaps": [srv.url + "/s/0.xml"], "scope": {"robots_txt": False,
                                  "max_sitemap_depth": 3}}, tmp_path)  # fmt: skip
        assert srv.paths() == [f"/s/{n}.xml" for n in range(4)], "depths 0..3 are read, depth 4 is refused"
    assert stats.skipped == {"sitemap_depth": 1}
