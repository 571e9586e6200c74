"""`FastHeaders` (crawler/http/transport/headers.py): built from the same byte pairs, it answers every
question exactly as `httpx.Headers` does, before and after edits, in whatever encoding httpx would pick;
and a response read through our transport over HTTP/1.1 and HTTP/2 carries it, duplicated headers intact.

The property tests replay one random sequence of lookups and edits on both objects and compare every
observable answer (values, exceptions, encoding, `raw`, `multi_items`, `get_list`, `copy`, equality) after
each step, so an index left stale by an edit shows up as a difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.config.job import HttpConfig
from crawler.demo.launcher import AsgiServer
from crawler.demo.tls import TlsFiles, tls_files
from crawler.http.client import build_client
from crawler.http.transport import headers as headers_module
from crawler.http.transport.headers import FastHeaders, headers_from_raw
from tests.http.transport_site import DUPLICATED_HEADERS

# Names differing only in case, an ASCII-only set, a latin-1 byte and a UTF-8 sequence in names and values.
_NAMES = [b"Set-Cookie", b"set-cookie", b"SET-COOKIE", b"Link", b"link", b"Content-Type", b"X-A", b"x-a",
          b"X-\xe9", b"X-\xc3\xa9"]  # fmt: skip
_VALUES = [b"a=1", b"", b"b=2, c=3", b"</x>; rel=next", b"caf\xe9", b"caf\xc3\xa9", b" spaced ", b"\xff\xfe"]
_KEYS = ["set-cookie", "Set-Cookie", "LINK", "content-type", "x-a", "X-A", "missing", "", "X-é", "x-\u00e9",
         "X-Ã©", b"x-a"]  # fmt: skip
_TEXT = ["v", "w, x", "", "é", "\u20ac"]

_pairs = st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)), max_size=8)


def _outcome(call: Callable[[], Any]) -> Any:
    """What a call returns, or the type of what it raises (both sides must raise the same)."""
    try:
        return ("ok", call())
    except Exception as exc:  # the exception's type is part of the behaviour compared
        return ("raised", type(exc))


def _answers_for(h: httpx.Headers, key: Any) -> list[Any]:
    return [_outcome(lambda: h[key]), _outcome(lambda: h.get(key, "dflt")), _outcome(lambda: key in h),
            _outcome(lambda: h.get_list(key)), _outcome(lambda: h.get_list(key, split_commas=True))]  # fmt: skip


def _observe(h: httpx.Headers) -> list[Any]:
    seen: list[Any] = []
    for key in _KEYS:
        seen += _answers_for(h, key)
    seen += [_outcome(lambda: h.raw), _outcome(lambda: h.multi_items()), _outcome(lambda: list(h.items())),
             _outcome(lambda: list(h.keys())), _outcome(lambda: list(h.values())), _outcome(lambda: len(h)),
             _outcome(lambda: h.encoding), _outcome(lambda: dict(h)), _outcome(lambda: list(h))]  # fmt: skip
    copied = _outcome(h.copy)
    seen.append(copied if copied[0] == "raised" else (type(copied[1]), copied[1].raw, copied[1].encoding))
    return seen


_edits = st.one_of(
    st.tuples(st.just("look"), st.sampled_from(_KEYS)),
    st.tuples(st.just("set"), st.sampled_from(["Set-Cookie", "link", "X-New", "x-a"]), st.sampled_from(_TEXT)),
    st.tuples(st.just("del"), st.sampled_from(_KEYS)),
    st.tuples(st.just("pop"), st.sampled_from(_KEYS)),
    st.tuples(st.just("setdefault"), st.sampled_from(["link", "X-Other"]), st.sampled_from(_TEXT)),
    st.tuples(st.just("update"),
              st.dictionaries(st.sampled_from(["Link", "x-b", "SET-COOKIE"]), st.sampled_from(_TEXT), max_size=2)),
    st.tuples(st.just("encoding"), st.sampled_from(["ascii", "utf-8", "iso-8859-1"])),
    st.tuples(st.just("clear")),
)


def _apply(h: httpx.Headers, edit: tuple[Any, ...]) -> Any:
    verb, *args = edit
    if verb == "look":
        return _outcome(lambda: h[args[0]])
    if verb == "set":
        return _outcome(lambda: h.__setitem__(args[0], args[1]))
    if verb == "del":
        return _outcome(lambda: h.__delitem__(args[0]))
    if verb == "pop":
        return _outcome(lambda: h.pop(args[0], None))
    if verb == "setdefault":
        return _outcome(lambda: h.setdefault(args[0], args[1]))
    if verb == "update":
        return _outcome(lambda: h.update(args[0]))
    if verb == "encoding":
        h.encoding = args[0]
        return None
    return _outcome(h.clear)


def test_the_self_check_passes_with_the_pinned_httpx() -> None:
    assert headers_module._FAST
    assert type(headers_from_raw([(b"A", b"1")])) is FastHeaders


def test_without_the_self_check_headers_are_httpx_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(headers_module, "_FAST", False)
    built = headers_from_raw([(b"A", b"1"), (b"a", b"2")])
    assert type(built) is httpx.Headers and built["a"] == "1, 2"


@settings(max_examples=300, deadline=None)
@given(pairs=_pairs)
def test_every_answer_is_httpx_s_on_the_same_pairs(pairs: list[tuple[bytes, bytes]]) -> None:
    fast, slow = headers_from_raw(pairs), httpx.Headers(pairs)
    assert isinstance(fast, FastHeaders)
    assert _observe(fast) == _observe(slow)
    assert fast == slow and slow == fast and httpx.Headers(fast) == slow


@settings(max_examples=300, deadline=None)
@given(pairs=_pairs, edits=st.lists(_edits, max_size=6))
def test_lookups_and_edits_in_any_order_stay_httpx_s(pairs: list[tuple[bytes, bytes]],
                                                    edits: list[tuple[Any, ...]]) -> None:  # fmt: skip
    fast, slow = headers_from_raw(pairs), httpx.Headers(pairs)
    for edit in edits:
        assert _apply(fast, edit) == _apply(slow, edit), edit
        assert _observe(fast) == _observe(slow), edit


def test_duplicated_names_join_with_a_comma_in_arrival_order_any_case() -> None:
    h = headers_from_raw([(b"Set-Cookie", b"a=1"), (b"X", b"y"), (b"set-cookie", b"b=2")])
    assert h["SET-COOKIE"] == h.get("set-cookie") == "a=1, b=2"
    assert h.get_list("Set-Cookie") == ["a=1", "b=2"]
    assert h.raw == [(b"Set-Cookie", b"a=1"), (b"X", b"y"), (b"set-cookie", b"b=2")]


def test_non_ascii_bytes_decode_as_httpx_falls_back() -> None:
    latin = headers_from_raw([(b"X-Name", b"caf\xe9")])
    assert latin["x-name"] == "café" and latin.encoding == "iso-8859-1"
    utf8 = headers_from_raw([(b"X-Name", b"caf\xc3\xa9")])
    assert utf8["x-name"] == "café" and utf8.encoding == "utf-8"


def test_an_edit_after_a_lookup_is_seen_by_the_next_lookup() -> None:
    h = headers_from_raw([(b"A", b"1")])
    assert "b" not in h  # builds the index
    h.update({"B": "2"})  # httpx's update looks keys up, then extends its list directly
    assert h["b"] == "2"
    h["a"] = "3"
    assert h["A"] == "3"
    del h["a"]
    assert h.get("a") is None
    h.encoding = "iso-8859-1"
    assert h.get("b") == "2"


def test_an_encoding_set_by_hand_that_some_pair_does_not_fit_fails_only_that_lookup_as_in_httpx() -> None:
    pairs = [(b"A", b"1"), (b"X-Name", b"caf\xe9")]
    fast, slow = headers_from_raw(pairs), httpx.Headers(pairs)
    fast.encoding = slow.encoding = "ascii"
    assert fast["a"] == slow["a"] == "1"
    for h in (fast, slow):
        with pytest.raises(UnicodeDecodeError):
            h["x-name"]


# -- through the transport, on loopback ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs() -> TlsFiles:
    return tls_files()


@pytest.fixture(scope="module")
def tls_site(certs: TlsFiles) -> Iterator[str]:
    """The transport tests' hypercorn site over TLS, offering h2 and http/1.1 via ALPN."""
    with AsgiServer("tests.http.transport_site:app", tls=True) as server:
        yield server.url


@pytest.mark.timeout(30)
@pytest.mark.parametrize("http2", [False, True])
async def test_repeated_response_headers_arrive_as_httpx_would_read_them(tls_site: str, certs: TlsFiles,
                                                                         http2: bool) -> None:  # fmt: skip
    config = HttpConfig(http2=http2, verify=str(certs.ca_path))
    async with build_client(config) as c:
        for _ in range(2):  # the first send of a client goes httpx's way, the second the fast path
            r = await c.get(f"{tls_site}/repeated-headers")
            assert r.status_code == 200 and r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            assert isinstance(r.headers, FastHeaders)
            assert r.headers.get_list("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
            assert r.headers["link"] == "</one>; rel=preload, </two>; rel=preload"
            assert r.headers["X-Name"] == "café"
            assert [(k, v) for k, v in r.headers.raw if k.lower() in dict(DUPLICATED_HEADERS)] == \
                [(k, v) for k, v in DUPLICATED_HEADERS]  # fmt: skip
            assert r.headers == httpx.Headers(r.headers.raw)
            assert (c.cookies.get("a"), c.cookies.get("b")) == ("1", "2")
            assert r.text == "ok"
