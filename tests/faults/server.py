"""The fault-injection server: hostile HTTP at the byte level, for the fault suite (tests/faults).

`FaultServer` runs an asyncio event loop in a background thread and serves *sites*: each `Site` is its own
listening socket on a loopback address (optionally TLS), so every case gets its own host key, its own
robots.txt and its own request log, and cases can run side by side. A site routes by path prefix to
handlers that write raw bytes: resets, lying Content-Length, trickled heads and bodies, header floods,
endless chunked bodies, compression bombs of every shape. `Site.log` is what the server saw.

HTTP/2 faults (RST_STREAM, GOAWAY) need a real HTTP/2 server: `h2_app` below is an ASGI app served by
hypercorn through the one launcher (`AsgiServer("tests.faults.server:h2_app", tls=True, ...)`).

Every handler that waits or streams has a server-side cap (`SERVER_CAP` seconds, byte caps), so a
crawler that hangs never keeps the server busy past the harness's own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import os
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from crawler.demo.asgi import Receive, Scope, Send, query_params, respond

__all__ = ["Conn", "FaultServer", "H2Handler", "Handler", "RawRequest", "Site", "h2_app"]

SERVER_CAP = 60.0  # no handler waits or streams longer than this
_HEAD_LIMIT = 1 << 20  # request heads beyond this are refused (long URLs must reach the log)
MB = 1_000_000


# --- requests and connections ---------------------------------------------------------------------------


@dataclass
class RawRequest:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    conn: int  # connection number on this site: requests on one connection share it
    t: float

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}


class Conn:
    """One client connection: write raw bytes, reset it, or wait for the client to go away."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    async def send(self, data: bytes) -> bool:
        """Write and drain; False once the client is gone."""
        if self.closed:
            return False
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), SERVER_CAP)
        except (ConnectionError, OSError, TimeoutError, RuntimeError):
            self.closed = True
            return False
        return True

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
        self.closed = True

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)

    async def hold(self, seconds: float = SERVER_CAP) -> None:
        """Say nothing until the client closes the connection (or `seconds` pass)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.reader.read(), seconds)
        await self.close()


# A handler writes the whole response itself; it returns True to keep the connection for another request.
Handler = Callable[[RawRequest, Conn], Awaitable[bool]]


# --- sites ----------------------------------------------------------------------------------------------


@dataclass
class Site:
    """One listening socket: a host key of its own, routes by path prefix (longest first), a request log."""

    name: str
    host: str
    port: int = 0
    tls: bool = False
    routes: dict[str, Handler] = field(default_factory=dict)
    h2_routes: dict[str, H2Handler] | None = None  # set: the site speaks HTTP/2 (h2 library) instead
    log: list[dict[str, Any]] = field(default_factory=list)
    _conns: itertools.count[int] = field(default_factory=itertools.count)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + path

    @property
    def host_key(self) -> str:
        return f"{self.host}:{self.port}"

    def route(self, prefix: str, handler: Handler) -> Site:
        self.routes[prefix] = handler
        return self

    def paths(self, prefix: str = "") -> list[str]:
        return [e["path"] for e in list(self.log) if e["path"].startswith(prefix)]

    def targets(self, prefix: str = "") -> list[str]:
        return [e["target"] for e in list(self.log) if e["path"].startswith(prefix)]

    def handler_for(self, path: str) -> Handler:
        for prefix in sorted(self.routes, key=len, reverse=True):
            if path.startswith(prefix):
                return self.routes[prefix]
        return not_found

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(reader, writer)
        number = next(self._conns)
        if self.h2_routes is not None:
            try:
                await self._serve_h2(conn, number)
            except Exception:
                pass
            finally:
                await conn.close()
            return
        try:
            while not conn.closed:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SERVER_CAP)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError,
                        OSError, ssl.SSLError):  # fmt: skip
                    break
                request = _parse_head(head, number)
                if request is None:
                    break
                length = int(request.headers.get("content-length", "0") or 0)
                if length:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(reader.readexactly(min(length, 1 << 20)), 10)
                self.log.append({"method": request.method, "target": request.target, "path": request.path,
                                 "headers": request.headers, "conn": number, "t": request.t})  # fmt: skip
                keep = await self.handler_for(request.path)(request, conn)
                if not keep:
                    break
        except Exception:  # a handler's write to a vanished client: nothing to report
            pass
        finally:
            await conn.close()


    async def _serve_h2(self, conn: Conn, number: int) -> None:
        """HTTP/2 at the frame level with the h2 library: each request's handler drives the connection."""
        import h2.config
        import h2.connection
        import h2.events

        assert self.h2_routes is not None
        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="latin-1"))
        h2conn.initiate_connection()
        await conn.send(h2conn.data_to_send())
        deadline = time.monotonic() + SERVER_CAP
        while not conn.closed and time.monotonic() < deadline:
            data = await asyncio.wait_for(conn.reader.read(65536), SERVER_CAP)
            if not data:
                break
            for event in h2conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = {str(k): str(v) for k, v in event.headers}
                    path = urlsplit(headers.get(":path", "/")).path
                    self.log.append({"method": headers.get(":method"), "target": headers.get(":path"), "path": path,
                                     "headers": headers, "conn": number, "t": time.monotonic()})  # fmt: skip
                    handler = next((self.h2_routes[p] for p in sorted(self.h2_routes, key=len, reverse=True)
                                    if path.startswith(p)), _h2_not_found)  # fmt: skip
                    handler(h2conn, event.stream_id)
            if not await conn.send(h2conn.data_to_send()):
                break
            if h2conn.state_machine.state == h2.connection.ConnectionState.CLOSED:
                await asyncio.sleep(0.05)
                break


