"""JSON key paths and the JSON item extractor."""

from __future__ import annotations

import httpx
import pytest

from crawler import Page, Request
from crawler.config.specs import WILDCARD, parse_key_path
from crawler.pipelines.json_items import JsonItemExtractor, resolve

DOC = {"data": {"items": [{"id": 1, "tags": [{"n": "a"}, {"n": "b"}]}, {"id": 2, "tags": []}]},
       "odd.key": {"x": 1}, "0": "zero", "list": [10, 20, 30]}  # fmt: skip


@pytest.mark.parametrize(("path", "steps"), [
    ("a", ("a",)), ("$", ()), ("$.a.b", ("a", "b")), ("a[0].b", ("a", 0, "b")), ("a.0", ("a", 0)),
    ("a[*].b", ("a", WILDCARD, "b")), ("a[]", ("a", WILDCARD)), ("a.*", ("a", WILDCARD)),
    ('["odd.key"].x', ("odd.key", "x")), ("a[-1]", ("a", -1)),
])  # fmt: skip
def test_parse_key_path(path: str, steps: tuple[object, ...]) -> None:
    assert parse_key_path(path) == steps


@pytest.mark.parametrize("path", ["a..b", "a.", "a[", "a[x]", ".a", "a]b", '["a'])
def test_bad_key_paths_are_value_errors(path: str) -> None:
    with pytest.raises(ValueError, match="invalid key path"):
        parse_key_path(path)


@pytest.mark.parametrize(("path", "value"), [
    ("data.items[0].id", 1), ("data.items[-1].id", 2), ("data.items[*].id", [1, 2]),
    ("data.items[*].tags[*].n", ["a", "b"]), ('["odd.key"].x', 1), ("0", "zero"), ("list.1", 20),
    ("missing.x", None), ("list[9]", None), ("data.items[*].nope", []), ("$", DOC),
])  # fmt: skip
def test_resolve(path: str, value: object) -> None:
    assert resolve(DOC, parse_key_path(path)) == value


def _page(body: bytes, content_type: str = "application/json") -> Page:
    return Page(Request.make("http://a/api"), "http://a/api", 200, "HTTP/1.1",
                httpx.Headers({"content-type": content_type}), body)  # fmt: skip


def test_items_path_makes_one_item_per_element() -> None:
    page = _page(b'{"data": {"items": [{"id": 1}, {"id": 2}]}}')
    JsonItemExtractor({"ident": "id"}, "data.items")(page)
    assert page.items == [{"ident": 1}, {"ident": 2}]


def test_without_fields_an_element_is_the_item() -> None:
    page = _page(b'[{"id": 1}, 7]')
    JsonItemExtractor(items_path="$")(page)
    assert page.items == [{"id": 1}, {"value": 7}]


def test_fields_without_items_path_fill_the_page_item() -> None:
    page = _page(b'{"a": {"b": 3}}', "application/vnd.api+json")
    JsonItemExtractor({"b": "a.b"})(page)
    assert page.item["b"] == 3


def test_html_and_broken_json_are_left_alone() -> None:
    html = _page(b"<html></html>", "text/html")
    JsonItemExtractor({"b": "a.b"}, "x")(html)
    assert html.items is None and "b" not in html.item
    broken = _page(b'{"a": ')
    JsonItemExtractor({"b": "a.b"}, "x")(broken)
    assert broken.items is None


def test_json_links_are_followed_one_level_deeper() -> None:
    page = _page(b'{"results": [{"url": "/x"}, {"url": "https://b/y"}, {"url": 5}]}')
    JsonItemExtractor(links=["results[*].url"])(page)
    assert [(r.url, r.depth) for r in page.requests] == [("http://a/x", 1), ("https://b/y", 1)]
