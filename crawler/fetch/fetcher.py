"""Fetching one request through the shared client: streamed in chunks, decoded and size-capped through the
one decoding chain (`crawler.fetch.decoding`: gzip, deflate, br, zstd, stacked or not), and streamed to
disk for responses the file saver claims. robots.txt is fetched here too (`fetch_robots`), through the
same chain, so no body a crawl reads escapes the caps.

Redirects are never followed by the client. A page's 3xx becomes `page.redirect` (the engine queues the
target, so every hop passes scope, robots.txt and the seen set); robots.txt follows its hops here. Both
go through `crawler.http.redirects`: a hop that leaves the origin drops the credentials.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection
from typing import TYPE_CHECKING, Any

import httpx

from crawler.config.job import Job
from crawler.fetch.decoding import ACCEPT_ENCODING, DecodingChain
from crawler.http.redirects import REDIRECT_STATUSES, RedirectError, credential_names, next_hop, send_hop
from crawler.model.errors import BodyTooLarge, FetchError, error_kind
from crawler.model.page import Page, Redirected
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


class Fetcher:
    def __init__(self, client: httpx.AsyncClient, *, max_body: int | None, retry_statuses: frozenset[int],
                 saver: FileSaver | None = None, follow_redirects: bool = True,
                 user_headers: Collection[str] = (), forward_headers: Collection[str] = (),
                 max_url_length: int = 2048) -> None:  # fmt: skip
        self.client = client
        self.max_body = max_body
        self.retry_statuses = retry_statuses
        self.saver = saver
        self.follow_redirects = follow_redirects
        self.user_headers = tuple(user_headers)
        self.forward_headers = tuple(forward_headers)
        self.max_url_length = max_url_length
        # Names a request reached through a cross-origin redirect must not carry (the client adds them).
        self._credentials = credential_names(self.user_headers, self.forward_headers)

    @classmethod
    def for_job(cls, client: httpx.AsyncClient, job: Job, *, retry_statuses: frozenset[int],
                saver: FileSaver | None = None) -> Fetcher:  # fmt: skip
        """The fetcher a job's `http:` section describes."""
        http = job.http
        return cls(client, max_body=http.max_body, retry_statuses=retry_statuses, saver=saver,
                   follow_redirects=http.follow_redirects, user_headers=list(http.headers),
                   forward_headers=http.forward_headers)  # fmt: skip

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
        extra = request.meta.get("headers") if request.meta else None
        if extra:
            # Per-request headers (`meta={"headers": {...}}`): a recrawl's If-None-Match / If-Modified-Since.
            headers.update(extra)
        meta = request.meta
        stripped = bool(meta and meta.get("strip_credentials"))
        built = self.client.build_request(request.method, request.url, headers=headers)
        if stripped:
            for name in self._credentials:
                if name != "cookie" or name in self.user_headers:  # the jar's own cookies for this origin stay
                    built.headers.pop(name, None)
        auth = None if meta and meta.get("no_auth") else httpx.USE_CLIENT_DEFAULT
        resp = await _send(self.client, built, auth)
        try:
            status = resp.status_code
            page_headers = resp.headers
            if self.follow_redirects and status in REDIRECT_STATUSES:
                hop = next_hop(resp, user_headers=self.user_headers, forward_headers=self.forward_headers,
                               auth=auth is not None, max_url_length=self.max_url_length)  # fmt: skip
                if hop is not None:  # a 3xx with a Location: not a page; the engine queues its target
                    page = Page(request, str(resp.url), status, resp.http_version, page_headers, b"",
                                elapsed=time.monotonic() - started)  # fmt: skip
                    page.redirect = Redirected(str(hop.url.copy_with(fragment=None)), status,
                                               stripped or hop.cross_origin, hop.auth)  # fmt: skip
                    return page
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
        finally:
            await resp.aclose()

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
        resp = await _send(self.client, self.client.build_request("GET", url, headers=headers))
        auth = True
        for hops in range(_ROBOTS_MAX_HOPS + 1):
            try:
                status = resp.status_code
                url = str(resp.url)
                try:
                    hop = next_hop(resp, user_headers=self.user_headers, forward_headers=self.forward_headers,
                                   auth=auth, max_url_length=self.max_url_length)  # fmt: skip
                except RedirectError:  # a redirect that cannot be followed: "unavailable", like too many hops
                    return RobotsResponse(status, url=url, hops=hops)
                if hop is None:
                    body = bytearray()
                    if 200 <= status < 300:
                        try:
                            async for chunk in self._decoded_chunks(resp, None, limit=ROBOTS_MAX_BYTES):
                                body += chunk
                        except BodyTooLarge:
                            pass  # the chain yielded exactly the first ROBOTS_MAX_BYTES: parse those
                    return RobotsResponse(status, bytes(body), url, hops)
            finally:
                await resp.aclose()
            if hops == _ROBOTS_MAX_HOPS:
                break
            auth = hop.auth
            resp = await send_hop(self.client, hop)
        return RobotsResponse(status, url=url, hops=_ROBOTS_MAX_HOPS, error="too_many_redirects")


async def _send(client: httpx.AsyncClient, request: httpx.Request, auth: Any = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:
    """Send without following redirects. The shared client refuses a Location no hop could follow
    (`crawler.http.redirects.refuse_unparseable_location`); a client passed in by a user has no such hook, and
    httpx, preparing `next_request`, raises InvalidURL for such a Location: the redirect's fault, reported as
    such."""
    try:
        return await client.send(request, stream=True, follow_redirects=False, auth=auth)
    except httpx.InvalidURL as exc:
        raise RedirectError(f"redirect target is not a URL ({exc})") from None
