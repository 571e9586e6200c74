"""Compressed bodies for the decoding tests, built fast: a gzip bomb of N MiB of zeros is one compressed
MiB repeated (full flushes make every repeat the same bytes), with a correct trailer."""

from __future__ import annotations

import functools
import zlib

import brotli
from backports import zstd

MIB = 1 << 20


@functools.cache
def _zero_segment() -> tuple[bytes, bytes, bytes]:
    """(gzip header + first MiB, each further MiB, the end of the deflate stream), raw deflate bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = comp.compress(bytes(MIB)) + comp.flush(zlib.Z_FULL_FLUSH)
    seg = comp.compress(bytes(MIB)) + comp.flush(zlib.Z_FULL_FLUSH)
    seg2 = comp.compress(bytes(MIB)) + comp.flush(zlib.Z_FULL_FLUSH)
    assert seg == seg2, "a full flush makes each repeat identical"
    end = comp.flush(zlib.Z_FINISH)
    return head, seg, end[: -8]  # the trailer is recomputed for the real length


@functools.cache
def _crc_of_zeros(mib: int) -> int:
    crc = 0
    block = bytes(MIB)
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    return crc


def gzip_zeros(mib: int) -> bytes:
    """A valid gzip member holding `mib` MiB of zeros (about 1 KiB per MiB)."""
    head, seg, end = _zero_segment()
    trailer = _crc_of_zeros(mib).to_bytes(4, "little") + ((mib * MIB) & 0xFFFFFFFF).to_bytes(4, "little")
    return head + seg * (mib - 1) + end + trailer


def gzip(data: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    return comp.compress(data) + comp.flush()


def zlib_deflate(data: bytes) -> bytes:
    return zlib.compress(data, 9)


def raw_deflate(data: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush()


def br(data: bytes) -> bytes:
    return bytes(brotli.compress(data, quality=5))


def zstd_(data: bytes) -> bytes:
    return bytes(zstd.compress(data))


ENCODERS = {"gzip": gzip, "deflate": zlib_deflate, "br": br, "zstd": zstd_}


def encode(data: bytes, content_encoding: str) -> bytes:
    """Apply the codings of a Content-Encoding value in order (`deflate, gzip`: deflate first)."""
    for name in (c.strip() for c in content_encoding.split(",")):
        if name and name != "identity":
            data = ENCODERS[name](data)
    return data
