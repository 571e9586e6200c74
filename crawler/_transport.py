"""The transport under the shared client.

Users configure an `httpx.AsyncClient` with `httpx.Limits`; this module decides what carries the bytes.
For now: httpx's own `AsyncHTTPTransport` (httpcore). See the benchmarks issue for the faster path.
"""

from __future__ import annotations

import ssl

import httpx

__all__ = ["make_transport"]


def make_transport(*, http2: bool, verify: ssl.SSLContext | bool, limits: httpx.Limits,
                   proxy: str | None = None, trust_env: bool = False) -> httpx.AsyncBaseTransport:  # fmt: skip
    return httpx.AsyncHTTPTransport(http2=http2, verify=verify, limits=limits, proxy=proxy,
                                     trust_env=trust_env)  # fmt: skip
