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

A queue's whole content (`packed()`) is a self-contained block: its first record is coded against nothing,
so a block can be stored (the memory frontier's spill) and appended to any queue later (`extend_packed`).
"""

from __future__ import annotations

import struct

import orjson

from crawler.model.request import Request

__all__ = ["Block", "RecordQueue", "pack_blocks"]

_HEAD = struct.Struct("<BHQBH")
_REF = struct.Struct("<BH")
_TOKEN = struct.Struct("<q")
_EXTRA = struct.Struct("<I")
_HEAD_SIZE, _REF_SIZE, _TOKEN_SIZE, _EXTRA_SIZE = _HEAD.size, _REF.size, _TOKEN.size, _EXTRA.size
_REFERER, _SAME_REFERER, _TOKEN_FLAG, _EXTRA_FLAG, _WHOLE = 1, 2, 4, 8, 16
_MAX_SHARED = 255
_MAX_FIELD = 0xFFFF
# Reading moves a cursor; the consumed front is cut off once it is this large and half the buffer.
_COMPACT_AT = 4096


# A block as stored: (priority, number of records, the packed records).
Block = tuple[int, int, bytes]


def pack_blocks(requests: list[Request]) -> list[Block]:
    """Requests of one host as blocks, one per priority, keeping their order."""
    queues: dict[int, RecordQueue] = {}
    for req in requests:
        q = queues.get(req.priority)
        if q is None:
            q = queues[req.priority] = RecordQueue()
        q.append(req)
    return [(priority, len(q), q.packed()) for priority, q in queues.items()]


def _shared(a: bytes, b: bytes) -> int:
    """Length of the common prefix of `a` and `b` (at most 255 bytes), with two C-speed conversions."""
    n = min(len(a), len(b), _MAX_SHARED)
    x = int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")
    return n - (x.bit_length() + 7) // 8


class RecordQueue:
    """A FIFO of requests of one host and one priority, packed (see the module docstring)."""

    __slots__ = ("_buf", "_pos", "_r_ref", "_r_ref_text", "_r_url", "_w_ref", "_w_ref_text", "_w_url", "count")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.count = 0
        # Front-coding state of the writing end and the reading end: the last URL and referer.
        self._w_url = self._r_url = self._w_ref = self._r_ref = b""
        self._w_ref_text = ""
        self._r_ref_text = ""

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return len(self._buf) - self._pos

    def packed(self) -> bytes:
        """The records of a queue nothing was popped from, as one self-contained block (see the module
        docstring)."""
        return bytes(self._buf[self._pos :]) if self._pos else bytes(self._buf)

    def extend_packed(self, block: bytes, count: int) -> None:
        """Append a block of `count` records taken from `packed()` of a queue that started empty."""
        self._buf += block
        self.count += count
        # The block's first record is coded against nothing; after it, the next record must be too.
        self._w_url = self._w_ref = b""
        self._w_ref_text = ""

    def append(self, req: Request) -> None:
        buf = self._buf
        url = req.url.encode("utf-8", "surrogatepass")
        prev = self._w_url
        n = min(len(url), len(prev), _MAX_SHARED)
        shared = n - ((int.from_bytes(url[:n], "big") ^ int.from_bytes(prev[:n], "big")).bit_length() + 7) // 8
        rest = len(url) - shared
        referer = req.referer
        if req.depth > _MAX_FIELD or rest > _MAX_FIELD or (referer and len(referer) > _MAX_FIELD // 4):
            self._append_whole(req)
            return
        flags = 0
        if referer:
            flags = _SAME_REFERER if referer == self._w_ref_text else _REFERER
        token = req.token
        if token is not None:
            flags |= _TOKEN_FLAG
        extra = None
        if req.method != "GET" or req.retries or req.meta or req.dont_filter:
            flags |= _EXTRA_FLAG
            extra = orjson.dumps({"method": req.method, "retries": req.retries, "meta": req.meta,
                                  "dont_filter": req.dont_filter})  # fmt: skip
        buf += _HEAD.pack(flags, req.depth, req.fingerprint, shared, rest)
        buf += url[shared:] if shared else url
        self._w_url = url
        if flags & _REFERER:
            assert referer is not None
            ref = referer.encode("utf-8", "surrogatepass")
            rshared = _shared(ref, self._w_ref)
            buf += _REF.pack(rshared, len(ref) - rshared)
            buf += ref[rshared:]
            self._w_ref = ref
            self._w_ref_text = referer
        if token is not None:
            buf += _TOKEN.pack(token)
        if extra is not None:
            buf += _EXTRA.pack(len(extra))
            buf += extra
        self.count += 1

    def _append_whole(self, req: Request) -> None:
        """Outside the fixed fields: the whole request as JSON. The front-coding state does not move."""
        buf = self._buf
        whole = orjson.dumps(req.to_dict())
        flags = _WHOLE | (_TOKEN_FLAG if req.token is not None else 0)
        buf += _HEAD.pack(flags, 0, req.fingerprint, 0, 0)
        if req.token is not None:
            buf += _TOKEN.pack(req.token)
        buf += _EXTRA.pack(len(whole))
        buf += whole
        self.count += 1

    def pop(self, host: str, priority: int) -> Request:
        """The oldest request (the queue must not be empty)."""
        buf = self._buf
        pos = self._pos
        flags, depth, fp, shared, rest = _HEAD.unpack_from(buf, pos)
        pos += _HEAD_SIZE
        if flags & _WHOLE:
            return self._pop_whole(flags, fp, host, pos)
        end = pos + rest
        url = self._r_url[:shared] + buf[pos:end] if shared else bytes(buf[pos:end])
        pos = end
        self._r_url = url
        referer: str | None = None
        if flags & _SAME_REFERER:
            referer = self._r_ref_text
        elif flags & _REFERER:
            rshared, rrest = _REF.unpack_from(buf, pos)
            pos += _REF_SIZE
            end = pos + rrest
            ref = self._r_ref[:rshared] + buf[pos:end]
            pos = end
            self._r_ref = ref
            referer = self._r_ref_text = ref.decode("utf-8", "surrogatepass")
        req = Request(url=url.decode("utf-8", "surrogatepass"), depth=depth, priority=priority, referer=referer,
                      host=host, fingerprint=fp)  # fmt: skip
        if flags & _TOKEN_FLAG:
            (req.token,) = _TOKEN.unpack_from(buf, pos)
            pos += _TOKEN_SIZE
        if flags & _EXTRA_FLAG:
            (size,) = _EXTRA.unpack_from(buf, pos)
            pos += _EXTRA_SIZE
            extra = orjson.loads(buf[pos : pos + size])
            pos += size
            req.method, req.retries, req.meta = extra["method"], extra["retries"], extra["meta"]
            req.dont_filter = extra["dont_filter"]
        self._advance(pos)
        return req

    def _pop_whole(self, flags: int, fp: int, host: str, pos: int) -> Request:
        buf = self._buf
        token = None
        if flags & _TOKEN_FLAG:
            (token,) = _TOKEN.unpack_from(buf, pos)
            pos += _TOKEN_SIZE
        (size,) = _EXTRA.unpack_from(buf, pos)
        pos += _EXTRA_SIZE
        req = Request.from_dict(orjson.loads(buf[pos : pos + size]))
        req.fingerprint, req.host, req.token = fp, host, token
        self._advance(pos + size)
        return req

    def _advance(self, pos: int) -> None:
        self.count -= 1
        if not self.count:
            self._buf.clear()
            self._pos = 0
        elif pos >= _COMPACT_AT and pos * 2 >= len(self._buf):
            del self._buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
