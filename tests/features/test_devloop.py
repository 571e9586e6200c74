"""The development loop (issue 13, point 1): the HTTP cache (hishel; `http.cache`, `http.cache_mode`),
`crawler fetch` and `crawler shell`. Requests are counted at the server (nginx's access log)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crawler import Crawler, ExtractConfig, HttpConfig, Job
from tests.features.conftest import Cli, SiteFactory, StaticSite, job_yaml, jsonl, write_page

pytestmark = pytest.mark.timeout(90)


def _site(root: Path, pages: int = 12) -> None:
    write_page(root, "/", "Home", [f"/p{i}.html" for i in range(pages)] + ["/cached/a.html"])
    for i in range(pages):
        write_page(root, f"/p{i}.html", f"Page {i}", ["/", f"/p{(i + 1) % pages}.html"],
                   body=f'<p class="price">Price: {i}.50 EUR</p>')  # fmt: skip
    write_page(root, "/cached/a.html", "Cached A")
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")


def _job(site: StaticSite, extra: str = "") -> str:
    return (f"start_urls: ['{site.url}/']\nhttp: {{http2: false, cache: cache, cache_mode: always}}\n"
            "rate_limit: {per_host: unlimited}\n"
            "extract: {fields: {title: title, price: {css: '.price', re: '([\\d.]+)'}}}\n"
            f"output: {{items: items.jsonl}}\n{extra}")  # fmt: skip


def test_second_run_of_a_cached_job_makes_zero_requests(cli: Cli, tmp_path: Path, static_site: SiteFactory) -> None:
    _site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, _job(site))
    first = cli("run", "job.yaml", "--progress", "off")
    assert first.returncode == 0, first.stderr
    served = len(site.requests())
    assert served == 15  # robots.txt, home, 12 pages, /cached/a.html
    items = sorted(jsonl(tmp_path / "items.jsonl"), key=lambda i: str(i["url"]))
    assert (tmp_path / "cache" / "http-cache.sqlite3").exists()

    site.clear_log()
    second = cli("run", "job.yaml", "--progress", "off")
    assert second.returncode == 0, second.stderr
    assert site.requests() == []  # counted at the server: nothing reached it
    again = sorted(jsonl(tmp_path / "items.jsonl"), key=lambda i: str(i["url"]))
    assert [(i["url"], i["title"], i["price"]) for i in again] == [(i["url"], i["title"], i["price"]) for i in items]
    assert "pages 14" in second.stderr


def test_always_mode_caches_redirects_and_error_pages_but_not_transient_answers(
        cli: Cli, tmp_path: Path, static_site: SiteFactory) -> None:  # fmt: skip
    # nginx answers /sub with a 301 to /sub/ and /missing.html with a 404: both are kept, so the second run
    # still makes no request (Scrapy's HTTPCACHE keeps them too; a broken-link check reruns from the cache).
    root = tmp_path / "www"
    write_page(root, "/", "Home", ["/sub", "/missing.html", "/p.html"])
    write_page(root, "/sub/", "Sub")
    write_page(root, "/p.html", "P")
    site = static_site(root)
    job_yaml(tmp_path, _job(site))
    first = cli("run", "job.yaml", "--progress", "off")
    served = {r["uri"]: r["status"] for r in site.requests()}
    assert served == {"/robots.txt": "404", "/": "200", "/sub": "301", "/sub/": "200", "/missing.html": "404",
                      "/p.html": "200"}  # fmt: skip
    assert "http_404" in first.stderr
    titles = sorted(str(i["title"]) for i in jsonl(tmp_path / "items.jsonl"))
    assert titles == ["Home", "P", "Sub"]

    site.clear_log()
    second = cli("run", "job.yaml", "--progress", "off")
    assert [(r["uri"], r["status"]) for r in site.requests()] == []
    assert second.returncode == first.returncode
    assert "http_404" in second.stderr
    assert sorted(str(i["title"]) for i in jsonl(tmp_path / "items.jsonl")) == titles


async def test_always_mode_never_keeps_a_429_or_a_5xx_and_ignores_a_servers_own_marker(tmp_path: Path) -> None:
    import httpx

    from crawler.http.cache import cached_transport

    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        status = {"/busy": 503, "/slow": 429, "/gone": 410}.get(request.url.path, 200)
        # A server sending the cache's own header never changes the status the crawl sees.
        return httpx.Response(status, headers={"X-Crawler-Cached-Status": "404"}, text=request.url.path)

    config = HttpConfig(cache=str(tmp_path / "cache"), cache_mode="always")
    transport = cached_transport(httpx.MockTransport(answer), config)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):
            seen = {path: (await client.get(f"http://t.test{path}")) for path in ("/ok", "/busy", "/slow", "/gone")}
            assert {p: r.status_code for p, r in seen.items()} == {"/ok": 200, "/busy": 503, "/slow": 429,
                                                                  "/gone": 410}  # fmt: skip
            assert all("x-crawler-cached-status" not in r.headers for r in seen.values())
            assert seen["/gone"].text == "/gone"
    # Kept: /ok and /gone (asked once); never kept: /busy and /slow (asked both times).
    assert sorted(calls) == ["/busy", "/busy", "/gone", "/ok", "/slow", "/slow"]


def test_rfc9111_mode_honours_the_servers_caching_rules(cli: Cli, tmp_path: Path, static_site: SiteFactory) -> None:
    _site(tmp_path / "www", pages=3)
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, _job(site).replace("cache_mode: always", "cache_mode: rfc9111"))
    assert cli("run", "job.yaml", "--progress", "off").returncode == 0
    site.clear_log()
    assert cli("run", "job.yaml", "--progress", "off").returncode == 0
    second = {r["uri"]: r for r in site.requests()}
    # /cached/ answers with Cache-Control: max-age=3600: fresh, so served from the cache.
    assert "/cached/a.html" not in second
    # The others carry only ETag/Last-Modified: revalidated, and nginx answers 304 Not Modified.
    assert second["/p0.html"]["status"] == "304" and second["/p0.html"]["if_none_match"]
    assert {r["status"] for uri, r in second.items() if uri.endswith(".html")} == {"304"}


async def test_cache_in_the_library(tmp_path: Path, static_site: SiteFactory) -> None:
    _site(tmp_path / "www", pages=5)
    site = static_site(tmp_path / "www")
    job = Job(start_urls=[site.url + "/"], extract=ExtractConfig(fields={"title": "title"}),
              http=HttpConfig(http2=False, cache=str(tmp_path / "c"), cache_mode="always"))  # fmt: skip
    runs = []
    for _ in range(2):
        site.clear_log()
        async with Crawler(job) as crawler:
            titles = sorted([str(page.item["title"]) async for page in crawler.crawl()])
        runs.append((titles, len(site.requests())))
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 7
    assert runs[0][1] == 8 and runs[1][1] == 0


JOB_WITH_ROUTES = """\
start_urls: ['{url}/']
http: {{http2: false}}
extract: {{fields: {{title: title}}}}
routes:
  - match: '/p\\d+\\.html$'
    fields: {{heading: 'h1::text', price: {{css: '.price', re: '([\\d.]+)'}}}}
