"""HTTP/1.1 on an asyncio Protocol, parsed by httptools: one connection carrying one exchange at a time.

The connection hands itself back to its pool (`ConnectionPool.release`) as soon as the parser reports the
end of a response, so the next request can use it while the caller is still reading the buffered body.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

from crawler.http.transport.base import ConnectionOwner
from crawler.http.transport.errors import HeaderTooLarge
from crawler.http.transport.headers import headers_from_raw

__all__ = ["HTTP1Connection", "ResponseBody", "StaleConnection", "request_content"]

# Connection states.
_CONNECTING = 0  # TLS/ALPN not settled yet: bytes are kept for a possible HTTP/2 hand-over
_IDLE = 1  # between exchanges (in the pool or just checked out)
_ACTIVE = 2  # a request was written and its response is not complete
_CLOSED = 3

# Body buffering: stop reading the socket above HIGH buffered bytes, start again below LOW.
_HIGH_WATER = 1024 * 1024
_LOW_WATER = 256 * 1024


class StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before any byte of the response arrived.

    The request is safe to send again on a fresh connection when it is idempotent and its body replayable,
    or in any case when nothing of it was `sent`.
    """

    def __init__(self, sent: bool = True) -> None:
        super().__init__("the keep-alive connection was closed by the server")
        self.sent = sent


def request_content(request: httpx.Request) -> bytes | None:
    """The request body when it is in memory, or None for a stream to send chunk by chunk.

    A body stream that was never read (a redirect re-sends the original one) counts as empty unless the
    headers announce a body, as httpcore does: no empty DATA frame or chunked trailer for a GET.
    """
    try:
        return request.content
    except httpx.RequestNotRead:
        pass
    headers = request.headers
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        return None
    return b""


def _expire(fut: asyncio.Future[Any], exc_type: type[Exception], message: str) -> None:
    if not fut.done():
        fut.set_exception(exc_type(message))


