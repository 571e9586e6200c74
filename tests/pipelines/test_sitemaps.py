"""Sitemaps: indexes, gzipped and plain-text sitemaps, robots.txt Sitemap lines, gzip bombs."""

from __future__ import annotations

import time
from pathlib import Path

from crawler.pipelines.sitemaps import parse_sitemap
from tests.pipelines.apisite import ApiServer
from tests.pipelines.conftest import run_job

ALL_PAGES = {"/p/0", "/p/1", "/p/2", "/p/3", "/p/4", "/p/5"}


async def test_sitemap_index_reaches_every_listed_page_and_writes_no_item_for_sitemaps(
    api: ApiServer, tmp_path: Path
) -> None:
    api.log(clear=True)
    stats, items = await run_job({"start_sitemaps": [f"{api.url}/sitemaps/index.xml"],
                                  "scope": {"robots_txt": False}}, tmp_path)  # fmt: skip
    fetched = api.paths()
    assert {p.split("?")[0] for p in fetched if p.startswith("/p/")} == ALL_PAGES
    assert {"/sitemaps/index.xml", "/sitemaps/a.xml", "/sitemaps/b.xml.gz", "/sitemaps/c.txt"} <= set(fetched)
    assert "/img/0.png" not in fetched, "image:loc is not a page"
    assert "/p/1?a=1&b=2" in fetched, "&amp; in <loc> is an entity"
    assert sorted(i["url"].split(api.url)[1] for i in items) == sorted(
        ["/p/0", "/p/1?a=1&b=2", *sorted(ALL_PAGES - {"/p/0", "/p/1"})]
    )
    assert all(i["depth"] == 0 for i in items), "sitemap entries count as start URLs"
    assert stats.dropped == 4


async def test_robots_sitemap_lines_are_followed_when_scope_sitemaps_is_on(
    api: ApiServer, tmp_path: Path
) -> None:
    api.log(clear=True)
    _, items = await run_job({"start_urls": [f"{api.url}/p/0"], "extract": {"links": None},
                              "scope": {"sitemaps": True}}, tmp_path)  # fmt: skip
    assert {i["url"].split(api.url)[1].split("?")[0] for i in items} == ALL_PAGES
    assert "/sitemaps/index.xml" in api.paths()


async def test_robots_sitemap_lines_are_ignored_by_default(api: ApiServer, tmp_path: Path) -> None:
    api.log(clear=True)
    _, items = await run_job({"start_urls": [f"{api.url}/p/0"], "extract": {"links": None}}, tmp_path)
    assert [i["url"] for i in items] == [f"{api.url}/p/0"]
    assert not [p for p in api.paths() if p.startswith("/sitemaps/")]


async def test_gzip_bomb_sitemap_fails_at_the_cap(api: ApiServer, tmp_path: Path) -> None:
    started = time.monotonic()
    stats, items = await run_job({"start_sitemaps": [f"{api.url}/sitemaps/bomb.xml.gz"],
                                  "scope": {"robots_txt": False}}, tmp_path)  # fmt: skip
    assert items == []
    assert stats.errors == {"body_too_large": 1}, "a sitemap served as application/x-gzip is gunzipped under the cap"
    assert time.monotonic() - started < 20


def test_parse_sitemap_kinds() -> None:
    assert parse_sitemap(b"<sitemapindex><sitemap><loc>http://a/s.xml</loc></sitemap></sitemapindex>") == (
        "index", ["http://a/s.xml"])  # fmt: skip
    assert parse_sitemap(b"<urlset><url><loc>http://a/1</loc></url><url><loc>/rel</loc></url></urlset>") == (
        "urlset", ["http://a/1"])  # fmt: skip
    assert parse_sitemap(b"http://a/1\nhttps://a/2\n# comment\n") == ("text", ["http://a/1", "https://a/2"])
    assert parse_sitemap(b"<!doctype html><html><body>Not found</body></html>")[0] == "unknown"
    # Entity expansion is never performed: the scan does not parse a DTD.
    laughs = b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">]><urlset><url><loc>http://a/&a;</loc></url></urlset>'
    assert parse_sitemap(laughs) == ("urlset", ["http://a/&a;"])
