"""Fetching one request through the shared client: streamed in chunks, size-capped after decoding, and
streamed to disk for responses the file saver claims.

gzip/deflate bodies are decoded here with a bounded `max_length` per step, so a gzip bomb costs at most
`max_body` bytes of memory before it is cut off; other encodings go through httpx's decoders.
"""

from __future__ import annotations

import time
import zlib
from typing import TYPE_CHECKING

import httpx

from crawler.model.errors import BodyTooLarge, FetchError
from crawler.model.page import Page
from crawler.model.request import Request

if TYPE_CHECKING:
    from crawler.fetch.saver import FileSaver

__all__ = ["Fetcher"]

_DECODE_STEP = 1 << 20  # decoded bytes produced per zlib call


class Fetcher:
    def __init__(self, client: httpx.AsyncClient, *, max_body: int | None, retry_statuses: frozenset[int],
                 saver: FileSaver | None = None) -> None:  # fmt: skip
        self.client = client
        self.max_body = max_body
        self.retry_statuses = retry_statuses
        self.saver = saver

    async def fetch(self, request: Request) -> Page:
        """Fetch `request`. Raises httpx errors (retryable ones included) and `FetchError`."""
        started = time.monotonic()
        headers = {"Referer": request.referer} if request.referer else None
        extra = request.meta.get("headers") if request.meta else None
        if extra:
            # Per-request headers (`meta={"headers": {...}}`): a recrawl's If-None-Match / If-Modified-Since.
            headers = {**(headers or {}), **extra}
        async with self.client.stream(request.method, request.url, headers=headers) as resp:
            status = resp.status_code
            page_headers = resp.headers
            if status in self.retry_statuses or request.method == "HEAD":
                # Nothing of the body is needed to decide a retry; closing drops the connection if unread.
                return Page(request, str(resp.url), status, resp.http_version, page_headers, b"",
                            elapsed=time.monotonic() - started)  # fmt: skip
            declared = page_headers.get("content-length")
            if self.max_body is not None and declared and declared.isdigit() and "content-encoding" not in page_headers:
                if int(declared) > self.max_body:
                    raise BodyTooLarge(f"Content-Length {declared} exceeds http.max_body {self.max_body}")
            url = str(resp.url)
            saver = self.saver
            if saver is not None and 200 <= status < 300 and saver.matches(url, page_headers.get("content-type", "")):
                path, size = await saver.save(resp, self._decoded_chunks(resp), url)
                page = Page(request, url, status, resp.http_version, page_headers, b"", path=path,
                            elapsed=time.monotonic() - started)  # fmt: skip
                page.saved_bytes = size
                return page
            body = bytearray()
            async for chunk in self._decoded_chunks(resp):
                body += chunk
            return Page(request, url, status, resp.http_version, page_headers, bytes(body),
                        elapsed=time.monotonic() - started)  # fmt: skip

    async def _decoded_chunks(self, resp: httpx.Response):  # type: ignore[no-untyped-def]
        """Yield the decoded body in chunks, raising `BodyTooLarge` past `max_body` decoded bytes."""
        limit = self.max_body
        encoding = resp.headers.get("content-encoding", "").strip().lower()
        total = 0
        if resp.is_stream_consumed:
            # A response built with its content (mock transports): httpx already decoded it.
            if limit is not None and len(resp.content) > limit:
                raise BodyTooLarge(f"decoded body exceeds http.max_body {limit} bytes")
            yield resp.content
            return
        if encoding in ("gzip", "x-gzip", "deflate"):
            # 47 = auto-detect gzip or zlib header; raw deflate is tried on failure below.
            decoder = zlib.decompressobj(47)
            first = True
            async for raw in resp.aiter_raw():
                data = raw
                while data:
                    step = _DECODE_STEP if limit is None else min(_DECODE_STEP, limit - total + 1)
                    try:
                        out = decoder.decompress(data, step)
                    except zlib.error:
                        if first and encoding == "deflate":
                            decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                            first = False
                            continue
                        raise FetchError(f"corrupt {encoding} body", kind="decoding_error") from None
                    first = False
                    data = decoder.unconsumed_tail
                    total += len(out)
                    if limit is not None and total > limit:
                        raise BodyTooLarge(f"decoded body exceeds http.max_body {limit} bytes")
                    if out:
                        yield out
                    if decoder.eof:
                        break
            tail = decoder.flush()
            if tail:
                total += len(tail)
                if limit is not None and total > limit:
                    raise BodyTooLarge(f"decoded body exceeds http.max_body {limit} bytes")
                yield tail
            return
        if encoding in ("", "identity"):
            iterator = resp.aiter_raw()
        else:
            iterator = resp.aiter_bytes()
        async for chunk in iterator:
            total += len(chunk)
            if limit is not None and total > limit:
                raise BodyTooLarge(f"body exceeds http.max_body {limit} bytes")
            yield chunk
