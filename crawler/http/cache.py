"""The HTTP cache layer (`http.cache: DIR`): hishel's RFC 9111 cache as a transport wrapped around ours.

Two modes (`http.cache_mode`):
- `rfc9111` (default): a private cache that honours the server's rules: fresh responses (`max-age`,
  `Expires`, heuristic freshness from `Last-Modified`) are served from the cache, stale ones are
  revalidated with `If-None-Match` / `If-Modified-Since`, `no-store` is never stored.
- `always`: every successful GET/HEAD response is stored and served from then on, whatever its headers
  say, as Scrapy's HTTPCACHE does (DummyPolicy): for the selector-tweaking loop of development, where the
  second run of a job must not touch the site.

Entries live in one SQLite file, `DIR/http-cache.sqlite3`; the body is stored as it came over the wire
(still gzip-encoded when it was), so the fetcher's decoded-size caps apply to cached bodies too.
"""

from __future__ import annotations

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
    # A crawler is one user agent, not a proxy: a private cache (it may store `private` responses).
    rfc: bool | CacheOptions = CacheOptions(shared=False) if config.cache_mode == "rfc9111" else False
    return AsyncCacheTransport(next_transport=transport, storage=storage, rfc=rfc)
