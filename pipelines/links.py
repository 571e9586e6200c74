"""Link extraction: `a[href]` (or a configured selector) from the page's one selectolax tree, resolved against
the page URL or its `<base href>`, canonicalised (WHATWG, `crawler.model.url`), filtered by scope, and queued
one level deeper.

The hot path of a crawl of real pages (hundreds of links each, most of them seen before), so per link:
1. The href is resolved by string concatenation against the base, prepared once per page (origin, directory,
   base without query); the WHATWG parser in `canonicalize` then removes dot segments, exactly as resolving
   against a base does. Rare forms (`http:x`, a scheme other than the base's) go through the parser whole.
2. The absolute URL is looked up in the set of URLs this extractor already handled (queued or out of scope):
   navigation and footers repeat on every page, so most links end here, before any parsing, hashing or
   object is built. The set is bounded (`_DONE_LIMIT` URLs, ~15 MB) and starts over when full; forgetting only
   costs a parse, as the frontier's seen set is the exact dedup.
3. Only new URLs are canonicalised, scope-checked and fingerprinted, and become `Request`s.

At most `extract.max_links` links are taken from one page (a page with a million links must not balloon the
frontier); a page that had more is logged once per host and counted in the stats (`links_capped`).
"""

from __future__ import annotations

import logging
from typing import Self

from crawler.config.job import Job
from crawler.model.page import Page
from crawler.model.request import Request
from crawler.model.url import BaseURL, canonicalize, clean_href, fingerprint, host_key, join_url
from crawler.politeness.scope import Scope

__all__ = ["LinkExtractor"]

log = logging.getLogger("crawler")

_DONE_LIMIT = 100_000
_DEFAULT_MAX_LINKS = 10_000
class LinkExtractor:
    """The built-in link stage. `max_links` caps links taken per page (None: no cap)."""

    def __init__(self, selector: str = "a[href]", scope: Scope | None = None, *, sort_query: bool = False,
                 attribute: str = "href", max_links: int | None = _DEFAULT_MAX_LINKS) -> None:  # fmt: skip
        self.selector = selector
        self.scope = scope
        self.sort_query = sort_query
        self.attribute = attribute
        self.max_links = max_links
        self._done: set[str] = set()
        self._capped_hosts: set[str] = set()

    @classmethod
    def from_job(cls, job: Job) -> Self | None:
        """Following `extract.links` within the job's scope; None when the job turns link following off."""
        if not job.extract.links:
            return None
        return cls(job.extract.links, Scope.of_job(job), sort_query=not job.scope.keep_query_order,
                   max_links=job.extract.max_links)  # fmt: skip

    def _base(self, page: Page) -> BaseURL:
        tree = page.html
        base = canonicalize(page.url)
        base_node = tree.css_first("base[href]")
        if base_node is not None:
            href = base_node.attrs.get("href")
            if href:
                resolved = join_url(base, href)
                if resolved is not None:
                    base = resolved
        return BaseURL(base)

    def _hrefs(self, page: Page) -> list[str]:
        """The selected nodes' attribute values, cleaned and not empty, from at most `max_links` nodes."""
        attr = self.attribute
        nodes = page.html.css(self.selector)
        limit = self.max_links
        if limit is not None and len(nodes) > limit:
            page.links_capped = len(nodes) - limit
            host = page.request.host
            if host not in self._capped_hosts:
                self._capped_hosts.add(host)
                log.warning("%s has %d links; following the first %d (extract.max_links; logged once per host)",
                            page.url, len(nodes), limit)  # fmt: skip
            del nodes[limit:]
        out: list[str] = []
        for node in nodes:
            href = node.attrs.get(attr)
            if href:
                href = clean_href(href)
                if href:
                    out.append(href)
        return out

    def links(self, page: Page) -> list[str]:
        """Canonical http(s) URLs of the page's links, in document order, duplicates kept; no scope check."""
        base = self._base(page)
        out: list[str] = []
        for href in self._hrefs(page):
            absolute = base.resolve(href)
            if not absolute:
                continue
            try:
                canon = canonicalize(absolute, sort_query=self.sort_query)
            except ValueError:
                continue
            if canon.startswith(("http://", "https://")):
                out.append(canon)
        return out

    def __call__(self, page: Page) -> None:
        if not page.is_html or not page.body:
            return
        depth = page.depth + 1
        scope = self.scope
        if scope is not None and scope.max_depth is not None and depth > scope.max_depth:
            return
        base = self._base(page)
        referer = page.url
        done = self._done
        sort_query = self.sort_query
        fresh: set[int] = set()  # two spellings of one URL on this page
        append = page.requests.append
        for href in self._hrefs(page):
            absolute = base.resolve(href)
            if not absolute or absolute in done:  # not http(s), a link to this page, or handled before
                continue
            if len(done) >= _DONE_LIMIT:
                done.clear()
            # Remembered whatever the verdict: scope and validity do not depend on the page it is found on.
            done.add(absolute)
            try:
                canon = canonicalize(absolute, sort_query=sort_query)
            except ValueError:
                continue
            if not canon.startswith(("http://", "https://")):
                continue
            host = host_key(canon)
            if scope is not None and not scope.allows(canon, host, depth):
                continue
            fp = fingerprint(canon)
            if fp in fresh:
                continue
            fresh.add(fp)
            append(Request(url=canon, depth=depth, referer=referer, host=host, fingerprint=fp))
