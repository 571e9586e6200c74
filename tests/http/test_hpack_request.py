"""The request-head HPACK encoder (crawler/http/transport/hpack_request.py) against hpack's own decoder:
whatever the fields, the decoder reads back exactly what was encoded, block after block."""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.http.transport.hpack_request import RequestHeaderEncoder

_names = st.sampled_from([b":method", b":path", b":scheme", b":authority", b"user-agent", b"accept",
                          b"accept-encoding", b"authorization", b"cookie", b"x-custom",
                          b"x-" + b"n" * 300])  # fmt: skip
_values = st.one_of(st.sampled_from([b"GET", b"POST", b"/", b"/index.html", b"https", b"http", b"gzip, deflate"]),
                    st.binary(max_size=400).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b"")))  # fmt: skip
_blocks = st.lists(st.lists(st.tuples(_names, _values), max_size=20), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(_blocks)
def test_hpack_decodes_exactly_what_was_encoded(blocks: list[list[tuple[bytes, bytes]]]) -> None:
    encoder = RequestHeaderEncoder()
    decoder = hpack.Decoder()
    for i, fields in enumerate(blocks):
        if i == 2:
            encoder.header_table_size = 1024  # the peer's SETTINGS_HEADER_TABLE_SIZE changed
        assert decoder.decode(encoder.encode(fields), raw=True) == fields
    assert len(decoder.header_table.dynamic_entries) == 0  # nothing ever enters the peer's table


def test_known_fields_use_the_static_table_and_credentials_are_never_indexed() -> None:
    encoder = RequestHeaderEncoder()
    block = encoder.encode([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")])
    assert block == b"\x20\x82\x87\x84"  # size update 0, then three indexed fields
    block = encoder.encode([(b"authorization", b"Basic x")])
    assert block[0] == 0x1F and block[1] == 0x08  # never indexed (0001), name index 23 = 15 + 8
    assert encoder.encode([(b":path", b"/a")]) == b"\x04\x02/a"  # literal, static name :path, plain value
