"""The one place that turns the protocol libraries' exceptions into httpx's: nothing from h2, hpack,
hyperframe or httptools ever leaves the transport, so callers catch `httpx.HTTPError` and nothing else.

Everything these libraries raise about bytes received means the peer broke the protocol (or the connection
died under a multiplexed exchange): `httpx.RemoteProtocolError`. A request our side cannot express (an
illegal header) is `httpx.LocalProtocolError`, raised where it is detected, not here.
"""

from __future__ import annotations

import h2.exceptions
import hpack.exceptions
import httptools
import httpx
import hyperframe.exceptions

__all__ = ["LIBRARY_ERRORS", "HeaderTooLarge", "to_httpx"]

# Every exception type the protocol libraries raise of their own (their bases).
LIBRARY_ERRORS: tuple[type[Exception], ...] = (
    h2.exceptions.H2Error,
    hpack.exceptions.HPACKError,
    hyperframe.exceptions.HyperframeError,
    httptools.HttpParserError,
)


class HeaderTooLarge(httpx.TransportError):
    """The response head went over `http.max_header_bytes` or `http.max_headers`. `kind` names it in the
    stats (the model layer reads a `kind` attribute on any exception). It is an `httpx.TransportError`, so
    every caller that handles transport failures handles it, but not a `ProtocolError` or `NetworkError`:
    retrying will not shrink the server's head, so the retry policy does not retry it."""

    kind = "header_too_large"


def to_httpx(exc: BaseException, what: str = "HTTP/2") -> httpx.TransportError:
    """The httpx exception standing for a protocol library's `exc` (returned, for `raise ... from exc`)."""
    if isinstance(exc, httpx.TransportError):
        return exc
    return httpx.RemoteProtocolError(f"{what} protocol error: {type(exc).__name__}: {exc}")
