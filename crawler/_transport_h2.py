"""HTTP/2 for origins that pick h2 via ALPN: httpcore's HTTP/2 state machine on our own asyncio socket.

The TLS connection is opened by the pool like any other; when ALPN says h2 it is handed (bytes already
received included) to an `httpcore.AsyncNetworkStream` adapter, and one `httpcore.AsyncHTTP2Connection`
multiplexes every request of the origin over it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

if TYPE_CHECKING:
    from crawler._http1 import HTTP1Connection
    from crawler._transport_pool import ConnectionPool, Origin

__all__ = ["HTTP2Connection", "RetryRequest", "map_httpcore_errors"]

_HIGH_WATER = 1024 * 1024
_LOW_WATER = 256 * 1024

# Most specific first: the first isinstance match wins.
_ERROR_MAP: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


class RetryRequest(Exception):
    """The connection could not take the request (it was closing): pick another one."""


@contextmanager
def map_httpcore_errors() -> Iterator[None]:
    try:
        yield
    except httpcore.ConnectionNotAvailable as exc:
        raise RetryRequest() from exc
    except Exception as exc:
        for source, target in _ERROR_MAP:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


def _expire(fut: asyncio.Future[None], exc: type[Exception], message: str) -> None:
    if not fut.done():
        fut.set_exception(exc(message))


class _Socket(asyncio.Protocol, httpcore.AsyncNetworkStream):
    """An `httpcore.AsyncNetworkStream` over an asyncio transport (no anyio, no extra task per read)."""

    def __init__(self, owner: HTTP2Connection, transport: asyncio.Transport) -> None:
        self._owner = owner
        self._transport = transport
        self._loop = owner.pool.loop
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._closed = False
        self._read_paused = False
        self._write_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None

    # asyncio side
    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        w = self._read_waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self._size > _HIGH_WATER and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._closed = True
        for w in (self._read_waiter, self._drain_waiter):
            if w is not None and not w.done():
                w.set_result(None)
        self._owner.lost()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    # httpcore side
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 (httpcore's API)
        chunks = self._chunks
        if not chunks:
            if self._eof:
                return b""
            loop = self._loop
            waiter: asyncio.Future[None] = loop.create_future()
            self._read_waiter = waiter
            timer = None
            if timeout is not None:
                timer = loop.call_at(
                    loop.time() + timeout, _expire, waiter, httpcore.ReadTimeout, "read timed out"
                )
            try:
                await waiter
            finally:
                self._read_waiter = None
                if timer is not None:
                    timer.cancel()
            if not chunks:
                return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        if self._read_paused and not self._closed:
            self._read_paused = False
            self._transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 (httpcore's API)
        if not buffer:
            return
        if self._closed:
            raise httpcore.WriteError("connection closed")
        self._transport.write(buffer)
        if self._write_paused:
            loop = self._loop
            waiter: asyncio.Future[None] = loop.create_future()
            self._drain_waiter = waiter
            timer = None
            if timeout is not None:
                timer = loop.call_at(
                    loop.time() + timeout, _expire, waiter, httpcore.WriteTimeout, "write timed out"
                )
            try:
                await waiter
            finally:
                self._drain_waiter = None
                if timer is not None:
                    timer.cancel()
            if self._closed:
                raise httpcore.WriteError("connection closed while writing")

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise NotImplementedError("TLS is negotiated before HTTP/2 starts")

    def get_extra_info(self, info: str) -> Any:
        t = self._transport
        if info == "ssl_object":
            return t.get_extra_info("ssl_object")
        if info == "client_addr":
            return t.get_extra_info("sockname")
        if info == "server_addr":
            return t.get_extra_info("peername")
        if info == "socket":
            return t.get_extra_info("socket")
        if info == "is_readable":
            return bool(self._chunks) or self._eof
        return None


class HTTP2Connection:
    """One HTTP/2 connection of an origin, shared by all its requests; counts as one connection of the budget."""

    def __init__(self, pool: ConnectionPool, origin: Origin, transport: asyncio.Transport) -> None:
        self.pool = pool
        self.origin = origin
        self.accounted = False
        self.idle_since = 0.0
        self.active = 0
        self._retired = False
        self._closed = False
        self._socket = _Socket(self, transport)
        self._core = httpcore.AsyncHTTP2Connection(
            origin=httpcore.Origin(origin.scheme, origin.host.encode("ascii"), origin.port),
            stream=self._socket,
            keepalive_expiry=pool._expiry,
        )

    @classmethod
    def take_over(cls, pool: ConnectionPool, origin: Origin, conn: HTTP1Connection) -> HTTP2Connection:
        """Move a freshly connected socket whose ALPN said h2 from its HTTP/1.1 protocol to HTTP/2."""
        transport = conn.transport
        assert transport is not None
        self = cls(pool, origin, transport)
        early = conn.take_early_data()
        conn.detach()
        pool.transfer(conn, self)
        transport.set_protocol(self._socket)
        for data in early:
            self._socket.data_received(data)
        return self

    def is_available(self) -> bool:
        return not self._closed and self._core.is_available() and not self._core.has_expired()

    def retire(self) -> None:
        """The origin stopped using this connection: close it once its last stream ends."""
        self._retired = True
        if self.active == 0:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._socket.close()
            self.pool.discard(self)

    def lost(self) -> None:
        self._closed = True
        self.pool.discard(self)

    async def send(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        self.active += 1
        if self.active == 1:
            self.pool.h2_busy(self)
        try:
            with map_httpcore_errors():
                resp = await self._core.handle_async_request(core_request)
        except BaseException:
            self.stream_done()
            raise
        return httpx.Response(
            resp.status,
            headers=resp.headers,
            stream=_Body(self, resp.stream),
            extensions=resp.extensions,
        )

    def stream_done(self) -> None:
        self.active -= 1
        if self.active == 0:
            if self._retired or self._closed:
                self.close()
            else:
                self.pool.h2_idle(self)


class _Body(httpx.AsyncByteStream):
    def __init__(self, conn: HTTP2Connection, stream: Any) -> None:
        self._conn: HTTP2Connection | None = conn
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with map_httpcore_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        try:
            with map_httpcore_errors():
                await self._stream.aclose()
        finally:
            conn.stream_done()
