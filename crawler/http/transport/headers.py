"""Response and request headers as `httpx.Headers`, built from byte pairs without re-normalising them, with
lookups through an index.

A crawl reads each response's headers ~10 times (Content-Type, Content-Length, Content-Encoding, Set-Cookie,
rate-limit headers...). `httpx.Headers` scans and decodes its whole list on every lookup (~8k instructions
each on the benchmark machine) and normalises every pair again when built (~20k for a response head); here
the pairs a parser produced are stored as they are, and the first lookup builds a dict that the others use.
Every method httpx has still works (the list is httpx's own); any edit drops the index.

This relies on the layout of httpx's private `_list` (raw name, lower-case name, value) and `_encoding`: the
httpx version is pinned in pyproject.toml, and `headers_from_raw` falls back to a plain `httpx.Headers` if a
self-check at import finds that layout changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

__all__ = ["FastHeaders", "headers_from_raw"]


class FastHeaders(httpx.Headers):
    """`httpx.Headers` with an index for `[]`, `get` and `in`; built by `headers_from_raw`."""

    _index: dict[str, str] | None

    @classmethod
    def _from_pairs(cls, raw: Iterable[tuple[bytes, bytes]]) -> FastHeaders:
        headers = cls.__new__(cls)
        headers._list = [(name, name.lower(), value) for name, value in raw]
        headers._encoding = None
        headers._index = None
        return headers

    def _lookup(self) -> dict[str, str] | None:
        """The index, built on first use; None when httpx's own lookup must answer (see below)."""
        index = self._index
        if index is None:
            if self._encoding is None:
                # httpx's choice of encoding tries ASCII first: when every pair decodes as ASCII, so does the
                # index, and that settles the encoding as httpx would (decoding once instead of twice).
                try:
                    index = self._build("ascii")
                    self._encoding = "ascii"
                except UnicodeDecodeError:
                    index = self._build(self.encoding)  # utf-8 or iso-8859-1: chosen so that all pairs decode
            else:
                try:
                    index = self._build(self._encoding)
                except UnicodeDecodeError:
                    # An encoding set by hand that some pair does not fit: httpx decodes only the values a
                    # lookup matches, so only a lookup of such a header fails there. Its way, then.
                    return None
            self._index = index
        return index
    def _build(self, encoding: str) -> dict[str, str]:
        index: dict[str, str] = {}
        for _, name, value in self._list:
            key = name.decode(encoding)
            text = value.decode(encoding)
            index[key] = index[key] + ", " + text if key in index else text
        return index

    def __getitem__(self, key: str) -> str:
        if type(key) is str and key.isascii():
            index = self._lookup()
            if index is not None:
                try:
                    return index[key.lower()]
                except KeyError:
                    raise KeyError(key) from None
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        if type(key) is str and key.isascii():
            index = self._lookup()
            if index is not None:
                return index.get(key.lower(), default)
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        if type(key) is str and key.isascii():
            index = self._lookup()
            if index is not None:
                return key.lower() in index
        return super().__contains__(key)

    # Every edit drops the index (`pop`, `setdefault`, `clear`, `popitem` go through `__setitem__` /
    # `__delitem__`; httpx's `update` edits `_list` directly, after lookups).
    def __setitem__(self, key: str, value: str) -> None:
        self._index = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._index = None
        super().__delitem__(key)

    def update(self, headers: Any = None) -> None:  # type: ignore[override]
        # httpx's `update` looks keys up (which may build the index) before it extends `_list` directly.
        try:
            super().update(headers)
        finally:
            self._index = None

    @property
    def encoding(self) -> str:
        return httpx.Headers.encoding.fget(self)  # type: ignore[attr-defined,no-any-return]

    @encoding.setter
    def encoding(self, value: str) -> None:
        self._index = None
        self._encoding = value


def _self_check() -> bool:
    """True when FastHeaders built from pairs behave as httpx.Headers built from the same pairs."""
    pairs = [(b"Content-Type", b"text/html"), (b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"X-\xc3\xa9", b"v")]
    try:
        fast = FastHeaders._from_pairs(pairs)
        slow = httpx.Headers(pairs)
        return (fast == slow and fast.raw == slow.raw and fast.multi_items() == slow.multi_items()
                and fast.get("SET-COOKIE") == slow.get("set-cookie") == "a=1, b=2" and "content-type" in fast
                and "nope" not in fast and fast.encoding == slow.encoding and list(fast.items()) == list(slow.items())
                and httpx.Headers(fast).raw == slow.raw)  # fmt: skip
    except Exception:  # any change in httpx's internals: plain httpx.Headers everywhere
        return False


_FAST = _self_check()


def headers_from_raw(raw: Iterable[tuple[bytes, bytes]]) -> httpx.Headers:
    """Headers holding `raw` (name, value) byte pairs exactly as given."""
    if _FAST:
        return FastHeaders._from_pairs(raw)
    return httpx.Headers(list(raw))
