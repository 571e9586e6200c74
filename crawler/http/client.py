"""Building the one shared `httpx.AsyncClient` of a crawl or download from the `http:` config."""

from __future__ import annotations

import logging
import ssl
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import httpx

from crawler.config.job import HttpConfig
from crawler.http.auth import build_auth
from crawler.http.cache import cached_transport
from crawler.http.fast_path import FAST_URLS, FastURL, HeaderMerge
from crawler.http.redirects import refuse_unparseable_location
from crawler.http.transport.proxy import ProxyRouter
from crawler.http.transport.transport import make_transport

__all__ = ["CrawlerClient", "build_client", "build_limits", "build_ssl_context", "build_timeout"]


def build_limits(config: HttpConfig) -> httpx.Limits:
    lim = config.limits
    return httpx.Limits(max_connections=lim.max_connections,
                        max_keepalive_connections=lim.max_keepalive_connections,
                        keepalive_expiry=lim.keepalive_expiry)  # fmt: skip


def build_timeout(config: HttpConfig) -> httpx.Timeout:
    t = config.timeout
    return httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)


class _DeferredCAContext(ssl.SSLContext):
    """A TLS client context (as `ssl.create_default_context()` builds one) whose CA bundle is read by the first
    TLS connection, not at start-up: parsing certifi's ~150 certificates is ~30 ms, the largest single cost
    before a crawl's first request, and a crawl of http:// sites never needs it."""

    _cafile: str
    _ca_loaded: bool

    def _load_ca(self) -> None:
        self._ca_loaded = True
        self.load_verify_locations(cafile=self._cafile)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        if not self._ca_loaded:
            self._load_ca()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if not self._ca_loaded:
            self._load_ca()
        return super().wrap_socket(*args, **kwargs)


def build_ssl_context(config: HttpConfig) -> ssl.SSLContext | bool:
    """The one TLS context: certifi's CA bundle (as httpx does), read once by the first TLS connection; or the
    configured bundle, read now."""
    verify = config.verify
    if verify is False:
        return False
    if isinstance(verify, str):
        # A configured bundle (usually small) is read now, so that a bad one is a start-up error.
        return ssl.create_default_context(cafile=str(Path(verify).expanduser()))
    import certifi

    cafile = certifi.where()
    context = _DeferredCAContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    context._cafile = cafile
    context._ca_loaded = False
    return context


_log = logging.getLogger("httpx")  # httpx's client logs each request here at INFO
_EMPTY = httpx.ByteStream(b"")

# What httpx accepts as cookies (its own alias lives in a private module).
_CookieTypes = httpx.Cookies | CookieJar | dict[str, str] | list[tuple[str, str]]


