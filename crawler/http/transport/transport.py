"""The transport under the shared client: turns an `httpx.Request` into an `httpx.Response`, fast.

Users configure an `httpx.AsyncClient` with `httpx.Limits` and `httpx.Timeout`; `make_transport` builds
what carries the bytes: HTTP/1.1 on asyncio Protocols parsed by httptools (`http11.py`), pooled per origin
with O(1) acquire/release under one connection budget (`pool.py`), and HTTP/2 (the `h2` state machine on
one asyncio Protocol with our own HPACK coding, `http2.py`) for TLS origins that choose h2 via ALPN or
cleartext ones by prior knowledge. Bodies stream both ways; httpx decodes content on top. Proxies
(`proxy.py`) go through the same pool and connections: absolute-form requests for http:// origins, CONNECT
tunnels for https:// ones. Nothing falls back to httpx's own transport, and nothing but httpx's exceptions
leaves it (`errors.py`); response heads are capped (`HeaderTooLarge`)."""

from __future__ import annotations

import asyncio
import ssl

import httpx

from crawler.http.transport.base import RetryRequest
from crawler.http.transport.errors import library_errors, to_httpx
from crawler.http.transport.http11 import HTTP1Connection, StaleConnection, request_content
from crawler.http.transport.pool import ConnectionPool
from crawler.http.transport.proxy import ProxyRouter, ProxyUnreachable
from crawler.model.request import IDEMPOTENT_METHODS

__all__ = ["CrawlerTransport", "make_transport"]

_NO_TIMEOUTS: dict[str, float | None] = {"connect": None, "read": None, "write": None, "pool": None}
# Safe to send again when a reused keep-alive connection turns out to have been closed by the server.
_MAX_SAFE_RETRIES = 50
_MAX_UNSAFE_RETRIES = 2
_MAX_PROXY_TRIES = 3  # other proxies tried when the chosen one cannot be reached


def make_transport(*, http2: bool, verify: ssl.SSLContext | bool, limits: httpx.Limits,
                   proxy: str | None = None, trust_env: bool = False,
                   http2_prior_knowledge: bool = False, proxies: ProxyRouter | None = None,
                   max_header_bytes: int = 65_536, max_headers: int = 200) -> CrawlerTransport:  # fmt: skip
    """The transport for the shared client. `verify` is an SSLContext or a bool, as for httpx.
    `http2_prior_knowledge` speaks HTTP/2 to cleartext http:// origins without negotiation (h2c, as
    curl's --http2-prior-knowledge); https:// origins still negotiate by ALPN.

    Proxies: `proxies` (a router built from the configuration), else `proxy` (one proxy URL) and, with
    `trust_env`, the environment's http_proxy/https_proxy/all_proxy/no_proxy.

    A response head over `max_header_bytes` or `max_headers` fails its request with `HeaderTooLarge`
    (an `httpx.TransportError` of kind `header_too_large`)."""
    if proxies is None:
        proxies = ProxyRouter.from_settings(proxies=[proxy] if proxy else [], trust_env=trust_env)
    if isinstance(verify, ssl.SSLContext):
        ssl_context = verify  # like httpcore, ALPN is set on the caller's context
    else:
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=trust_env)
    ssl_context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    return CrawlerTransport(http2=http2, ssl_context=ssl_context, limits=limits,
                            http2_prior_knowledge=http2_prior_knowledge, proxies=proxies,
                            max_header_bytes=max_header_bytes, max_headers=max_headers)  # fmt: skip


def _request_head(request: httpx.Request, proxy_head: bytes | None = None) -> tuple[bytes, bool, bool]:
    """The request line and headers as one bytes object; also whether the body is chunked and keep-alive.
    `proxy_head` (a forwarding proxy's header lines, maybe empty) makes the target absolute-form."""
    url = request.url
    target = url.raw_path if proxy_head is None else url.raw_scheme + b"://" + url.netloc + url.raw_path
    parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    chunked = False
    keep_alive = True
    raw = request.headers.raw
    for name, value in raw:
        parts += (name, b": ", value, b"\r\n")
        n = len(name)
        if n == 10:
            if name.lower() == b"connection" and b"close" in value.lower():
                keep_alive = False
        elif n == 17 and name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if proxy_head:
        parts.append(proxy_head)
    parts.append(b"\r\n")
    head = b"".join(parts)
    # A CR or LF inside a method, target, name or value would split the message: refuse it.
    lines = len(raw) + 2 + (proxy_head.count(b"\n") if proxy_head else 0)
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise httpx.LocalProtocolError("illegal CR or LF in the request line or a header")
    return head, chunked, keep_alive


