"""Fetching one request through the shared client: streamed in chunks, decoded and size-capped through the
one decoding chain (`crawler.fetch.decoding`: gzip, deflate, br, zstd, stacked or not), and streamed to
disk for responses the file saver claims. robots.txt is fetched here too (`fetch_robots`), through the
same chain, so no body a crawl reads escapes the caps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import httpx

from crawler.fetch.decoding import ACCEPT_ENCODING, DecodingChain
from crawler.model.errors import BodyTooLarge, FetchError, error_kind
from crawler.model.page import Page
from crawler.model.request import Request
from crawler.politeness.robots import RobotsResponse

if TYPE_CHECKING:
    from crawler.fetch.saver import FileSaver

__all__ = ["ROBOTS_MAX_BYTES", "SITEMAP_MAX_BYTES", "Fetcher"]

# The sitemaps protocol caps a sitemap at 50 MB uncompressed (and 50,000 URLs).
SITEMAP_MAX_BYTES = 50 * 1024 * 1024
# RFC 9309 §2.5: parse at least the first 500 KiB; the rest of a larger robots.txt is ignored.
ROBOTS_MAX_BYTES = 500 * 1024
_ROBOTS_MAX_HOPS = 5  # RFC 9309 §2.3.1.2
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Fetcher:
    def __init__(self, client: httpx.AsyncClient, *, max_body: int | None, retry_statuses: frozenset[int],
                 saver: FileSaver | None = None) -> None:  # fmt: skip
        self.client = client
        self.max_body = max_body
        self.retry_statuses = retry_statuses
        self.saver = saver

    async def fetch(self, request: Request) -> Page:
        """Fetch `request`. Raises httpx errors (retryable ones included) and `FetchError`."""
        try:
            return await self._fetch(request)
        except httpx.InvalidURL as exc:  # httpx checks a URL (a request's, a redirect's) as it builds it
            raise FetchError(f"invalid URL: {exc}", kind="invalid_url") from None
        except OverflowError as exc:  # a port past 65535 (a link's, a redirect's) reaching connect()
            raise FetchError(f"invalid URL: {exc}", kind="invalid_url") from None

    async def _fetch(self, request: Request) -> Page:
        started = time.monotonic()
        headers = {"Accept-Encoding": ACCEPT_ENCODING}
        if request.referer:
            headers["Referer"] = request.referer
        async with self.client.stream(request.method, request.url, headers=headers) as resp:
            status = resp.status_code
            page_headers = resp.headers
            if status in self.retry_statuses or request.method == "HEAD":
                # Nothing of the body is needed to decide a retry; closing drops the connection if unread.
                return Page(request, str(resp.url), status, resp.http_version, page_headers, b"",
                            elapsed=time.monotonic() - started)  # fmt: skip
            declared = page_headers.get("content-length", "")
            if (self.max_body is not None and declared.isascii() and declared.isdigit()
                    and "content-encoding" not in page_headers):  # fmt: skip
                # Compared as text first: int() refuses more than 4,300 digits.
                if len(declared) > 19 or int(declared) > self.max_body:
                    shown = declared if len(declared) <= 20 else declared[:17] + "..."
                    raise BodyTooLarge(f"Content-Length {shown} exceeds http.max_body {self.max_body}")
            url = str(resp.url)
            saver = self.saver
            if saver is not None and 200 <= status < 300 and saver.matches(url, page_headers.get("content-type", "")):
                path, size = await saver.save(resp, self._decoded_chunks(resp, request), url)
                page = Page(request, url, status, resp.http_version, page_headers, b"", path=path,
                            elapsed=time.monotonic() - started)  # fmt: skip
                page.saved_bytes = size
                return page
            body = bytearray()
            async for chunk in self._decoded_chunks(resp, request):
                body += chunk
            return Page(request, url, status, resp.http_version, page_headers, bytes(body),
                        elapsed=time.monotonic() - started)  # fmt: skip

    def _limit_for(self, request: Request) -> tuple[int | None, str]:
        if request.meta and request.meta.get("sitemap"):
            cap = SITEMAP_MAX_BYTES if self.max_body is None else min(self.max_body, SITEMAP_MAX_BYTES)
            return cap, "the sitemap limit" if cap == SITEMAP_MAX_BYTES else "http.max_body"
        return self.max_body, "http.max_body"

    async def _decoded_chunks(self, resp: httpx.Response, request: Request | None = None, *,
                              limit: int | None = None) -> AsyncIterator[bytes]:  # fmt: skip
        """Yield the decoded body in chunks through the one decoding chain (`crawler.fetch.decoding`),
        raising `BodyTooLarge` past the cap (`http.max_body`; for a sitemap, also the protocol's 50 MB,
        and a gzip body is gunzipped whatever its Content-Type; `limit` for robots.txt) and
        `decoding_error` for bad codings."""
        if limit is not None:
            setting = "the robots.txt limit"
        elif request is not None:
            limit, setting = self._limit_for(request)
        else:
            limit, setting = self.max_body, "http.max_body"
        if resp.is_stream_consumed:
            # A response built with its content (mock transports): httpx already decoded it.
            if limit is not None and len(resp.content) > limit:
                raise BodyTooLarge(f"decoded body exceeds {setting} {limit} bytes")
            yield resp.content
            return
        sitemap = request is not None and bool(request.meta and request.meta.get("sitemap"))
        chain = DecodingChain(resp.headers.get("content-encoding", ""), limit=limit, sniff_gzip=sitemap,
                              what="sitemap" if sitemap else "body", setting=setting)  # fmt: skip
        if chain.passthrough:
            # The common identity body: no generator per chunk, the same cap (this is the hot path).
            total = 0
            async for raw in resp.aiter_raw():
                total += len(raw)
                if limit is not None and total > limit:
                    room = limit - (total - len(raw))
                    if room > 0:
                        yield raw[:room]  # exactly the bytes up to the cap, as the chain does
                    raise BodyTooLarge(f"decoded {chain.what} exceeds {setting} {limit} bytes")
                yield raw
            return
        async for raw in resp.aiter_raw():
            for piece in chain.feed(raw):
                yield piece
        for piece in chain.finish():
            yield piece

    async def fetch_robots(self, url: str, *, deadline: float) -> RobotsResponse:
        """GET a robots.txt: redirects followed by hand up to 5 hops (RFC 9309 §2.3.1.2; more is "unavailable":
        the last 3xx, with error `too_many_redirects`), the body decoded through the chain and cut at
        `ROBOTS_MAX_BYTES` (what lies beyond is ignored, as §2.5 allows), everything within `deadline`
        seconds. A redirect that cannot be followed returns its 3xx. Never raises for what a server does: a
        network failure is status 0 with its error kind."""
        try:
            async with asyncio.timeout(deadline):
                return await self._fetch_robots(url)
        except TimeoutError:
            return RobotsResponse(0, url=url, error="robots_timeout")
        except FetchError as exc:
            return RobotsResponse(0, url=url, error=exc.kind)
        except httpx.InvalidURL:
            return RobotsResponse(0, url=url, error="invalid_url")
        except httpx.HTTPError as exc:
            return RobotsResponse(0, url=url, error=error_kind(exc))

    async def _fetch_robots(self, url: str) -> RobotsResponse:
        headers = {"Accept-Encoding": ACCEPT_ENCODING}
        status = 0
        for hops in range(_ROBOTS_MAX_HOPS + 1):
            async with self.client.stream("GET", url, headers=headers, follow_redirects=False) as resp:
                status = resp.status_code
                if status in _REDIRECTS:
                    # A redirect that cannot be followed (no Location, not http(s), not a URL) leaves the
                    # 3xx as the answer: "unavailable", like too many hops.
                    location = resp.headers.get("location", "").strip()
                    try:
                        target = urljoin(url, location) if location else ""
                    except ValueError:
                        target = ""
                    if not target.startswith(("http://", "https://")):
                        return RobotsResponse(status, url=url, hops=hops)
                    url = target
                    continue
                body = bytearray()
                if 200 <= status < 300:
                    try:
                        async for chunk in self._decoded_chunks(resp, None, limit=ROBOTS_MAX_BYTES):
                            body += chunk
                    except BodyTooLarge:
                        pass  # the chain yielded exactly the first ROBOTS_MAX_BYTES: parse those
                return RobotsResponse(status, bytes(body), url, hops)
        return RobotsResponse(status, url=url, hops=_ROBOTS_MAX_HOPS, error="too_many_redirects")
