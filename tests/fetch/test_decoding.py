"""The one decoding chain (crawler.fetch.decoding): every coding and stack of codings decodes exactly, and a
bomb of any shape stops AT the cap with bounded work per step."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from crawler.fetch.decoding import STEP, DecodingChain, decode_all, parse_codings
from crawler.model.errors import BodyTooLarge, FetchError
from tests.fetch.bombs import MIB, br, encode, gzip, gzip_zeros, raw_deflate, zstd_

TEXT = os.urandom(200_000) + b"<html>" + b"hello world " * 50_000

STACKS = ["gzip", "deflate", "br", "zstd", "gzip, gzip", "deflate, gzip", "identity, gzip", "gzip, identity",
          "br, zstd", "zstd, gzip, br", "x-gzip", " GZIP ", "gzip,,identity"]  # fmt: skip


def _chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _decode(data: bytes, coding: str, limit: int | None, chunk: int = 16_384, **kw: object) -> bytes:
    chain = DecodingChain(coding, limit=limit, **kw)  # type: ignore[arg-type]
    out = bytearray()
    for piece in _chunked(data, chunk):
        for part in chain.feed(piece):
            assert len(part) <= STEP
            out += part
    for part in chain.finish():
        out += part
    return bytes(out)


@pytest.mark.parametrize("coding", STACKS)
@pytest.mark.parametrize("chunk", [1, 7, 65_536])
def test_every_stack_decodes_exactly(coding: str, chunk: int) -> None:
    body = TEXT if chunk > 1 else TEXT[:20_000]
    name = coding.strip().lower().replace("x-gzip", "gzip").replace(",,", ",")
    assert _decode(encode(body, name), coding, limit=None, chunk=chunk) == body


def test_codings_are_undone_last_first() -> None:
    assert parse_codings("deflate, gzip") == ["deflate", "gzip"]
    data = encode(b"abc" * 1000, "br, gzip")
    assert decode_all(data, "br, gzip", limit=None) == b"abc" * 1000
    with pytest.raises(FetchError) as err:
        decode_all(data, "gzip, br", limit=None)
    assert err.value.kind == "decoding_error"


@pytest.mark.parametrize("coding", ["compress", "sdch", "x-bogus", "gzip, lzma", "a" * 5000])
def test_unknown_codings_are_a_decoding_error(coding: str) -> None:
    with pytest.raises(FetchError) as err:
        DecodingChain(coding, limit=None)
    assert err.value.kind == "decoding_error"
    assert "unsupported Content-Encoding" in str(err.value) and len(str(err.value)) < 200


def test_too_many_stacked_codings_are_refused() -> None:
    with pytest.raises(FetchError, match="stacks 4 codings") as err:
        DecodingChain("gzip, gzip, gzip, gzip", limit=None)
    assert err.value.kind == "decoding_error"


def test_raw_deflate_and_multi_member_gzip() -> None:
    assert decode_all(raw_deflate(TEXT), "deflate", limit=None) == TEXT
    assert _decode(gzip(b"one ") + b"\x00\x00" + gzip(b"two"), "gzip", limit=None, chunk=3) == b"one two"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_truncated_and_corrupt_streams_are_decoding_errors(coding: str) -> None:
    data = encode(TEXT, coding)
    with pytest.raises(FetchError, match="truncated") as err:
        decode_all(data[: len(data) // 2], coding, limit=None)
    assert err.value.kind == "decoding_error"
    with pytest.raises(FetchError) as err:
        decode_all(b"\x00garbage that is no stream at all" * 10, coding, limit=None)
    assert err.value.kind == "decoding_error"


def test_an_empty_body_with_a_coding_is_empty() -> None:
    for coding in ["gzip", "br", "zstd", "deflate, gzip"]:
        assert decode_all(b"", coding, limit=10) == b""


def test_endless_garbage_after_the_stream_is_refused() -> None:
    with pytest.raises(FetchError, match="after the end") as err:
        _decode(gzip(b"x") + b"junk" * 100_000, "gzip", limit=None)
    assert err.value.kind == "decoding_error"


BOMBS = {
    "gzip": lambda: gzip_zeros(256),
    "gzip, gzip": lambda: gzip(gzip_zeros(1024)),
    "deflate, gzip": lambda: gzip(raw_deflate(bytes(256 * MIB))),
    "identity, gzip": lambda: gzip_zeros(256),
    "br": lambda: br(bytes(256 * MIB)),
    "zstd": lambda: zstd_(bytes(256 * MIB)),
    "br, gzip": lambda: gzip(br(bytes(256 * MIB))),
}


@pytest.mark.parametrize("coding", list(BOMBS))
def test_bombs_stop_at_the_cap_with_bounded_memory(coding: str) -> None:
    bomb = BOMBS[coding]()
    limit = 5 * MIB
    got = 0
    tracemalloc.start()
    try:
        chain = DecodingChain(coding, limit=limit)
        with pytest.raises(BodyTooLarge):
            for piece in _chunked(bomb, 65_536):
                for part in chain.feed(piece):
                    got += len(part)
            for part in chain.finish():
                got += len(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == limit, "the chain yields exactly the bytes up to the cap, then raises"
    # One step per layer and the decoders' windows: far below the 256 MiB-1 GiB the bombs expand to.
    assert peak < 12 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_the_last_step_asks_only_for_the_room_left() -> None:
    chain = DecodingChain("gzip", limit=10)
    out = b""
    with pytest.raises(BodyTooLarge):
        for part in chain.feed(gzip_zeros(4)):
            out += part
    assert out == bytes(10)


def test_sniffing_gunzips_a_gzip_body_and_passes_anything_else() -> None:
    assert _decode(gzip(b"<urlset/>"), "", limit=100, sniff_gzip=True, chunk=1) == b"<urlset/>"
    assert _decode(b"<urlset/>", "", limit=100, sniff_gzip=True, chunk=1) == b"<urlset/>"
    assert _decode(b"x", "", limit=100, sniff_gzip=True) == b"x"
    assert _decode(gzip(gzip(b"<urlset/>")), "gzip", limit=100, sniff_gzip=True) == b"<urlset/>"
    with pytest.raises(BodyTooLarge):
        _decode(gzip_zeros(64), "", limit=MIB, sniff_gzip=True)


def test_zstd_windows_above_8_mib_are_refused_not_allocated() -> None:
    from backports.zstd import CompressionParameter, compress

    data = compress(os.urandom(4096) * 8192, options={CompressionParameter.window_log: 27})
    with pytest.raises(FetchError, match="zstd") as err:
        decode_all(data, "zstd", limit=None)
    assert err.value.kind == "decoding_error"