# An HTTP/2 handler answers one stream by driving the connection (send_headers, send_data, reset_stream, ...).
H2Handler = Callable[[Any, int], None]


def _h2_not_found(h2conn: Any, stream_id: int) -> None:
    h2conn.send_headers(stream_id, [(":status", "404"), ("content-length", "0")], end_stream=True)


def h2_page(links: Iterable[str] = ()) -> H2Handler:
    def handler(h2conn: Any, stream_id: int) -> None:
        body = page_html("h2", links)
        h2conn.send_headers(stream_id, [(":status", "200"), ("content-type", "text/html"),
                                        ("content-length", str(len(body)))])  # fmt: skip
        h2conn.send_data(stream_id, body, end_stream=True)

    return handler


def h2_rst_stream(after: int = 1000, error_code: int = 2) -> H2Handler:
    """Head (Content-Length 100000), `after` bytes, then RST_STREAM (default INTERNAL_ERROR)."""

    def handler(h2conn: Any, stream_id: int) -> None:
        h2conn.send_headers(stream_id, [(":status", "200"), ("content-type", "text/html"), ("content-length", "100000")])
        if after:
            h2conn.send_data(stream_id, b"x" * after)
        h2conn.reset_stream(stream_id, error_code=error_code)

    return handler


def h2_goaway(after: int = 1000, error_code: int = 2) -> H2Handler:
    """Head, `after` bytes, then GOAWAY (last stream 0: nothing was processed) and the connection closes."""

    def handler(h2conn: Any, stream_id: int) -> None:
        h2conn.send_headers(stream_id, [(":status", "200"), ("content-type", "text/html"), ("content-length", "100000")])
        if after:
            h2conn.send_data(stream_id, b"x" * after)
        h2conn.close_connection(error_code=error_code, last_stream_id=0)

    return handler


def _parse_head(head: bytes, conn: int) -> RawRequest | None:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return RawRequest(method, target, version, headers, conn, time.monotonic())


class FaultServer:
    """The event loop thread serving every Site. `site(...)` may be called from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fault-server", daemon=True)
        self._sites: list[Site] = []
        self._names = itertools.count()
        self._bombs: dict[tuple[str, int], Future[bytes]] = {}
        self._bomb_lock = threading.Lock()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        async def close_all() -> None:
            for site in self._sites:
                if site._server is not None:
                    site._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def site(
        self,
        routes: dict[str, Handler] | None = None,
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
        accept: bool = True,
        h2_routes: dict[str, H2Handler] | None = None,
    ) -> Site:
        """A new site on a free port of `host`. `accept=False` listens but never accepts (a dead host
        whose backlog fills: connects time out). `h2_routes` makes it an HTTP/2 site (give a TLS context
        offering ALPN h2)."""
        site = Site(f"site{next(self._names)}", host, tls=ssl_context is not None, routes=dict(routes or {}),
                    h2_routes=h2_routes)  # fmt: skip

        async def listen() -> None:
            if accept:
                site._server = await asyncio.start_server(site.serve_connection, host, 0, ssl=ssl_context,
                                                          backlog=backlog, limit=_HEAD_LIMIT)  # fmt: skip
                site.port = site._server.sockets[0].getsockname()[1]
            else:
                site.port = _unaccepting_listener(host)

        asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)
        self._sites.append(site)
        return site

    def bomb(self, kind: str, size: int) -> bytes:
        """A compressed body expanding to `size` zero bytes (cached): gzip | zlib | deflate (raw) |
        gzip2 (gzip of gzip) | gzip-file (a .gz file: what a sitemap.xml.gz bomb is)."""
        key = ("gzip" if kind == "gzip-file" else kind, size)  # the same bytes; only the label differs
        with self._bomb_lock:
            future = self._bombs.get(key)
            if future is None:
                future = self._bombs[key] = Future()
                owner = True
            else:
                owner = False
        if owner:
            try:
                future.set_result(_make_bomb(kind, size))
            except BaseException as exc:
                future.set_exception(exc)
                raise
        return future.result(120)


_listeners: list[socket.socket] = []  # kept open for the session: their backlogs stay full


def _unaccepting_listener(host: str) -> int:
    """A socket that listens with a backlog of 0 and never accepts, its queue filled by connections that
    are never served: further connects hang in SYN_SENT until the client's connect timeout."""
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    _listeners.append(listener)
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError, OSError):
            filler.connect((host, port))
        _listeners.append(filler)
    return port


