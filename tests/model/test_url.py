"""Canonical URLs: the identity the frontier dedups on."""

import pytest

from crawler import canonicalize, fingerprint
from crawler.model.url import host_key


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
