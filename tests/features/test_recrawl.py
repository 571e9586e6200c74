"""Incremental recrawls (issue 13, point 4): `crawler run --recrawl` asks nginx with If-None-Match /
If-Modified-Since from the stored validators and writes items only for pages that changed (304s counted);
a finished job says so and how to go on; `start_sitemaps` entries take `since:` to skip old entries."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from crawler import Crawler, HttpConfig, Job
from tests.features.conftest import Cli, SiteFactory, StaticSite, job_yaml, jsonl, write_page

pytestmark = pytest.mark.timeout(120)


def _site(root: Path, pages: int = 10) -> None:
    write_page(root, "/", "Home", [f"/p{i}.html" for i in range(pages)])
    for i in range(pages):
        write_page(root, f"/p{i}.html", f"Page {i}", ["/"])
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    old = time.time() - 3600  # an hour ago: a later edit surely changes Last-Modified and the ETag
    for path in root.rglob("*"):
        os.utime(path, (old, old))


def _job(site: StaticSite) -> str:
    return (f"start_urls: ['{site.url}/']\nstate: state\nhttp: {{http2: false}}\n"
            "rate_limit: {per_host: unlimited}\nextract: {fields: {title: title}}\noutput: {items: items.jsonl}\n")  # fmt: skip


def _edit(root: Path) -> None:
    write_page(root, "/p2.html", "Page 2, edited", ["/"])
    write_page(root, "/p5.html", "Page 5, edited", ["/", "/new.html"])
    write_page(root, "/new.html", "New page")


def test_recrawl_asks_conditionally_and_writes_only_changed_pages(cli: Cli, tmp_path: Path,
                                                                  static_site: SiteFactory) -> None:  # fmt: skip
    _site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, _job(site))
    first = cli("run", "job.yaml", "--progress", "off")
    assert first.returncode == 0, first.stderr
    assert len(jsonl(tmp_path / "items.jsonl")) == 11

    site.clear_log()
    again = cli("run", "job.yaml", "--progress", "off")
    assert again.returncode == 0, again.stderr
    assert site.page_requests() == []
    assert "crawl complete" in again.stderr and "--recrawl" in again.stderr and "--fresh" in again.stderr

    _edit(tmp_path / "www")
    site.clear_log()
    recrawl = cli("run", "job.yaml", "--recrawl", "--progress", "off")
    assert recrawl.returncode == 0, recrawl.stderr
    served = {r["uri"]: r for r in site.page_requests()}
    assert len(site.page_requests()) == 12  # 11 known pages, each once, and the new one
    known = [uri for uri in served if uri != "/new.html"]
    assert all(served[u]["if_none_match"] and served[u]["if_modified_since"] for u in known)
    assert not served["/new.html"]["if_none_match"]
    assert sorted(u for u in known if served[u]["status"] == "200") == ["/p2.html", "/p5.html"]
    assert sum(1 for u in known if served[u]["status"] == "304") == 9
    assert "not-modified 9" in recrawl.stderr and "pages 3 " in recrawl.stderr
    items = jsonl(tmp_path / "items.jsonl")
    assert len(items) == 14  # the first run's 11, then only what changed or is new
    assert sorted(str(i["title"]) for i in items[11:]) == ["New page", "Page 2, edited", "Page 5, edited"]

    site.clear_log()
    quiet = cli("run", "job.yaml", "--recrawl", "--progress", "off")  # nothing changed since
    assert quiet.returncode == 0 and "not-modified 12" in quiet.stderr
    assert {r["status"] for r in site.page_requests()} == {"304"}
    assert len(jsonl(tmp_path / "items.jsonl")) == 14


async def test_recrawl_in_the_library(tmp_path: Path, static_site: SiteFactory) -> None:
    _site(tmp_path / "www", pages=4)
    site = static_site(tmp_path / "www")
    job = Job(start_urls=[site.url + "/"], state=str(tmp_path / "state"), http=HttpConfig(http2=False))
    async with Crawler(job) as crawler:
        assert len([p async for p in crawler.crawl()]) == 5
    write_page(tmp_path / "www", "/p1.html", "Page 1, edited", ["/"])
    async with Crawler(job, recrawl=True) as crawler:
        changed = [p.url.removeprefix(site.url) async for p in crawler.crawl()]
    assert changed == ["/p1.html"]
    assert crawler.stats.not_modified == 4 and crawler.stats.as_dict()["not_modified"] == 4
    with pytest.raises(ValueError, match="state: DIR"):
        async with Crawler(Job(start_urls=[site.url + "/"]), recrawl=True):
            pass


def test_recrawl_without_state_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    job_yaml(tmp_path, "start_urls: ['http://127.0.0.1:1/']\n")
    proc = cli("run", "job.yaml", "--recrawl")
    assert proc.returncode == 2 and "--recrawl needs state: DIR" in proc.stderr


SITEMAP_INDEX = """<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>{url}/sitemap-new.xml</loc><lastmod>2024-07-01</lastmod></sitemap>
  <sitemap><loc>{url}/sitemap-old.xml</loc><lastmod>2023-01-01T10:00:00+00:00</lastmod></sitemap>
</sitemapindex>
"""
URLSET = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
{entries}
</urlset>
"""


def _entry(url: str, lastmod: str | None) -> str:
    return f"<url><loc>{url}</loc>" + (f"<lastmod>{lastmod}</lastmod>" if lastmod else "") + "</url>"


@pytest.mark.parametrize("via", ["cli", "library"])
async def test_sitemap_since_skips_entries_modified_before(cli: Cli, tmp_path: Path, static_site: SiteFactory,
                                                           via: str) -> None:  # fmt: skip
    root = tmp_path / "www"
    for name in ("a", "b", "c", "d", "e"):
        write_page(root, f"/{name}.html", name.upper())
    site = static_site(root)
    (root / "sitemap-index.xml").write_text(SITEMAP_INDEX.format(url=site.url))
    (root / "sitemap-new.xml").write_text(URLSET.format(entries="\n".join([
        _entry(f"{site.url}/a.html", "2024-06-15"), _entry(f"{site.url}/b.html", "2024-05-31T23:59:59Z"),
        _entry(f"{site.url}/c.html", None), _entry(f"{site.url}/d.html", "2024-06-01")])))  # fmt: skip
    (root / "sitemap-old.xml").write_text(URLSET.format(entries=_entry(f"{site.url}/e.html", "2022-01-01")))
    if via == "cli":
        job_yaml(tmp_path, f"start_sitemaps: [{{url: '{site.url}/sitemap-index.xml', since: 2024-06-01}}]\n"
                           "http: {http2: false}\nextract: {links: null}\noutput: {items: items.jsonl}\n")  # fmt: skip
        proc = cli("run", "job.yaml", "--progress", "off")
        assert proc.returncode == 0, proc.stderr
    else:
        job = Job.model_validate({"start_sitemaps": [{"url": f"{site.url}/sitemap-index.xml", "since": "2024-06-01"}],
                                  "http": {"http2": False}, "extract": {"links": None}})  # fmt: skip
        async with Crawler(job) as crawler:
            await crawler.run()
    fetched = sorted(r["uri"] for r in site.page_requests())
    assert fetched == ["/a.html", "/c.html", "/d.html", "/sitemap-index.xml", "/sitemap-new.xml"]
