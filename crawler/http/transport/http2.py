"""HTTP/2 for TLS origins that pick h2 via ALPN: the `h2` state machine driven by one asyncio Protocol.

One connection multiplexes every request of its origin. Frames from all streams are written together once
per event-loop iteration (one TLS record and one syscall instead of one per frame); received frames are
dispatched to their streams synchronously in `data_received` (no locks, no reader task). A stream's
flow-control window is given back as the caller consumes its body, so a slow reader slows its sender.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import httpx
import hyperframe.frame

from crawler.http.transport.base import ConnectionOwner, RetryRequest
from crawler.http.transport.errors import LIBRARY_ERRORS, HeaderTooLarge, to_httpx
from crawler.http.transport.headers import headers_from_raw
from crawler.http.transport.hpack_request import RequestHeaderEncoder
from crawler.http.transport.hpack_response import ResponseHeaderDecoder
from crawler.http.transport.http11 import HTTP1Connection, request_content

__all__ = ["HTTP2Connection", "RetryRequest"]

# Header validation is done here once (cheaply) instead of by h2 on every frame.
_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=False,
)
_STREAM_WINDOW = 1024 * 1024  # per stream: what a server may send ahead of the reader
_CONNECTION_WINDOW = 16 * 1024 * 1024
_MAX_STREAMS_BEFORE_SETTINGS = 100
_MAX_STREAM_ID = 2**31 - 1
_PRUNE_STREAMS_AT = 256  # closed streams h2 may hold before they are counted out and forgotten
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)


def _expire(fut: asyncio.Future[None], exc_type: type[Exception], message: str) -> None:
    if not fut.done():
        fut.set_exception(exc_type(message))


async def _wait(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None], seconds: float | None,
                exc_type: type[Exception], message: str) -> None:  # fmt: skip
    """Await `fut`, failing it with `exc_type` after `seconds` (None: wait for ever)."""
    if seconds is None:
        await fut
        return
    timer = loop.call_at(loop.time() + seconds, _expire, fut, exc_type, message)
    try:
        await fut
    finally:
        timer.cancel()


def _request_headers(request: httpx.Request) -> list[tuple[bytes, bytes]]:
    url = request.url
    authority = b""
    fields: list[tuple[bytes, bytes]] = []
    for name, value in request.headers.raw:
        lname = name.lower()
        if lname in _HOP_BY_HOP:
            if lname == b"host":
                authority = value
            continue
        if lname == b"te" and value.lower() != b"trailers":
            continue
        fields.append((lname, value))
    blob = b"".join([n + v for n, v in fields]) + authority
    if b"\r" in blob or b"\n" in blob or b"\x00" in blob or any(n[:1] == b":" for n, _ in fields):
        raise httpx.LocalProtocolError("illegal character in a request header")
    if not authority:
        authority = url.netloc
    return [
        (b":method", request.method.encode("ascii")),
        (b":authority", authority),
        (b":scheme", url.raw_scheme),
        (b":path", url.raw_path),
        *fields,
    ]


def _quiet_class(base: type[hyperframe.frame.Frame]) -> type[hyperframe.frame.Frame]:
    """`base` with a cheap repr.

    h2 formats `repr(frame)` of every frame it receives for a trace log, even with logging off: for DATA
    frames that hex-encodes the payload (13% of the CPU of an HTTP/2 download), for HEADERS frames the flags
    and the header block (~2% of an HTTP/2 crawl).
    """

    def __repr__(self: hyperframe.frame.Frame) -> str:
        return f"{base.__name__}(stream_id={self.stream_id})"

    return type(f"_Quiet{base.__name__}", (base,), {"__repr__": __repr__})


# Every frame class h2 may receive, and its quiet stand-in (h2 dispatches on the exact class).
_QUIET_FRAMES: dict[type[hyperframe.frame.Frame], type[hyperframe.frame.Frame]] = {
    cls: _quiet_class(cls) for cls in hyperframe.frame.FRAMES.values()
}


class _QuietFrameBuffer(h2.frame_buffer.FrameBuffer):
    def __next__(self) -> hyperframe.frame.Frame:
        data = self._data
        # h2 checks a frame's length only once the whole frame has arrived: a header announcing 16 MB would
        # be buffered first. Refuse it as soon as its 9-byte header is here.
        if len(data) >= 9 and int.from_bytes(data[:3], "big") > self.max_frame_size:
            raise h2.exceptions.FrameTooLargeError(
                f"frame of {int.from_bytes(data[:3], 'big')} bytes announced, max {self.max_frame_size}"
            )
        frame = super().__next__()
        quiet = _QUIET_FRAMES.get(frame.__class__)
        if quiet is not None:
            frame.__class__ = quiet
        return frame


class _OversizedHead(h2.exceptions.DenialOfServiceError):
    """A header block over MAX_HEADER_LIST_SIZE on `stream_id` (the connection dies with it: HPACK's
    compression context is lost mid-block)."""

    def __init__(self, stream_id: int, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class _H2State(h2.connection.H2Connection):
    """h2's connection state machine, with these changes.

    A graceful GOAWAY lets the streams it covers finish: h2 closes its state machine on any GOAWAY, so the
    DATA still due on streams the server accepted (nginx says GOAWAY after `keepalive_requests`, 1000 by
    default, with streams in flight) would be a protocol error. RFC 9113 section 6.8: streams up to the
    last stream id may complete. Received frames skip a costly repr (see `_quiet_class`). And heads are
    coded by our own HPACK encoder (`hpack_request.py`) and decoder (`hpack_response.py`).
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self.encoder = RequestHeaderEncoder()  # type: ignore[assignment]  # hpack.Encoder's interface
        self.decoder = ResponseHeaderDecoder()  # type: ignore[assignment]  # hpack.Decoder's interface
        self.incoming_buffer = _QuietFrameBuffer(server=False)
        table = self._frame_dispatch_table
        for base, quiet in _QUIET_FRAMES.items():
            if base in table:
                table[quiet] = table[base]

    @property
    def open_outbound_streams(self) -> int:
        # h2 counts open streams (and forgets closed ones) by walking all of them, on every new stream:
        # O(streams) per request. Every stream of a client connection is outbound (push is off), so the
        # number of streams known bounds the count; walk only when that bound reaches the peer's limit.
        known = len(self.streams)
        if known < _PRUNE_STREAMS_AT and known < self.remote_settings.max_concurrent_streams:
            return known
        count: int = h2.connection.H2Connection.open_outbound_streams.fget(self)  # type: ignore[attr-defined]
        return count

    def _receive_headers_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        try:
            return super()._receive_headers_frame(frame)
        except h2.exceptions.DenialOfServiceError as exc:
            # HPACK stopped decoding at MAX_HEADER_LIST_SIZE: say which stream's head was too large.
            raise _OversizedHead(frame.stream_id, str(exc)) from exc

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        if frame.error_code != 0:
            return super()._receive_goaway_frame(frame)
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors.ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class HTTP2Connection(asyncio.Protocol):
    """One HTTP/2 connection of an origin, shared by all its requests; one connection of the pool's budget."""

    def __init__(self, pool: ConnectionOwner, origin: Any, transport: asyncio.Transport) -> None:
        self.pool = pool
        self.origin = origin  # the pool's record of this origin; opaque here
        self.accounted = False
        self.idle_since = pool.loop.time()
        self.active = 0  # streams open at the protocol level
        self._loop = pool.loop
        self._transport = transport
        self._streams: dict[int, _Stream] = {}
        self._stream_waiters: deque[asyncio.Future[None]] = deque()
        self._max_streams = _MAX_STREAMS_BEFORE_SETTINGS
        self._closed = False
        self._goaway = False
        self._retired = False
        self._flush_scheduled = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        conn = self._h2 = _H2State(config=_CONFIG)
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: pool.max_header_bytes,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
            },
        )
        # Some servers reject a SETTINGS frame carrying this (RFC 8441) setting in the preface.
        del conn.local_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL]
        conn.initiate_connection()
        conn.increment_flow_control_window(_CONNECTION_WINDOW - 65535)
        # h2 applies our MAX_HEADER_LIST_SIZE once the server acknowledges it; until then, the same cap.
        conn.decoder.max_header_list_size = pool.max_header_bytes
        self.max_headers = pool.max_headers

    @classmethod
    def take_over(cls, pool: ConnectionOwner, origin: Any, conn: HTTP1Connection) -> HTTP2Connection:
        """Move a freshly connected socket whose ALPN said h2 from its HTTP/1.1 protocol to this one."""
        transport = conn.transport
        assert transport is not None
        self = cls(pool, origin, transport)
        early = conn.take_early_data()
        conn.detach()
        pool.transfer(conn, self)
        transport.set_protocol(self)
        self._flush()
        for data in early:
            self.data_received(data)
        return self

    # -- the pool's view --------------------------------------------------------------------------------

    def is_available(self) -> bool:
        if self._closed or self._goaway or self._retired:
            return False
        if self._h2.highest_outbound_stream_id >= _MAX_STREAM_ID - 2:
            return False
        expiry = self.pool.keepalive_expiry
        return not (self.active == 0 and expiry is not None and self._loop.time() - self.idle_since >= expiry)

    def retire(self) -> None:
        """The origin stopped using this connection: close it once its last stream ends."""
        self._retired = True
        if self.active == 0:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._h2.close_connection()
                self._flush()
            except LIBRARY_ERRORS:
                pass
            self._transport.close()
            self._fail_all(RetryRequest())
            self.pool.discard(self)

    # -- asyncio.Protocol -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except _OversizedHead as exc:
            st = self._streams.get(exc.stream_id)
            if st is not None:
                st.fail(HeaderTooLarge(
                    f"response head over {self.pool.max_header_bytes} bytes (http.max_header_bytes)"))  # fmt: skip
            self._fail_all(httpx.RemoteProtocolError("HTTP/2 connection closed: another stream's head was too large"))
            self._flush()
            self.close()
            return
        except LIBRARY_ERRORS as exc:
            # h2 treats a malformed response (a body shorter than its Content-Length, garbage bytes, a bad
            # HPACK block, ...) as fatal for the connection: every stream on it fails now, as a retryable
            # protocol error rather than a timeout (or an h2 exception in the caller's face).
            self._fail_all(to_httpx(exc))
            self._flush()
            self.close()
            return
        streams = self._streams
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                st = streams.get(event.stream_id)
                if st is not None:
                    st.feed(event.data, event.flow_controlled_length)
                    if event.stream_ended is not None:
                        st.remote_ended()
                else:
                    self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.ResponseReceived):
                st = streams.get(event.stream_id)
                if st is not None:
                    st.set_head(event.headers)
                    if event.stream_ended is not None:
                        st.remote_ended()
            elif isinstance(event, h2.events.StreamEnded):
                pass  # handled through `stream_ended` of the data/headers event above
            elif isinstance(event, h2.events.TrailersReceived):
                st = streams.get(event.stream_id)
                if st is not None and event.stream_ended is not None:
                    st.remote_ended()
            elif isinstance(event, h2.events.StreamReset):
                st = streams.get(event.stream_id)
                if st is not None:
                    st.reset(event.error_code)
            elif isinstance(event, h2.events.WindowUpdated):
                if event.stream_id == 0:
                    for st in list(streams.values()):
                        st.wake_sender()
                else:
                    st = streams.get(event.stream_id)
                    if st is not None:
                        st.wake_sender()
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                self._max_streams = min(self._h2.remote_settings.max_concurrent_streams, 1000)
                self._wake_stream_waiters()
                for st in list(streams.values()):
                    st.wake_sender()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._goaway = True
                last = event.last_stream_id if event.last_stream_id is not None else 0
                graceful = event.error_code == h2.errors.ErrorCodes.NO_ERROR
                for st in list(streams.values()):
                    if st.stream_id > last:
                        st.fail(RetryRequest())  # never processed by the server
                    elif not graceful:
                        st.fail(RetryRequest(safe=False) if not st.status else httpx.RemoteProtocolError(
                            f"HTTP/2 connection terminated by the server (error {event.error_code!r})"))  # fmt: skip
                for fut in self._stream_waiters:
                    if not fut.done():
                        fut.set_exception(RetryRequest())
                self.pool.h2_goaway(self)
                if self.active == 0 or not graceful:
                    self.close()
                # else: the streams the server accepted finish on this connection, then it closes
        self._flush()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        lost = httpx.RemoteProtocolError("Server disconnected.") if exc is None else httpx.ReadError(str(exc))
        for st in list(self._streams.values()):
            # No response yet: perhaps a keep-alive connection the server dropped as we used it.
            st.fail(RetryRequest(safe=False) if not st.status else lost)
        self._fail_all(lost)
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self.pool.discard(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- writing ----------------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and not self._transport.is_closing():
            self._transport.write(data)

    def schedule_flush(self) -> None:
        """Write pending frames at the end of this loop iteration, together with other streams' frames."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    async def drain(self, write_timeout: float | None) -> None:
        if self._write_paused and not self._closed:
            fut: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(fut)
            await _wait(self._loop, fut, write_timeout, httpx.WriteTimeout, "timed out writing the request")

    # -- streams ----------------------------------------------------------------------------------------

    def _fail_all(self, exc: BaseException) -> None:
        for st in list(self._streams.values()):
            st.fail(exc)
        waiters, self._stream_waiters = self._stream_waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(RetryRequest())

    def _wake_stream_waiters(self) -> None:
        waiters = self._stream_waiters
        free = self._max_streams - self.active
        while waiters and free > 0:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= 1

    def stream_closed(self, st: _Stream) -> None:
        if self._streams.pop(st.stream_id, None) is None:
            return
        self.active -= 1
        if self._stream_waiters:
            self._wake_stream_waiters()
        if self.active == 0:
            if self._retired or self._goaway:
                self.close()
            elif not self._closed:
                self.pool.h2_idle(self)

    async def send(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        headers = _request_headers(request)
        content = request_content(request)  # None: streamed
        loop = self._loop
        while self.active >= self._max_streams and not self._closed and not self._goaway:
            fut: asyncio.Future[None] = loop.create_future()
            self._stream_waiters.append(fut)
            await _wait(
                loop, fut, timeouts.get("pool"), httpx.PoolTimeout, "timed out waiting for an HTTP/2 stream"
            )
        if self._closed or self._goaway:
            raise RetryRequest()
        conn = self._h2
        try:
            stream_id = conn.get_next_available_stream_id()
        except LIBRARY_ERRORS:
            self.retire()  # stream ids used up: a new connection takes the request
            raise RetryRequest() from None
        st = _Stream(self, stream_id, timeouts.get("read"))
        self._streams[stream_id] = st
        self.active += 1
        if self.active == 1:
            self.pool.h2_busy(self)
        try:
            end_stream = content is not None and not content
            try:
                conn.send_headers(stream_id, headers, end_stream=end_stream)
            except LIBRARY_ERRORS:
                # The state machine refuses new streams (a GOAWAY or an error it processed): nothing was sent.
                raise RetryRequest() from None
            st.local_ended = end_stream
            self.schedule_flush()
            if not end_stream:
                try:
                    await self._send_body(st, request, content, timeouts.get("write"))
                except LIBRARY_ERRORS as exc:
                    # The stream or connection died under the upload (reset, GOAWAY, flow-control breach).
                    if not st.done:
                        raise to_httpx(exc) from exc
                    # else: the server answered or reset meanwhile; its word comes from wait_head
            await st.wait_head()
        except BaseException:
            st.abandon()
            raise
        response = httpx.Response(st.status, stream=st, extensions={"http_version": b"HTTP/2", "stream_id": stream_id})
        response.headers = headers_from_raw(st.headers)
        return response

    async def _send_body(self, st: _Stream, request: httpx.Request, content: bytes | None,
                         write_timeout: float | None) -> None:  # fmt: skip
        conn = self._h2
        stream_id = st.stream_id
        if content is not None:
            chunks: Any = (content,)
        else:
            chunks = request.stream
        if isinstance(chunks, tuple):
            for chunk in chunks:
                await self._send_chunk(st, chunk, write_timeout)
        else:
            async for chunk in chunks:
                if st.done:
                    break  # the server already answered (or reset): stop uploading
                await self._send_chunk(st, chunk, write_timeout)
        if not st.done and not self._closed:
            conn.end_stream(stream_id)
            st.local_ended = True
            self.schedule_flush()
        elif st.done and not st.local_ended:
            # The server answered before the upload finished: stop it, the exchange is over.
            st.local_ended = True
            st.cancel(h2.errors.ErrorCodes.NO_ERROR)
            self.stream_closed(st)

    async def _send_chunk(self, st: _Stream, chunk: bytes, write_timeout: float | None) -> None:
        conn = self._h2
        view = memoryview(chunk)
        while view and not st.done:
            if self._closed:
                raise httpx.WriteError("connection closed while sending the request body")
            window = min(conn.local_flow_control_window(st.stream_id), conn.max_outbound_frame_size)
            if window <= 0:
                await st.wait_window(write_timeout)
                continue
            n = min(window, len(view))
            conn.send_data(st.stream_id, bytes(view[:n]))
            view = view[n:]
            self._flush()
            await self.drain(write_timeout)


class _Stream(httpx.AsyncByteStream):
    """One request/response exchange on an HTTP/2 connection, and the response body as it arrives."""

    def __init__(self, conn: HTTP2Connection, stream_id: int, read_timeout: float | None) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self._read_timeout = read_timeout
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.local_ended = False
        self.done = False  # the server finished (end of stream or reset)
        self._head_waiter: asyncio.Future[None] | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self._window_waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._unacked = 0  # flow-controlled bytes received but not consumed yet
        self._error: BaseException | None = None
        self._closed = False

    # protocol side
    def set_head(self, headers: list[tuple[bytes, bytes]]) -> None:
        fields = []
        status = 0
        for name, value in headers:
            if name == b":status":
                status = int(value) if len(value) == 3 and value.isdigit() else 0
            elif name[:1] != b":":
                fields.append((name, value))
        if not 200 <= status <= 999:  # 1xx heads are informational events in h2, never ResponseReceived
            self.cancel(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            self.fail(httpx.RemoteProtocolError("HTTP/2 response without a valid :status"))
            return
        if len(fields) > self.conn.max_headers:
            self.cancel(h2.errors.ErrorCodes.CANCEL)
            self.fail(HeaderTooLarge(f"response head over {self.conn.max_headers} header fields (http.max_headers)"))
            return
        self.status = status
        self.headers = fields
        self._wake_head()

    def feed(self, data: bytes, flow_length: int) -> None:
        if data:
            self._chunks.append(data)
        self._unacked += flow_length
        w = self._body_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def remote_ended(self) -> None:
        self.done = True
        if not self.status and self._error is None:
            self._error = httpx.RemoteProtocolError("HTTP/2 stream ended without a response")
        self._wake_all()
        if self.local_ended:
            self.conn.stream_closed(self)

    def reset(self, error_code: int | None) -> None:
        code = h2.errors.ErrorCodes.REFUSED_STREAM
        if error_code == code and not self.status:
            self.fail(RetryRequest())
        else:
            self.fail(httpx.RemoteProtocolError(f"HTTP/2 stream reset by the server (error {error_code!r})"))

    def fail(self, exc: BaseException) -> None:
        self.done = True
        if self._error is None:
            if self.status and isinstance(exc, RetryRequest):
                # The head was handed out already: the caller reads the body, so no retry is possible.
                exc = httpx.RemoteProtocolError("HTTP/2 connection closed before the response body ended")
            self._error = exc
        self._wake_all()
        self.conn.stream_closed(self)

    def wake_sender(self) -> None:
        w = self._window_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _wake_head(self) -> None:
        w = self._head_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _wake_all(self) -> None:
        self._wake_head()
        for w in (self._body_waiter, self._window_waiter):
            if w is not None and not w.done():
                w.set_result(None)

    # caller side
    async def wait_head(self) -> None:
        while not self.status:
            if self._error is not None:
                raise self._error
            fut: asyncio.Future[None] = self.conn._loop.create_future()
            self._head_waiter = fut
            try:
                await _wait(self.conn._loop, fut, self._read_timeout, httpx.ReadTimeout,
                            "timed out waiting for the response head")  # fmt: skip
            finally:
                self._head_waiter = None

    async def wait_window(self, write_timeout: float | None) -> None:
        fut: asyncio.Future[None] = self.conn._loop.create_future()
        self._window_waiter = fut
        try:
            await _wait(
                self.conn._loop, fut, write_timeout, httpx.WriteTimeout, "timed out waiting for flow control"
            )
        finally:
            self._window_waiter = None

    def _ack(self) -> None:
        n = self._unacked
        if n:
            self._unacked = 0
            conn = self.conn
            if not conn._closed:
                try:
                    conn._h2.acknowledge_received_data(n, self.stream_id)
                except LIBRARY_ERRORS:
                    return  # the stream or connection is gone: no window to give back
                conn.schedule_flush()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._chunks
        while True:
            if chunks:
                chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._ack()
                yield chunk
            elif self._error is not None:
                raise self._error
            elif self.done:
                self._ack()
                return
            elif self._closed:
                raise httpx.StreamClosed()
            else:
                fut: asyncio.Future[None] = self.conn._loop.create_future()
                self._body_waiter = fut
                try:
                    await _wait(self.conn._loop, fut, self._read_timeout, httpx.ReadTimeout,
                                "timed out reading the response body")  # fmt: skip
                except httpx.ReadTimeout:
                    self.abandon()
                    raise
                finally:
                    self._body_waiter = None

    def cancel(self, code: int) -> None:
        conn = self.conn
        if not conn._closed:
            try:
                conn._h2.reset_stream(self.stream_id, code)
            except LIBRARY_ERRORS:
                pass
            conn.schedule_flush()

    def abandon(self) -> None:
        """The caller gave up on this exchange: reset the stream unless it is over, free its slot."""
        if not self.done:
            self.done = True
            self.cancel(h2.errors.ErrorCodes.CANCEL)
        self._chunks.clear()
        self._ack()
        self.conn.stream_closed(self)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.done or self._chunks or self._unacked:
            self.abandon()
