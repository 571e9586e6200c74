"""HPACK for the requests we send, without the dynamic table: a header block is a concatenation of cached
field encodings, so encoding costs a few dict look-ups instead of hpack's table search and Huffman coding
(~6% of an HTTP/2 crawl's CPU).

Every field is a static-table reference when the static table holds it whole (`:method GET`, `:scheme
https`, `:path /`), else a literal without indexing (RFC 7541 section 6.2.2; "never indexed", 6.2.3, for
credentials) with the static table's name index when it has the name, and the value as a plain string.
Such literals do not touch the peer's dynamic table, so each field's bytes are the same on every request and
are cached (bounded). Blocks are larger than hpack's (no Huffman, no dynamic references): tens of bytes per
request, which buys CPU. The first block announces a dynamic table size of 0 (section 6.3), and so does the
block after every change of the peer's SETTINGS_HEADER_TABLE_SIZE.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack.table import HeaderTable

__all__ = ["RequestHeaderEncoder"]

_STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_FULL_INDEX = {field: i + 1 for i, field in reversed(list(enumerate(_STATIC)))}
_NAME_INDEX = {name: i + 1 for i, (name, _) in reversed(list(enumerate(_STATIC)))}
_NEVER_INDEXED = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"})
_CACHE_LIMIT = 4096  # cached field encodings; values such as :path are never cached
_UNCACHED = frozenset({b":path"})


def _integer(value: int, prefix_bits: int, flags: int) -> bytes:
    """RFC 7541 section 5.1: `value` with an N-bit prefix, `flags` in the first byte's high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    return _integer(len(data), 7, 0) + data  # H = 0: a plain string


def _field(name: bytes, value: bytes) -> bytes:
    index = _FULL_INDEX.get((name, value))
    if index is not None:
        return _integer(index, 7, 0x80)  # indexed header field
    flags = 0x10 if name in _NEVER_INDEXED else 0x00
    name_index = _NAME_INDEX.get(name)
    if name_index is not None:
        return _integer(name_index, 4, flags) + _string(value)
    return bytes((flags,)) + _string(name) + _string(value)


class RequestHeaderEncoder:
    """Stands in for `hpack.Encoder` on our client connections (`h2` calls `encode` and sets
    `header_table_size`). Names must be lower case, as HTTP/2 requires; values are bytes."""

    __slots__ = ("_cache", "_size_update")

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bytes], bytes] = {}
        self._size_update = _integer(0, 5, 0x20)  # "my dynamic table holds 0 bytes"

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        # The peer changed SETTINGS_HEADER_TABLE_SIZE: say again, at the next block, that we use none of it.
        self._size_update = _integer(0, 5, 0x20)

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        cache = self._cache
        parts = [self._size_update] if self._size_update else []
        self._size_update = b""
        for name, value in headers:
            key = (name, value)
            encoded = cache.get(key)
            if encoded is None:
                encoded = _field(name, value)
                if name not in _UNCACHED:
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[key] = encoded
            parts.append(encoded)
        return b"".join(parts)
