"""Building the one shared `httpx.AsyncClient` of a crawl or download from the `http:` config."""

from __future__ import annotations

import ssl
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import httpx

from crawler.config.job import HttpConfig
from crawler.http.auth import build_auth
from crawler.http.cache import cached_transport
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
    """The shared client: an `httpx.AsyncClient` whose cookie jar skips responses without Set-Cookie.

    httpx reads and writes the jar through its public `cookies` property only; this subclass keeps its own
    jar behind that property (the getter and setter httpx documents), so no private attribute is touched.
    Cookies given to the constructor or assigned later land in the same skipping jar.
    """

    def __init__(self, *, cookies: _CookieTypes | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._crawler_cookies = _Cookies(cookies)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._crawler_cookies

    @cookies.setter
    def cookies(self, cookies: _CookieTypes) -> None:
        self._crawler_cookies = _Cookies(cookies)


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
