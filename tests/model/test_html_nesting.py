"""A document nested too deep for the HTML parser's quadratic end-tag search, or with more tags than its tree
can hold in bounded memory, is refused before parsing."""

from __future__ import annotations

import time

import httpx
import pytest

from crawler.model.errors import FetchError
from crawler.model.page import MAX_HTML_DEPTH, MAX_HTML_TAGS, Page
from crawler.model.request import Request


def _page(body: str) -> Page:
    headers = httpx.Headers({"content-type": "text/html"})
    return Page(Request.make("http://a.test/"), "http://a.test/", 200, "HTTP/1.1", headers, body.encode())


def test_a_hundred_thousand_nested_divs_are_refused_at_once() -> None:
    n = 100_000
    page = _page("<html><body>" + "<div>" * n + "x" + "</div>" * n + "</body></html>")
    started = time.perf_counter()
    with pytest.raises(FetchError) as caught:
        page.html  # noqa: B018 - parsing is the point
    assert caught.value.kind == "html_too_deep"
    assert time.perf_counter() - started < 1.0  # the parser alone needs about 30 s


def test_a_large_flat_page_and_a_moderately_deep_one_still_parse() -> None:
    flat = _page("<html><body>" + "<p>x</p>" * 30_000 + "</body></html>")
    assert len(flat.html.css("p")) == 30_000
    depth = MAX_HTML_DEPTH // 2
    deep = _page("<html><body>" + "<div>" * depth + "<a href=/x>x</a>" + "</div>" * depth + "</body></html>")
    assert deep.html.css_first("a") is not None


def test_a_page_of_a_million_links_is_refused_before_its_tree_is_built() -> None:
    page = _page("<html><body>" + '<a href="/l">.</a>' * 1_000_000 + "</body></html>")
    started = time.perf_counter()
    with pytest.raises(FetchError) as caught:
        page.html  # noqa: B018 - parsing is the point
    assert caught.value.kind == "html_too_large"
    assert time.perf_counter() - started < 0.5  # parsing it takes ~1.4 s and ~430 MB


def test_a_page_just_under_the_tag_limit_parses() -> None:
    n = MAX_HTML_TAGS - 10  # html, head, body and the rest stay under the limit
    page = _page("<html><body>" + "<br>" * n + "</body></html>")
    assert page.html.body is not None
    over = _page("<html><body>" + "<br>" * (MAX_HTML_TAGS + 1) + "</body></html>")
    with pytest.raises(FetchError):
        over.html  # noqa: B018


@pytest.mark.parametrize("depth", [MAX_HTML_DEPTH - 100, MAX_HTML_DEPTH + 1])
def test_the_cheap_depth_bound_never_hides_a_deep_document(depth: int) -> None:
    from crawler.model.page import _may_nest_deeper

    # Padded with 30,000 flat elements so the exact scan is considered at all; the deep part sits in the middle.
    flat = "<p>x</p>" * 15_000
    body = ("<html><body>" + flat + "<div>" * depth + "x" + "</div>" * depth + flat + "</body></html>").encode()
    assert _may_nest_deeper(body, MAX_HTML_DEPTH) or depth <= MAX_HTML_DEPTH
    page = _page(body.decode())
    if depth > MAX_HTML_DEPTH:
        with pytest.raises(FetchError) as caught:
            page.html  # noqa: B018 - parsing is the point
        assert caught.value.kind == "html_too_deep"
    else:
        assert page.html.css_first("div") is not None


def test_a_long_flat_page_is_cleared_by_the_cheap_bound() -> None:
    from crawler.model.page import _may_nest_deeper

    body = ("<html><body>" + "<li><a href=/x>x</a> <span>y</span></li>" * 20_000 + "</body></html>").encode()
    assert body.count(b"</") >= 20_000  # past the point where the exact scan would run
    assert not _may_nest_deeper(body, MAX_HTML_DEPTH)
