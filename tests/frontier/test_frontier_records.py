"""Packed request records (`crawler.frontier.records`): every field survives, in order, whatever the request."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.frontier.records import RecordQueue
from crawler.model.request import Request

_paths = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
_requests = st.builds(
    lambda path, depth, referer, retries, method, meta, dont_filter, token, fp: Request(
        url="https://h.test/" + path, depth=depth, priority=3, referer=referer, retries=retries, method=method,
        host="h.test", fingerprint=fp, meta=meta, token=token, dont_filter=dont_filter),
    _paths,
    st.integers(0, 70_000),
    st.none() | st.sampled_from(["https://h.test/", "https://h.test/a/b", "https://other.test/ü"]),
    st.integers(0, 3),
    st.sampled_from(["GET", "POST"]),
    st.none() | st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), max_size=2),
    st.booleans(),
    st.none() | st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 2**64 - 1),
)  # fmt: skip


def _fields(r: Request) -> tuple[object, ...]:
    return (r.url, r.depth, r.priority, r.referer, r.retries, r.method, r.host, r.fingerprint, r.meta or None,
            r.token, r.dont_filter)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.lists(_requests, max_size=30), st.integers(0, 30))
def test_records_come_back_whole_and_in_order(requests: list[Request], interleave: int) -> None:
    q = RecordQueue()
    out: list[Request] = []
    for i, r in enumerate(requests):
        q.append(r)
        if interleave and i % interleave == 0:
            out.append(q.pop("h.test", 3))  # reading while writing keeps the front coding in step
    while len(q):
        out.append(q.pop("h.test", 3))
    assert [_fields(r) for r in out] == [_fields(r) for r in requests]
    assert q.nbytes == 0


def test_a_crawl_like_record_costs_a_few_dozen_bytes() -> None:
    q = RecordQueue()
    page = "https://shop7.example.com/catalog/item/1234"
    n = 10_000
    for i in range(n):
        q.append(Request.make(f"https://shop7.example.com/catalog/item/{i}?ref=list&page={i % 97}", referer=page))
    assert q.nbytes / n < 40, q.nbytes / n


def test_a_long_url_is_stored_whole() -> None:
    q = RecordQueue()
    long = Request.make("https://h.test/" + "x" * 70_000, referer="https://h.test/")
    q.append(Request.make("https://h.test/a"))
    q.append(long)
    q.append(Request.make("https://h.test/ab", referer="https://h.test/"))
    assert [q.pop("h.test", 0).url for _ in range(3)] == ["https://h.test/a", long.url, "https://h.test/ab"]
