"""Links against a real server: the 50 spellings of two URLs from the hostile-web issue (dot segments,
percent-encoding case, IPv4 and port spellings, empty query, fragments, ...) cost one fetch per resource; links
past `extract.max_links` are left out and counted.

Query order is kept by default (`scope.keep_query_order`), so no spelling here reorders parameters."""

from __future__ import annotations

import html
from urllib.parse import urlencode

import pytest

from crawler.demo.site import SiteServer
from tests.engine._helpers import crawl_all, make_job


def _spellings(origin: str, port: int) -> tuple[list[str], list[str]]:
    """25 hrefs for /private/target and 25 for /private/q?a=1&b=~, as a page at /links?... would write them."""
    target = [
        "/private/target", "/private/./target", "/private/x/../target", "/private/x/y/../../target",
        "/private/%74arget", "/private/%74%61rget", "/%70rivate/target", "/private/tar%67et",
        "/private/target#frag", "/private/target#", "/private/target?", "/private/target?#x",
        f"{origin}/private/target", f"{origin.upper()}/private/target", f"//127.0.0.1:{port}/private/target",
        "private/target", "./private/target", "private/../private/target", "\\private\\target",
        "  /private/target  ", "/private/tar\nget", "/private/%2e/target", "/private/x/%2E%2E/target",
        f"http://0x7f.0.0.1:{port}/private/target", f"http://127.1:0{port}/private/./target#z",
    ]  # fmt: skip
    query = [
        "/private/q?a=1&b=~", "/private/q?a=1&b=%7e#", "/private/q?a=1&b=%7E", "/private/q?a=1&b=%7e",
        "/private/q?%61=1&b=~", "/private/./q?a=1&b=~", "/private/x/../q?a=1&b=%7e", "/private/q?a=1&b=~#frag",
        f"//127.0.0.1:{port}/private/q?a=1&b=~", f"{origin}/private/q?a=1&b=~", f"{origin}/private/%71?a=1&b=~",
        "private/q?a=1&b=~", "./private/q?a=1&%62=~", "/private/q?a=%31&b=~", "/private/q?a=1&%62=%7E",
        "\\private/q?a=1&b=~", "/private/q?a=1&b=~#", "/private/%2e/q?a=1&b=~", "/private/y/%2e%2e/q?a=1&b=~",
        f"http://0x7f.1:{port}/private/q?a=1&b=~", f"HTTP://127.0.0.1:{port}/private/q?a=1&b=~#x",
        " /private/q?a=1&b=~ ", "/private/q?a=1&\tb=~", "/private/z/../q?a=1&b=%7E", "/private/q?a=%31&b=%7E#top",
    ]  # fmt: skip
    return target, query


@pytest.mark.timeout(60)
async def test_fifty_spellings_of_two_urls_cost_one_fetch_each(http1_site: SiteServer) -> None:
    target, query = _spellings(http1_site.url, http1_site.port or 0)
    hrefs = target + query
    assert len(hrefs) == 50
    start = http1_site.url + "/links?" + urlencode([("href", html.escape(h)) for h in hrefs])
    http1_site.clear_log()
    pages, crawler = await crawl_all(make_job([start], http1_site.ca_path, extract={"fields": {"title": "title"}}))
    fetched = [(e["path"], e["query"]) for e in http1_site.log() if e["path"].startswith("/private/")]
    assert sorted(fetched) == [("/private/q", "a=1&b=~"), ("/private/target", "")]
    assert len(pages) == 3
    assert crawler.stats.requests == len(pages)


@pytest.mark.timeout(60)
async def test_links_past_max_links_are_left_out_and_counted(http1_site: SiteServer) -> None:
    hrefs = [f"/private/cap-{n}" for n in range(30)]
    start = http1_site.url + "/links?" + urlencode([("href", h) for h in hrefs])
    http1_site.clear_log()
    job = make_job([start], http1_site.ca_path, extract={"max_links": 12})
    _pages, crawler = await crawl_all(job)
    fetched = sorted(e["path"] for e in http1_site.log() if e["path"].startswith("/private/cap-"))
    # Document order: the first 12 links are the ones followed.
    assert fetched == sorted(hrefs[:12])
    assert crawler.stats.links_capped == 1
    assert crawler.stats.as_dict()["links_capped"] == 1
