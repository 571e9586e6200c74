"""The frontier: where requests wait. One small backend interface, several implementations.

The engine talks to a backend through four verbs, all batched so that a persistent backend (SQLite,
Redis) pays one round trip per batch, not per URL:

- `push_many(requests)`: enqueue what has not been seen before; returns how many were new.
- `pop_ready(limit, budget)`: take up to `limit` requests, at most `budget(host)` from each host. The
  engine's budget says how many requests a host may start now (in-flight cap, tokens, pauses), so a
  host that must wait never holds a worker while another host has ready work.
- `ack(requests, checkpoint)`: the requests are finished (after the pipeline stages and the output
  flush). Until acked, a persistent backend keeps them leased so that a crashed process loses nothing.
  `checkpoint` (e.g. `{"items_offset": 12345}`) is what the outputs looked like when these acks were
  made; a persistent backend stores it atomically with the acks and returns it from `checkpoint()`.
- `size()`: requests queued or leased and not yet acked; 0 means the crawl is done.
- `checkpoint()`: the last stored checkpoint, or None. On resume the engine truncates the items file
  to the stored offset before re-fetching the leased requests: output past the last ack belonged to
  pages that are fetched again, so every page ends up in the output exactly once.

And the lifecycle, which every backend has too (`FrontierBase` gives the defaults of a backend that lives in
one process):

- `bind(wake, rate_of)`: called once by the engine when it opens. `wake()` wakes its dispatcher (a backend fed
  from elsewhere, by other processes, calls it when work arrives); `rate_of(host)` is a host's configured rate
  in requests per second, Crawl-delay included (a backend that enforces rates across processes reads it).
- `shares_rates`: True when the backend enforces per-host rates itself, for every process together; the
  engine's limiter then keeps only in-flight caps and pauses.
- `next_wakeup()`: seconds until the backend may have ready work the engine cannot see coming (a shared rate
  limit lets a host go again, another process may push), or None.
- `worker`: the process's stable identity in a shared crawl (`{worker}` in `output.items`), or None.
- `release(request)`: the engine is done with `request` for good (fetch and stages ended, no retry waits): a
  backend that caps each host's requests in flight across processes gives its slot back. Local, no I/O.
- `pause(host, seconds)`: the host asked everyone to wait (Retry-After): a shared backend holds it for every
  process. Local, no I/O (sent with the backend's next call).
- `close()`: release what the backend holds (connections, locks, leases of unacked requests stay leased).

A persistent backend may also remember the pages a crawl fetched, for `crawler run --recrawl` (`PageMemory`):
`remember_pages(pages)` stores each page's request and validators (ETag, Last-Modified) with the next ack,
and `known_pages()` reads them back.

A shared backend rides out an outage of its server itself: its verbs wait and retry (the crawl pauses) and,
past its limit, raise `FrontierUnavailable`, except `ack`, which then drops the acks: those pages are
fetched again after a restart, as after a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from crawler.model.request import Request

__all__ = ["FrontierBackend", "FrontierBase", "FrontierUnavailable", "KnownPage", "PageMemory"]


class FrontierUnavailable(RuntimeError):
    """The frontier cannot be reached and has stopped waiting for it (a shared backend down past its outage
    limit): the crawl cannot go on. The message says what happened and what a rerun will do."""


@runtime_checkable
class FrontierBackend(Protocol):
    @property
    def worker(self) -> str | None: ...

    @property
    def shares_rates(self) -> bool: ...

    def bind(self, wake: Callable[[], None], rate_of: Callable[[str], float | None]) -> None: ...

    def next_wakeup(self) -> float | None: ...

    def release(self, request: Request) -> None: ...

    def pause(self, host: str, seconds: float) -> None: ...

    async def push_many(self, requests: Iterable[Request]) -> int: ...

    async def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]: ...

    async def ack(self, requests: Sequence[Request], checkpoint: dict[str, Any] | None = None) -> None: ...

    async def size(self) -> int: ...

    async def checkpoint(self) -> dict[str, Any] | None: ...

    async def close(self) -> None: ...


class FrontierBase:
    """The lifecycle defaults of a backend that serves one process: no identity, no shared rates, nothing
    arriving from elsewhere. Backends subclass it and override what they do differently."""

    worker: str | None = None
    shares_rates = False

    def bind(self, wake: Callable[[], None], rate_of: Callable[[str], float | None]) -> None:
        return None

    def next_wakeup(self) -> float | None:
        return None

    def release(self, request: Request) -> None:
        return None

    def pause(self, host: str, seconds: float) -> None:
        return None

    async def close(self) -> None:
        return None


class KnownPage(NamedTuple):
    """A page a crawl fetched: its request (url, depth, meta) and the validators it answered with."""

    request: Request
    etag: str | None
    last_modified: str | None


@runtime_checkable
class PageMemory(Protocol):
    """A backend that remembers fetched pages across runs, so a later run can revisit them (`--recrawl`)."""

    def remember_pages(self, pages: Sequence[KnownPage]) -> None:
        """Store (or replace) these pages; they are committed with the next `ack`."""
        ...

    def known_pages(self) -> Iterator[KnownPage]:
        """Every remembered page, oldest first, read lazily."""
        ...
