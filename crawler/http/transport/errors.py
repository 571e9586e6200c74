"""The one place that turns the protocol libraries' exceptions into httpx's: nothing from h2, hpack,
hyperframe or httptools ever leaves the transport, so callers catch `httpx.HTTPError` and nothing else.

Everything these libraries raise about bytes received means the peer broke the protocol (or the connection
died under a multiplexed exchange): `httpx.RemoteProtocolError`. A request our side cannot express (an
illegal header) is `httpx.LocalProtocolError`, raised where it is detected, not here.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import httptools
import httpx

__all__ = ["LIBRARY_ERRORS", "HeaderTooLarge", "library_errors", "to_httpx"]

if TYPE_CHECKING:
    # Every exception type the protocol libraries raise of their own (their bases). Built on first use
    # (`__getattr__`): h2, hpack and hyperframe load with the first HTTP/2 connection, not at start-up.
    LIBRARY_ERRORS: tuple[type[Exception], ...]

_HTTP11_ERRORS: tuple[type[Exception], ...] = (httptools.HttpParserError,)


def __getattr__(name: str) -> tuple[type[Exception], ...]:
    if name != "LIBRARY_ERRORS":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import h2.exceptions
    import hpack.exceptions
    import hyperframe.exceptions

    errors: tuple[type[Exception], ...] = (h2.exceptions.H2Error, hpack.exceptions.HPACKError, hyperframe.exceptions.HyperframeError,
              *_HTTP11_ERRORS)  # fmt: skip
    globals()["LIBRARY_ERRORS"] = errors
    return errors


def library_errors() -> tuple[type[Exception], ...]:
    """`LIBRARY_ERRORS` once HTTP/2 has loaded; before, the HTTP/1.1 parser's only (h2, hpack and hyperframe
    cannot have raised anything while none of them is imported). For an `except` clause: evaluated only when
    an exception is being matched."""
    if "h2" in sys.modules or "hpack" in sys.modules or "hyperframe" in sys.modules:
        return __getattr__("LIBRARY_ERRORS")
    return _HTTP11_ERRORS


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
