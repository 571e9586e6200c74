"""Link extraction with selectolax: `a[href]` (or a configured selector), resolved against the page URL
or its `<base href>`, canonicalised, filtered by scope, queued one level deeper.

Links repeat across pages (navigation, footers), so the absolute URL -> canonical request identity is
cached: a repeated link costs one dict lookup instead of a parse.
"""

from __future__ import annotations

from typing import Self
from urllib.parse import urljoin

from crawler.config.job import Job
from crawler.model.page import Page
from crawler.model.request import Request
from crawler.model.url import canonicalize, fingerprint, host_key
from crawler.politeness.scope import Scope

__all__ = ["LinkExtractor"]

_CACHE_LIMIT = 200_000
_SKIP_SCHEMES = ("mailto:", "javascript:", "tel:", "data:", "ftp:", "#")


class LinkExtractor:
    def __init__(self, selector: str = "a[href]", scope: Scope | None = None, *, sort_query: bool = False,
                 attribute: str = "href") -> None:  # fmt: skip
        self.selector = selector
        self.scope = scope
        self.sort_query = sort_query
        self.attribute = attribute
        self._identity: dict[str, tuple[str, str, int]] = {}

    @classmethod
    def from_job(cls, job: Job) -> Self | None:
        """Following `extract.links` within the job's scope; None when the job turns link following off."""
        if not job.extract.links:
            return None
        return cls(job.extract.links, Scope.of_job(job), sort_query=not job.scope.keep_query_order)

    def _identify(self, absolute: str) -> tuple[str, str, int]:
        ident = self._identity.get(absolute)
        if ident is None:
            canon = canonicalize(absolute, sort_query=self.sort_query)
            ident = (canon, host_key(canon), fingerprint(canon))
            if len(self._identity) >= _CACHE_LIMIT:
                self._identity.clear()
            self._identity[absolute] = ident
        return ident

    def links(self, page: Page) -> list[str]:
        """Absolute http(s) URLs of the page's links, fragments removed, in document order."""
        tree = page.html
        base = page.url
        base_node = tree.css_first("base[href]")
        if base_node is not None:
            href = base_node.attributes.get("href")
            if href:
                try:
                    base = urljoin(page.url, href.strip())
                except ValueError:
                    base = page.url
        scheme_end = base.find("://")
        path_start = base.find("/", scheme_end + 3)
        origin = base if path_start < 0 else base[:path_start]
        out: list[str] = []
        attr = self.attribute
        for node in tree.css(self.selector):
            href = node.attributes.get(attr)
            if not href:
                continue
            href = href.strip()
            if not href or href.startswith(_SKIP_SCHEMES):
                continue
            if href.startswith(("http://", "https://")):
                absolute = href
            elif href[0] == "/" and not href.startswith("//"):
                absolute = origin + href
            else:
                try:
                    absolute = urljoin(base, href)
                except ValueError:  # a link no URL parser accepts (`//[::1`): not a link
                    continue
                if not absolute.startswith(("http://", "https://")):
                    continue
            hash_at = absolute.find("#")
            if hash_at >= 0:
                absolute = absolute[:hash_at]
            out.append(absolute)
        return out

    def __call__(self, page: Page) -> None:
        if not page.is_html or not page.body:
            return
        depth = page.depth + 1
        scope = self.scope
        if scope is not None and scope.max_depth is not None and depth > scope.max_depth:
            return
        referer = page.url
        seen_here: set[int] = set()
        append = page.requests.append
        for absolute in self.links(page):
            try:
                canon, host, fp = self._identify(absolute)
            except ValueError:  # `http://[::1`, `http://[x]/`: a server's broken link is skipped, not an error
                continue
            if fp in seen_here:
                continue
            seen_here.add(fp)
            if scope is not None and not scope.allows(canon, host, depth):
                continue
            append(Request(url=canon, depth=depth, referer=referer, host=host, fingerprint=fp))
