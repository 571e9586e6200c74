"""The response-head HPACK decoder (crawler/http/transport/hpack_response.py) against hpack's own encoder
and decoder: blocks coded by hpack (Huffman, dynamic table, size updates) decode to the same fields, and
random bytes are refused by both or read alike by both."""

from __future__ import annotations

import hpack
import pytest
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.http.transport.hpack_response import ResponseHeaderDecoder

_names = st.one_of(st.sampled_from([b":status", b"server", b"date", b"content-type", b"content-length", b"etag",
                                    b"set-cookie", b"x-custom"]),
                   st.binary(min_size=1, max_size=40).map(bytes.lower))  # fmt: skip
_values = st.one_of(st.sampled_from([b"200", b"nginx", b"text/html", b"gzip", b""]), st.binary(max_size=300))
_fields = st.lists(st.tuples(_names, _values), max_size=25)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_fields, st.sampled_from([None, 0, 256, 4096]), st.booleans()), min_size=1,
                max_size=8))  # fmt: skip
def test_blocks_coded_by_hpack_decode_alike(blocks: list[tuple[list[tuple[bytes, bytes]], int | None, bool]]) -> None:
    encoder = hpack.Encoder()
    ours = ResponseHeaderDecoder(max_header_list_size=1 << 20)
    reference = hpack.Decoder(max_header_list_size=1 << 20)
    for fields, table_size, huffman in blocks:
        if table_size is not None:
            encoder.header_table_size = table_size
        block = encoder.encode(fields, huffman=huffman)
        assert ours.decode(block) == [tuple(f) for f in reference.decode(block, raw=True)] == fields


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=4))
def test_random_bytes_are_refused_or_read_alike(blocks: list[bytes]) -> None:
    ours = ResponseHeaderDecoder()
    reference = hpack.Decoder()
    for block in blocks:
        try:
            expected = [tuple(f) for f in reference.decode(block, raw=True)]
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError):
            with pytest.raises(HPACKError):
                ours.decode(block)
            return  # a failed block ends the connection: state after it does not matter
        assert ours.decode(block) == expected


def test_an_hpack_bomb_stops_at_the_limit() -> None:
    # One 4 KB entry in the dynamic table, then 10,000 one-byte references to it: 40 MB once decoded.
    encoder = hpack.Encoder()
    first = encoder.encode([(b"x-bomb", b"b" * 4000)])
    decoder = ResponseHeaderDecoder(max_header_list_size=65_536)
    decoder.decode(first)
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(b"\xbe" * 10_000)  # index 62: the newest dynamic entry