"""


def test_fetch_prints_what_the_job_extracts(cli: Cli, tmp_path: Path, static_site: SiteFactory) -> None:
    _site(tmp_path / "www", pages=3)
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, JOB_WITH_ROUTES.format(url=site.url))
    proc = cli("fetch", f"{site.url}/p1.html", "--job", "job.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == 200 and report["headers"]["etag"]
    assert report["item"] == {"heading": "Page 1", "price": "1.50"}
    assert report["links"] == [f"{site.url}/", f"{site.url}/p2.html"]
    text = cli("fetch", f"{site.url}/", "--job", "job.yaml")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"HTTP/1.1 200  {site.url}/\n")
    assert '  title: "Home"' in text.stdout and "links (4):" in text.stdout
    missing = cli("fetch", f"{site.url}/nope.html")
    assert missing.returncode == 0 and "HTTP/1.1 404" in missing.stdout and "handle_statuses" in missing.stdout
    refused = cli("fetch", "http://127.0.0.1:9/")
    assert refused.returncode == 1 and "ConnectError" in refused.stderr


def test_shell_gives_the_page_selectors_and_fetch(cli: Cli, tmp_path: Path, static_site: SiteFactory) -> None:
    _site(tmp_path / "www", pages=3)
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, JOB_WITH_ROUTES.format(url=site.url))
    script = ("print('A', page.status, css('title'))\n"
              "print('B', fields())\n"
              "print('C', len(links()))\n"
              "p = fetch('p2.html')\n"
              "print('D', page.url.rsplit('/', 1)[1], fields(), css('.price::text'))\n")  # fmt: skip
    proc = cli("shell", f"{site.url}/", "--job", "job.yaml", "--plain", stdin=script)
    assert proc.returncode == 0, proc.stderr
    # The stdlib console writes its prompts to stdout when stdin is not a terminal.
    lines = [re.sub(r"^(>>> |\.\.\. )+", "", line) for line in proc.stdout.splitlines()]
    out = {line.split(" ", 1)[0]: line for line in lines if line.strip(">. ")}
    assert set(out) == {"A", "B", "C", "D"}, proc.stdout + proc.stderr
    assert "A 200 ['Home']" in out["A"]
    assert "B {'title': 'Home'}" in out["B"]
    assert "C 4" in out["C"]
    assert "D p2.html {'heading': 'Page 2', 'price': '2.50'} ['Price: 2.50 EUR']" in out["D"]
