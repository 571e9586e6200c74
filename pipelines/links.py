"""Link extraction: `a[href]` (or a configured selector) from the page's one selectolax tree, resolved against
the page URL or its `<base href>`, canonicalised (WHATWG, `crawler.model.url`), filtered by scope, and queued
one level deeper.

The hot path of a crawl of real pages (hundreds of links each, most of them seen before), so per link:
1. The raw href is looked up among those already handled from a page in the same base directory: navigation,
   footers and cross-references repeat on every page, so most links end here, at one set lookup, before any
   string is built. (`?query` hrefs depend on the page, not the directory, and are never kept there.)
2. A new href is cleaned and cut at its fragment, then resolved by string concatenation against the base, cut
   once per page (origin, directory, base without query), and looked up among the absolute URLs handled
   before (the same URL written differently in another directory).
3. Only then is it canonicalised (the WHATWG parser removes dot segments, exactly as resolving against a base
   does), scope-checked and fingerprinted, and it becomes a `Request`.
Both sets are bounded (`_DONE_LIMIT` entries each, ~15 MB) and start over when full: forgetting only costs a
parse, as the frontier's seen set is the exact dedup. Everything the sets skip was queued before, out of
scope or invalid, none of which depends on the page it is found on (depth is checked once per page).

At most `extract.max_links` links are taken from one page (a page with a million links must not balloon the
frontier); a page that had more is logged once per host and counted in the stats (`links_capped`).
"""

from __future__ import annotations

import logging
from typing import Any, Self

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
        # Absolute URLs (fragment cut, not canonical) handled before: queued, out of scope or invalid.
        self._done: set[str] = set()
        # Base directory -> raw href values handled before from a page in it (an href resolves the same way
        # from every page whose base is in one directory, except `?query` hrefs, which are never kept here).
        self._by_directory: dict[str, set[str]] = {}
        self._by_directory_size = 0
        self._capped_hosts: set[str] = set()

    @classmethod
    def from_job(cls, job: Job) -> Self | None:
        """Following `extract.links` within the job's scope; None when the job turns link following off."""
        if not job.extract.links:
            return None
        return cls(job.extract.links, Scope.of_job(job), sort_query=not job.scope.keep_query_order,
                   max_links=job.extract.max_links)  # fmt: skip

    def _base(self, page: Page) -> BaseURL:
        """The page's URL, or its first `<base href>` resolved against it."""
        tree = page.html
        base = canonicalize(page.url)
        # Only the children of <head> are looked at: a <base> elsewhere is not conforming HTML (w3lib, Scrapy's,
        # reads only the first 4 KB). A whole-tree search costs ~0.2 ms a page on real pages, a CSS search of
        # <head> ~15 µs, this loop over its few children ~1-4 µs.
        head = tree.head
        for node in head.iter() if head is not None else ():
            if node.tag == "base":
                href = node.attrs.get("href")
                if href:
                    resolved = join_url(base, href)
                    if resolved is not None:
                        base = resolved
                    break
        return BaseURL(base)

    def _nodes(self, page: Page) -> list[Any]:
        """The selected nodes, at most `max_links` of them (the rest are counted on the page and logged)."""
        nodes: list[Any] = page.html.css(self.selector)
        limit = self.max_links
        if limit is not None and len(nodes) > limit:
            page.links_capped = len(nodes) - limit
            host = page.request.host
            if host not in self._capped_hosts:
                self._capped_hosts.add(host)
                log.warning("%s has %d links; following the first %d (extract.max_links; logged once per host)",
                            page.url, len(nodes), limit)  # fmt: skip
            del nodes[limit:]
        return nodes

    def links(self, page: Page) -> list[str]:
        """Canonical http(s) URLs of the page's links, in document order, duplicates kept; no scope check."""
        base = self._base(page)
        attr = self.attribute
        out: list[str] = []
        for node in self._nodes(page):
            href = clean_href(node.attrs.get(attr) or "")
            absolute = base.resolve(href.partition("#")[0]) if href and href[0] != "#" else None
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
        attr = self.attribute
        done = self._done
        if self._by_directory_size >= _DONE_LIMIT:
            self._by_directory.clear()
            self._by_directory_size = 0
        handled = self._by_directory.get(base.directory)
        if handled is None:
            handled = self._by_directory[base.directory] = set()
        before = len(handled)
        sort_query = self.sort_query
        fresh: set[int] = set()  # two spellings of one URL on this page
        append = page.requests.append
        # Most links end at the first check: the same raw href was handled from this directory before.
        for node in self._nodes(page):
            raw = node.attrs.get(attr)
            if not raw or raw in handled:
                continue
            href = clean_href(raw)
            if not href:
                continue
            if href[0] != "?":
                handled.add(raw)
            hash_at = href.find("#")
            if hash_at >= 0:
                if hash_at == 0:
                    continue  # this page
                href = href[:hash_at]
            absolute = base.resolve(href)
            if not absolute or absolute in done:  # not http(s), this page, or handled from another directory
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
        self._by_directory_size += len(handled) - before
