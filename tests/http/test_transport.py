"""The transport under the shared client (crawler/http/transport/transport.py), against real servers on loopback.

hypercorn (tests/http/transport_site.py, under the shared launcher) plays a well-behaved HTTP/1.1 and HTTP/2-over-TLS
server; small asyncio servers in the test process play misbehaving ones and count connections. Every test
goes through a plain `httpx.AsyncClient(transport=make_transport(...))`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from crawler.demo.launcher import AsgiServer, free_port
from crawler.demo.tls import TlsFiles, tls_files
from crawler.http.transport.transport import make_transport
from tests.http.transport_site import GZIP_TEXT

# -- servers ---------------------------------------------------------------------------------------------


# The shared TLS material of the loopback servers: one CA for 127.0.0.1, localhost and the other names.
Certs = TlsFiles


@pytest.fixture(scope="module")
def certs() -> Certs:
    return tls_files()


def _hypercorn(tls: bool = False, keep_alive: float = 30.0, max_requests: int = 1000) -> Iterator[str]:
    with AsgiServer("tests.http.transport_site:app", tls=tls, keep_alive_timeout=keep_alive,
                    keep_alive_max_requests=max_requests) as server:  # fmt: skip
        yield server.url


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """Base URL of the cleartext HTTP/1.1 hypercorn site."""
    yield from _hypercorn()


@pytest.fixture(scope="module")
def tls_site(certs: Certs) -> Iterator[str]:
    """Base URL of the TLS hypercorn site offering h2 and http/1.1 via ALPN."""
    yield from _hypercorn(tls=True)


@pytest.fixture(scope="module")
def impatient_tls_site(certs: Certs) -> Iterator[str]:
    """Like tls_site, but the server closes connections idle for more than 0.3 s (GOAWAY over HTTP/2)."""
    yield from _hypercorn(tls=True, keep_alive=0.3)


Handler = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """An in-process TCP server running `handler` per connection, counting connections as they come and go."""

    def __init__(self, handler: Handler, shared: RawServer | None = None) -> None:
        self._handler = handler
        self._shared = shared  # also count this server's connections there (several origins, one budget)
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counters = [self] if self._shared is None else [self, self._shared]
        for c in counters:
            c.accepted += 1
            c.open += 1
            c.max_open = max(c.max_open, c.open)
        try:
            await self._handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            for c in counters:
                c.open -= 1
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request (head, body) with a Content-Length body, or None at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return head, body


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def serve_ok(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await read_request(reader) is not None:
        writer.write(ok())
        await writer.drain()


def serve_slowly(delay: float) -> Handler:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            await asyncio.sleep(delay)
            writer.write(ok())
            await writer.drain()

    return handler


def client(*, http2: bool = False, verify: ssl.SSLContext | bool = False, max_connections: int | None = 10,
           max_keepalive: int | None = None, keepalive_expiry: float | None = 30.0,
           **kwargs: Any) -> httpx.AsyncClient:  # fmt: skip
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections if max_keepalive is None else max_keepalive,
        keepalive_expiry=keepalive_expiry,
    )
    transport = make_transport(http2=http2, verify=verify, limits=limits)
    return httpx.AsyncClient(transport=transport, **kwargs)


# -- keep-alive and the connection budget -----------------------------------------------------------------


async def test_keep_alive_reuses_one_connection_for_sequential_requests(site: str) -> None:
    async with client() as c:
        ports = {(await c.get(f"{site}/client-port")).text for _ in range(20)}
    assert len(ports) == 1


async def test_reuse_counted_at_the_server() -> None:
    async with RawServer(serve_ok) as server, client() as c:
        for _ in range(30):
            assert (await c.get(server.url())).text == "ok"
    assert server.accepted == 1


async def test_max_connections_is_never_exceeded() -> None:
    async with RawServer(serve_slowly(0.02)) as server, client(max_connections=4) as c:
        responses = await asyncio.gather(*(c.get(server.url(f"/{i}")) for i in range(60)))
    assert all(r.status_code == 200 for r in responses)
    assert server.max_open <= 4
    assert server.accepted == 4  # and every connection was reused


async def test_budget_is_shared_between_origins_without_deadlock() -> None:
    both = RawServer(serve_ok)  # only counts
    a, b = RawServer(serve_slowly(0.01), shared=both), RawServer(serve_slowly(0.01), shared=both)
    async with a, b, client(max_connections=3) as c:
        urls = [a.url(), b.url()] * 30
        responses = await asyncio.gather(*(c.get(u) for u in urls))
        assert all(r.status_code == 200 for r in responses)
        # +1: a connection the client just closed to hand its slot to the other origin may not be seen closed yet
        assert both.max_open <= 3 + 1
        assert a.accepted >= 1 and b.accepted >= 1


async def test_idle_connection_of_another_origin_is_closed_to_make_room() -> None:
    async with RawServer(serve_ok) as a, RawServer(serve_ok) as b, client(max_connections=1) as c:
        assert (await c.get(a.url())).status_code == 200
        assert (await asyncio.wait_for(c.get(b.url()), 5)).status_code == 200
        await asyncio.sleep(0.05)
        assert a.open == 0 and b.open == 1


async def test_max_keepalive_connections_caps_idle_connections() -> None:
    async with RawServer(serve_slowly(0.05)) as server, client(max_connections=5, max_keepalive=2) as c:
        await asyncio.gather(*(c.get(server.url()) for _ in range(5)))
        await asyncio.sleep(0.1)
        assert server.accepted == 5
        assert server.open == 2


async def test_keepalive_expiry_opens_a_new_connection(site: str) -> None:
    async with client(keepalive_expiry=0.2) as c:
        first = (await c.get(f"{site}/client-port")).text
        assert (await c.get(f"{site}/client-port")).text == first
        await asyncio.sleep(0.4)
        assert (await c.get(f"{site}/client-port")).text != first


async def test_cancelled_request_gives_its_connection_back() -> None:
    async with RawServer(serve_slowly(0.3)) as server, client(max_connections=1) as c:
        task = asyncio.create_task(c.get(server.url()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        r = await asyncio.wait_for(c.get(server.url(), timeout=httpx.Timeout(2.0)), 3)
        assert r.status_code == 200


async def test_waiters_cancelled_while_queued_do_not_leak_slots() -> None:
    async with RawServer(serve_slowly(0.1)) as server, client(max_connections=1) as c:
        tasks = [asyncio.create_task(c.get(server.url())) for _ in range(5)]
        await asyncio.sleep(0.02)
        for t in tasks[1:]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert (await asyncio.wait_for(c.get(server.url()), 3)).status_code == 200
        assert server.max_open == 1


# -- timeouts and errors ----------------------------------------------------------------------------------


async def test_read_timeout_waiting_for_the_head(site: str) -> None:
    async with client() as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"{site}/slow-head?delay=2", timeout=httpx.Timeout(5.0, read=0.2))
        # the connection that timed out is gone; the pool still works
        assert (await c.get(f"{site}/bytes/3")).content == b"xxx"


async def test_read_timeout_while_streaming_the_body(site: str) -> None:
    async with client() as c:
        async with c.stream("GET", f"{site}/slow-body?delay=2", timeout=httpx.Timeout(5.0, read=0.2)) as r:
            assert r.status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                await r.aread()


async def test_pool_timeout_when_every_connection_is_busy() -> None:
    async with RawServer(serve_slowly(1.0)) as server, client(max_connections=1) as c:
        first = asyncio.create_task(c.get(server.url()))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await c.get(server.url(), timeout=httpx.Timeout(5.0, pool=0.1))
        assert (await first).status_code == 200


async def test_connect_error_on_a_closed_port() -> None:
    async with client() as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{free_port()}/")


async def test_connect_timeout_when_the_server_never_accepts() -> None:
    listener, fillers = _unaccepting_listener()
    port = listener.getsockname()[1]
    try:
        async with client() as c:
            with pytest.raises(httpx.ConnectTimeout):
                await c.get(f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(5.0, connect=0.3))
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_write_timeout_when_the_server_does_not_read() -> None:
    async def never_read(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await asyncio.sleep(5)

    async def body() -> AsyncIterator[bytes]:
        block = b"u" * (1 << 20)
        for _ in range(256):
            yield block

    async with RawServer(never_read) as server, client() as c:
        with pytest.raises(httpx.WriteTimeout):
            await c.post(server.url(), content=body(), timeout=httpx.Timeout(5.0, write=0.3))


async def test_truncated_body_raises_remote_protocol_error() -> None:
    async def truncate(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"y" * 50)
        await writer.drain()

    async with RawServer(truncate) as server, client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(server.url())


async def test_truncated_chunked_body_raises_remote_protocol_error() -> None:
    async def truncate(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwor")
        await writer.drain()

    async with RawServer(truncate) as server, client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(server.url())


async def test_disconnect_without_response_raises_remote_protocol_error() -> None:
    async def hang_up(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with RawServer(hang_up) as server, client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(server.url())


async def test_garbage_response_raises_remote_protocol_error() -> None:
    async def garbage(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with RawServer(garbage) as server, client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(server.url())


def one_answer_per_connection() -> Handler:
    """Answers the first request of a connection; on the second, hangs up without a word (a stale keep-alive)."""

    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is None:
            return
        writer.write(ok())
        await writer.drain()
        await read_request(reader)

    return handler


async def test_get_on_a_stale_keep_alive_connection_is_retried_on_a_new_one() -> None:
    async with RawServer(one_answer_per_connection()) as server, client() as c:
        for _ in range(3):
            assert (await c.get(server.url())).text == "ok"
        assert server.accepted == 3


async def test_post_on_a_stale_keep_alive_connection_is_not_replayed() -> None:
    async with RawServer(one_answer_per_connection()) as server, client() as c:
        assert (await c.post(server.url(), content=b"once")).text == "ok"
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post(server.url(), content=b"twice")


async def test_header_injection_is_refused() -> None:
    async with RawServer(serve_ok) as server, client() as c:
        with pytest.raises(httpx.LocalProtocolError):
            await c.get(server.url(), headers={"x-evil": "a\r\nInjected: yes"})
        assert (await c.get(server.url())).text == "ok"


async def test_unsupported_scheme() -> None:
    async with client() as c:
        with pytest.raises(httpx.UnsupportedProtocol):
            await c.get("ftp://127.0.0.1/file")


# -- message framing ---------------------------------------------------------------------------------------


async def test_chunked_response_body(site: str) -> None:
    async with client() as c:
        r = await c.get(f"{site}/chunked/10000")
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.content == b"a" * 2500 + b"b" * 2500 + b"c" * 2500 + b"d" * 2500


async def test_chunked_request_body_is_framed(site: str) -> None:
    async def body() -> AsyncIterator[bytes]:
        for piece in (b"abc", b"", b"defgh", b"i" * 70000):
            yield piece

    async with client() as c:
        r = await c.post(f"{site}/echo", content=body())
        assert r.json() == {"size": 70008, "transfer_encoding": "chunked"}
        r = await c.put(f"{site}/echo", content=b"q" * 100000)
        assert r.json() == {"size": 100000, "transfer_encoding": ""}


async def test_head_response_has_no_body_and_the_connection_is_reused(site: str) -> None:
    async with client() as c:
        port = (await c.get(f"{site}/client-port")).text
        r = await c.head(f"{site}/bytes/1000")
        assert r.status_code == 200
        assert r.headers["content-length"] == "1000"
        assert r.content == b""
        assert (await c.get(f"{site}/bytes/7")).content == b"x" * 7
        assert (await c.get(f"{site}/client-port")).text == port


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses_and_reuse(site: str, status: int) -> None:
    async with client() as c:
        port = (await c.get(f"{site}/client-port")).text
        r = await c.get(f"{site}/status/{status}")
        assert r.status_code == status
        assert r.content == b""
        assert (await c.get(f"{site}/client-port")).text == port


async def test_body_delimited_by_connection_close() -> None:
    async def close_delimited(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async with RawServer(close_delimited) as server, client() as c:
        assert (await c.get(server.url())).text == "until the end"
        assert (await c.get(server.url())).text == "until the end"
    assert server.accepted == 2


async def test_informational_responses_are_skipped() -> None:
    async def early_hints(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + ok(b"final"))
            await writer.drain()

    async with RawServer(early_hints) as server, client() as c:
        for _ in range(2):
            r = await c.get(server.url())
            assert (r.status_code, r.text) == (200, "final")
    assert server.accepted == 1


async def test_reason_phrase_and_http_version() -> None:
    async def fine(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with RawServer(fine) as server, client() as c:
        r = await c.get(server.url())
    assert r.http_version == "HTTP/1.1"
    assert r.reason_phrase == "Fine Thanks"


async def test_gzip_body_is_decoded_by_httpx(site: str) -> None:
    async with client() as c:
        r = await c.get(f"{site}/gzip")
        assert r.headers["content-encoding"] == "gzip"
        assert r.text == GZIP_TEXT
        async with c.stream("GET", f"{site}/gzip") as s:
            raw = b"".join([chunk async for chunk in s.aiter_raw()])
        assert raw[:2] == b"\x1f\x8b"  # the transport hands over the bytes as sent


async def test_redirects_are_followed_by_the_client(site: str) -> None:
    async with client(follow_redirects=True) as c:
        r = await c.get(f"{site}/redirect/3")
    assert r.status_code == 200
    assert r.content == b"xxxxx"
    assert len(r.history) == 4


# -- streaming ---------------------------------------------------------------------------------------------


async def test_large_body_streams_in_bounded_chunks(site: str) -> None:
    total = 64 * 1024 * 1024
    async with client() as c, c.stream("GET", f"{site}/stream/{total}?chunk=262144") as r:
        seen = 0
        chunks = 0
        biggest = 0
        async for chunk in r.aiter_raw():
            seen += len(chunk)
            chunks += 1
            biggest = max(biggest, len(chunk))
    assert seen == total
    assert chunks > 10
    assert biggest <= 2 * 1024 * 1024  # never the whole body at once


async def test_early_closed_stream_closes_its_connection_and_frees_the_slot(site: str) -> None:
    async with client(max_connections=1) as c:
        first = (await c.get(f"{site}/client-port")).text
        async with c.stream("GET", f"{site}/stream/{32 * 1024 * 1024}") as r:
            async for _ in r.aiter_raw():
                break
        r2 = await asyncio.wait_for(c.get(f"{site}/client-port"), 5)
        assert r2.text != first  # the half-read connection was not reused
        assert (await c.get(f"{site}/client-port")).text == r2.text


async def test_unread_response_body_does_not_block_the_pool(site: str) -> None:
    async with client(max_connections=1) as c:
        for _ in range(3):
            async with c.stream("GET", f"{site}/bytes/100") as r:
                assert r.status_code == 200  # closed without reading
        assert (await asyncio.wait_for(c.get(f"{site}/bytes/2"), 5)).content == b"xx"


# -- TLS and HTTP/2 ----------------------------------------------------------------------------------------


async def test_http2_is_negotiated_over_tls(tls_site: str, certs: Certs) -> None:
    async with client(http2=True, verify=certs.client_context()) as c:
        responses = await asyncio.gather(*(c.get(f"{tls_site}/client-port") for _ in range(30)))
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert len({r.text for r in responses}) == 1  # one connection multiplexes them all
        r = await c.get(f"{tls_site}/chunked/4000")
        assert len(r.content) == 4000
        r = await c.post(f"{tls_site}/echo", content=b"p" * 5000)
        assert r.json()["size"] == 5000


async def test_http1_over_tls_when_http2_is_off(tls_site: str, certs: Certs) -> None:
    async with client(http2=False, verify=certs.client_context()) as c:
        r = await c.get(f"{tls_site}/bytes/10")
        assert r.http_version == "HTTP/1.1"
        assert r.content == b"x" * 10


async def test_tls_verification_failure_is_a_connect_error(tls_site: str) -> None:
    async with client(http2=True, verify=True) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"{tls_site}/bytes/1")


async def test_tls_without_verification(tls_site: str) -> None:
    async with client(http2=True, verify=False) as c:
        assert (await c.get(f"{tls_site}/bytes/4")).content == b"xxxx"


async def test_http2_read_timeout_and_recovery(tls_site: str, certs: Certs) -> None:
    async with client(http2=True, verify=certs.client_context()) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"{tls_site}/slow-head?delay=2", timeout=httpx.Timeout(5.0, read=0.2))
        r = await c.get(f"{tls_site}/bytes/3")
        assert (r.http_version, r.content) == ("HTTP/2", b"xxx")


async def test_http2_early_closed_stream_keeps_the_connection_usable(tls_site: str, certs: Certs) -> None:
    async with client(http2=True, verify=certs.client_context()) as c:
        port = (await c.get(f"{tls_site}/client-port")).text
        async with c.stream("GET", f"{tls_site}/stream/{8 * 1024 * 1024}") as r:
            async for _ in r.aiter_raw():
                break
        assert (await c.get(f"{tls_site}/client-port")).text == port


async def test_http2_counts_as_one_connection_of_the_budget(tls_site: str, certs: Certs, site: str) -> None:
    async with client(http2=True, verify=certs.client_context(), max_connections=1) as c:
        r = await c.get(f"{tls_site}/bytes/1")
        assert r.http_version == "HTTP/2"
        # the idle HTTP/2 connection makes room for another origin
        assert (await asyncio.wait_for(c.get(f"{site}/bytes/1"), 5)).http_version == "HTTP/1.1"
        assert (await asyncio.wait_for(c.get(f"{tls_site}/bytes/1"), 5)).http_version == "HTTP/2"


# -- configuration -----------------------------------------------------------------------------------------


def test_a_proxy_never_falls_back_to_httpx_transport() -> None:
    t = make_transport(http2=False, verify=True, limits=httpx.Limits(), proxy="http://127.0.0.1:3128")
    assert type(t).__module__ == "crawler.http.transport.transport"
    assert t.proxies is not None  # the proxy tests themselves are in tests/http/test_proxy.py


async def test_the_product_client_uses_this_transport(site: str) -> None:
    from crawler.config.job import HttpConfig
    from crawler.http.client import build_client

    async with build_client(HttpConfig()) as c:
        r = await c.get(f"{site}/bytes/3")
        assert r.content == b"xxx"
        assert type(c._transport).__module__ == "crawler.http.transport.transport"


async def test_json_echo_through_a_plain_async_client(site: str) -> None:
    async with client() as c:
        r = await c.post(f"{site}/echo", json={"a": 1})
    assert json.loads(r.content)["size"] == len(b'{"a":1}')


async def test_http2_more_requests_than_the_server_allows_streams(tls_site: str, certs: Certs) -> None:
    # hypercorn allows 100 concurrent streams per connection: the rest wait for a free stream.
    async with client(http2=True, verify=certs.client_context()) as c:
        responses = await asyncio.gather(*(c.get(f"{tls_site}/slow-head?delay=0.05") for _ in range(250)))
    assert [r.text for r in responses] == ["late"] * 250
    assert {r.http_version for r in responses} == {"HTTP/2"}


async def test_http2_large_download_and_upload_respect_flow_control(tls_site: str, certs: Certs) -> None:
    total = 40 * 1024 * 1024
    async with client(http2=True, verify=certs.client_context()) as c:
        async with c.stream("GET", f"{tls_site}/stream/{total}?chunk=100000") as r:
            seen = 0
            async for chunk in r.aiter_raw():
                seen += len(chunk)
        assert seen == total
        r = await c.post(f"{tls_site}/echo", content=b"u" * (5 * 1024 * 1024))
        assert r.json()["size"] == 5 * 1024 * 1024

        async def body() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b"v" * 100_000

        r = await c.put(f"{tls_site}/echo", content=body())
        assert (r.http_version, r.json()["size"]) == ("HTTP/2", 2_000_000)


async def test_truncated_body_is_a_protocol_error_on_both_protocols(
    site: str, tls_site: str, certs: Certs
) -> None:
    for base, http2 in ((site, False), (tls_site, True)):
        async with client(http2=http2, verify=certs.client_context()) as c:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(f"{base}/short/100000")
            assert (await c.get(f"{base}/bytes/3")).content == b"xxx"


async def test_http2_connection_closed_by_an_idle_server_is_replaced(
    impatient_tls_site: str, certs: Certs
) -> None:
    async with client(http2=True, verify=certs.client_context()) as c:
        first = await c.get(f"{impatient_tls_site}/client-port")
        await asyncio.sleep(0.8)  # the server sends GOAWAY and hangs up
        second = await c.get(f"{impatient_tls_site}/client-port")
        assert second.http_version == "HTTP/2"
        assert second.text != first.text


async def test_http1_connection_closed_by_an_idle_server_is_replaced(certs: Certs) -> None:
    for base in _hypercorn(keep_alive=0.3):
        async with client() as c:
            first = await c.get(f"{base}/client-port")
            await asyncio.sleep(0.8)
            second = await c.get(f"{base}/client-port")
            assert second.text != first.text


async def test_http2_cancelled_request_resets_only_its_stream(tls_site: str, certs: Certs) -> None:
    async with client(http2=True, verify=certs.client_context()) as c:
        port = (await c.get(f"{tls_site}/client-port")).text
        task = asyncio.create_task(c.get(f"{tls_site}/slow-head?delay=2"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await c.get(f"{tls_site}/client-port")).text == port


def _unaccepting_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose backlog is full: the kernel drops further SYNs, so connecting to it hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    return listener, fillers


async def test_requests_queued_behind_a_failing_first_tls_connection_fail_together() -> None:
    listener, fillers = _unaccepting_listener()
    port = listener.getsockname()[1]
    try:
        async with client(http2=True) as c:
            started = time.monotonic()
            results = await asyncio.gather(
                *(
                    c.get(f"https://127.0.0.1:{port}/", timeout=httpx.Timeout(5.0, connect=0.3))
                    for _ in range(10)
                ),
                return_exceptions=True,
            )
            elapsed = time.monotonic() - started
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert all(isinstance(r, httpx.ConnectTimeout) for r in results)
    assert elapsed < 1.5  # not 10 connect timeouts one after the other


async def test_origins_without_connections_are_forgotten() -> None:
    port = free_port()  # nothing listens there: every connect is refused at once
    async with client() as c:
        for i in range(1500):
            with pytest.raises(httpx.ConnectError):
                await c.get(f"http://127.0.{i // 250}.{i % 250 + 1}:{port}/")
        pool = c._transport._pool  # type: ignore[attr-defined]
        assert len(pool._origins) < 1100
        assert pool.total == 0


async def test_http2_head_and_no_body_statuses(tls_site: str, certs: Certs) -> None:
    async with client(http2=True, verify=certs.client_context()) as c:
        r = await c.head(f"{tls_site}/bytes/1000")
        assert (r.http_version, r.headers["content-length"], r.content) == ("HTTP/2", "1000", b"")
        for status in (204, 304):
            r = await c.get(f"{tls_site}/status/{status}")
            assert (r.status_code, r.content) == (status, b"")
        r = await c.get(f"{tls_site}/gzip")
        assert r.text == GZIP_TEXT
        r = await c.get(f"{tls_site}/redirect/2", follow_redirects=True)
        assert (r.status_code, r.content, len(r.history)) == (200, b"xxxxx", 3)


async def test_cancelling_a_request_whose_response_already_arrived_keeps_the_connection() -> None:
    async with RawServer(serve_ok) as server, client(max_connections=1) as c:
        assert (await c.get(server.url())).text == "ok"
        pool = c._transport._pool  # type: ignore[attr-defined]
        task = asyncio.create_task(c.get(server.url()))
        # Wait for the moment the response is complete and the connection back in the pool, but the
        # request's task has not run yet: cancel it there.
        for _ in range(10_000):
            await asyncio.sleep(0)
            if pool._idle and not task.done():
                task.cancel()
                break
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await c.get(server.url())).text == "ok"
    assert server.accepted == 1  # the connection that served the cancelled request was not dropped


async def test_http1_server_closing_connections_after_n_requests_is_transparent(certs: Certs) -> None:
    # hypercorn answers 10 requests per connection, the 10th with Connection: close.
    for base in _hypercorn(max_requests=10):
        async with client(max_connections=4) as c:
            responses = await asyncio.gather(*(c.get(f"{base}/client-port") for _ in range(200)))
            assert {r.status_code for r in responses} == {200}
            assert len({r.text for r in responses}) >= 200 // 11


class GoawayServer:
    """HTTP/2 over TLS that, on each connection, accepts `per_connection` streams and then says GOAWAY.

    The GOAWAY (last stream id = the last one accepted) goes out before the answers to the streams it
    accepted, which come 50 ms later; streams above it are never answered: the client must retry them.
    """

    def __init__(self, certs: Certs, per_connection: int) -> None:
        self.per_connection = per_connection
        self.connections = 0
        self.answered = 0
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(certs.cert_path), str(certs.key_path))
        ctx.set_alpn_protocols(["h2"])
        self._ctx = ctx
        self.port = 0

    async def __aenter__(self) -> GoawayServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h2.config
        import h2.connection
        import h2.events

        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        accepted: list[int] = []
        said_goaway = False
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived) and not said_goaway:
                        accepted.append(event.stream_id)
                        if len(accepted) == self.per_connection:
                            said_goaway = True
                            # A GOAWAY the server's own h2 state machine does not know about, so that it
                            # can still answer the streams it accepted.
                            last = event.stream_id
                            writer.write(
                                b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + last.to_bytes(4, "big") + bytes(4)
                            )
                            await writer.drain()
                            await asyncio.sleep(0.05)
                            for stream_id in accepted:
                                conn.send_headers(
                                    stream_id, [(b":status", b"200"), (b"content-length", b"2")]
                                )
                                conn.send_data(stream_id, b"ok", end_stream=True)
                                self.answered += 1
                            writer.write(conn.data_to_send())
                            await writer.drain()
                            await asyncio.sleep(0.05)
                            return
                writer.write(conn.data_to_send())
        finally:
            writer.close()


async def test_http2_graceful_goaway_lets_accepted_streams_finish_and_retries_the_rest(certs: Certs) -> None:
    async with GoawayServer(certs, per_connection=5) as server:
        async with client(http2=True, verify=certs.client_context()) as c:
            url = f"https://127.0.0.1:{server.port}/"
            responses = await asyncio.gather(*(c.get(url) for _ in range(40)))
        assert [r.text for r in responses] == ["ok"] * 40
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert server.answered == 40  # every stream answered once: none failed, none was sent twice
        assert server.connections >= 8


async def test_connection_reset_mid_body_is_a_read_error() -> None:
    async def reset(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"r" * 1000)
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )  # RST on close
        writer.transport.abort()

    async with RawServer(reset) as server, client() as c:
        with pytest.raises(httpx.ReadError):
            await c.get(server.url())


async def test_http2_forgets_closed_streams(tls_site: str, certs: Certs) -> None:
    async with client(http2=True, verify=certs.client_context()) as c:
        for _ in range(12):
            responses = await asyncio.gather(*(c.get(f"{tls_site}/bytes/10") for _ in range(50)))
            assert {r.status_code for r in responses} == {200}
        pool = c._transport._pool  # type: ignore[attr-defined]
        (h2,) = [o.h2 for o in pool._origins.values() if o.h2 is not None]
        assert h2._h2.highest_outbound_stream_id >= 2 * 600 - 1  # one connection carried all 600
        assert len(h2._h2.streams) <= 256
