"""The errors a crawl reports, and the one list of error kinds its stats count them under.

Every failure of a request ends as a kind from `ERROR_KINDS` (or `http_<status>`), never as a Python
exception name, so a summary, `stats.json` and `crawl(include_failures=True)` speak one vocabulary.
"""

from __future__ import annotations

import httpx

__all__ = ["BodyTooLarge", "DropPage", "FetchError", "InputError", "OutputError", "StageLoadError", "TotalTimeout",
           "error_kind"]


class FetchError(Exception):
    """A fetch that failed for a reason that retrying will not fix. `kind` names it in the stats."""

    kind = "fetch_error"

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class BodyTooLarge(FetchError):
    kind = "body_too_large"


class TotalTimeout(httpx.TimeoutException):
    """The whole request (connect, head and body) took longer than `http.timeout.total`: a server that
    trickles bytes slower than any per-read timeout notices. Retryable, like other timeouts."""

    kind = "total_timeout"


class OutputError(OSError):
    """An output (items file, saved state) cannot be written: the crawl stops cleanly and exits 1."""


class DropPage(Exception):
    """Raise from a stage to drop the page: no item is written and it is not yielded by `crawl()`.
    Requests the page already queued with `follow()` are still crawled."""


class StageLoadError(ImportError):
    """A stage named by an import path that cannot be imported or is not callable."""


class InputError(ValueError):
    """A bad input line or option value. `line` is 1-based, 0 when not from a file."""

    def __init__(self, message: str, source: str = "", line: int = 0) -> None:
        where = f"{source}:{line}: " if source and line else (f"{source}: " if source else "")
        super().__init__(f"{where}{message}")
        self.source = source
        self.line = line


# httpx's exception classes, most specific first: the first match names the kind.
_HTTPX_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (httpx.ConnectTimeout, "connect_timeout"),
    (httpx.ReadTimeout, "read_timeout"),
    (httpx.WriteTimeout, "write_timeout"),
    (httpx.PoolTimeout, "pool_timeout"),
    (httpx.ConnectError, "connect_error"),
    (httpx.ReadError, "read_error"),
    (httpx.WriteError, "write_error"),
    (httpx.ProtocolError, "protocol_error"),
    (httpx.TooManyRedirects, "too_many_redirects"),
    (httpx.UnsupportedProtocol, "unsupported_protocol"),
    (httpx.DecodingError, "decoding_error"),
    (httpx.TimeoutException, "timeout"),
    (httpx.NetworkError, "network_error"),
)


def error_kind(exc: BaseException) -> str:
    """The stats kind of a failed request's exception: its `kind` attribute when it has one (so a lower
    layer names a kind without importing this module, e.g. the transport's `header_too_large`), else the
    kind of its httpx class, else its class name."""
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str):
        return kind
    for cls, kind in _HTTPX_KINDS:
        if isinstance(exc, cls):
            return kind
    return type(exc).__name__
