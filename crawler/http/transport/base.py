"""What a connection may ask of the pool that owns it, and nothing more: the seam between the pool and the
HTTP/1.1 and HTTP/2 connections, so that connections never import the pool (the pool imports them)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

__all__ = ["ConnectionOwner", "RetryRequest"]


class ConnectionOwner(Protocol):
    """The pool, as its connections see it. `conn` is the connection calling; each call is O(1)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def max_header_bytes(self) -> int:
        """The largest response head accepted (HTTP/1.1 bytes; HTTP/2 MAX_HEADER_LIST_SIZE)."""
        ...

    @property
    def max_headers(self) -> int:
        """The most header fields accepted in a response head."""
        ...

    @property
    def keepalive_expiry(self) -> float | None:
        """Seconds an idle connection stays usable (None: forever)."""
        ...

    def release(self, conn: Any) -> None:
        """An HTTP/1.1 exchange ended with the connection reusable: it becomes idle."""

    def discard(self, conn: Any) -> None:
        """The connection closed or will never carry a request again: its slot is free. Idempotent."""

    def transfer(self, old: Any, new: Any) -> None:
        """The socket of `old` (HTTP/1.1) now speaks HTTP/2 through `new`, which takes over its slot."""

    def h2_idle(self, conn: Any) -> None:
        """An HTTP/2 connection has no stream open."""

    def h2_busy(self, conn: Any) -> None:
        """An HTTP/2 connection opened a stream."""

    def h2_goaway(self, conn: Any) -> None:
        """The server sent GOAWAY: new requests of the origin need a new connection."""


class RetryRequest(Exception):
    """The request could not be completed on this connection and may be sent again on another one.

    `safe` means the server certainly did not process it (refused stream, beyond a GOAWAY, never sent);
    otherwise (the connection dropped before any response) only idempotent requests should be replayed.
    """

    def __init__(self, safe: bool = True) -> None:
        super().__init__("the request can be retried on another connection")
        self.safe = safe
