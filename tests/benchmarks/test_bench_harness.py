"""The benchmark harness, fast: a 50-page site, our crawler through `run_crawls` against nginx on all three
listeners, and the report built from what it measured. No peers are installed or run."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from benchmarks.nginx import Nginx, find_nginx
from benchmarks.realpages import build_real_site
from benchmarks.run import (
    BenchSite,
    Peers,
    measure,
    render_markdown,
    run_crawls,
    summarize_collapsed,
    targets,
)
from benchmarks.site import LINKS_PER_PAGE, generate_site
from benchmarks.startup import measure_startup

PAGES = 50
HREF = re.compile(rb'href="/p/(\d+)\.html"')


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_site(tmp_path_factory.mktemp("bench-site"), PAGES)


@pytest.fixture(scope="module")
def nginx(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Nginx:
    if find_nginx() is None:
        message = "nginx is not installed (apt-get install nginx-light; .ci/run does)"
        if os.environ.get("CI") or os.environ.get("CRAWLER_REQUIRE_NGINX"):
            pytest.fail(message)
        pytest.skip(message)
    with Nginx(site, tmp_path_factory.mktemp("bench-nginx")) as server:
        yield server


def test_every_page_is_reachable_from_page_zero_with_about_14_links(site: Path) -> None:
    links = {int(p.stem): [int(m) for m in HREF.findall(p.read_bytes())] for p in (site / "p").glob("*.html")}
    assert len(links) == PAGES
    assert all(len(set(v)) == min(LINKS_PER_PAGE, PAGES - 1) for v in links.values())
    seen, todo = {0}, [0]
    while todo:
        for t in links[todo.pop()]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    assert seen == set(range(PAGES))
    sizes = [p.stat().st_size for p in (site / "p").glob("*.html")]
    assert 7_000 < min(sizes) and max(sizes) < 9_000


def test_regenerating_the_same_site_reuses_it(site: Path) -> None:
    before = (site / "p" / "0.html").stat().st_mtime_ns
    assert generate_site(site.parent, PAGES) == site
    assert (site / "p" / "0.html").stat().st_mtime_ns == before


def test_measure_reports_wall_cpu_and_peak_rss_of_the_child() -> None:
    code = "x = bytearray(40_000_000)\nfor i in range(0, len(x), 4096): x[i] = 1\nsum(range(3_000_000))\nprint('ok')"
    res = measure([sys.executable, "-c", code], timeout=30)
    assert res.code == 0 and res.stdout.strip() == "ok"
    assert res.peak_rss > 40_000_000
    assert 0 < res.cpu < 30 and res.wall > 0


def test_measure_kills_a_run_that_overstays() -> None:
    res = measure([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert res.timed_out and res.wall < 10


def test_our_crawl_through_the_harness_and_the_report(nginx: Nginx, site: Path, tmp_path: Path) -> None:
    rows = run_crawls(nginx, site, tools=["ours-h1", "ours-h2", "ours-h2c", "scrapy-h1"], repeats=1,
                      peers=Peers(None), workdir=tmp_path, timeout=60, log=lambda _: None)  # fmt: skip
    by_key = {r["key"]: r for r in rows}
    for key in ("ours-h1", "ours-h2c", "ours-h2"):
        r = by_key[key]
        assert r["ok"], r["error"]
        assert r["pages"] == PAGES
        assert r["pages_per_s"] > 0 and r["cpu"] > 0 and r["peak_rss_mb"] > 10 and r["mb_per_s"] > 0
        assert r["runs"] and len(r["runs"]) == 1
    assert by_key["ours-h1"]["http_versions"] == {"HTTP/1.1": PAGES}
    assert by_key["ours-h2"]["http_versions"] == {"HTTP/2": PAGES}
    assert by_key["ours-h2c"]["http_versions"] == {"HTTP/2": PAGES}
    assert not by_key["scrapy-h1"]["ok"] and "not installed" in by_key["scrapy-h1"]["error"]

    results = {
        "meta": {"date": "today", "args": "", "duration_min": 0.1, "machine": {"cores": "2"}, "problems": [],
                 "nginx": nginx.version_text, "versions": {"crawler": "test"}, "load_before": 0.0,
                 "load_after": 0.0, "crawl": {"pages": PAGES, "repeats": 1}},
        "crawl": rows,
    }  # fmt: skip
    results["targets"] = targets(results)
    md = render_markdown(results)
    assert "## Whole-site crawl" in md and "## Targets" in md
    assert "| HTTP/1.1 | **crawler (ours)** |" in md
    assert "not run: scrapy is not installed" in md
    assert "| whole-site crawl >= 5x Scrapy (HTTP/1.1) | -x Scrapy | not measured |" in md


def test_profile_summary_groups_self_time_by_area() -> None:
    stacks = (
        'process 1:"python -m crawler";run (crawler/engine/crawler.py:10);send (crawler/http/transport/http11.py:5) 30\n'
        "run (crawler/engine/crawler.py:10);links (pipelines/links.py:3) 10\n"
        "_find_and_load (<frozen importlib._bootstrap>:1) 10\n"
    )
    s = summarize_collapsed(stacks)
    assert s["samples"] == 50
    assert s["self_by_area"][0] == ("crawler/http/transport/http11", 60.0)
    assert ("importlib (start-up imports)", 20.0) in s["self_by_area"]
    assert dict(s["inclusive_by_area"])["crawler/engine/crawler"] == 80.0


def _tiny_docs(root: Path) -> Path:
    """Three linked pages in two folders, one orphan, and links the crawl must not follow."""
    (root / "lib").mkdir(parents=True)
    page = '<html><head><title>{t}</title></head><body>{links}</body></html>'
    (root / "index.html").write_text(page.format(t="Index", links='<a href="lib/a.html#x">a</a>'
                                                 '<a href="https://www.python.org/">out</a><a href="#top">top</a>'))
    (root / "lib" / "a.html").write_text(page.format(t="A", links='<a href="./b.html">b</a><a href="../index.html">i</a>'))
    (root / "lib" / "b.html").write_text(page.format(t="B", links='<a href="../lib/a.html?">a</a>'))
    (root / "orphan.html").write_text(page.format(t="Orphan", links=""))
    return root


def test_real_page_site_mounts_the_docs_and_knows_the_reachable_pages(tmp_path: Path) -> None:
    docs = _tiny_docs(tmp_path / "docs")
    real = build_real_site(tmp_path / "real", mounts=3, docs=docs, log=lambda _: None)
    assert real.start == "/index.html"
    expected = {"/index.html"} | {f"/m{i:02d}/{p}" for i in range(3) for p in ("index.html", "lib/a.html", "lib/b.html")}
    assert set(real.paths) == expected  # the orphan is not reachable; external and fragment links are not pages
    assert all((real.www / p.lstrip("/")).is_file() for p in real.paths)
    assert real.sizes["/m01/lib/a.html"] == (docs / "lib" / "a.html").stat().st_size
    again = build_real_site(tmp_path / "real", mounts=3, docs=docs, log=lambda _: pytest.fail("rebuilt"))
    assert again.paths == real.paths


def test_our_crawl_of_the_real_page_site_reaches_every_page(tmp_path: Path) -> None:
    if find_nginx() is None:
        message = "nginx is not installed (apt-get install nginx-light; .ci/run does)"
        if os.environ.get("CI") or os.environ.get("CRAWLER_REQUIRE_NGINX"):
            pytest.fail(message)
        pytest.skip(message)
    real = build_real_site(tmp_path / "real", mounts=2, docs=_tiny_docs(tmp_path / "docs"), log=lambda _: None)
    site = BenchSite("real", real.www, real.start, real.paths, real.sizes)
    with Nginx(real.www, tmp_path / "nginx") as server:
        rows = run_crawls(server, site, tools=["ours-h1"], repeats=1, peers=Peers(None), workdir=tmp_path,
                          timeout=60, log=lambda _: None)  # fmt: skip
    assert rows[0]["ok"], rows[0]["error"]
    assert rows[0]["pages"] == len(real.paths) == 7
    assert rows[0]["cpu_ms_per_page"] > 0


def test_start_up_is_measured_to_the_first_request() -> None:
    rows = {r["case"]: r for r in measure_startup(1, log=lambda _: None)}
    for case in ("crawler run JOB", "crawler download URL"):
        row = rows[case]
        assert row["error"] is None and row["runs"] == 1
        floor = rows["python -c pass (the floor)"]["best_ms"]
        assert floor < row["best_ms"] < 30_000 and 0 < row["cpu_ms"] < 30_000
