"""Content decoding for every body a crawl reads (pages, saved files, robots.txt, sitemaps): one chain of
streaming decoders under one decoded-size cap, so no server can make a response cost more memory than the
cap, however its codings are stacked.

- `Content-Encoding: deflate, gzip` lists codings in the order the server applied them; they are undone
  last first. `identity` is skipped; an unknown coding, more than `MAX_CODINGS` codings, a corrupt or
  truncated stream end as `FetchError(kind="decoding_error")`.
- Every decoder is asked for at most `STEP` bytes per call (zlib's and zstd's `max_length`, brotli's
  `output_buffer_limit`), and the last one for at most the room left under the cap plus one byte: a bomb
  stops AT the cap, with at most one step per layer held in memory. Past the cap the chain yields the
  bytes up to the cap, then raises `BodyTooLarge` (robots.txt keeps that prefix; pages fail).
- Intermediate layers (the outer codings of a stack) and the raw input are capped too, at the cap plus
  a slack for incompressible data, so an endless stream of empty deflate blocks or garbage after the end
  of a stream cannot spin forever either.
- zstd frames may declare windows up to 8 MiB (RFC 9659's limit for the `zstd` content coding); larger
  ones are refused rather than allocated. zstd comes from the stdlib's `compression.zstd` (Python 3.14+)
  or its backport, whose decompressor takes `max_length` as zlib's does (the `zstandard` package's
  streaming decoder returns all output at once, which cannot stop at a cap).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any, Protocol

from crawler.model.errors import BodyTooLarge, FetchError

__all__ = ["ACCEPT_ENCODING", "MAX_CODINGS", "STEP", "DecodingChain", "decode_all", "parse_codings"]

ACCEPT_ENCODING = "gzip, deflate, br, zstd"
MAX_CODINGS = 3  # real servers apply one; a few more only serve to stack bombs
STEP = 1 << 20  # decoded bytes asked of a decoder per call
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_WINDOW_LOG_MAX = 23  # 8 MiB
_TRAILING_LIMIT = 64 * 1024  # bytes tolerated after the end of a stream (NUL padding, stray newlines)
_ALIASES = {"x-gzip": "gzip", "x-deflate": "deflate"}
_KNOWN = ("gzip", "deflate", "br", "zstd")


def _decoding_error(message: str) -> FetchError:
    return FetchError(message, kind="decoding_error")


def parse_codings(content_encoding: str) -> list[str]:
    """The codings of a `Content-Encoding` value, in the order applied, `identity` dropped; raises
    `decoding_error` for an unknown coding or too many."""
    codings = []
    for token in content_encoding.split(","):
        name = token.strip().lower()
        if not name or name == "identity":
            continue
        name = _ALIASES.get(name, name)
        if name not in _KNOWN:
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise _decoding_error(f"unsupported Content-Encoding {shown!r} (supported: {', '.join(_KNOWN)})")
        codings.append(name)
    if len(codings) > MAX_CODINGS:
        raise _decoding_error(f"Content-Encoding stacks {len(codings)} codings (at most {MAX_CODINGS})")
    return codings


class _Layer(Protocol):
    """One streaming decoder. `decode(data, n)` takes new input only when `needs_input` is true (else it is
    called with b"" to drain) and returns at most `n` bytes."""

    name: str
    needs_input: bool

    def decode(self, data: bytes, max_length: int) -> bytes: ...

    def complete(self) -> bool: ...


class _Trailing:
    """Counts bytes after the end of a stream: a little padding is fine, an endless tail is not."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    def add(self, data: bytes) -> None:
        self.count += len(data)
        if self.count > _TRAILING_LIMIT:
            raise _decoding_error(f"more than {_TRAILING_LIMIT} bytes after the end of the {self.name} stream")


