"""Pagination: from a listing or API page, queue the next page. Four styles, any combination:

- `link_header`: the `Link: <url>; rel="next"` response header;
- `next_field` / `next_selector`: a JSON key path or an HTML CSS selector holding the next URL;
- `param`: a page-number query parameter, incremented until a page has no items;
- `cursor_field` + `cursor_param`: a cursor read from the JSON and sent back as a query parameter.

The next page keeps the depth of the page it came from (a listing's page 7 is no deeper than page 1), and
its position in the chain travels in `request.meta["page_index"]` for `max_pages`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from crawler.config.job import Job, PaginateConfig
from crawler.config.specs import parse_key_path
from crawler.model.page import Page
from crawler.model.request import Request
from crawler.pipelines.json_items import is_json, page_json, resolve

if TYPE_CHECKING:
    import httpx

__all__ = ["Paginator", "next_links", "with_query_param"]

_LINK_RE = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_REL_RE = re.compile(r"""rel\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s;,]+))""", re.I)


def next_links(headers: httpx.Headers) -> list[str]:
    """Targets of `Link` header entries whose rel includes `next` (RFC 8288), in order."""
    out: list[str] = []
    for value in headers.get_list("link"):
        for m in _LINK_RE.finditer(value):
            rel = _REL_RE.search(m.group(2) or "")
            if rel is None:
                continue
            rels = (rel.group(1) or rel.group(2) or rel.group(3) or "").lower().split()
            if "next" in rels and m.group(1).strip():
                out.append(m.group(1).strip())
    return out


def with_query_param(url: str, name: str, value: str) -> str:
    """`url` with query parameter `name` set to `value` (replaced in place, or appended)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == name for k, _ in pairs):
        pairs = [(k, value if k == name else v) for k, v in pairs]
        # A repeated parameter keeps only its first occurrence.
        seen = False
        deduped = []
        for k, v in pairs:
            if k == name:
                if seen:
                    continue
                seen = True
            deduped.append((k, v))
        pairs = deduped
    else:
        pairs.append((name, value))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), parts.fragment))


def _query_param(url: str, name: str) -> str | None:
    for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if k == name:
            return v
    return None


class Paginator:
    """The pagination stage, built from the job's `paginate:` section."""

    def __init__(
        self, config: PaginateConfig, *, items_path: str | None = None, sort_query: bool = False
    ) -> None:
        self.config = config
        self._match = re.compile("|".join(f"(?:{p})" for p in config.match)) if config.match else None
        self._next_field = parse_key_path(config.next_field) if config.next_field else None
        self._cursor_field = parse_key_path(config.cursor_field) if config.cursor_field else None
        path = config.items_path or items_path
        self._items_path = parse_key_path(path) if path else None
        self._sort_query = sort_query

    @classmethod
    def from_job(cls, job: Job) -> Self | None:
        if job.paginate is None:
            return None
        return cls(job.paginate, items_path=job.extract.items_path, sort_query=not job.scope.keep_query_order)

    def __call__(self, page: Page) -> None:
        cfg = self.config
        if self._match is not None and not self._match.search(page.url):
            return
        meta = page.request.meta or {}
        index = int(meta.get("page_index", 1))
        if cfg.max_pages is not None and index >= cfg.max_pages:
            return
        found: list[str] = []
        if cfg.link_header:
            found += next_links(page.headers)
        json_doc = page_json(page) if is_json(page) else None
        if self._next_field is not None and json_doc is not None:
            value = resolve(json_doc, self._next_field)
            if isinstance(value, str) and value.strip():
                found.append(value.strip())
        if cfg.next_selector and page.is_html and page.body:
            node = page.html.css_first(cfg.next_selector)
            href = node.attributes.get("href") if node is not None else None
            if href and href.strip():
                found.append(href.strip())
        stop_here = cfg.stop_on_empty and self._empty(page, json_doc)
        if self._cursor_field is not None and json_doc is not None and not stop_here:
            cursor = resolve(json_doc, self._cursor_field)
            if cursor not in (None, "", False) and not isinstance(cursor, dict | list):
                assert cfg.cursor_param is not None
                found.append(with_query_param(page.url, cfg.cursor_param, str(cursor)))
        if cfg.param and not stop_here:
            current = _query_param(page.url, cfg.param)
            number = cfg.start if current is None else _as_int(current)
            if number is not None:
                found.append(with_query_param(page.url, cfg.param, str(number + cfg.step)))
        if not found:
            return
        next_meta = {k: v for k, v in meta.items() if k != "sitemap"}
        next_meta["page_index"] = index + 1
        seen: set[str] = set()
        # The link extractor may already have queued the same URL one level deeper: the next page of a
        # listing is a sibling, so it takes that request's place at this page's depth.
        queued = {r.fingerprint: i for i, r in enumerate(page.requests) if r.fingerprint}
        for href in found:
            try:
                url = urljoin(page.url, href)
            except ValueError:  # a next link no URL parser accepts: no next page
                continue
            if url in seen or url == page.url or not url.startswith(("http://", "https://")):
                continue
            seen.add(url)
            try:
                req = Request.make(url, depth=page.depth, referer=page.url, meta=dict(next_meta),
                                   sort_query=self._sort_query)  # fmt: skip
            except ValueError:  # not a valid URL
                continue
            at = queued.get(req.fingerprint)
            if at is None:
                page.requests.append(req)
            else:
                page.requests[at] = req

    def _empty(self, page: Page, json_doc: Any) -> bool:
        """A page with no items: an empty body; JSON whose items (`items_path`, else every list in the top
        object, else the document) are empty; HTML where `items_selector` matches nothing."""
        if not page.body.strip():
            return True
        if json_doc is not None or is_json(page):
            if json_doc is None:
                return True  # JSON that does not parse: nothing to page through
            if self._items_path is not None:
                return _is_empty(resolve(json_doc, self._items_path))
            if isinstance(json_doc, dict):
                lists = [v for v in json_doc.values() if isinstance(v, list)]
                if lists:
                    return all(not v for v in lists)
            return _is_empty(json_doc)
        if self.config.items_selector and page.is_html:
            return page.html.css_first(self.config.items_selector) is None
        return False


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list | dict) and not value)


def _as_int(value: str) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        return None