def _replayable(request: httpx.Request, safe: bool) -> bool:
    """May this request be sent again? Its body must be in memory, and it must be idempotent unless `safe`."""
    if request_content(request) is None:
        return False  # a streamed body cannot be sent twice
    return safe or request.method in IDEMPOTENT_METHODS


class CrawlerTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 (httptools) and HTTP/2 (h2, chosen by ALPN) over one per-origin connection pool."""

    def __init__(self, *, http2: bool, ssl_context: ssl.SSLContext, limits: httpx.Limits,
                 http2_prior_knowledge: bool = False, proxies: ProxyRouter | None = None,
                 max_header_bytes: int = 65_536, max_headers: int = 200) -> None:  # fmt: skip
        self._http2 = http2
        self._head_limits = (max_header_bytes, max_headers)
        self.proxies = proxies
        self._h2c = http2_prior_knowledge
        self._ssl_context = ssl_context
        self._limits = limits
        self._pool: ConnectionPool | None = None

    def _pool_for_loop(self) -> ConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop:
            # Sockets belong to one event loop; a transport reused under a new loop starts afresh.
            pool = self._pool = ConnectionPool(limits=self._limits, ssl_context=self._ssl_context,
                                               http2=self._http2, loop=loop,
                                               http2_prior_knowledge=self._h2c,
                                               max_header_bytes=self._head_limits[0],
                                               max_headers=self._head_limits[1])  # fmt: skip
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self._pool
        if pool is None or pool.loop is not asyncio.get_running_loop():
            pool = self._pool_for_loop()
        url = request.url
        proxies = self.proxies
        proxy = None if proxies is None else proxies.choose(url.raw_scheme, url.raw_host)
        origin = pool.origin(url.raw_scheme, url.raw_host, url.port, proxy)
        timeouts = request.extensions.get("timeout") or _NO_TIMEOUTS
        head = b""
        content: bytes | None = None
        chunked = False
        keep_alive = True
        prepared = False
        # Retries on another connection: "safe" ones (the server certainly did not process the request: a
        # refused stream, beyond a GOAWAY, never written) are bounded loosely, since a server closing its
        # connections every N requests may turn away many queued streams at once; the others (a reused
        # connection dropped before any response) only for idempotent requests, and at most twice.
        safe_left, unsafe_left = _MAX_SAFE_RETRIES, _MAX_UNSAFE_RETRIES
        tried_proxies = 0
        try:
            while True:
                conn = pool.acquire_idle(origin) if origin.h2 is None else None
                if conn is None:
                    try:
                        acquired = await pool.acquire(origin, timeouts)
                    except (ProxyUnreachable, httpx.ConnectTimeout):
                        # A proxy that cannot be reached (or a timeout, maybe the proxy's): another one of the
                        # rotation takes the request.
                        other = None if proxy is None or proxies is None else proxies.choose(
                            url.raw_scheme, url.raw_host, avoid=proxy)  # fmt: skip
                        if other is None or other is proxy or tried_proxies >= _MAX_PROXY_TRIES:
                            raise
                        tried_proxies += 1
                        proxy = other
                        origin = pool.origin(url.raw_scheme, url.raw_host, url.port, proxy)
                        prepared = False  # the head names the proxy's credentials
                        continue
                    if not isinstance(acquired, HTTP1Connection):  # HTTP/2 (http2.py loads only then)
                        try:
                            return await acquired.send(request)
                        except RetryRequest as exc:
                            safe = exc.safe
                            if safe:
                                safe_left -= 1
                            else:
                                unsafe_left -= 1
                            if min(safe_left, unsafe_left) >= 0 and _replayable(request, safe):
                                continue
                            raise httpx.RemoteProtocolError(
                                "Server disconnected without sending a response."
                            ) from None
                    conn = acquired
                if not prepared:
                    try:
                        head, chunked, keep_alive = _request_head(request, origin.proxy_head)
                    except BaseException:
                        pool.release(conn)
                        raise
                    content = request_content(request)  # None: a stream, sent chunk by chunk, never buffered
                    prepared = True
                try:
                    return await conn.send(request, head, content, chunked, keep_alive, timeouts)
                except StaleConnection as exc:
                    if exc.sent:
                        unsafe_left -= 1
                        retry = unsafe_left >= 0 and content is not None and request.method in IDEMPOTENT_METHODS
                    else:
                        safe_left -= 1
                        retry = safe_left >= 0
                    if not retry:
                        raise httpx.RemoteProtocolError(
                            "Server disconnected without sending a response."
                        ) from None
        except library_errors() as exc:  # a last line: no protocol library's exception leaves the transport
            raise to_httpx(exc) from exc

    async def aclose(self) -> None:
        pool = self._pool
        if pool is None:
            return
        for h2 in pool.close_all():
            h2.close()