class HTTP1Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: writes a request head (and body), parses the response as bytes arrive."""

    __slots__ = (
        "_body",
        "_drain_waiter",
        "_early",
        "_eof_body",
        "_has_body_framing",
        "_head_bytes",
        "_head_error",
        "_head_fields",
        "_head_raw",
        "_head_waiter",
        "_headers",
        "_informational",
        "_is_head",
        "_keep_alive",
        "_loop",
        "_max_head_bytes",
        "_max_headers",
        "_message_done",
        "_parser",
        "_reading_paused",
        "_reason",
        "_received",
        "_request_done",
        "_state",
        "_status",
        "_write_paused",
        "accounted",
        "idle_since",
        "origin",
        "pool",
        "served",
        "transport",
    )

    def __init__(self, pool: ConnectionOwner, origin: Any) -> None:
        self.pool = pool
        self.origin = origin  # the pool's record of this origin; opaque here
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self._state = _CONNECTING
        self._early: list[bytes] = []
        self._parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.served = 0  # completed exchanges; > 0 means "a reused connection"
        self.accounted = True  # holds one slot of the pool's connection budget until discarded
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._max_head_bytes = pool.max_header_bytes
        self._max_headers = pool.max_headers
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._body: ResponseBody | None = None
        self._head_waiter: asyncio.Future[None] | None = None
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._has_body_framing = False
        self._eof_body = False
        self._informational = False
        self._is_head = False
        self._keep_alive = True
        self._message_done = False
        self._request_done = True
        self._received = False
        # The response head so far, across 1xx heads too: bytes received while it is incomplete (raw), bytes
        # and fields parsed.
        self._head_raw = 0
        self._head_bytes = 0
        self._head_fields = 0
        self._head_error: HeaderTooLarge | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _ACTIVE:
            self._received = True
            in_head = not self._status
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                # A 101 Switching Protocols: the response ends at its head; the connection is not ours anymore.
                self._keep_alive = False
                self._message_complete()
            except httptools.HttpParserError as exc:
                # A callback refusing an oversized head stops the parser this way too.
                self._fail(self._head_error or httpx.RemoteProtocolError(f"malformed HTTP/1.1 response: {exc}"))
                return
            if in_head and not self._status:
                # Still no final head: every byte so far belongs to heads. httptools keeps a partial header
                # line in its own buffers, so an endless line is only visible here.
                self._head_raw += len(data)
                if self._head_raw > self._max_head_bytes:
                    self._fail(HeaderTooLarge(
                        f"response head over {self._max_head_bytes} bytes (http.max_header_bytes)"))  # fmt: skip
                    return
            if self._message_done:
                self._finish_exchange()
        elif state == _CONNECTING:
            self._early.append(data)
        elif state == _IDLE:
            # Bytes nobody asked for: the server broke the framing. Never reuse this connection.
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost does the bookkeeping

    def connection_lost(self, exc: Exception | None) -> None:
        state = self._state
        self._state = _CLOSED
        if state == _ACTIVE:
            # A clean end of the connection is the server's protocol error; a reset is a network error.
            if self._status and self._eof_body and self._body is not None and exc is None:
                # A body delimited by the end of the connection is complete now.
                self._keep_alive = False
                self._message_complete()
                self._finish_exchange()
            elif self._status:
                message = "peer closed connection without sending complete message body"
                self._fail(
                    httpx.RemoteProtocolError(message)
                    if exc is None
                    else httpx.ReadError(f"{message}: {exc}")
                )
            elif not self._received and self.served:
                self._fail(StaleConnection())
            elif exc is not None and not self._request_done:
                self._fail(httpx.WriteError(f"connection lost while sending the request: {exc}"))
            elif exc is not None:
                self._fail(httpx.ReadError(f"connection lost before the response: {exc}"))
            else:
                self._fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(httpx.WriteError("connection closed while writing the request"))
        self.pool.discard(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._message_done:
            self._keep_alive = False  # a second response nobody asked for
        self._reason = b""
        self._headers = []
        self._has_body_framing = False

    def on_status(self, status: bytes) -> None:
        self._reason += status
        self._head_bytes += len(status)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._head_fields > self._max_headers or self._head_bytes > self._max_head_bytes:
            what = (f"over {self._max_headers} header fields (http.max_headers)"
                    if self._head_fields > self._max_headers
                    else f"over {self._max_head_bytes} bytes (http.max_header_bytes)")  # fmt: skip
            self._head_error = HeaderTooLarge(f"response head {what}")
            raise self._head_error  # httptools stops parsing; data_received fails the exchange
        self._headers.append((name, value))
        n = len(name)
        if n == 14 or n == 17:  # content-length / transfer-encoding decide how the body ends
            lname = name.lower()
            if lname == b"content-length" or lname == b"transfer-encoding":
                self._has_body_framing = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._informational = True  # 100 Continue, 103 Early Hints: wait for the final response
            return
        self._status = status
        self._eof_body = not self._has_body_framing and not self._is_head and status not in (204, 304)
        body = self._body
        if body is not None:
            body.status = status
            body.reason = self._reason
            body.headers = self._headers
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._is_head:
            # httptools cannot be told "no body follows"; a HEAD response ends at its head.
            self._message_complete()

    def on_body(self, body: bytes) -> None:
        b = self._body
        if b is not None and not self._message_done:
            b.feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self._message_done:  # the HEAD case, already complete
            return
        self._message_complete()

    # -- exchange ---------------------------------------------------------------------------------------

    def _message_complete(self) -> None:
        self._message_done = True
        if not self._parser.should_keep_alive():
            self._keep_alive = False
        b = self._body
        if b is not None:
            b.finish()

    def _finish_exchange(self) -> None:
        """The response is complete: detach its body and give the connection back (or close it)."""
        keep = self._keep_alive and self._request_done and self._state == _ACTIVE
        if self._is_head:
            self._parser = httptools.HttpResponseParser(self)
        self._reset_exchange()
        if keep:
            self._state = _IDLE
            self.served += 1
            if self._reading_paused:
                self._reading_paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            self.pool.release(self)
        else:
            self.close()

    def _fail(self, exc: BaseException) -> None:
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        body = self._body
        if body is not None:
            body.fail(exc)
        self._body = None
        self.close()

    def start_http1(self) -> bool:
        """ALPN chose HTTP/1.1 (or there was no TLS): start serving requests. False if the server spoke first."""
        early = self._early
        self._early = []
        if self._state != _CONNECTING:
            return False
        if early:
            self.close()
            return False
        self._state = _IDLE
        return True

    def detach(self) -> None:
        """The socket now belongs to an HTTP/2 connection: forget it without closing it."""
        self._state = _CLOSED
        self.transport = None

    def take_early_data(self) -> list[bytes]:
        """Bytes received before the protocol was settled (an HTTP/2 server's SETTINGS frame)."""
        early = self._early
        self._early = []
        return early

    @property
    def is_usable(self) -> bool:
        return self._state == _IDLE

    def close(self) -> None:
        if self._state != _CLOSED:
            self._state = _CLOSED
            if self.transport is not None:
                self.transport.close()
            self.pool.discard(self)

    def abort(self) -> None:
        """Drop the connection now (a response closed early, a timeout): it can never be reused."""
        state = self._state
        self._state = _CLOSED
        if self.transport is not None:
            self.transport.abort()
        if state != _CLOSED:
            self.pool.discard(self)

    async def send(
        self,
        request: httpx.Request,
        head: bytes,
        content: bytes | None,
        chunked: bool,
        keep_alive: bool,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        """Write one request and wait for the head of its response. The body streams afterwards."""
        if self._state != _IDLE:
            raise StaleConnection(sent=False)  # closed by the server after it was handed to us
        self._state = _ACTIVE
        self._keep_alive = keep_alive
        self._is_head = request.method == "HEAD"
        body = ResponseBody(self, request, timeouts.get("read"))
        self._body = body
        transport = self.transport
        assert transport is not None
        loop = self._loop
        waiter = loop.create_future()
        self._head_waiter = waiter
        try:
            if content is not None:
                if len(content) < 65536:
                    transport.write(head + content)
                else:
                    transport.write(head)
                    transport.write(content)
                if self._write_paused:
                    # Until the request is out, an early complete response must not free the connection.
                    self._request_done = False
                    await self._drain(timeouts.get("write"))
                    if self._body is body:
                        self._request_done = True
            else:
                self._request_done = False
                transport.write(head)
                await self._send_stream(request, chunked, timeouts.get("write"))
                if self._body is body:
                    self._request_done = True
            if not waiter.done():
                read_timeout = timeouts.get("read")
                if read_timeout is not None:
                    timer = loop.call_at(loop.time() + read_timeout, _expire, waiter, httpx.ReadTimeout,
                                         "timed out waiting for the response head")  # fmt: skip
                    try:
                        await waiter
                    finally:
                        timer.cancel()
                else:
                    await waiter
            else:
                waiter.result()
        except BaseException:
            # A timeout, a cancellation, an error: drop the connection if this exchange still owns it. If the
            # response had already completed, the connection is back in the pool (maybe serving another
            # request) and must be left alone.
            if self._body is body:
                self._body = None
                self.abort()
            raise
        # The connection may already carry the next exchange: read the head from this exchange's body.
        response = httpx.Response(
            body.status, stream=body, extensions={"http_version": b"HTTP/1.1", "reason_phrase": body.reason}
        )
        response.headers = headers_from_raw(body.headers)
        return response

    async def _send_stream(self, request: httpx.Request, chunked: bool, write_timeout: float | None) -> None:
        transport = self.transport
        assert transport is not None
        stream = request.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        async for chunk in stream:
            if self._state != _ACTIVE or self._message_done:
                break  # the server answered (or hung up) before the body was sent; read what it said
            if not chunk:
                continue
            if chunked:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                transport.write(chunk)
            if self._write_paused:
                await self._drain(write_timeout)
        else:
            if chunked and self._state == _ACTIVE:
                transport.write(b"0\r\n\r\n")
            return
        self._keep_alive = False

    async def _drain(self, write_timeout: float | None) -> None:
        if not self._write_paused or self._state != _ACTIVE:
            return
        loop = self._loop
        waiter: asyncio.Future[None] = loop.create_future()
        self._drain_waiter = waiter
        timer = None
        if write_timeout is not None:
            timer = loop.call_at(loop.time() + write_timeout, _expire, waiter, httpx.WriteTimeout,
                                 "timed out writing the request")  # fmt: skip
        try:
            await waiter
        finally:
            self._drain_waiter = None
            if timer is not None:
                timer.cancel()

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and self._state == _ACTIVE:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            if self._state != _CLOSED:
                self.transport.resume_reading()

    def body_closed_early(self, body: ResponseBody) -> None:
        """The caller closed a response before its end: this connection cannot carry another request."""
        if self._body is body:
            self._body = None
            self.abort()


class ResponseBody(httpx.AsyncByteStream):
    """Raw response bytes as they arrive; buffered up to a high-water mark, then the socket is paused."""

    __slots__ = (
        "_chunks", "_closed", "_conn", "_done", "_error", "_read_timeout", "_request", "_size", "_waiter",
        "headers", "reason", "status",
    )  # fmt: skip

    def __init__(self, conn: HTTP1Connection, request: httpx.Request, read_timeout: float | None) -> None:
        self._conn: HTTP1Connection | None = conn
        self._request = request
        self._read_timeout = read_timeout
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        # The response head, filled in by the connection when it is parsed.
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._size > _HIGH_WATER and self._conn is not None:
            self._conn.pause_reading()

    def finish(self) -> None:
        self._done = True
        self._conn = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._error = exc
        self._conn = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._chunks
        while True:
            if chunks:
                if len(chunks) == 1:
                    chunk = chunks.popleft()
                else:
                    chunk = b"".join(chunks)
                    chunks.clear()
                self._size = 0
                conn = self._conn
                if conn is not None and conn._reading_paused:
                    conn.resume_reading()
                yield chunk
            elif self._error is not None:
                raise self._error
            elif self._done:
                return
            elif self._closed:
                raise httpx.StreamClosed()
            else:
                await self._wait()

    async def _wait(self) -> None:
        conn = self._conn
        if conn is not None and conn._reading_paused:
            conn.resume_reading()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = None
        if self._read_timeout is not None:
            timer = loop.call_at(loop.time() + self._read_timeout, _expire, waiter, httpx.ReadTimeout,
                                 "timed out reading the response body")  # fmt: skip
        try:
            await waiter
        except httpx.ReadTimeout as exc:
            self._error = exc
            raise
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        self._conn = None
        if conn is not None and not self._done:
            conn.body_closed_early(self)
