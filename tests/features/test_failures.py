"""Failures reach user code (issue 13, point 2): `handle_statuses`, `crawl(include_failures=True)`, `on_error`
hooks in YAML and in code, `output.failures`, and configs/broken-links.yaml run against nginx serving a site
with broken links (404s, a 410, a persistent 503 and a dead port)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crawler import Crawler, Failure, HttpConfig, Job, Page, RetryConfig
from crawler.config.job import BackoffConfig, load_job_text
from tests.features import stages_for_tests
from tests.features.conftest import REPO_ROOT, Cli, SiteFactory, StaticSite, job_yaml, write_page

pytestmark = pytest.mark.timeout(90)

DEAD = "http://127.0.0.1:1/dead.html"  # nothing listens on port 1: connection refused


def _broken_site(root: Path) -> dict[str, tuple[str, str]]:
    """A 20-page site; returns the broken links: path -> (kind, the page linking to it)."""
    pages = 20
    write_page(root, "/", "Home", [f"/p{i}.html" for i in range(pages)])
    broken = {"/missing-a.html": ("http_404", "/p3.html"), "/docs/missing-b.html": ("http_404", "/p7.html"),
              "/gone": ("http_410", "/p11.html"), "/down": ("http_503", "/p15.html"),
              DEAD: ("connect_error", "/p18.html")}  # fmt: skip
    for i in range(pages):
        links = ["/", f"/p{(i + 1) % pages}.html"] + [href for href, (_, ref) in broken.items() if ref == f"/p{i}.html"]
        write_page(root, f"/p{i}.html", f"Page {i}", links)
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    return broken


def _expected(site: StaticSite, broken: dict[str, tuple[str, str]]) -> set[tuple[str, str, str]]:
    return {(href if href.startswith("http") else site.url + href, kind, site.url + ref)
            for href, (kind, ref) in broken.items()}  # fmt: skip


def test_broken_links_config_lists_every_broken_link_with_its_referrer(cli: Cli, tmp_path: Path,
                                                                       static_site: SiteFactory) -> None:  # fmt: skip
    broken = _broken_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    shutil.copy(REPO_ROOT / "configs" / "broken-links.yaml", tmp_path / "broken-links.yaml")
    proc = cli("run", "broken-links.yaml", "--progress", "off", "--set", "http.http2=false",
               "--set", "retry.backoff.initial=0.05", "--set", "rate_limit.per_host=unlimited",
               env={"START_URL": site.url + "/"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no output.items" not in proc.stderr
    lines = [json.loads(line) for line in (tmp_path / "out" / "broken-links.jsonl").read_text().splitlines()]
    assert {(r["url"], r["kind"], r["referer"]) for r in lines} == _expected(site, broken)
    assert len(lines) == len(broken)  # each broken link once
    by_kind = {r["kind"]: r for r in lines}
    assert by_kind["http_404"]["status"] == 404 and by_kind["http_410"]["status"] == 410
    assert by_kind["http_503"]["status"] == 503 and by_kind["http_503"]["attempts"] == 2
    assert by_kind["connect_error"]["status"] is None and by_kind["connect_error"]["message"]
    stats = json.loads((tmp_path / "out" / "broken-links-stats.json").read_text())
    assert stats["pages"] == 21 + 3  # the site, robots.txt excluded, and the three 4xx answers


async def test_crawl_include_failures_yields_failures_with_their_kind(tmp_path: Path,
                                                                      static_site: SiteFactory) -> None:  # fmt: skip
    broken = _broken_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    hooked: list[Failure] = []

    async def on_error(failure: Failure) -> None:
        hooked.append(failure)

    job = Job(start_urls=[site.url + "/"], http=HttpConfig(http2=False),
              retry=RetryConfig(attempts=2, backoff=BackoffConfig(initial=0.01, max=0.05)))  # fmt: skip
    pages: list[Page] = []
    failures: list[Failure] = []
    async with Crawler(job, on_error=[on_error]) as crawler:
        async for result in crawler.crawl(include_failures=True):
            if isinstance(result, Failure):
                failures.append(result)
            else:
                pages.append(result)
    assert {(f.url, f.kind, f.referer) for f in failures} == _expected(site, broken)
    assert [f.url for f in hooked] == [f.url for f in failures]  # the hook saw the same, in the same order
    assert len(pages) == 21 and all(p.status == 200 for p in pages)
    assert crawler.stats.errors == {"http_404": 2, "http_410": 1, "http_503": 1, "connect_error": 1}


async def test_handle_statuses_sends_error_pages_through_the_stages(tmp_path: Path,
                                                                    static_site: SiteFactory) -> None:  # fmt: skip
    _broken_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job = load_job_text(f"""
start_urls: ['{site.url}/']
http: {{http2: false}}
retry: {{attempts: 1}}
handle_statuses: [404, 410]
extract: {{fields: {{title: title}}}}
stages: ['tests.features.stages_for_tests:not_found_title']
on_error: tests.features.stages_for_tests:record_failure
output: {{items: {tmp_path / "items.jsonl"}}}
""")
    stages_for_tests.FAILURES.clear()
    async with Crawler(job) as crawler:
        handled = [p async for p in crawler.crawl() if p.status >= 400]
    assert sorted((p.status, p.url.removeprefix(site.url)) for p in handled) == [
        (404, "/docs/missing-b.html"), (404, "/missing-a.html"), (410, "/gone")]
    assert all(p.item["title"].startswith(f"{p.status} ") for p in handled)  # nginx's own error page
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert sum(1 for i in items if i.get("missing")) == 2
    # Not handled: the 503 and the dead port reached the YAML on_error hook.
    assert sorted(f.kind for f in stages_for_tests.FAILURES) == ["connect_error", "http_503"]


def test_on_error_in_yaml_through_the_console_script(cli: Cli, tmp_path: Path, static_site: SiteFactory) -> None:
    broken = _broken_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, f"start_urls: ['{site.url}/']\nhttp: {{http2: false}}\nretry: {{attempts: 1}}\n"
                       "on_error: ['tests.features.stages_for_tests:record_failure']\n"
                       "output: {items: items.jsonl}\nmax_error_rate: null\n")  # fmt: skip
    out = tmp_path / "failures.tsv"
    proc = cli("run", "job.yaml", "--progress", "off", env={"FAILURES_OUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    got = {(url, kind, referer) for kind, url, referer in (line.split("\t") for line in out.read_text().splitlines())}
    assert got == _expected(site, broken)
