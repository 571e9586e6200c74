"""Canonical URLs: the identity the frontier dedups on."""

import ada_url
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler import canonicalize, fingerprint
from crawler.model.url import host_key, join_url


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("HTTP://Example.COM/a", "http://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com/a#frag", "http://example.com/a"),
        ("http://example.com/%7euser/%2fx", "http://example.com/~user/%2Fx"),
        ("http://example.com/a?b=2&a=1", "http://example.com/a?b=2&a=1"),
        ("http://example.com/a?q=%7e%2f", "http://example.com/a?q=~%2F"),
        ("http://user@Example.com:80/", "http://user@example.com/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ],
)
def test_canonical_form(raw: str, canonical: str) -> None:
    assert canonicalize(raw) == canonical


def test_query_order_is_kept_unless_sorting_is_asked() -> None:
    assert canonicalize("http://e.com/?b=1&a=2") == "http://e.com/?b=1&a=2"
    assert canonicalize("http://e.com/?b=1&a=2", sort_query=True) == "http://e.com/?a=2&b=1"


def test_equivalent_urls_share_a_fingerprint() -> None:
    a = fingerprint(canonicalize("HTTP://EXAMPLE.com:80/%7Ex#top"))
    b = fingerprint(canonicalize("http://example.com/~x"))
    assert a == b
    assert a != fingerprint(canonicalize("http://example.com/~y"))
    assert 0 <= a < 2**64


def test_host_key_keeps_non_default_port() -> None:
    assert host_key("https://a.example:8443/x") == "a.example:8443"
    assert host_key("https://user@a.example/x") == "a.example"
    assert host_key("http://a.example") == "a.example"


# -- WHATWG parsing (ada) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/a/%2e%2E/b", "http://example.com/b"),
        ("http://example.com/a?", "http://example.com/a"),
        ("http://example.com/a?#x", "http://example.com/a"),
        ("http://example.com/a#", "http://example.com/a"),
        ("http://bücher.example/ä ö", "http://xn--bcher-kva.example/%C3%A4%20%C3%B6"),
        ("http://example.com/%c3%a4", "http://example.com/%C3%A4"),
        ("http://0x7f.1:8080/", "http://127.0.0.1:8080/"),
        ("http://example.com.:81/x", "http://example.com:81/x"),
        ("http:\\\\example.com\\a\\b", "http://example.com/a/b"),
        ("  http://example.com/\tx\n ", "http://example.com/x"),
        ("http://example.com:0080/", "http://example.com/"),
    ],
)
def test_whatwg_canonical_form(raw: str, canonical: str) -> None:
    assert canonicalize(raw) == canonical


@pytest.mark.parametrize("raw", ["not a url", "http://exa mple.com/", "http://[::1/", "http://a:99999/"])
def test_invalid_urls_raise_value_error(raw: str) -> None:
    with pytest.raises(ValueError, match="not a valid URL"):
        canonicalize(raw)


def test_join_url_resolves_as_a_browser_does() -> None:
    base = "http://h.example/a/b/c.html?x=1"
    assert join_url(base, "../d.html#f") == "http://h.example/a/d.html"
    assert join_url(base, "?y=2") == "http://h.example/a/b/c.html?y=2"
    assert join_url(base, "//o.example/p") == "http://o.example/p"
    assert join_url(base, "http:e.html") == "http://h.example/a/b/e.html"
    assert join_url(base, "#top") == join_url(base, "") == "http://h.example/a/b/c.html?x=1"
    assert join_url(base, "mailto:a@b.example") is None
    assert join_url(base, "javascript:void(0)") is None
    assert join_url(base, "http://exa mple.com/") is None


# Characters that make URLs interesting: separators, dots, escapes, backslashes, spaces, non-ASCII.
_URL_CHARS = st.sampled_from([*"abcAB09-._~!$&'()*+,;=:@/?#%\\ é", "%7e", "%7E", "%2e", "%2F", "%c3%a9", ".."])
_PIECE = st.lists(_URL_CHARS, max_size=12).map("".join)
_HOST = st.sampled_from(["example.com", "EXAMPLE.com", "bücher.example", "127.0.0.1", "0x7f.1", "[::1]", "a.b."])
_PORT = st.sampled_from(["", ":80", ":443", ":8080", ":0080"])


@st.composite
def _urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP"]))
    return f"{scheme}://{draw(_HOST)}{draw(_PORT)}/{draw(_PIECE)}"


def _canonical_or_none(url: str, **kw: bool) -> str | None:
    try:
        return canonicalize(url, **kw)
    except ValueError:
        return None


@settings(max_examples=400, deadline=None)
@given(_urls(), st.booleans())
def test_canonicalisation_is_idempotent(url: str, sort_query: bool) -> None:
    canon = _canonical_or_none(url, sort_query=sort_query)
    if canon is not None:
        assert canonicalize(canon, sort_query=sort_query) == canon


@settings(max_examples=400, deadline=None)
@given(_urls())
def test_urls_equal_under_whatwg_get_one_fingerprint(url: str) -> None:
    # Two spellings the WHATWG parser reads as one URL (its own serialisation is one of them) share a fingerprint;
    # and the escapes of unreserved characters, the fragment and an empty query never change it.
    try:
        whatwg = ada_url.URL(url).href
    except ValueError:
        return
    assert fingerprint(canonicalize(url)) == fingerprint(canonicalize(whatwg))
    stripped = whatwg.split("#", 1)[0]
    variants = [stripped + "#frag", stripped + "#"] + ([stripped + "?", stripped + "?#x"] if "?" not in stripped else [])
    for variant in variants:
        assert fingerprint(canonicalize(variant)) == fingerprint(canonicalize(whatwg))


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(["http://h.example/a/b/c.html?x=1", "https://h.example/", "http://h.example:8080/d/"]),
       _PIECE, st.sampled_from(["", "/", "//", "\\", "?", "#", "../", "./", "http:", "https:", "HTTP://", " ", "\t"]))
def test_join_url_matches_whatwg_resolution(base: str, piece: str, prefix: str) -> None:
    # Our per-page resolver (string concatenation, then one parse) against ada's own resolution with a base.
    href = prefix + piece
    try:
        expected: str | None = ada_url.join_url(base, href)
    except ValueError:
        expected = None
    if expected is not None:
        expected = _canonical_or_none(expected) if expected.startswith(("http://", "https://")) else None
    assert join_url(base, href) == expected
