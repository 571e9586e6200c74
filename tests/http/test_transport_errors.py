"""No exception of h2, hpack, hyperframe or httptools ever leaves the transport: every fault a server can
cause mid-stream ends as one of httpx's own exceptions (issue 9). The servers are scripted HTTP/2 servers
(tests/http/h2_faults.py, cleartext h2 by prior knowledge) and raw asyncio sockets for HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import h2.connection
import hpack
import httpx
import pytest

from crawler.http.transport.transport import make_transport
from tests.engine._helpers import crawl_all, make_job
from tests.http.h2_faults import (
    H2FaultServer,
    abort_with_reset,
    frame,
    goaway,
    respond,
    rst_stream,
    start_body,
)

pytestmark = pytest.mark.timeout(30)

_PROTOCOL_ERROR, _INTERNAL_ERROR = 0x1, 0x2
_LIBRARIES = ("h2", "hpack", "hyperframe", "httptools")


def h2c_client(**kwargs: object) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
    transport = make_transport(http2=True, verify=False, limits=limits, http2_prior_knowledge=True)
    return httpx.AsyncClient(transport=transport, timeout=5.0, **kwargs)  # type: ignore[arg-type]


def assert_only_httpx(exc: BaseException) -> None:
    """The exception, and everything chained to it, comes from httpx: no library type for a caller to meet."""
    assert type(exc).__module__.split(".")[0] == "httpx", type(exc)
    assert isinstance(exc, httpx.TransportError)


async def _get_error(url: str) -> BaseException:
    async with h2c_client() as c:
        with pytest.raises(httpx.HTTPError) as info:
            r = await c.get(url)
            await r.aread()  # pragma: no cover - the scenarios never complete a response
    assert_only_httpx(info.value)
    return info.value


async def _garbage_mid_body(server: H2FaultServer, conn: h2.connection.H2Connection,
                            writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
    start_body(conn, writer, stream_id)
    await asyncio.sleep(0.02)
    writer.write(b"\xff" * 64)  # a frame header announcing 16 MB: over any frame size the client allows


async def _goaway_error_mid_body(server: H2FaultServer, conn: h2.connection.H2Connection,
                                 writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
    start_body(conn, writer, stream_id)
    await asyncio.sleep(0.02)
    writer.write(goaway(stream_id, _PROTOCOL_ERROR))


async def _rst_stream_mid_body(server: H2FaultServer, conn: h2.connection.H2Connection,
                               writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
    start_body(conn, writer, stream_id)
    await asyncio.sleep(0.02)
    writer.write(rst_stream(stream_id, _INTERNAL_ERROR))


async def _tcp_reset_mid_body(server: H2FaultServer, conn: h2.connection.H2Connection,
                              writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
    start_body(conn, writer, stream_id)
    await asyncio.sleep(0.02)
    abort_with_reset(writer)


async def _bad_hpack_block(server: H2FaultServer, conn: h2.connection.H2Connection,
                           writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
    # Indexed header field 0x7f+..: an index far past the static and dynamic tables.
    writer.write(frame(0x1, 0x4, stream_id, b"\xff\xff\xff\xff\x0f"))


async def _invalid_status(server: H2FaultServer, conn: h2.connection.H2Connection,
                          writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
    block = hpack.Encoder().encode([(b":status", b"abc")], huffman=False)
    writer.write(frame(0x1, 0x4 | 0x1, stream_id, block))


async def _data_past_the_frame_size(server: H2FaultServer, conn: h2.connection.H2Connection,
                                    writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
    start_body(conn, writer, stream_id)
    writer.write(frame(0x0, 0, stream_id, b"d" * 20_000))  # over the 16,384-byte SETTINGS_MAX_FRAME_SIZE


async def _window_update_overflow(server: H2FaultServer, conn: h2.connection.H2Connection,
                                  writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
    start_body(conn, writer, stream_id)
    # Two increments of 2^31-1 on the connection window: a flow-control error (RFC 9113 6.9.1).
    writer.write(frame(0x8, 0, 0, struct.pack(">I", 2**31 - 1)) * 2)


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (_garbage_mid_body, httpx.RemoteProtocolError),
        (_goaway_error_mid_body, httpx.RemoteProtocolError),
        (_rst_stream_mid_body, httpx.RemoteProtocolError),
        (_tcp_reset_mid_body, httpx.ReadError),
        (_bad_hpack_block, httpx.RemoteProtocolError),
        (_invalid_status, httpx.RemoteProtocolError),
        (_data_past_the_frame_size, httpx.RemoteProtocolError),
        (_window_update_overflow, httpx.RemoteProtocolError),
    ],
)
async def test_http2_faults_end_as_httpx_exceptions(scenario: object, expected: type[Exception]) -> None:
    async with H2FaultServer(scenario) as server:  # type: ignore[arg-type]
        exc = await _get_error(server.url())
    assert isinstance(exc, expected), repr(exc)


async def test_a_dying_multiplexed_connection_fails_every_stream_with_httpx_errors() -> None:
    started = asyncio.Event()

    async def slow_then_garbage(server: H2FaultServer, conn: h2.connection.H2Connection,
                                writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
        if server.requests < 20:
            start_body(conn, writer, stream_id)
            return
        started.set()
        writer.write(b"\x00\x00\x01\xfe" + b"\x00" * 60)  # garbage: an unknown frame type then junk

    async with H2FaultServer(slow_then_garbage) as server, h2c_client() as c:

        async def one() -> BaseException | None:
            try:
                r = await c.get(server.url())
                await r.aread()
            except Exception as exc:
                return exc
            return None

        results = await asyncio.gather(*(one() for _ in range(20)))
    assert server.connections == 1  # one multiplexed connection carried all 20 streams
    assert started.is_set()
    for exc in results:
        assert exc is not None
        assert_only_httpx(exc)
    assert {type(exc) for exc in results} <= {httpx.RemoteProtocolError, httpx.ReadError}


async def test_upload_reset_by_the_server_is_an_httpx_error() -> None:
    async def reset_upload(server: H2FaultServer, conn: h2.connection.H2Connection,
                           writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
        conn.reset_stream(stream_id, _INTERNAL_ERROR)
        writer.write(conn.data_to_send())

    async def body() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"u" * 16_384
            await asyncio.sleep(0.005)

    async with H2FaultServer(reset_upload) as server, h2c_client() as c:
        with pytest.raises(httpx.HTTPError) as info:
            await c.put(server.url(), content=body())
    assert_only_httpx(info.value)
    assert isinstance(info.value, httpx.RemoteProtocolError)


async def test_h2c_client_meeting_an_http1_server_is_a_protocol_error() -> None:
    async def http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http1, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        exc = await _get_error(f"http://127.0.0.1:{port}/")
    finally:
        server.close()
    assert isinstance(exc, httpx.RemoteProtocolError)


async def test_http1_garbage_mid_chunked_body_is_a_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n")
        await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    try:
        async with httpx.AsyncClient(transport=make_transport(http2=False, verify=False, limits=limits)) as c:
            with pytest.raises(httpx.HTTPError) as info:
                await c.get(f"http://127.0.0.1:{port}/")
    finally:
        server.close()
    assert_only_httpx(info.value)
    assert isinstance(info.value, httpx.RemoteProtocolError)


async def test_the_engine_counts_a_dying_h2_connection_as_a_protocol_error() -> None:
    """The engine has no special case for protocol libraries any more: the transport's httpx error is
    retried and then counted under its kind."""

    async def garbage_or_page(server: H2FaultServer, conn: h2.connection.H2Connection,
                              writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
        respond(conn, writer, stream_id, b"<html><title>t</title></html>", [(b"content-type", b"text/html")])
        await asyncio.sleep(0.01)

    async def garbage(server: H2FaultServer, conn: h2.connection.H2Connection,
                      writer: asyncio.StreamWriter, stream_id: int) -> None:  # fmt: skip
        start_body(conn, writer, stream_id)
        writer.write(b"\xff" * 64)

    async with H2FaultServer(garbage) as bad, H2FaultServer(garbage_or_page) as good:
        job = make_job([bad.url("/a"), good.url("/b")], "",
                       http={"verify": False, "http2_prior_knowledge": True},
                       retry={"attempts": 2, "backoff": {"initial": 0.01, "max": 0.02}})  # fmt: skip
        pages, crawler = await crawl_all(job)
    assert [p.url for p in pages] == [good.url("/b")]
    assert crawler.stats.errors == {"protocol_error": 1}
    assert bad.requests == 2  # retried once, as the retry policy says for protocol errors
