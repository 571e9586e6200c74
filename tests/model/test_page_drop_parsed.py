"""`Page.drop_parsed` frees the parsed tree and decoded text; reading them again rebuilds the same."""

from __future__ import annotations

import httpx

from crawler.model.page import Page
from crawler.model.request import Request


def test_a_page_rebuilds_its_tree_and_text_after_dropping_them() -> None:
    headers = httpx.Headers({"content-type": "text/html; charset=utf-8"})
    body = "<html><body><a href='/x'>é</a></body></html>".encode()
    page = Page(Request.make("http://a.test/"), "http://a.test/", 200, "HTTP/1.1", headers, body)
    first = page.html
    text = page.text
    page.drop_parsed()
    again = page.html
    assert again is not first, "the tree was freed and parsed again"
    assert again.css_first("a").attributes["href"] == "/x"
    assert page.text == text == body.decode()