def _zeros_compressed(size: int, wbits: int) -> bytes:
    """`size` zero bytes compressed (wbits: 31 gzip, 15 zlib, -15 raw deflate), in ~0.2 s instead of ~3 s.

    After a full flush the compressor starts over, so every MiB of zeros compresses to the same bytes: one
    MiB is compressed and its output repeated. The gzip and zlib wrappers (header, CRC-32 or Adler-32, size)
    are written here, the checksums computed over the zeros a MiB at a time."""
    chunk = bytes(1 << 20)
    count, rest = divmod(size, len(chunk))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    raw = segment * count + compressor.compress(bytes(rest)) + compressor.flush()
    if wbits < 0:
        return raw
    if wbits > 15:
        crc = 0
        for _ in range(count):
            crc = zlib.crc32(chunk, crc)
        crc = zlib.crc32(bytes(rest), crc)
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + raw + struct.pack("<II", crc, size & 0xFFFFFFFF)
    adler = 1
    for _ in range(count):
        adler = zlib.adler32(chunk, adler)
    adler = zlib.adler32(bytes(rest), adler)
    return b"\x78\xda" + raw + struct.pack(">I", adler)


def _make_bomb(kind: str, size: int) -> bytes:
    if kind in ("gzip", "gzip-file"):
        return _zeros_compressed(size, 31)
    if kind == "zlib":
        return _zeros_compressed(size, 15)
    if kind == "deflate":
        return _zeros_compressed(size, -15)
    if kind == "gzip2":
        return gzip.compress(_zeros_compressed(size, 31), 9, mtime=0)
    raise ValueError(kind)


# --- handlers -------------------------------------------------------------------------------------------


def head(status: int = 200, headers: Sequence[tuple[str, str]] = (), reason: str | None = None) -> bytes:
    """A response head exactly as given (no header is added)."""
    text = f"HTTP/1.1 {status} {reason if reason is not None else _REASONS.get(status, 'Status')}\r\n"
    text += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (text + "\r\n").encode("latin-1")


_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


def page_html(title: str, links: Iterable[str] = (), body: str = "") -> bytes:
    anchors = "".join(f'<a href="{href}">{i}</a>\n' for i, href in enumerate(links))
    return (f"<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}\n"
            f"{anchors}</body></html>\n").encode()  # fmt: skip


def respond_raw(
    status: int = 200,
    body: bytes | Callable[[RawRequest], bytes] = b"",
    headers: Sequence[tuple[str, str]] = (),
    content_type: str | None = "text/html; charset=utf-8",
) -> Handler:
    """A complete, well-formed response with Content-Length."""

    async def handler(request: RawRequest, conn: Conn) -> bool:
        data = body(request) if callable(body) else body
        hdrs = [("Content-Length", str(len(data)))]
        if content_type:
            hdrs.append(("Content-Type", content_type))
        ok = await conn.send(head(status, [*hdrs, *headers]) + (b"" if request.method == "HEAD" else data))
        return ok

    return handler


