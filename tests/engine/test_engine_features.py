"""Engine features against real servers: caps, Crawl-delay, files, writers, import-path stages, proxy,
headers, auth, <base href>."""

from __future__ import annotations

import csv
import itertools
import json
import time
from pathlib import Path

from crawler.demo.site import SiteServer
from tests.engine._helpers import crawl_all as _crawl
from tests.engine._helpers import make_job as _job


async def test_per_host_in_flight_cap_is_measured_at_the_server(site_factory) -> None:
    site = site_factory(tls=False)
    job = _job([site.url + f"/slow/100?i={i}" for i in range(24)], site.ca_path,
               concurrency={"workers": 20, "per_host": 3}, extract={"links": None})
    pages, _ = await _crawl(job)
    assert len(pages) == 24
    assert site.counters()["max_inflight"] == 3


async def test_robots_crawl_delay_lowers_the_host_rate(site_factory) -> None:
    site = site_factory(tls=False, robots="delay:0.4")
    job = _job([site.url + f"/page/{n}" for n in range(6)], site.ca_path, scope={"robots_txt": True},
               extract={"links": None}, concurrency={"workers": 8, "per_host": 8})
    pages, _ = await _crawl(job)
    assert len(pages) == 6
    times = sorted(e["t"] for e in site.log() if e["path"].startswith("/page/"))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.35, gaps


async def test_robots_disallow_is_obeyed_at_the_server(site_factory) -> None:
    site = site_factory(tls=False, robots="private")
    job = _job([site.url + "/links?href=/private/a&href=/page/1"], site.ca_path, scope={"robots_txt": True,
               "max_depth": 1})
    pages, crawler = await _crawl(job)
    assert not site.paths("/private/")
    assert site.paths("/robots.txt") == ["/robots.txt"]
    assert crawler.stats.robots_denied == 1
    assert {p.url for p in pages} >= {site.url + "/page/1"}


async def test_matched_files_stream_to_disk_and_appear_only_complete(http1_site: SiteServer, tmp_path: Path) -> None:
    out = tmp_path / "files"
    job = _job([http1_site.url + "/files?count=6"], http1_site.ca_path, scope={"max_depth": 1},
               save={"match": [r"/file/.*\.(pdf|zip)$"], "dir": str(out)}, extract={"links": "a[href^='/file/']"})
    pages, _crawler = await _crawl(job)
    saved = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    host = f"127.0.0.1_{http1_site.port}"
    assert saved == [f"{host}/file/doc-0.pdf", f"{host}/file/doc-3.zip"]
    assert not list(out.rglob("*.part"))
    pdf = out / host / "file" / "doc-0.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    by_url = {p.url: p for p in pages}
    assert by_url[http1_site.url + "/file/doc-0.pdf"].path == pdf


async def test_csv_and_jsonl_writers_with_import_path_stage(http1_site: SiteServer, tmp_path: Path) -> None:
    for ext in ("csv", "jsonl"):
        items = tmp_path / f"items.{ext}"
        job = _job([http1_site.url + "/page/1"], http1_site.ca_path, scope={"max_depth": 0},
                   extract={"fields": {"title": "title", "tags": "ul.tags li::text[]"}},
                   output={"items": str(items)}, stages=["tests.engine.stages_for_tests:tag"])
        pages, _ = await _crawl(job)
        assert pages[0].item["tagged_by"] == "import-path stage"
        if ext == "csv":
            rows = list(csv.DictReader(items.open()))
            assert rows[0]["url"] == http1_site.url + "/page/1" and rows[0]["title"].startswith("Page 1")
            assert json.loads(rows[0]["tags"])
        else:
            record = json.loads(items.read_text())
            assert record["tagged_by"] == "import-path stage" and record["status"] == 200
            assert record["depth"] == 0 and record["fetched_at"].endswith("Z")


async def test_base_href_resolves_links(http1_site: SiteServer) -> None:
    job = _job([http1_site.url + "/base-href"], http1_site.ca_path, scope={"max_depth": 1})
    pages, _ = await _crawl(job)
    assert {p.url for p in pages} == {http1_site.url + "/base-href"} | {
        f"{http1_site.url}/page/{n}" for n in (3, 4, 5)}


async def test_headers_user_agent_and_basic_auth_reach_the_server(http1_site: SiteServer) -> None:
    job = _job([http1_site.url + "/headers", http1_site.url + "/basic-auth?user=u&password=p"], http1_site.ca_path,
               http={"user_agent": "testbot/9", "headers": {"X-Team": "crawl"}, "auth": {"basic": ["u", "p"]}},
               extract={"links": None})
    pages, _ = await _crawl(job)
    by_path = {p.url.split("/", 3)[3]: p for p in pages}
    echoed = json.loads(by_path["headers"].body)["headers"]
    assert echoed["user-agent"] == "testbot/9" and echoed["x-team"] == "crawl"
    assert by_path["basic-auth?user=u&password=p"].status == 200


async def test_requests_go_through_the_configured_proxy(http1_site: SiteServer) -> None:
    # The target host does not resolve: the request can only reach the test site, acting as a forward
    # proxy, which logs it in absolute form (and, being no real proxy, answers 404).
    job = _job(["http://proxied.invalid/page/7"], http1_site.ca_path, http={"proxy": http1_site.url},
               extract={"links": None}, retry={"attempts": 1})
    http1_site.clear_log()
    _pages, crawler = await _crawl(job)
    assert "http://proxied.invalid/page/7" in [e["path"] for e in http1_site.log()]
    assert crawler.stats.statuses[404] == 1 and not crawler.stats.errors.keys() - {"http_404"}


async def test_bearer_token_is_sent(http1_site: SiteServer) -> None:
    job = _job([http1_site.url + "/headers"], http1_site.ca_path, http={"auth": {"bearer": "s3cret"}},
               extract={"links": None})
    pages, _ = await _crawl(job)
    assert json.loads(pages[0].body)["headers"]["authorization"] == "Bearer s3cret"


async def test_connection_refused_host_is_reported_not_fatal(http1_site: SiteServer) -> None:
    job = _job(["http://127.0.0.1:9/", http1_site.url + "/page/2"], http1_site.ca_path,
               retry={"attempts": 2, "backoff": {"initial": 0.01}}, scope={"max_depth": 0})
    started = time.monotonic()
    pages, crawler = await _crawl(job)
    assert [p.url for p in pages] == [http1_site.url + "/page/2"]
    assert crawler.stats.errors["connect_error"] == 1
    assert time.monotonic() - started < 10


async def test_redirects_are_capped(http1_site: SiteServer) -> None:
    job = _job([http1_site.url + "/redirect/8?i=cap"], http1_site.ca_path, http={"max_redirects": 3},
               extract={"links": None})
    pages, crawler = await _crawl(job)
    assert pages == []
    assert crawler.stats.errors["too_many_redirects"] == 1
    assert len(http1_site.paths("/redirect/")) >= 4


async def test_http2_prior_knowledge_speaks_h2c_to_cleartext_origins(http1_site: SiteServer) -> None:
    http1_site.clear_log()
    job = _job([http1_site.url + "/"], http1_site.ca_path, scope={"max_pages": 30},
               http={"http2_prior_knowledge": True})
    pages, _ = await _crawl(job)
    assert len(pages) == 30
    assert {p.http_version for p in pages} == {"HTTP/2"}
    seen = [e for e in http1_site.log() if e["path"] == "/" or e["path"].startswith("/page/")]
    assert {e["http_version"] for e in seen} == {"2"}
    assert len({e["client"] for e in seen}) == 1
