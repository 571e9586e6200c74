"""Items from JSON responses: key paths (`data.items[0].name`, `results[*].url`), one item per page or one
per element of a list (`extract.items_path`), and URLs to follow found in the JSON (`extract.json_links`).

Key path syntax, a small JSONPath subset: keys separated by dots, an optional leading `$` / `$.`, list
indexes as `[0]` / `[-1]` / `.0`, `[*]` / `[]` / `.*` for every element (or every value of a mapping),
and `["odd.key"]` for keys with dots or brackets. A path without a wildcard gives one value (or None);
a path with one gives a list of the values found.
"""

from __future__ import annotations

import logging
from typing import Any, Self

from crawler.config.job import Job
from crawler.config.specs import WILDCARD, KeyPath, Step, parse_key_path
from crawler.model.page import Page

__all__ = ["JsonItemExtractor", "is_json", "page_json", "resolve"]

log = logging.getLogger("crawler.json")


_JSON_TYPES = ("application/json", "text/json", "application/ld+json", "application/problem+json")


def resolve(doc: Any, path: KeyPath) -> Any:
    """The value at `path` in `doc`: None when missing; a list of the values found when the path has a
    wildcard (missing ones are left out)."""
    if WILDCARD not in path:
        return _get_one(doc, path)
    out: list[Any] = []
    _collect(doc, path, out)
    return out


def _step(node: Any, step: Step) -> Any:
    if isinstance(step, int):
        if isinstance(node, list):
            return node[step] if -len(node) <= step < len(node) else None
        if isinstance(node, dict):
            return node.get(str(step))
        return None
    if isinstance(node, dict):
        return node.get(step)
    return None


def _get_one(node: Any, path: KeyPath) -> Any:
    for step in path:
        node = _step(node, step)
        if node is None:
            return None
    return node


def _collect(node: Any, path: KeyPath, out: list[Any]) -> None:
    for k, step in enumerate(path):
        if step is WILDCARD:
            children = (
                node if isinstance(node, list) else list(node.values()) if isinstance(node, dict) else []
            )
            for child in children:
                _collect(child, path[k + 1 :], out)
            return
        node = _step(node, step)
        if node is None:
            return
    out.append(node)


def is_json(page: Page) -> bool:
    ct = page.content_type
    if ct:
        return ct in _JSON_TYPES or ct.endswith("+json")
    return page.body[:64].lstrip()[:1] in (b"{", b"[")


def page_json(page: Page) -> Any:
    """The page's parsed JSON document, parsed once and shared by the JSON stages; `None` when the page
    is not JSON or does not parse (check `is_json` first to tell the two apart)."""
    if not page.body or not is_json(page):
        return None
    try:
        return page.json()
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        # The page keeps the parse error for later callers: say it once per page.
        if not getattr(exc, "logged", False):
            exc.logged = True  # type: ignore[attr-defined]
            log.warning("%s: response is not valid JSON (%s)", page.url, exc)
        return None


class JsonItemExtractor:
    """Fills `page.item` from a JSON response, or `page.items` (one item per element) when
    `items_path` is set; follows URLs found at the `links` key paths. Other pages are left alone.

    An item is the configured fields resolved against the document (or each element); with no fields, the
    element itself when it is a mapping (or `{"value": element}`)."""

    def __init__(self, fields: dict[str, str] | None = None, items_path: str | None = None,
                 links: list[str] | None = None) -> None:  # fmt: skip
        self._fields = [(name, parse_key_path(p)) for name, p in (fields or {}).items()]
        self._items_path = parse_key_path(items_path) if items_path is not None else None
        self._links = [parse_key_path(p) for p in links or []]

    @classmethod
    def from_job(cls, job: Job) -> Self | None:
        extract = job.extract
        if not (extract.json_fields or extract.items_path or extract.json_links):
            return None
        return cls(extract.json_fields, extract.items_path, extract.json_links)

    def _item(self, node: Any) -> dict[str, Any]:
        if self._fields:
            return {name: resolve(node, path) for name, path in self._fields}
        return dict(node) if isinstance(node, dict) else {"value": node}

    def __call__(self, page: Page) -> None:
        if not is_json(page):
            return
        doc = page_json(page)
        if doc is None:
            return
        if self._items_path is not None:
            found = resolve(doc, self._items_path)
            elements = found if isinstance(found, list) else [] if found is None else [found]
            page.items = [self._item(e) for e in elements]
        elif self._fields:
            page.item.update(self._item(doc))
        for path in self._links:
            found = resolve(doc, path)
            for url in found if isinstance(found, list) else [found]:
                if isinstance(url, str) and url.strip():
                    page.follow(url.strip())