def html(title: str = "page", links: Iterable[str] | Callable[[RawRequest], Iterable[str]] = (),
         status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> Handler:  # fmt: skip
    """An HTML page linking to `links` (a list, or a function of the request)."""

    def body(request: RawRequest) -> bytes:
        hrefs = links(request) if callable(links) else links
        return page_html(f"{title} {request.path}", hrefs)

    return respond_raw(status, body, headers)


def redirect(location: str | Callable[[RawRequest], str], status: int = 302) -> Handler:
    async def handler(request: RawRequest, conn: Conn) -> bool:
        target = location(request) if callable(location) else location
        return await conn.send(head(status, [("Location", target), ("Content-Length", "0")]))

    return handler


def raw(data: bytes, then: str = "close") -> Handler:
    """Send exactly `data`, then `close` (FIN), `reset` (RST), `hold` (stay silent) or `keep`."""

    async def handler(request: RawRequest, conn: Conn) -> bool:
        await conn.send(data)
        if then == "keep":
            return True
        if then == "reset":
            await asyncio.sleep(0.05)
            conn.reset()
        elif then == "hold":
            await conn.hold()
        else:
            await conn.close()
        return False

    return handler


def trickle(prefix: bytes, drip: bytes, every: float, limit: int = 10 * MB) -> Handler:
    """Send `prefix`, then `drip` every `every` seconds, forever (until the client leaves or the cap)."""

    async def handler(request: RawRequest, conn: Conn) -> bool:
        if not await conn.send(prefix):
            return False
        deadline = time.monotonic() + SERVER_CAP
        sent = 0
        while time.monotonic() < deadline and sent < limit:
            await asyncio.sleep(every)
            if not await conn.send(drip):
                return False
            sent += len(drip)
        await conn.close()
        return False

    return handler


def flood(prefix: bytes, unit: bytes, limit: int = 4_000 * MB) -> Handler:
    """Send `prefix`, then `unit` repeated as fast as the client reads, up to `limit` bytes."""

    async def handler(request: RawRequest, conn: Conn) -> bool:
        if not await conn.send(prefix):
            return False
        block = unit * max(1, (64 * 1024) // len(unit))
        sent = 0
        deadline = time.monotonic() + SERVER_CAP
        while sent < limit and time.monotonic() < deadline:
            if not await conn.send(block):
                return False
            sent += len(block)
        await conn.close()
        return False

    return handler


def silent() -> Handler:
    """Read the request and never answer."""

    async def handler(request: RawRequest, conn: Conn) -> bool:
        await conn.hold()
        return False

    return handler


def delayed(seconds: float, then: Handler) -> Handler:
    async def handler(request: RawRequest, conn: Conn) -> bool:
        await asyncio.sleep(seconds)
        return await then(request, conn)

    return handler


def sequence(*handlers: Handler, key: Callable[[RawRequest], str] = lambda r: r.path) -> Handler:
    """The n-th request for a key (default: the path) gets the n-th handler; the last one repeats."""
    hits: dict[str, int] = {}

    async def handler(request: RawRequest, conn: Conn) -> bool:
        k = key(request)
        n = hits[k] = hits.get(k, 0) + 1
        return await handlers[min(n, len(handlers)) - 1](request, conn)

    return handler


async def not_found(request: RawRequest, conn: Conn) -> bool:
    return await respond_raw(404, b"not found", content_type="text/plain")(request, conn)


# --- HTTP/2 faults: an ASGI app for hypercorn ----------------------------------------------------------


_H2_BOMB: bytes | None = None


async def h2_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Served over HTTP/2 + TLS by the launcher (hypercorn). /page/N?n=K: a tree of K pages; /stall: head,
    then a body that never comes; /bomb: a gzip bomb (the file named by FAULT_H2_BOMB); /endless: an
    endless body. hypercorn never resets a stream mid-body: RST_STREAM and abrupt GOAWAY cases use the
    frame-level h2 sites of FaultServer instead; hypercorn's own GOAWAY (keep_alive_max_requests) is here."""
    global _H2_BOMB
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    params = query_params(scope)
    if path.startswith("/page/"):
        n = int(path.rsplit("/", 1)[1] or 0)
        total = int(params.get("n", "20"))
        links = [f"/page/{k}?n={total}" for k in (2 * n + 1, 2 * n + 2) if k < total]
        await respond(send, 200, page_html(f"h2 page {n}", links))
    elif path == "/stall":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<html>", "more_body": True})
        await asyncio.sleep(SERVER_CAP)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/bomb":
        if _H2_BOMB is None:
            # Made by the test process (FaultServer.bomb) and handed over as a file: compressing here
            # would take longer than the client's read timeout.
            _H2_BOMB = await asyncio.to_thread(Path(os.environ["FAULT_H2_BOMB"]).read_bytes)
        await respond(send, 200, _H2_BOMB, b"text/html", [(b"content-encoding", b"gzip")])
    elif path == "/endless":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        block = b"<p>" + b"x" * 65_000 + b"</p>"
        deadline = time.monotonic() + SERVER_CAP
        while time.monotonic() < deadline:
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await respond(send, 404, b"not found", b"text/plain")
