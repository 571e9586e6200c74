"""Building the one shared `httpx.AsyncClient` of a crawl or download from the `http:` config."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from crawler._auth import build_auth
from crawler._config import HttpConfig
from crawler._transport import make_transport

__all__ = ["build_client", "build_limits", "build_ssl_context", "build_timeout"]


def build_limits(config: HttpConfig) -> httpx.Limits:
    lim = config.limits
    return httpx.Limits(max_connections=lim.max_connections,
                        max_keepalive_connections=lim.max_keepalive_connections,
                        keepalive_expiry=lim.keepalive_expiry)  # fmt: skip


def build_timeout(config: HttpConfig) -> httpx.Timeout:
    t = config.timeout
    return httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)


def build_ssl_context(config: HttpConfig) -> ssl.SSLContext | bool:
    verify = config.verify
    if verify is False:
        return False
    if isinstance(verify, str):
        ctx = ssl.create_default_context(cafile=str(Path(verify).expanduser()))
    else:
        ctx = ssl.create_default_context()
        try:
            import certifi

            ctx.load_verify_locations(certifi.where())
        except ImportError:  # pragma: no cover - certifi ships with httpx
            pass
    return ctx


def build_client(config: HttpConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The shared client: HTTP/2 by default, explicit Limits and Timeout, redirects capped."""
    headers = {"User-Agent": config.user_agent, **config.headers}
    verify = build_ssl_context(config)
    if transport is None:
        transport = make_transport(http2=config.http2, verify=verify, limits=build_limits(config),
                                   proxy=config.proxy, trust_env=config.trust_env)  # fmt: skip
    return httpx.AsyncClient(
        transport=transport,
        headers=headers,
        timeout=build_timeout(config),
        follow_redirects=config.follow_redirects,
        max_redirects=config.max_redirects,
        auth=build_auth(config.auth),
        trust_env=config.trust_env,
    )