class _Cookies(httpx.Cookies):
    """httpx runs every response through the stdlib CookieJar (compat request/response objects, all
    headers copied): ~50 us a response, ~17% of a crawl's CPU on the benchmark site. Only a response that
    sets a cookie needs it."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers or "set-cookie2" in response.headers:
            super().extract_cookies(response)


class CrawlerClient(httpx.AsyncClient):
    """The shared client: an `httpx.AsyncClient` whose cookie jar skips responses without Set-Cookie, and
    whose `build_request` and `send` take a fast path (`crawler.http.fast_path`) where it gives the same
    request and response as httpx's own way.

    httpx reads and writes the jar through its public `cookies` property only; this subclass keeps its own
    jar behind that property (the getter and setter httpx documents), so no private attribute is touched.
    Cookies given to the constructor or assigned later land in the same skipping jar.

    The fast path, per request, when the client was built with a `transport` (no `mounts`, no `proxy`, no
    `default_encoding`): `build_request` for a GET or HEAD without body, params, cookies (none in the jar),
    timeout or extensions, whose URL `FastURL` takes; `send` when no auth applies (the client has none or
    the call says `auth=None`, and the URL has no userinfo), redirects are not followed and there are no
    request hooks. It sends straight through the transport, then does what httpx's client does with the
    response: the request attached (also to a transport error), the cookies extracted, the "HTTP Request"
    log line, the response hooks run, a redirect's `next_request`, the body read unless `stream`. Anything
    else is httpx's way.
    """

    def __init__(self, *, cookies: _CookieTypes | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._crawler_cookies = _Cookies(cookies)
        transport = kwargs.get("transport")
        plain = not kwargs.get("mounts") and kwargs.get("proxy") is None and "default_encoding" not in kwargs
        self._fast_transport: httpx.AsyncBaseTransport | None = transport if plain else None
        self._fast_urls = FastURL() if FAST_URLS and self._fast_transport is not None else None
        self._fast_headers = HeaderMerge()
        self._fast_opened = False  # the first send goes httpx's way: it marks the client opened

    @property
    def cookies(self) -> httpx.Cookies:
        return self._crawler_cookies

    @cookies.setter
    def cookies(self, cookies: _CookieTypes) -> None:
        self._crawler_cookies = _Cookies(cookies)

    async def __aenter__(self) -> CrawlerClient:
        await super().__aenter__()
        self._fast_opened = True
        return self

    def build_request(self, method: str, url: httpx.URL | str, *, content: Any = None, data: Any = None,
                      files: Any = None, json: Any = None, params: Any = None, headers: Any = None,
                      cookies: Any = None, timeout: Any = httpx.USE_CLIENT_DEFAULT,
                      extensions: Any = None) -> httpx.Request:  # fmt: skip
        fast = self._fast_urls
        if (fast is not None and type(url) is str and (method == "GET" or method == "HEAD")
                and content is None and data is None and files is None and json is None and params is None
                and cookies is None and extensions is None and timeout is httpx.USE_CLIENT_DEFAULT
                and (headers is None or type(headers) is dict or type(headers) is list) and not self.params
                and not self._crawler_cookies):  # fmt: skip
            parsed = fast.parse(url)
            if parsed is not None:
                merged = self._fast_headers.merge(self.headers, headers, parsed.netloc)
                if merged is not None:
                    request = httpx.Request(method, parsed, headers=merged, stream=_EMPTY,
                                            extensions={"timeout": self.timeout.as_dict()})  # fmt: skip
                    request.read()  # as httpx does for an in-memory body: `request.content` is b""
                    return request
        return super().build_request(method, url, content=content, data=data, files=files, json=json,
                                     params=params, headers=headers, cookies=cookies, timeout=timeout,
                                     extensions=extensions)  # fmt: skip

    async def send(self, request: httpx.Request, *, stream: bool = False, auth: Any = httpx.USE_CLIENT_DEFAULT,
                   follow_redirects: Any = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:  # fmt: skip
        transport = self._fast_transport
        hooks = self.event_hooks
        if (transport is None or not self._fast_opened or hooks["request"]
                or (self.follow_redirects if follow_redirects is httpx.USE_CLIENT_DEFAULT else follow_redirects)
                or (self.auth if auth is httpx.USE_CLIENT_DEFAULT else auth) is not None
                or request.url.userinfo or not isinstance(request.stream, httpx.AsyncByteStream)):  # fmt: skip
            self._fast_opened = True
            return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if "timeout" not in request.extensions:
            request.extensions["timeout"] = self.timeout.as_dict()
        try:
            response = await transport.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        try:
            self._crawler_cookies.extract_cookies(response)
            if _log.isEnabledFor(logging.INFO):
                _log.info('HTTP Request: %s %s "%s %d %s"', request.method, request.url, response.http_version,
                          response.status_code, response.reason_phrase)  # fmt: skip
            for hook in hooks["response"]:  # the shared client's own: refuse_unparseable_location
                await hook(response)
            if response.has_redirect_location:
                response.next_request = self._build_redirect_request(request, response)
            if not stream:
                await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response


def build_client(config: HttpConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The shared client: HTTP/2 by default, explicit Limits and Timeout, redirects capped."""
    headers = {"User-Agent": config.user_agent, **config.headers}
    verify = build_ssl_context(config)
    if transport is None:
        proxies = ProxyRouter.from_settings(proxies=config.proxy_list(), no_proxy=config.no_proxy,
                                            rotation=config.proxy_rotation, trust_env=config.trust_env,
                                            dead_after=config.proxy_dead_after,
                                            dead_for=config.proxy_dead_for)  # fmt: skip
        transport = make_transport(http2=config.http2, verify=verify, limits=build_limits(config),
                                   proxies=proxies, http2_prior_knowledge=config.http2_prior_knowledge,
                                   max_header_bytes=config.max_header_bytes or 65_536,
                                   max_headers=config.max_headers)  # fmt: skip
    if config.cache is not None:
        transport = cached_transport(transport, config)
    return CrawlerClient(
        transport=transport,
        headers=headers,
        timeout=build_timeout(config),
        # Redirects are followed hop by hop by the callers (`crawler.http.redirects`), never by httpx:
        # every hop is checked (scope, robots.txt, the seen set) and credentials stay on their origin.
        follow_redirects=False,
        event_hooks={"response": [refuse_unparseable_location]},
        auth=build_auth(config.auth),
        trust_env=config.trust_env,
    )
