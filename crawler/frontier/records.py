"""Compact queued requests: a FIFO of packed records in one `bytearray`, 20-60 bytes a request instead of the
~500 that a `Request` object in a heap tuple costs.

Layout of one record (little-endian), written and read strictly in order, which is what allows front coding:

    flags      B   REFERER (a referer follows) | SAME_REFERER (the previous record's) | TOKEN | EXTRA
    depth      H
    fp         Q   the URL's fingerprint (kept: recomputing it costs a hash per pop)
    shared     B   bytes the URL shares with the previous record's URL (front coding, at most 255)
    length     H   length of the rest of the URL, which follows
    [referer]  B H + bytes: the same front coding against the previous referer
    [token]    q   a backend's row id
    [extra]    I   + JSON: method, retries, meta, dont_filter (rare; anything unusual goes here)

A request whose depth or URL does not fit the fixed fields is stored with its whole `to_dict()` as extra.
Both ends keep the previous URL and referer, so a record costs the header plus the part of its URL that
differs from the one before: links of one page to one host share most of their bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

from crawler.model.request import Request

__all__ = ["RecordQueue"]

_HEAD = struct.Struct("<BHQBH")
_REF = struct.Struct("<BH")
_TOKEN = struct.Struct("<q")
_EXTRA = struct.Struct("<I")
_REFERER, _SAME_REFERER, _TOKEN_FLAG, _EXTRA_FLAG, _WHOLE = 1, 2, 4, 8, 16
_MAX_SHARED = 255
_MAX_FIELD = 0xFFFF
# Reading moves a cursor; the consumed front is cut off once it is this large and half the buffer.
_COMPACT_AT = 4096


def _shared(a: bytes, b: bytes) -> int:
    """Length of the common prefix of `a` and `b` (at most 255 bytes), with two C-speed conversions."""
    n = min(len(a), len(b), _MAX_SHARED)
    x = int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")
    return n - (x.bit_length() + 7) // 8


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


class RecordQueue:
    """A FIFO of requests of one host and one priority, packed (see the module docstring)."""

    __slots__ = ("_buf", "_pos", "_r_ref", "_r_url", "_w_ref", "_w_url", "count")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.count = 0
        self._w_url = self._r_url = b""
        self._w_ref = self._r_ref = b""

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return len(self._buf) - self._pos

    def append(self, req: Request) -> None:
        buf = self._buf
        extra: dict[str, Any] | None = None
        if req.method != "GET" or req.retries or req.meta or req.dont_filter:
            extra = {"method": req.method, "retries": req.retries, "meta": req.meta, "dont_filter": req.dont_filter}
        url = _encode(req.url)
        shared = _shared(url, self._w_url)
        rest = len(url) - shared
        if req.depth > _MAX_FIELD or rest > _MAX_FIELD or (req.referer and len(req.referer) > _MAX_FIELD):
            # Outside the fixed fields: the whole request as JSON. The front-coding state does not move.
            whole = orjson.dumps(req.to_dict())
            flags = _WHOLE | (_TOKEN_FLAG if req.token is not None else 0)
            buf += _HEAD.pack(flags, 0, req.fingerprint, 0, 0)
            if req.token is not None:
                buf += _TOKEN.pack(req.token)
            buf += _EXTRA.pack(len(whole))
            buf += whole
            self.count += 1
            return
        flags = 0
        ref = b""
        if req.referer:
            ref = _encode(req.referer)
            flags = _SAME_REFERER if ref == self._w_ref else _REFERER
        if req.token is not None:
            flags |= _TOKEN_FLAG
        if extra is not None:
            flags |= _EXTRA_FLAG
        buf += _HEAD.pack(flags, req.depth, req.fingerprint, shared, rest)
        buf += url[shared:] if shared else url
        self._w_url = url
        if flags & _REFERER:
            rshared = _shared(ref, self._w_ref)
            buf += _REF.pack(rshared, len(ref) - rshared)
            buf += ref[rshared:]
            self._w_ref = ref
        if req.token is not None:
            buf += _TOKEN.pack(req.token)
        if extra is not None:
            raw = orjson.dumps(extra)
            buf += _EXTRA.pack(len(raw))
            buf += raw
        self.count += 1

    def pop(self, host: str, priority: int) -> Request:
        """The oldest request (the queue must not be empty)."""
        buf = self._buf
        pos = self._pos
        flags, depth, fp, shared, rest = _HEAD.unpack_from(buf, pos)
        pos += _HEAD.size
        if flags & _WHOLE:
            token = None
            if flags & _TOKEN_FLAG:
                (token,) = _TOKEN.unpack_from(buf, pos)
                pos += _TOKEN.size
            (size,) = _EXTRA.unpack_from(buf, pos)
            pos += _EXTRA.size
            req = Request.from_dict(orjson.loads(buf[pos : pos + size]))
            req.fingerprint, req.host, req.token = fp, host, token
            self._advance(pos + size)
            return req
        url = self._r_url[:shared] + buf[pos : pos + rest] if shared else bytes(buf[pos : pos + rest])
        pos += rest
        self._r_url = url
        referer: str | None = None
        if flags & _REFERER:
            rshared, rrest = _REF.unpack_from(buf, pos)
            pos += _REF.size
            ref = self._r_ref[:rshared] + buf[pos : pos + rrest]
            pos += rrest
            self._r_ref = ref
            referer = _decode(ref)
        elif flags & _SAME_REFERER:
            referer = _decode(self._r_ref)
        req = Request(url=_decode(url), depth=depth, priority=priority, referer=referer, host=host, fingerprint=fp)
        if flags & _TOKEN_FLAG:
            (req.token,) = _TOKEN.unpack_from(buf, pos)
            pos += _TOKEN.size
        if flags & _EXTRA_FLAG:
            (size,) = _EXTRA.unpack_from(buf, pos)
            pos += _EXTRA.size
            extra = orjson.loads(buf[pos : pos + size])
            pos += size
            req.method, req.retries, req.meta = extra["method"], extra["retries"], extra["meta"]
            req.dont_filter = extra["dont_filter"]
        self._advance(pos)
        return req

    def _advance(self, pos: int) -> None:
        self.count -= 1
        buf = self._buf
        if not self.count:
            buf.clear()
            self._pos = 0
        elif pos >= _COMPACT_AT and pos * 2 >= len(buf):
            del buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
