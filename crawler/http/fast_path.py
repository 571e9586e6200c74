"""The per-request fast path of the shared client (`CrawlerClient`): the same `httpx.Request` and
`httpx.Response` httpx builds, for a fraction of the CPU.

httpx spends ~130 us of CPU per request of a crawl around our transport (measured on the benchmark
machine: ~250 us through `build_request` + `send` against ~120 us straight to the transport): parsing the
URL string again (httpx's pure-Python RFC 3986 parser, ~35-45 us), merging the client's headers into a new
`Headers` and rebuilding them once more to add Host (~25 us), then the auth-flow generator, the redirect
loop, a context manager, a stream wrapper and the cookie jar on the way back.

What this module does instead, only where the result is the same:

- `FastURL.parse`: a URL that httpx would leave exactly as written (http or https, a lower-case host of
  letters, digits, `.-_~`, an optional port, a path and query of characters httpx does not percent-encode,
  no dot segment, no userinfo, no fragment) becomes an `httpx.URL` holding the parse result httpx itself
  would produce, without running its parser. The host is checked once by httpx's own parser (an IPv4
  literal is validated there) and remembered. Anything else: None, and the caller takes httpx's way.
- `HeaderMerge`: the client's headers merged with a request's as `build_request` does (a request header
  replaces the client's of the same name and goes last; Host first), from a snapshot of the client's
  headers that is compared with the live ones on every request.

This is the one module that reaches into httpx's internals (the URL's parse result, `httpx._urlparse`); the
httpx version is pinned in pyproject.toml, and `FAST_URLS` is False (every URL takes httpx's parser) if a
self-check at import finds httpx's URL built differently.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from crawler.http.transport.headers import headers_from_raw

__all__ = ["FAST_URLS", "FastURL", "HeaderMerge"]

# Characters httpx's quoting leaves as they are: in a path, printable ASCII but space " # < > ? ` { };
# in a query, printable ASCII but space " # < >. A '%' is kept in both (valid escapes or not).
_URL_RE = re.compile(
    r"(https?)://([a-z0-9._~-]+)(?::([0-9]{1,5}))?"
    r"(/[!$%&'()*+,\-./0-9:;=@A-Z\[\\\]^_a-z|~]*)"
    r"(?:\?([!$%&'()*+,\-./0-9:;=?@A-Z\[\\\]^_`a-z{|}~]*))?"
)
_DEFAULT_PORT = {"http": 80, "https": 443}
_MAX_HOSTS = 4096  # hosts remembered as parsed by httpx unchanged; forgotten all at once beyond


class FastURL:
    """Builds `httpx.URL`s without httpx's parser for URLs it would keep unchanged (see the module doc)."""

    __slots__ = ("_hosts", "_result")

    def __init__(self) -> None:
        from httpx._urlparse import ParseResult

        self._result = ParseResult
        self._hosts: dict[str, bool] = {}

    def _host_ok(self, scheme: str, host: str) -> bool:
        ok = self._hosts.get(host)
        if ok is None:
            try:
                ok = httpx.URL(f"{scheme}://{host}/").host == host
            except httpx.InvalidURL:
                ok = False
            if len(self._hosts) >= _MAX_HOSTS:
                self._hosts.clear()
            self._hosts[host] = ok
        return ok

    def parse(self, url: str) -> httpx.URL | None:
        """`url` as httpx would parse it, or None when this cannot promise the same result."""
        m = _URL_RE.fullmatch(url)
        if m is None:
            return None
        scheme, host, port_text, path, query = m.groups()
        if "/." in path or not self._host_ok(scheme, host):
            return None  # dot segments: httpx removes them
        port: int | None = None
        if port_text is not None:
            port = int(port_text)
            if port == _DEFAULT_PORT[scheme]:
                port = None
        built = httpx.URL.__new__(httpx.URL)
        built._uri_reference = self._result(scheme, "", host, port, path, query, None)
        return built


def _self_check() -> bool:
    """True when URLs built here equal httpx's own parse of the same strings."""
    try:
        fast = FastURL()
        for sample in ("http://example.com/a/b?q=1&r=%zz|x", "https://127.0.0.1:8443/p/1.html",
                       "https://example.com:443/", "http://a.example/x;y=z@w?k={v}`"):  # fmt: skip
            built = fast.parse(sample)
            slow = httpx.URL(sample)
            if built is None or built != slow or str(built) != str(slow) or built.raw_path != slow.raw_path \
                    or built.netloc != slow.netloc or built.port != slow.port:  # fmt: skip
                return False
    except Exception:  # any change in httpx's internals turns the fast path off
        return False
    return True


FAST_URLS = _self_check()


class HeaderMerge:
    """The headers `client.build_request(method, url, headers=...)` gives a GET or HEAD without a body:
    Host first, then the client's headers minus those the request names, then the request's, in order (a
    name the request repeats is sent as often as it is given).

    The client's headers are snapshotted and compared with the live ones on every call (users may edit
    `client.headers` in place); the filtered snapshot is kept per tuple of request header names.
    """

    __slots__ = ("_by_names", "_snapshot")

    def __init__(self) -> None:
        self._snapshot: list[tuple[bytes, bytes]] | None = None
        self._by_names: dict[tuple[str, ...], tuple[list[tuple[bytes, bytes]], bool]] = {}

    def merge(self, client_headers: httpx.Headers, headers: dict[str, Any] | list[Any] | None,
              netloc: bytes) -> httpx.Headers | None:  # fmt: skip
        """The merged headers, or None when they hold something this does not handle (then httpx merges).
        `headers`: a dict, or a list of (name, value) pairs where a name may repeat (as httpx takes them)."""
        raw = client_headers.raw
        if raw != self._snapshot:
            self._snapshot = raw
            self._by_names = {}
        if isinstance(headers, list):  # the caller passes exactly a list or a dict
            if not all(type(pair) is tuple and len(pair) == 2 for pair in headers):
                return None
            pairs: list[tuple[Any, Any]] = headers
        else:
            pairs = list(headers.items()) if headers else []
        names: tuple[str, ...] = tuple(name for name, _ in pairs)
        entry = self._by_names.get(names)
        if entry is None:
            if not all(type(name) is str for name in names):
                return None
            lowered = {name.lower().encode("ascii") for name in names}
            kept = [(k, v) for k, v in raw if k.lower() not in lowered]
            has_host = b"host" in lowered or any(k.lower() == b"host" for k, _ in kept)
            if len(self._by_names) >= 64:
                self._by_names.clear()
            entry = self._by_names[names] = (kept, has_host)
        kept, has_host = entry
        merged: list[tuple[bytes, bytes]] = kept if has_host else [(b"Host", netloc), *kept]
        if pairs:
            merged = merged + [(k.encode("ascii"), _value(v)) for k, v in pairs]
        return headers_from_raw(merged)


def _value(value: Any) -> bytes:
    # As httpx normalizes a header value given as str or bytes.
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise TypeError(f"Header value must be str or bytes, not {type(value)}")
    return value.encode("ascii")
