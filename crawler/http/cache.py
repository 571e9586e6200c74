"""The HTTP cache layer (`http.cache: DIR`): hishel's RFC 9111 cache as a transport wrapped around ours.

Two modes (`http.cache_mode`):
- `rfc9111` (default): a private cache that honours the server's rules: fresh responses (`max-age`,
  `Expires`, heuristic freshness from `Last-Modified`) are served from the cache, stale ones are
  revalidated with `If-None-Match` / `If-Modified-Since`, `no-store` is never stored.
- `always`: every GET/HEAD response is stored and served from then on, whatever its headers say, as
  Scrapy's HTTPCACHE does (DummyPolicy): for the selector-tweaking loop of development, where the second
  run of a job must not touch the site. That includes redirects, 404s and every other final answer (a
  broken-link check reruns from the cache too), but not the transient ones a retry may fix (429, 5xx).

Entries live in one SQLite file, `DIR/http-cache.sqlite3`; the body is stored as it came over the wire
(still gzip-encoded when it was), so the fetcher's decoded-size caps apply to cached bodies too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from crawler.config.job import HttpConfig

__all__ = ["CACHE_FILE", "cached_transport"]

CACHE_FILE = "http-cache.sqlite3"


def cached_transport(transport: httpx.AsyncBaseTransport, config: HttpConfig) -> httpx.AsyncBaseTransport:
    """`transport` behind hishel's cache in `config.cache` (a directory, created when missing)."""
    # Imported here: a crawl without a cache does not pay for hishel's imports.
    from hishel import AsyncSqliteStorage, CacheOptions
    from hishel.httpx import AsyncCacheTransport

    assert config.cache is not None
    directory = Path(config.cache).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    storage = AsyncSqliteStorage(database_path=directory / CACHE_FILE, max_size=config.cache_max_size)
    if config.cache_mode == "rfc9111":
        # A crawler is one user agent, not a proxy: a private cache (it may store `private` responses).
        return AsyncCacheTransport(next_transport=transport, storage=storage, rfc=CacheOptions(shared=False))
    # hishel's rfc=False mode stores 2xx answers only: the status of any other answer worth keeping rides
    # through it in a header, as a 200 (_StatusIn), and is restored on the way out (_StatusOut).
    return _StatusOut(AsyncCacheTransport(next_transport=_StatusIn(transport), storage=storage, rfc=False))


_STATUS_HEADER = "x-crawler-cached-status"
_STATUS_HEADER_RAW = _STATUS_HEADER.encode()


def _kept(status: int) -> bool:
    """Whether `always` stores an answer of this status: every final one but those a retry may change."""
    return status != 429 and status < 500 and not 200 <= status < 300


def _unmarked(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The response's header pairs without the status marker."""
    return [(k, v) for k, v in response.headers.raw if k.lower() != _STATUS_HEADER_RAW]


class _Wrapping(httpx.AsyncBaseTransport):
    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def aclose(self) -> None:
        await self._transport.aclose()


class _StatusIn(_Wrapping):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._transport.handle_async_request(request)
        kept = _kept(response.status_code)
        if not kept and _STATUS_HEADER not in response.headers:
            return response
        # A server's own header of that name never reaches _StatusOut: only ours does.
        headers = _unmarked(response)
        stream = response.stream
        if kept:
            # hishel stores an entry once its body has been read to the end, but the crawl reads no body
            # from a redirect or a robots.txt 404: read it here, up to a cap (past it, not kept).
            stream, complete = await _read_ahead(response.stream)
            kept = complete
        if kept:
            headers.append((_STATUS_HEADER_RAW, str(response.status_code).encode()))
        status = 200 if kept else response.status_code
        return httpx.Response(status, headers=headers, stream=stream, extensions=response.extensions)


_READ_AHEAD_MAX = 1 << 20  # bytes on the wire: an error page or a redirect's body is a few kB


async def _read_ahead(stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> tuple[httpx.AsyncByteStream, bool]:
    """The same body as a stream whose first `_READ_AHEAD_MAX` bytes are read already; True when that was all."""
    assert isinstance(stream, httpx.AsyncByteStream)
    chunks: list[bytes] = []
    size = 0
    iterator = stream.__aiter__()
    try:
        while size <= _READ_AHEAD_MAX:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                await stream.aclose()
                return _Replay(chunks, None, stream), True
            chunks.append(chunk)
            size += len(chunk)
    except BaseException:
        await stream.aclose()
        raise
    return _Replay(chunks, iterator, stream), False


class _Replay(httpx.AsyncByteStream):
    """Chunks already read, then the rest of the body from the iterator they came from."""

    def __init__(self, chunks: list[bytes], rest: AsyncIterator[bytes] | None, stream: httpx.AsyncByteStream) -> None:
        self._chunks = chunks
        self._rest = rest
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks, self._chunks = self._chunks, []
        for chunk in chunks:
            yield chunk
        if self._rest is not None:
            async for chunk in self._rest:
                yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class _StatusOut(_Wrapping):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._transport.handle_async_request(request)
        status = response.headers.get(_STATUS_HEADER)
        if status is None or response.status_code != 200 or not status.isdigit():
            return response
        # Read through hishel's stream, so that it stores the entry even when the crawl reads no body (a
        # redirect); _StatusIn marked only bodies it already holds in memory (at most _READ_AHEAD_MAX).
        try:
            body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        finally:
            await response.aclose()
        return httpx.Response(int(status), headers=_unmarked(response), stream=httpx.ByteStream(body),
                              extensions=response.extensions)  # fmt: skip
