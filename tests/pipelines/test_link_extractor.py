"""The link stage on pages built in memory: resolution, the per-directory and per-URL caches, scope, the cap."""

from __future__ import annotations

import httpx

from crawler.config.job import Job
from crawler.model.page import Page
from crawler.model.request import Request
from crawler.pipelines.links import LinkExtractor

_HTML = httpx.Headers({"content-type": "text/html; charset=utf-8"})


def _page(url: str, body: str, depth: int = 0) -> Page:
    return Page(Request.make(url, depth=depth), url, 200, "HTTP/1.1", _HTML, body.encode())


def _anchors(*hrefs: str, head: str = "") -> str:
    return f"<html><head>{head}<title>t</title></head><body>" + "".join(f'<a href="{h}">x</a>' for h in hrefs)


def _extractor(**scope: object) -> LinkExtractor:
    job = Job.model_validate({"start_urls": ["http://site.example/"], "scope": scope})
    stage = LinkExtractor.from_job(job)
    assert stage is not None
    return stage


def test_links_are_resolved_canonical_and_in_document_order() -> None:
    page = _page("http://site.example/docs/a/page.html?x=1",
                 _anchors("../b.html#frag", "?y=2", "//other.example/p", "mailto:x@y.z", "#top", "C.html"))  # fmt: skip
    assert _extractor().links(page) == ["http://site.example/docs/b.html", "http://site.example/docs/a/page.html?y=2",
                                        "http://other.example/p", "http://site.example/docs/a/C.html"]  # fmt: skip


def test_each_url_is_queued_once_across_pages_and_spellings() -> None:
    stage = _extractor()
    first = _page("http://site.example/d/1.html", _anchors("2.html", "./2.html", "x/../2.html#a", "3.html"))
    stage(first)
    assert [r.url for r in first.requests] == ["http://site.example/d/2.html", "http://site.example/d/3.html"]
    assert all(r.depth == 1 and r.referer == first.url for r in first.requests)
    second = _page("http://site.example/d/2.html", _anchors("2.html", "3.html", "4.html", "/d/3.html"))
    stage(second)
    assert [r.url for r in second.requests] == ["http://site.example/d/4.html"]


def test_query_only_links_are_resolved_against_each_page() -> None:
    stage = _extractor()
    a, b = _page("http://site.example/d/a.html", _anchors("?p=2")), _page("http://site.example/d/b.html", _anchors("?p=2"))
    stage(a)
    stage(b)
    assert [r.url for r in a.requests + b.requests] == ["http://site.example/d/a.html?p=2",
                                                        "http://site.example/d/b.html?p=2"]  # fmt: skip


def test_scope_and_depth_are_applied_before_a_request_is_built() -> None:
    stage = _extractor(deny=[r"/private/"], max_depth=1)
    page = _page("http://site.example/", _anchors("/ok", "/private/x", "http://elsewhere.example/"))
    stage(page)
    assert [r.url for r in page.requests] == ["http://site.example/ok"]
    deep = _page("http://site.example/ok", _anchors("/deeper"), depth=1)
    stage(deep)
    assert deep.requests == []


def test_base_href_in_head_is_the_base() -> None:
    page = _page("http://site.example/a/b.html", _anchors("c.html", head='<base href="/root/">'))
    assert _extractor().links(page) == ["http://site.example/root/c.html"]


def test_links_past_max_links_are_left_out_and_counted_on_the_page() -> None:
    job = Job.model_validate({"start_urls": ["http://site.example/"], "extract": {"max_links": 3}})
    stage = LinkExtractor.from_job(job)
    assert stage is not None
    page = _page("http://site.example/", _anchors(*[f"/p{i}" for i in range(10)]))
    stage(page)
    assert [r.url for r in page.requests] == ["http://site.example/p0", "http://site.example/p1", "http://site.example/p2"]
    assert page.links_capped == 7
