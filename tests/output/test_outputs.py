"""Item files: JSONL / CSV by extension, optional gzip, overwrite vs append, one record per JSON item."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import httpx
import pytest

from crawler import Page, Request
from crawler.config.specs import writer_format
from crawler.output.writers import open_writer


def _page(url: str = "http://a/x", items: list[dict[str, object]] | None = None, **item: object) -> Page:
    page = Page(Request.make(url), url, 200, "HTTP/1.1", httpx.Headers(), b"")
    page.item.update(item)
    page.items = items
    return page


@pytest.mark.parametrize(("name", "fmt"), [("a.jsonl", "jsonl"), ("a.csv", "csv"), ("a.jsonl.gz", "jsonl"),
                                           ("a.CSV.GZ", "csv"), ("a.ndjson.gz", "jsonl"),
                                           ("a.json", "json"), ("a.json.gz", "json"), ("-", "jsonl")])  # fmt: skip
def test_format_by_extension(name: str, fmt: str) -> None:
    assert writer_format(name) == fmt


@pytest.mark.parametrize("name", ["a.xml", "a.gz", "a", "a.xml.gz"])
def test_unknown_extensions_name_the_allowed_ones(name: str) -> None:
    with pytest.raises(ValueError, match=r"\.jsonl.*optionally followed by \.gz"):
        writer_format(name)


def test_gzip_jsonl_is_readable_and_appends_as_members(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl.gz"
    w = open_writer(path)
    w(_page(title="one"))
    w.close()
    w = open_writer(path, overwrite=False)
    w(_page(title="two"))
    w.flush()
    assert w.offset == path.stat().st_size
    w.close()
    rows = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    assert [r["title"] for r in rows] == ["one", "two"]
    assert set(rows[0]) == {"url", "status", "depth", "fetched_at", "title"}


def test_gzip_torn_member_is_dropped_when_appending(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl.gz"
    w = open_writer(path)
    w(_page(title="whole"))
    w.close()
    whole = path.stat().st_size
    with open(path, "ab") as f:
        f.write(gzip.compress(b'{"title": "torn"}\n' * 1000)[:-10])
    w = open_writer(path, overwrite=False)
    assert w.offset == whole
    w(_page(title="after"))
    w.close()
    titles = [json.loads(line)["title"] for line in gzip.decompress(path.read_bytes()).splitlines()]
    assert titles == ["whole", "after"]


def test_gzip_truncate_to_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl.gz"
    w = open_writer(path)
    w(_page(title="kept"))
    w.flush()
    checkpoint = w.offset
    w(_page(title="dropped"))
    w.close()
    w = open_writer(path, overwrite=False)
    w.truncate(checkpoint)
    w.close()
    assert [json.loads(line)["title"] for line in gzip.decompress(path.read_bytes()).splitlines()] == ["kept"]


def test_overwrite_false_appends_and_true_replaces(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    for overwrite, expected in [(True, 1), (False, 2), (True, 1)]:
        w = open_writer(path, overwrite=overwrite)
        w(_page())
        w.close()
        assert len(path.read_text().splitlines()) == expected


def test_many_items_per_page_each_carry_the_page_metadata(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "items.jsonl"
    w = open_writer(path)
    w(_page("http://a/api?page=2", items=[{"id": 1, "url": "/own"}, {"id": 2}]))
    w(_page("http://a/api?page=3", items=[]))
    w.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["id"], r["url"], r["status"], r["depth"]) for r in rows] == [
        (1, "http://a/api?page=2", 200, 0), (2, "http://a/api?page=2", 200, 0)]  # fmt: skip
    assert all("fetched_at" in r for r in rows)
    assert "shadowed" in caplog.text


def test_csv_gz_has_one_header(tmp_path: Path) -> None:
    path = tmp_path / "items.csv.gz"
    w = open_writer(path, columns=["title"])
    w(_page(title="a, b"))
    w.close()
    w = open_writer(path, columns=["title"], overwrite=False)
    w(_page(title="c"))
    w.close()
    rows = list(csv.reader(io.StringIO(gzip.decompress(path.read_bytes()).decode())))
    assert rows[0] == ["url", "status", "depth", "fetched_at", "title"]
    assert [r[4] for r in rows[1:]] == ["a, b", "c"]