class _ZlibLayer:
    """gzip (several members allowed, as RFC 1952 permits) and deflate (zlib-wrapped as RFC 9110 says, or
    raw deflate as some servers send it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.needs_input = True
        # 47 = a gzip or zlib header, detected; raw deflate is tried when the first bytes fit neither.
        self._d = zlib.decompressobj(47)
        self._buf = b""  # input not yet handed to the decompressor (the output was full)
        self._started = False
        self._first_call = True
        self._trailing = _Trailing(name)

    def decode(self, data: bytes, max_length: int) -> bytes:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        out = bytearray()
        waiting = False
        while True:
            d = self._d
            if d.eof:
                if not buf:
                    break
                rest = buf.lstrip(b"\x00")
                if self.name == "gzip" and rest[:2] == _GZIP_MAGIC:
                    self._d = zlib.decompressobj(47)  # the next member
                    buf = rest
                    continue
                if self.name == "gzip" and rest == _GZIP_MAGIC[:1]:
                    self._buf = rest  # maybe the next member: wait for its second byte
                    waiting = True
                    break
                self._trailing.add(buf)
                buf = b""
                break
            room = max_length - len(out)
            if room <= 0 or not buf:
                if buf:
                    self._buf = buf
                elif room > 0 and self._started:
                    out += d.decompress(b"", room)  # output inflate still holds from earlier input
                break
            self._started = True
            try:
                out += d.decompress(buf, room)
            except zlib.error as exc:
                if self.name == "deflate" and self._first_call and not out:
                    self._first_call = False
                    self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise _decoding_error(f"corrupt {self.name} body: {exc}") from None
            self._first_call = False
            buf = d.unused_data if d.eof else d.unconsumed_tail
        self.needs_input = waiting or not self._buf
        return bytes(out)

    def complete(self) -> bool:
        return not self._started or self._d.eof


class _BrotliLayer:
    def __init__(self) -> None:
        import brotli

        self.name = "br"
        self.needs_input = True
        self._error = brotli.error
        self._d = brotli.Decompressor()
        self._pending = b""
        self._started = False
        self._trailing = _Trailing("br")

    def decode(self, data: bytes, max_length: int) -> bytes:
        d = self._d
        if self._pending:
            chunk, self._pending = self._pending[:max_length], self._pending[max_length:]
        elif d.is_finished():
            self._trailing.add(data)
            chunk = b""
        else:
            self._started = self._started or bool(data)
            try:
                chunk = d.process(data, output_buffer_limit=max_length)
            except self._error as exc:
                raise _decoding_error(f"corrupt br body: {exc}") from None
            if len(chunk) > max_length:  # the limit bounds the buffer's growth, not the output exactly
                chunk, self._pending = chunk[:max_length], chunk[max_length:]
        self.needs_input = not self._pending and (d.is_finished() or d.can_accept_more_data())
        return bytes(chunk)

    def complete(self) -> bool:
        return not self._started or self._d.is_finished()


def _zstd_module() -> Any:
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]  # Python 3.14+
    except ImportError:
        from backports import zstd
    return zstd


class _ZstdLayer:
    def __init__(self) -> None:
        self._zstd = _zstd_module()
        self.name = "zstd"
        self.needs_input = True
        self._d = self._new()
        self._buf = b""
        self._started = False
        self._trailing = _Trailing("zstd")

    def _new(self) -> Any:
        zstd = self._zstd
        return zstd.ZstdDecompressor(options={zstd.DecompressionParameter.window_log_max: _ZSTD_WINDOW_LOG_MAX})

    def decode(self, data: bytes, max_length: int) -> bytes:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        out = bytearray()
        waiting = False
        while True:
            d = self._d
            if d.eof:
                if not buf:
                    break
                if _is_zstd_frame(buf):
                    self._d = self._new()  # frames may be concatenated
                    continue
                if len(buf) < 4 and _is_zstd_frame(buf + bytes(4)):
                    self._buf = buf  # perhaps the start of the next frame
                    waiting = True
                    break
                self._trailing.add(buf)
                buf = b""
                break
            room = max_length - len(out)
            if room <= 0:
                self._buf = buf
                break
            if not buf and d.needs_input:
                break
            self._started = self._started or bool(buf)
            try:
                out += d.decompress(buf, room)
            except (self._zstd.ZstdError, EOFError) as exc:
                raise _decoding_error(f"corrupt zstd body: {exc}") from None
            buf = d.unused_data if d.eof else b""
            if not d.eof and not d.needs_input:
                break  # the output is full; the decoder holds more
        d = self._d
        self.needs_input = waiting or (not self._buf and (d.eof or d.needs_input))
        return bytes(out)

    def complete(self) -> bool:
        return not self._started or self._d.eof


def _is_zstd_frame(data: bytes) -> bool:
    """A zstd frame or a skippable frame (magic 0x184D2A5?) starts here."""
    return data[:4] == b"\x28\xb5\x2f\xfd" or (data[1:4] == b"\x2a\x4d\x18" and data[0] & 0xF0 == 0x50)


class _IdentityLayer:
    """Passes bytes through in pieces of at most `max_length` (what a sniffing layer becomes for a body
    that is not gzipped)."""

    name = "identity"

    def __init__(self) -> None:
        self.needs_input = True
        self._buf = b""

    def decode(self, data: bytes, max_length: int) -> bytes:
        buf = self._buf + data if self._buf else data
        out, self._buf = buf[:max_length], buf[max_length:]
        self.needs_input = not self._buf
        return out

    def complete(self) -> bool:
        return True


class _SniffGzipLayer:
    """Gunzips a body that starts with the gzip magic and passes any other through: a `.xml.gz` sitemap
    served as `application/gzip` (or inside an identity response) is decoded under the same cap."""

    name = "gzip"

    def __init__(self) -> None:
        self.needs_input = True
        self._inner: _Layer | None = None
        self._head = b""

    def decode(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            self._head += data
            if len(self._head) < 2 and data:
                return b""  # one byte cannot tell yet
            data, self._head = self._head, b""
            self._inner = _ZlibLayer("gzip") if data[:2] == _GZIP_MAGIC else _IdentityLayer()
        out = self._inner.decode(data, max_length)
        self.needs_input = self._inner.needs_input
        return out

    def complete(self) -> bool:
        return self._inner is None or self._inner.complete()


def _layer(name: str) -> _Layer:
    if name in ("gzip", "deflate"):
        return _ZlibLayer(name)
    if name == "br":
        return _BrotliLayer()
    return _ZstdLayer()


class DecodingChain:
    """Decodes one body: `feed(raw)` for each raw chunk, then `finish()`; both yield decoded chunks of at
    most `STEP` bytes. `limit` (None: no cap) caps the decoded size, see the module docstring."""

    def __init__(self, content_encoding: str = "", *, limit: int | None, sniff_gzip: bool = False,
                 what: str = "body", setting: str = "http.max_body") -> None:  # fmt: skip
        layers = [_layer(c) for c in reversed(parse_codings(content_encoding))]
        if sniff_gzip:
            layers.append(_SniffGzipLayer())
        self._layers = layers
        self.limit = limit
        self.total = 0  # decoded bytes yielded
        self.what = what
        self._setting = setting
        # An intermediate stream is the compressed form of the final one: allow it the cap plus a margin.
        self._inner_cap = None if limit is None else limit + limit // 16 + 65536
        self._made = [0] * len(layers)
        self._raw = 0

    @property
    def passthrough(self) -> bool:
        """No coding to undo: the body is the raw bytes (the caller may skip the chain, keeping the cap)."""
        return not self._layers

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(f"decoded {self.what} exceeds {self._setting} {self.limit} bytes")

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return
        self._raw += len(data)
        if self._inner_cap is not None and self._layers and self._raw > self._inner_cap:
            raise self._too_large()
        yield from self._through(0, data)

    def finish(self) -> Iterator[bytes]:
        """Drain every layer and check that each stream ended where it should."""
        for i, layer in enumerate(self._layers):
            stalls = 0
            while True:  # what a decoder still holds (inflate's pending output, a sniffer's first byte)
                out = layer.decode(b"", self._room(i))
                if out:
                    stalls = 0
                    yield from self._emit(i, out)
                elif layer.needs_input or (stalls := stalls + 1) > 2:
                    break
            if not layer.complete():
                raise _decoding_error(f"the {layer.name} stream of the {self.what} ends early (truncated)")

    def _room(self, i: int) -> int:
        if i == len(self._layers) - 1:
            return STEP if self.limit is None else min(STEP, self.limit - self.total + 1)
        cap = self._inner_cap
        return STEP if cap is None else max(1, min(STEP, cap - self._made[i] + 1))

    def _through(self, i: int, data: bytes) -> Iterator[bytes]:
        """Feed `data` to layer `i` (all of it when i is past the last layer) and yield what comes out."""
        if i == len(self._layers):
            yield from self._leaf(data)
            return
        layer = self._layers[i]
        stalls = 0
        while True:
            out = layer.decode(data, self._room(i))
            data = b""
            if out:
                stalls = 0
                yield from self._emit(i, out)
            elif not layer.needs_input:
                stalls += 1
                if stalls > 2:
                    raise _decoding_error(f"the {layer.name} decoder of the {self.what} makes no progress")
            if layer.needs_input:
                return

    def _emit(self, i: int, out: bytes) -> Iterator[bytes]:
        if i < len(self._layers) - 1:
            self._made[i] += len(out)
            if self._inner_cap is not None and self._made[i] > self._inner_cap:
                raise self._too_large()
        yield from self._through(i + 1, out)

    def _leaf(self, data: bytes) -> Iterator[bytes]:
        limit = self.limit
        if limit is not None and self.total + len(data) > limit:
            room = limit - self.total
            self.total = limit
            if room > 0:
                yield data[:room]
            raise self._too_large()
        self.total += len(data)
        # Identity bodies come in transport-sized chunks already; decoded ones in at most STEP.
        yield data


def decode_all(data: bytes, content_encoding: str = "", *, limit: int | None, sniff_gzip: bool = False,
               what: str = "body", setting: str = "the cap") -> bytes:  # fmt: skip
    """Decode a whole body held in memory through the same chain (a gzipped sitemap already fetched)."""
    chain = DecodingChain(content_encoding, limit=limit, sniff_gzip=sniff_gzip, what=what, setting=setting)
    out = bytearray()
    for piece in chain.feed(data):
        out += piece
    for piece in chain.finish():
        out += piece
    return bytes(out)
