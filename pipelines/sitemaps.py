"""Sitemaps: the stage that reads requests marked `meta={"sitemap": True}` (`start_sitemaps`, and robots.txt
`Sitemap:` lines when `scope.sitemaps` is on), follows the page URLs they list (at the sitemap's own
depth: a sitemap entry is as good as a start URL), queues nested sitemaps from a sitemap index, and
drops the sitemap itself so it never becomes an item.

Accepted: XML `<urlset>` and `<sitemapindex>`, gzipped (`.xml.gz`, whatever the Content-Type: the fetcher
gunzips a sitemap's body through the one decoding chain, capped at 50 MB decoded, the protocol's limit; a
bomb fails with `body_too_large`), and plain-text sitemaps (one URL per line). The XML is scanned for
`<loc>` elements rather than parsed, so entity tricks cannot expand and broken XML still yields its URLs.
At most 50,000 URLs are taken from one sitemap (the protocol's limit). A sitemap index's children carry
their nesting depth in `meta["sitemap_depth"]`; the scope stops an endless chain of indexes at
`scope.max_sitemap_depth`.
"""

from __future__ import annotations

import html
import logging
import re
from datetime import date
from typing import Any, Self

from crawler.config.job import Job
from crawler.fetch.decoding import decode_all
from crawler.fetch.fetcher import SITEMAP_MAX_BYTES
from crawler.model.errors import DropPage
from crawler.model.page import Page
from crawler.model.request import Request
from crawler.model.url import canonicalize

__all__ = ["MAX_SITEMAP_URLS", "SitemapStage", "modified_before", "parse_sitemap"]

log = logging.getLogger("crawler.sitemaps")

# The sitemaps protocol caps a sitemap at 50 MB uncompressed and 50,000 URLs.
MAX_SITEMAP_BYTES = SITEMAP_MAX_BYTES
MAX_SITEMAP_URLS = 50_000
_GZIP_MAGIC = b"\x1f\x8b"
_LOC_RE = re.compile(rb"<loc>\s*(?:<!\[CDATA\[)?\s*(.*?)\s*(?:\]\]>)?\s*</loc>", re.S | re.I)
_INDEX_RE = re.compile(rb"<(?:\w+:)?sitemapindex[\s>]", re.I)
_URLSET_RE = re.compile(rb"<(?:\w+:)?urlset[\s>]", re.I)
# One <url> or <sitemap> entry (namespace prefixes allowed), and the <lastmod> inside it.
_ENTRY_RE = re.compile(rb"<(?:\w+:)?(url|sitemap)\b[^>]*>(.*?)</(?:\w+:)?\1\s*>", re.S | re.I)
_LASTMOD_RE = re.compile(rb"<(?:\w+:)?lastmod>\s*(\d{4}-\d{2}-\d{2})", re.I)


def parse_sitemap(body: bytes, max_urls: int = MAX_SITEMAP_URLS) -> tuple[str, list[str]]:
    """(`"index"` | `"urlset"` | `"text"` | `"unknown"`, the first `max_urls` URLs listed), from an
    uncompressed sitemap."""
    head = body[:4096]
    if _INDEX_RE.search(head) or (not _URLSET_RE.search(head) and _INDEX_RE.search(body)):
        kind = "index"
    elif _URLSET_RE.search(head) or b"<loc>" in body:
        kind = "urlset"
    else:
        urls = []
        for raw in body.splitlines():
            line = raw.strip().decode("utf-8", "replace")
            if line.startswith(("http://", "https://")) and " " not in line:
                urls.append(line)
                if len(urls) >= max_urls:
                    break
        return ("text", urls) if urls else ("unknown", [])
    urls = []
    for m in _LOC_RE.finditer(body):
        url = html.unescape(m.group(1).decode("utf-8", "replace")).strip()
        if url.startswith(("http://", "https://")):
            urls.append(url)
            if len(urls) >= max_urls:
                break
    return kind, urls


def modified_before(body: bytes, since: date) -> set[str]:
    """The `<loc>` URLs of entries whose `<lastmod>` date is before `since` (entries without one are not)."""
    old: set[str] = set()
    for m in _ENTRY_RE.finditer(body):
        lastmod = _LASTMOD_RE.search(m.group(2))
        loc = _LOC_RE.search(m.group(2))
        if lastmod is None or loc is None:
            continue
        try:
            modified = date.fromisoformat(lastmod.group(1).decode("ascii"))
        except ValueError:
            continue
        if modified < since:
            old.add(html.unescape(loc.group(1).decode("utf-8", "replace")).strip())
    return old


class SitemapStage:
    """Turns sitemap responses into requests; every other page passes through untouched. With a `since`
    date for a start sitemap (`sitemap_since`), entries last modified before it are skipped, in that sitemap
    and in the sitemaps of its index (they carry the date in `meta["since"]`)."""

    def __init__(self, *, max_bytes: int = MAX_SITEMAP_BYTES, sort_query: bool = False,
                 since: dict[str, date] | None = None) -> None:  # fmt: skip
        self.max_bytes = max_bytes
        self.sort_query = sort_query
        self._since = {canonicalize(url): day for url, day in (since or {}).items()}

    @classmethod
    def from_job(cls, job: Job) -> Self | None:
        """Reading sitemaps when the job starts from them or follows robots.txt `Sitemap:` lines."""
        if not (job.start_sitemaps or job.scope.sitemaps):
            return None
        return cls(sort_query=not job.scope.keep_query_order, since=job.sitemap_since)

    def _since_of(self, page: Page) -> date | None:
        meta = page.request.meta or {}
        if meta.get("since"):
            return date.fromisoformat(str(meta["since"]))
        return self._since.get(page.request.url)

    def __call__(self, page: Page) -> None:
        meta = page.request.meta
        if not meta or not meta.get("sitemap"):
            return
        body = page.body
        if body[:2] == _GZIP_MAGIC or len(body) > self.max_bytes:
            # The fetcher already gunzipped one layer; a gzip inside it (or a page built by hand) goes
            # through the same chain and cap. Past the cap this raises body_too_large.
            body = decode_all(body, limit=self.max_bytes, sniff_gzip=True, what="sitemap",
                              setting="the sitemap limit")  # fmt: skip
        kind, urls = parse_sitemap(body)
        if kind == "unknown":
            log.warning("sitemap %s is neither a sitemap nor a list of URLs (content type %r); skipped",
                        page.url, page.content_type or "none")  # fmt: skip
            raise DropPage("not a sitemap")
        if len(urls) >= MAX_SITEMAP_URLS:
            log.warning("sitemap %s lists more than %d URLs (the protocol's limit); the rest are ignored",
                        page.url, MAX_SITEMAP_URLS)  # fmt: skip
        nested = int(meta.get("sitemap_depth", 0)) + 1
        since = self._since_of(page)
        child_meta: dict[str, Any] | None = {"sitemap": True, "sitemap_depth": nested} if kind == "index" else None
        if since is not None:
            old = modified_before(body, since)
            if old:
                log.info("sitemap %s: %d entries last modified before %s skipped", page.url, len(old), since)
                urls = [u for u in urls if u not in old]
            if child_meta is not None:
                child_meta["since"] = since.isoformat()
        for url in urls:
            try:
                req = Request.make(url, depth=page.depth, referer=page.url, meta=child_meta,
                                   sort_query=self.sort_query)  # fmt: skip
            except ValueError:
                continue
            page.requests.append(req)
        log.info("sitemap %s: %d %s", page.url, len(urls), "sitemaps" if kind == "index" else "URLs")
        raise DropPage("sitemap")
