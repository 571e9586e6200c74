"""HPACK decoding of the response heads we receive (RFC 7541), standing in for `hpack.Decoder` on our client
connections: one tight loop over the block, and Huffman-coded strings decoded once per distinct string
(servers send the same `server`, `content-type`, `date` values over and over). Huffman decoding itself is
hpack's (`hpack.huffman_table.decode_huffman`); errors are hpack's exception types, which h2 maps to its
own (a bad block is a connection error; a head over `max_header_list_size` a DenialOfServiceError).

The header list size is counted as RFC 7541 section 4.1 says (name + value + 32 per field) while decoding, so a
block whose fields expand past the limit (an HPACK bomb) stops at the limit, not after it.
"""

from __future__ import annotations

from collections import deque

from hpack.exceptions import (
    HPACKDecodingError,
    InvalidTableIndexError,
    InvalidTableSizeError,
    OversizedHeaderListError,
)
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

__all__ = ["ResponseHeaderDecoder"]

_STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_STATIC_LEN = len(_STATIC)
_ENTRY_OVERHEAD = 32
_HUFFMAN_CACHE_LIMIT = 4096
_HUFFMAN_CACHE_MAX_STRING = 256  # longer strings (cookies, tokens) are rarely repeated: not cached


class ResponseHeaderDecoder:
    """The attributes h2 reads and sets on `hpack.Decoder`, and `decode`."""

    __slots__ = ("_dynamic", "_huffman", "_max_size", "_size", "max_allowed_table_size", "max_header_list_size")

    def __init__(self, max_header_list_size: int = 65_536) -> None:
        self._dynamic: deque[tuple[bytes, bytes]] = deque()  # newest first: index 62 is _dynamic[0]
        self._size = 0
        self._max_size = 4096  # the table's current maximum, as the encoder last set it
        self.max_allowed_table_size = 4096  # our SETTINGS_HEADER_TABLE_SIZE
        self.max_header_list_size = max_header_list_size
        self._huffman: dict[bytes, bytes] = {}

    @property
    def header_table_size(self) -> int:
        return self._max_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._resize(value)

    def decode(self, data: bytes | memoryview, raw: bool = True) -> list[tuple[bytes, bytes]]:
        """The fields of one header block, as (name, value) bytes (`raw` is accepted for hpack's signature)."""
        data = bytes(data)
        end = len(data)
        pos = 0
        fields: list[tuple[bytes, bytes]] = []
        listed = 0
        limit = self.max_header_list_size
        while pos < end:
            first = data[pos]
            if first & 0x80:  # indexed field (section 6.1)
                index, pos = self._integer(data, pos, 7)
                field = self._get(index)
            elif first & 0x40:  # literal with incremental indexing (6.2.1)
                field, pos = self._literal(data, pos, 6)
                self._add(field)
            elif first & 0x20:  # dynamic table size update (6.3): only before the first field
                if fields:
                    raise HPACKDecodingError("dynamic table size update after a header field")
                size, pos = self._integer(data, pos, 5)
                if size > self.max_allowed_table_size:
                    raise InvalidTableSizeError(f"table size {size} over the allowed {self.max_allowed_table_size}")
                self._resize(size)
                continue
            else:  # literal without indexing (6.2.2) or never indexed (6.2.3)
                field, pos = self._literal(data, pos, 4)
            listed += len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
            if listed > limit:
                raise OversizedHeaderListError(f"header list over {limit} bytes")
            fields.append(field)
        return fields

    # -- primitives (section 5) -------------------------------------------------------------------------------

    @staticmethod
    def _integer(data: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
        mask = (1 << prefix_bits) - 1
        value = data[pos] & mask
        pos += 1
        if value < mask:
            return value, pos
        shift = 0
        end = len(data)
        while True:
            if pos >= end:
                raise HPACKDecodingError("truncated integer")
            byte = data[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, pos
            shift += 7
            if shift > 28:  # no length or index we accept needs more than 4 continuation bytes
                raise HPACKDecodingError("integer too large")

    def _string(self, data: bytes, pos: int) -> tuple[bytes, int]:
        if pos >= len(data):
            raise HPACKDecodingError("truncated header block")
        huffman = data[pos] & 0x80
        length, pos = self._integer(data, pos, 7)
        if length > self.max_header_list_size:
            raise OversizedHeaderListError(f"a {length}-byte string in a header list capped at "
                                           f"{self.max_header_list_size} bytes")  # fmt: skip
        stop = pos + length
        if stop > len(data):
            raise HPACKDecodingError("truncated header block")
        text = data[pos:stop]
        if huffman:
            cache = self._huffman
            decoded = cache.get(text)
            if decoded is None:
                decoded = decode_huffman(text)
                if length <= _HUFFMAN_CACHE_MAX_STRING:
                    if len(cache) >= _HUFFMAN_CACHE_LIMIT:
                        cache.clear()
                    cache[text] = decoded
            text = decoded
        return text, stop

    def _literal(self, data: bytes, pos: int, prefix_bits: int) -> tuple[tuple[bytes, bytes], int]:
        index, pos = self._integer(data, pos, prefix_bits)
        if index:
            name = self._get(index)[0]
        else:
            name, pos = self._string(data, pos)
        value, pos = self._string(data, pos)
        return (name, value), pos

    # -- the tables (section 2.3) ------------------------------------------------------------------------------

    def _get(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= _STATIC_LEN:
            return _STATIC[index - 1]
        slot = index - _STATIC_LEN - 1
        if index == 0 or slot >= len(self._dynamic):
            raise InvalidTableIndexError(f"invalid table index {index}")
        return self._dynamic[slot]

    def _add(self, field: tuple[bytes, bytes]) -> None:
        size = len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
        if size > self._max_size:
            self._dynamic.clear()  # section 4.4: an entry larger than the table empties it
            self._size = 0
            return
        self._dynamic.appendleft(field)
        self._size += size
        self._evict()

    def _resize(self, size: int) -> None:
        self._max_size = size
        self._evict()

    def _evict(self) -> None:
        dynamic = self._dynamic
        while self._size > self._max_size:
            name, value = dynamic.pop()
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD
