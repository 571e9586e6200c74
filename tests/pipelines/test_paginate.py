"""Pagination in every style, JSON items (one per element), JSON links, and the depth rule."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from crawler.pipelines.paginate import next_links, with_query_param
from tests.pipelines.apisite import ITEMS, ApiServer
from tests.pipelines.conftest import run_job

ALL_IDS = list(range(ITEMS))


def _ids(items: list[dict]) -> list[int]:
    return sorted(i["id"] for i in items)


async def test_link_header_pagination_follows_rel_next_to_the_end(api: ApiServer, tmp_path: Path) -> None:
    _, items = await run_job({"start_urls": [f"{api.url}/link/items"], "scope": {"robots_txt": False},
                              "paginate": {"link_header": True}, "extract": {"items_path": "$"}}, tmp_path)  # fmt: skip
    assert _ids(items) == ALL_IDS
    assert {i["url"] for i in items} >= {f"{api.url}/link/items", f"{api.url}/link/items?page=4"}


async def test_next_field_pagination_with_nested_key_paths(api: ApiServer, tmp_path: Path) -> None:
    job = {"start_urls": [f"{api.url}/next/items"], "scope": {"robots_txt": False},
           "paginate": {"next_field": "links.next"},
           "extract": {"items_path": "data.results", "json": {"id": "id", "title": "name", "tag": "tags[0].name",
                                                              "all_tags": "tags[*].name"}}}  # fmt: skip
    _, items = await run_job(job, tmp_path)
    assert _ids(items) == ALL_IDS
    first = next(i for i in items if i["id"] == 5)
    assert first["title"] == "Item 5" and first["tag"] == "t5" and first["all_tags"] == ["t5", "all"]
    assert set(first) == {"url", "status", "depth", "fetched_at", "id", "title", "tag", "all_tags"}


async def test_page_number_pagination_stops_at_the_first_empty_page(api: ApiServer, tmp_path: Path) -> None:
    api.log(clear=True)
    _, items = await run_job({"start_urls": [f"{api.url}/num/items"], "scope": {"robots_txt": False},
                              "paginate": {"param": "page"}, "extract": {"items_path": "data"}}, tmp_path)  # fmt: skip
    assert _ids(items) == ALL_IDS
    # page 5 is the empty one: fetched, and nothing after it.
    assert [p for p in api.paths() if p.startswith("/num/")] == [
        "/num/items", "/num/items?page=2", "/num/items?page=3", "/num/items?page=4", "/num/items?page=5"]  # fmt: skip


async def test_page_number_empty_page_is_found_without_items_path(api: ApiServer, tmp_path: Path) -> None:
    api.log(clear=True)
    await run_job({"start_urls": [f"{api.url}/num/items?page=3"], "scope": {"robots_txt": False},
                   "paginate": {"param": "page"}}, tmp_path)  # fmt: skip
    assert [p for p in api.paths() if p.startswith("/num/")][-1] == "/num/items?page=5"


async def test_cursor_pagination(api: ApiServer, tmp_path: Path) -> None:
    _, items = await run_job({"start_urls": [f"{api.url}/cursor/items"], "scope": {"robots_txt": False},
                              "paginate": {"cursor_field": "meta.next_cursor", "cursor_param": "after"},
                              "extract": {"items_path": "items", "json": {"id": "id"}}}, tmp_path)  # fmt: skip
    assert _ids(items) == ALL_IDS


async def test_html_next_selector_keeps_the_depth(api: ApiServer, tmp_path: Path) -> None:
    _, items = await run_job({"start_urls": [f"{api.url}/html/list"], "scope": {"robots_txt": False, "max_depth": 0},
                              "paginate": {"next_selector": "a[rel=next]"},
                              "extract": {"fields": {"names": "li.item::text[]"}}}, tmp_path)  # fmt: skip
    assert len(items) == 4, "max_depth 0 does not cut a listing short"
    assert {i["depth"] for i in items} == {0}
    assert sum(len(i["names"]) for i in items) == ITEMS


async def test_next_page_found_by_links_too_keeps_the_listing_depth(api: ApiServer, tmp_path: Path) -> None:
    # The link extractor also finds the next link (one level deeper); pagination's same-depth request wins.
    _, items = await run_job({"start_urls": [f"{api.url}/html/list"], "scope": {"robots_txt": False, "max_depth": 1},
                              "paginate": {"next_selector": "a[rel=next]"}}, tmp_path)  # fmt: skip
    assert sorted(i["depth"] for i in items) == [0, 0, 0, 0]


async def test_max_pages_caps_a_chain(api: ApiServer, tmp_path: Path) -> None:
    _, items = await run_job({"start_urls": [f"{api.url}/num/items"], "scope": {"robots_txt": False},
                              "paginate": {"param": "page", "max_pages": 2}, "extract": {"items_path": "data"}},
                             tmp_path)  # fmt: skip
    assert _ids(items) == list(range(2 * 4))


async def test_json_links_are_followed_and_match_limits_pagination(api: ApiServer, tmp_path: Path) -> None:
    api.log(clear=True)
    _, items = await run_job({"start_urls": [f"{api.url}/next/items"], "scope": {"robots_txt": False},
                              "paginate": {"next_field": "links.next", "match": [r"/next/items$"]},
                              "extract": {"json_links": ["data.results[*].url"]}}, tmp_path)  # fmt: skip
    paths = api.paths()
    assert "/next/items?page=2" in paths and "/next/items?page=3" not in paths
    # Items 0-7 link to /p/0 .. /p/5 (n % 6).
    assert {p for p in paths if p.startswith("/p/")} == {f"/p/{n}" for n in range(6)}
    assert len(items) == 2 + 6, "two API pages (one item each: no items_path) and six HTML pages"


async def test_rate_limit_headers_slow_the_host_before_a_429(api: ApiServer, tmp_path: Path) -> None:
    api.log(clear=True)
    await run_job({"start_urls": [f"{api.url}/quota/items?page=1&reset=1"], "scope": {"robots_txt": False},
                   "paginate": {"next_field": "next"}, "rate_limit": {"per_host": "unlimited"}}, tmp_path)  # fmt: skip
    times = [e["t"] for e in api.log() if e["path"] == "/quota/items"]
    assert len(times) == 4
    # Page 2 says 0 requests remain until the reset in 1 s: page 3 waits for it.
    assert times[2] - times[1] >= 0.8


def test_next_links_parses_rfc8288() -> None:
    headers = httpx.Headers([("link", '<https://a/?page=2>; rel="next", <https://a/?page=9>; rel="last"'),
                             ("link", "<https://b/x>; rel='prev next'"), ("link", "<https://c/>; rel=first")])  # fmt: skip
    assert next_links(headers) == ["https://a/?page=2", "https://b/x"]


@pytest.mark.parametrize(("url", "expected"), [
    ("http://a/x", "http://a/x?page=2"),
    ("http://a/x?q=1&page=1", "http://a/x?q=1&page=2"),
    ("http://a/x?page=1&page=7", "http://a/x?page=2"),
])  # fmt: skip
def test_with_query_param(url: str, expected: str) -> None:
    assert with_query_param(url, "page", "2") == expected
