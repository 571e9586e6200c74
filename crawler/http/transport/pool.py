"""The connection pool under the transport: per-origin stacks of idle connections under one connection budget.

Acquire and release are O(1): an idle connection is popped from its origin's stack; when the budget
(`max_connections`) is spent, the request waits in its origin's FIFO and the origin joins a round-robin
queue for the next free slot. Connections tell the pool when they close (asyncio `connection_lost`), so
nothing is ever polled. TLS origins that may speak HTTP/2 are probed with one connection first; if ALPN
picks h2, that single HTTP/2 connection carries every request of the origin.

Through a proxy, an origin is (scheme, host, port, proxy): http:// origins send absolute-form requests over
connections to the proxy, https:// origins open a CONNECT tunnel per connection, then TLS (ALPN h2 allowed).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, TypeAlias

import httpx

from crawler.http.transport.http11 import HTTP1Connection
from crawler.http.transport.proxy import Proxy, ProxyUnreachable

if TYPE_CHECKING:  # HTTP/2 (h2, hpack, hyperframe) loads with the first connection that speaks it
    from crawler.http.transport.http2 import HTTP2Connection

__all__ = ["ConnectionPool", "Origin"]

Connection: TypeAlias = "HTTP1Connection | HTTP2Connection"

_SLOT = object()  # a waiter's result meaning "a slot of the budget is yours: connect"


class Origin:
    """Everything the pool keeps for one (scheme, host, port)."""

    __slots__ = (
        "conns",
        "h2",
        "h2_capable",
        "host",
        "idle",
        "in_slot_queue",
        "port",
        "probe",
        "proxy",
        "proxy_head",
        "scheme",
        "server_hostname",
        "tls",
        "waiters",
    )

    def __init__(self, scheme: bytes, host: str, port: int, proxy: Proxy | None = None) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.proxy = proxy
        self.tls = scheme == b"https"
        # A forwarding proxy's http:// origin: requests go out in absolute form, with this header line added.
        self.proxy_head: bytes | None = None
        if proxy is not None and not self.tls:
            auth = proxy.authorization
            self.proxy_head = b"Proxy-Authorization: " + auth + b"\r\n" if auth is not None else b""
        self.server_hostname = host
        self.idle: list[HTTP1Connection] = []  # a stack: the most recently used connection is the warmest
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.in_slot_queue = False
        self.conns = 0  # open or connecting connections of this origin
        self.h2: HTTP2Connection | None = None
        self.h2_capable: bool | None = None  # None: not known yet
        # A first TLS connection whose ALPN answer (h2 or not) is pending; its result is its failure, if any.
        self.probe: asyncio.Future[httpx.TransportError | None] | None = None

    def __repr__(self) -> str:
        via = f" via {self.proxy.label}" if self.proxy is not None else ""
        return f"<Origin {self.scheme.decode()}://{self.host}:{self.port}{via} conns={self.conns}>"


def _has_live_waiter(origin: Origin) -> bool:
    waiters = origin.waiters
    while waiters and waiters[0].done():
        waiters.popleft()
    return bool(waiters)


def _expire_waiter(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(httpx.PoolTimeout("timed out waiting for a connection from the pool"))


class ConnectionPool:
    def __init__(
        self,
        *,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext,
        http2: bool,
        loop: asyncio.AbstractEventLoop,
        http2_prior_knowledge: bool = False,
        max_header_bytes: int = 65_536,
        max_headers: int = 200,
    ) -> None:
        self.loop = loop
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self._ssl_context = ssl_context
        self._http2 = http2
        self._h2c = http2_prior_knowledge  # cleartext origins speak HTTP/2 from the first byte
        self._max = limits.max_connections if limits.max_connections is not None else 1 << 62
        mk = limits.max_keepalive_connections
        self._max_idle = mk if mk is not None else 1 << 62
        self.keepalive_expiry = limits.keepalive_expiry
        self.total = 0  # connections holding a slot of the budget (connecting, busy, idle)
        self._idle: OrderedDict[Connection, None] = OrderedDict()  # oldest first; evictable connections
        self._slot_queue: deque[Origin] = deque()  # origins with requests waiting for a slot
        self._origins: dict[tuple[bytes, bytes, int | None, Proxy | None], Origin] = {}
        self._sweep_at = 1024
        self._closing = False

    # -- origins ----------------------------------------------------------------------------------------

    def origin(self, scheme: bytes, host: bytes, port: int | None, proxy: Proxy | None = None) -> Origin:
        key = (scheme, host, port, proxy)
        o = self._origins.get(key)
        if o is None:
            if scheme not in (b"http", b"https"):
                raise httpx.UnsupportedProtocol(
                    f"Request URL has an unsupported protocol '{scheme.decode()}://'."
                )
            if not host:
                raise httpx.UnsupportedProtocol("Request URL is missing a host.")
            default = 443 if scheme == b"https" else 80
            o = Origin(scheme, host.decode("ascii"), port or default, proxy)
            if self._closing:
                raise RuntimeError("the transport is closed")
            if len(self._origins) >= self._sweep_at:
                self._sweep_origins()
            self._origins[key] = o
        return o

    def _sweep_origins(self) -> None:
        """Forget origins with nothing open or waiting (a crawl meets millions of hosts). Amortized O(1)."""
        self._origins = {
            key: o
            for key, o in self._origins.items()
            if o.conns or o.idle or o.probe is not None or _has_live_waiter(o)
        }
        self._sweep_at = max(1024, 2 * len(self._origins))

    # -- acquire ----------------------------------------------------------------------------------------

    def acquire_idle(self, origin: Origin) -> HTTP1Connection | None:
        """The fast path: a warm idle HTTP/1.1 connection of this origin, or None."""
        idle = origin.idle
        while idle:
            conn = idle.pop()
            del self._idle[conn]
            if conn.is_usable and (self.keepalive_expiry is None or self.loop.time() - conn.idle_since < self.keepalive_expiry):
                return conn
            conn.close()
        return None

    async def acquire(self, origin: Origin, timeouts: dict[str, float | None]) -> Connection:
        """A connection for one request: idle, shared HTTP/2, new, or the next one released."""
        loop = self.loop
        pool_timeout = timeouts.get("pool")
        deadline = None if pool_timeout is None else loop.time() + pool_timeout
        while True:
            h2 = origin.h2
            if h2 is not None:
                if h2.is_available():
                    return h2
                origin.h2 = None
                h2.retire()
            conn = self.acquire_idle(origin)
            if conn is not None:
                return conn
            probe = origin.probe
            if probe is not None:
                await self._wait(probe, deadline, shield=True)
                failure = probe.result()
                if failure is not None:
                    # The connection everyone waited for failed: fail alike now rather than each
                    # request spending its own connect timeout on a host that is down.
                    raise type(failure)(str(failure))
                continue
            if self.total < self._max or self._evict_one():
                self.total += 1
                return await self._connect(origin, timeouts)
            fut: asyncio.Future[Any] = loop.create_future()
            origin.waiters.append(fut)
            if not origin.in_slot_queue:
                origin.in_slot_queue = True
                self._slot_queue.append(origin)
            try:
                result = await self._wait(fut, deadline)
            except asyncio.CancelledError:
                # A connection or slot handed over just as we were cancelled must not leak.
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._give_back(fut.result())
                raise
            if result is _SLOT:
                h2 = origin.h2
                if h2 is not None and h2.is_available():
                    self._free_slot()  # the origin turned out to be HTTP/2 meanwhile: share it
                    return h2
                return await self._connect(origin, timeouts)
            if result.is_usable:
                assert isinstance(result, HTTP1Connection)
                return result
            # handed over, then closed by the server before we ran: try again

    async def _wait(self, fut: asyncio.Future[Any], deadline: float | None, shield: bool = False) -> Any:
        loop = self.loop
        timer = None
        if shield:
            # Several requests wait on one probe: each needs its own timeout, the probe must survive.
            inner = fut
            outer = fut = loop.create_future()

            def wake(_: asyncio.Future[Any]) -> None:
                if not outer.done():
                    outer.set_result(None)

            inner.add_done_callback(wake)
        if deadline is not None:
            timer = loop.call_at(deadline, _expire_waiter, fut)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()

    def _give_back(self, result: Any) -> None:
        if result is _SLOT:
            self._free_slot()
        elif isinstance(result, HTTP1Connection):
            if result.is_usable:
                self.release(result)

    # -- connecting -------------------------------------------------------------------------------------

    async def _connect(self, origin: Origin, timeouts: dict[str, float | None]) -> Connection:
        """Open a connection in a slot already counted in `total`."""
        h2c = self._h2c and origin.proxy is None  # a forwarding proxy speaks HTTP/1.1 for http:// origins
        may_h2 = (origin.tls and self._http2 and origin.h2_capable is not False) or (not origin.tls and h2c)
        probe: asyncio.Future[httpx.TransportError | None] | None = None
        failure: httpx.TransportError | None = None
        if may_h2 and origin.probe is None:
            probe = origin.probe = self.loop.create_future()
        origin.conns += 1
        conn = HTTP1Connection(self, origin)
        try:
            try:
                async with asyncio.timeout(timeouts.get("connect")):
                    if origin.proxy is not None:
                        await self._connect_via_proxy(origin, origin.proxy, conn)
                    elif origin.tls:
                        await self.loop.create_connection(
                            lambda: conn, origin.host, origin.port,
                            ssl=self._ssl_context, server_hostname=origin.server_hostname,
                        )  # fmt: skip
                    else:
                        await self.loop.create_connection(lambda: conn, origin.host, origin.port)
            except TimeoutError:
                where = f" through {origin.proxy.label}" if origin.proxy is not None else ""
                raise httpx.ConnectTimeout(f"timed out connecting to {origin.host}:{origin.port}{where}") from None
            except ssl.SSLError as exc:
                raise httpx.ConnectError(
                    f"TLS handshake with {origin.host}:{origin.port} failed: {exc}"
                ) from exc
            except (OSError, socket.gaierror) as exc:
                raise httpx.ConnectError(f"could not connect to {origin.host}:{origin.port}: {exc}") from exc
            transport = conn.transport
            assert transport is not None
            if origin.tls:
                ssl_object = transport.get_extra_info("ssl_object")
                alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
                if alpn == "h2":
                    return self._adopt_h2(origin, conn)
                if self._http2:
                    origin.h2_capable = False
            elif h2c:
                return self._adopt_h2(origin, conn)
            if not conn.start_http1():
                raise httpx.ConnectError(f"{origin.host}:{origin.port} spoke before the request")
            return conn
        except BaseException as exc:
            if isinstance(exc, httpx.TransportError):
                failure = exc
            if conn.transport is not None:
                conn.abort()  # discards the slot
            else:
                self._forget(conn)
            raise
        finally:
            if probe is not None:
                origin.probe = None
                probe.set_result(failure)

    async def _connect_via_proxy(self, origin: Origin, proxy: Proxy, conn: HTTP1Connection) -> None:
        """Connect `conn` to `origin` through `proxy`: a plain connection to the proxy for http://, a CONNECT
        tunnel and then TLS for https://. Counts the proxy's TCP failures (not its answers) toward its rest."""
        loop = self.loop
        if not origin.tls:
            await self._reach_proxy(proxy, lambda: conn)
            return
        tunnel = _Tunnel(loop)
        raw = await self._reach_proxy(proxy, lambda: tunnel)
        try:
            host = f"[{origin.host}]" if ":" in origin.host else origin.host
            authority = f"{host}:{origin.port}".encode("ascii")
            auth = b"Proxy-Authorization: " + proxy.authorization + b"\r\n" if proxy.authorization else b""
            raw.write(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (authority, authority, auth))
            status, reason = await tunnel.answer
            if not 200 <= status < 300:
                raise httpx.ProxyError(
                    f"proxy {proxy.label} answered {status} {reason} to CONNECT {authority.decode()}"
                )
            tls = await loop.start_tls(raw, conn, self._ssl_context, server_hostname=origin.server_hostname)
        except BaseException:
            raw.abort()
            raise
        if tls is None:  # the tunnel closed during the handshake
            raise httpx.ConnectError(f"proxy {proxy.label} closed the tunnel to {authority.decode()}")
        conn.connection_made(tls)

    async def _reach_proxy(self, proxy: Proxy, factory: Any) -> asyncio.Transport:
        """The TCP connection to a proxy; a refusal or a timeout here counts toward the proxy's rest."""
        loop = self.loop
        try:
            transport, _ = await loop.create_connection(factory, proxy.host, proxy.port)
        except OSError as exc:
            proxy.connect_failed(loop.time())
            raise ProxyUnreachable(f"could not connect to proxy {proxy.label}: {exc}") from exc
        except asyncio.CancelledError:  # the connect timeout (or the caller) gave up on the proxy
            proxy.connect_failed(loop.time())
            raise
        proxy.connected()
        return transport

    def _adopt_h2(self, origin: Origin, conn: HTTP1Connection) -> HTTP2Connection:
        """Turn a fresh socket that speaks HTTP/2 (ALPN h2, or h2c by prior knowledge) into the origin's
        shared HTTP/2 connection, retiring any previous one."""
        from crawler.http.transport.http2 import HTTP2Connection  # start-up: h2 only once it is spoken

        origin.h2_capable = True
        h2 = HTTP2Connection.take_over(self, origin, conn)
        old = origin.h2
        origin.h2 = h2
        if old is not None:
            old.retire()
        return h2

    # -- release and discard ----------------------------------------------------------------------------

    def release(self, conn: HTTP1Connection) -> None:
        """A connection finished its exchange cleanly and can carry another request."""
        if self._closing:
            conn.close()
            return
        origin = conn.origin
        slot_queue = self._slot_queue
        # Fairness: an origin with fewer connections waits for a slot; move this slot over to it.
        while slot_queue:
            other = slot_queue[0]
            if _has_live_waiter(other):
                break
            slot_queue.popleft()
            other.in_slot_queue = False
        if slot_queue:
            other = slot_queue[0]
            if other is not origin and (other.conns + 1 < origin.conns or not _has_live_waiter(origin)):
                conn.close()  # frees the slot, which goes to `other` (discard -> _free_slot)
                return
        waiters = origin.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        if len(self._idle) >= self._max_idle:
            if self._max_idle <= 0:
                conn.close()
                return
            self._evict_oldest()
        conn.idle_since = now = self.loop.time()
        origin.idle.append(conn)
        self._idle[conn] = None
        self._expire_idle(now)

    def h2_idle(self, conn: HTTP2Connection) -> None:
        """An HTTP/2 connection has no stream open: it may be evicted for another origin."""
        conn.idle_since = now = self.loop.time()
        self._idle[conn] = None
        self._expire_idle(now)
        self._grant_slots()

    def h2_busy(self, conn: HTTP2Connection) -> None:
        self._idle.pop(conn, None)

    def h2_goaway(self, conn: HTTP2Connection) -> None:
        if conn.origin.h2 is conn:
            conn.origin.h2 = None

    def _expire_idle(self, now: float) -> None:
        if self.keepalive_expiry is None:
            return
        idle = self._idle
        while idle:
            oldest = next(iter(idle))
            if now - oldest.idle_since < self.keepalive_expiry:
                return
            self._close_idle(oldest)

    def _evict_oldest(self) -> None:
        if self._idle:
            self._close_idle(next(iter(self._idle)))

    def _evict_one(self) -> bool:
        """At the budget: close the longest-idle connection of any origin to make room. True if one was."""
        if not self._idle:
            return False
        self._close_idle(next(iter(self._idle)))
        return self.total < self._max

    def _close_idle(self, conn: Connection) -> None:
        self._idle.pop(conn, None)
        if isinstance(conn, HTTP1Connection):
            try:
                conn.origin.idle.remove(conn)
            except ValueError:
                pass
        conn.close()

    def discard(self, conn: Connection) -> None:
        """A connection closed (or will never carry a request again): give its slot back. Idempotent."""
        if not conn.accounted:
            return
        conn.accounted = False
        origin = conn.origin
        origin.conns -= 1
        if conn in self._idle:
            del self._idle[conn]
            if isinstance(conn, HTTP1Connection):
                try:
                    origin.idle.remove(conn)
                except ValueError:
                    pass
        if origin.h2 is conn:
            origin.h2 = None
        self._free_slot()

    def _forget(self, conn: HTTP1Connection) -> None:
        if conn.accounted:
            conn.accounted = False
            conn.origin.conns -= 1
            self._free_slot()

    def transfer(self, old: HTTP1Connection, new: HTTP2Connection) -> None:
        """The slot of a connection that turned out to speak HTTP/2 now belongs to its HTTP/2 wrapper."""
        old.accounted = False
        new.accounted = True

    def _free_slot(self) -> None:
        self.total -= 1
        self._grant_slots()

    def _grant_slots(self) -> None:
        slot_queue = self._slot_queue
        while slot_queue and (self.total < self._max or self._evict_one()):
            origin = slot_queue.popleft()
            granted = False
            waiters = origin.waiters
            while waiters:
                fut = waiters.popleft()
                if not fut.done():
                    self.total += 1
                    fut.set_result(_SLOT)
                    granted = True
                    break
            if granted and _has_live_waiter(origin):
                slot_queue.append(origin)  # round robin between origins
            else:
                origin.in_slot_queue = False

    # -- shutdown ---------------------------------------------------------------------------------------

    def close_all(self) -> list[HTTP2Connection]:
        self._closing = True
        h2s: list[HTTP2Connection] = []
        for origin in list(self._origins.values()):
            for conn in list(origin.idle):
                conn.close()
            origin.idle.clear()
            if origin.h2 is not None:
                h2s.append(origin.h2)
            for fut in origin.waiters:
                if not fut.done():
                    fut.set_exception(httpx.PoolTimeout("the transport was closed"))
            origin.waiters.clear()
        self._idle.clear()
        self._slot_queue.clear()
        return h2s


_MAX_TUNNEL_HEAD = 64 * 1024


class _Tunnel(asyncio.Protocol):
    """The proxy's answer to CONNECT: its status line and headers (at most 64 KB), then nothing until TLS
    takes the socket over. `answer` resolves to (status, reason)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_TUNNEL_HEAD:
                self.answer.set_exception(httpx.ProxyError("the proxy's answer to CONNECT is over 64 KB"))
            return
        line = bytes(self._buffer[: self._buffer.find(b"\r\n")])
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self.answer.set_exception(httpx.ProxyError(f"malformed answer to CONNECT: {line[:100]!r}"))
            return
        status = int(parts[1])
        if 200 <= status < 300 and end + 4 != len(self._buffer):
            # A refusal may carry a body; an accepted tunnel is silent until the TLS handshake.
            self.answer.set_exception(httpx.ProxyError("the proxy sent bytes after accepting CONNECT"))
            return
        self.answer.set_result((status, parts[2].decode("latin-1") if len(parts) > 2 else ""))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(httpx.ProxyError("the proxy closed the connection before answering CONNECT"))
