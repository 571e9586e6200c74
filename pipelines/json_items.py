"""Items from JSON responses: key paths (`data.items[0].name`, `results[*].url`), one item per page or one
per element of a list (`extract.items_path`), and URLs to follow found in the JSON (`extract.json_links`).

Key path syntax, a small JSONPath subset: keys separated by dots, an optional leading `$` / `$.`, list
indexes as `[0]` / `[-1]` / `.0`, `[*]` / `[]` / `.*` for every element (or every value of a mapping),
and `["odd.key"]` for keys with dots or brackets. A path without a wildcard gives one value (or None);
a path with one gives a list of the values found.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from crawler import Page

__all__ = ["JsonItemExtractor", "KeyPath", "is_json", "page_json", "parse_key_path", "resolve"]

log = logging.getLogger("crawler.json")


class _Wildcard:
    def __repr__(self) -> str:
        return "*"


WILDCARD: Final = _Wildcard()
Step = str | int | _Wildcard
KeyPath = tuple[Step, ...]

_JSON_TYPES = ("application/json", "text/json", "application/ld+json", "application/problem+json")
_JSON_CACHE = "_json"  # page.item key holding the parsed document, shared by the JSON stages
_NOT_JSON: Final = object()


def parse_key_path(path: str) -> KeyPath:
    """Parse a key path; ValueError says what is wrong with it."""
    if not isinstance(path, str):
        raise ValueError(f"a key path is a string like 'data.items[0].name', not {type(path).__name__}")
    text = path.strip()
    if text.startswith("$"):
        text = text[1:].lstrip(".")
    steps: list[Step] = []
    i, n = 0, len(text)
    expect_key = True  # at the start or after a dot
    while i < n:
        c = text[i]
        if c == ".":
            if expect_key:
                raise ValueError(f"invalid key path {path!r}: empty key at position {i + 1}")
            expect_key = True
            i += 1
            continue
        if c == "[":
            end = text.find("]", i)
            inner = text[i + 1 : end].strip() if end > 0 else None
            if inner is None:
                raise ValueError(f"invalid key path {path!r}: '[' without ']'")
            if inner[:1] in ("'", '"'):
                quote = inner[0]
                close = text.find(quote + "]", i + 2)
                if close < 0:
                    raise ValueError(f"invalid key path {path!r}: unterminated quoted key")
                steps.append(text[i + 2 : close])
                i = close + 2
            else:
                if inner in ("", "*"):
                    steps.append(WILDCARD)
                else:
                    try:
                        steps.append(int(inner))
                    except ValueError:
                        raise ValueError(f"invalid key path {path!r}: [{inner}] is not an index, * or a "
                                         "quoted key") from None  # fmt: skip
                i = end + 1
            expect_key = False
            continue
        if not expect_key:
            raise ValueError(f"invalid key path {path!r}: expected '.' or '[' at position {i + 1}")
        j = i
        while j < n and text[j] not in ".[":
            j += 1
        key = text[i:j].strip()
        if "]" in key:
            raise ValueError(f"invalid key path {path!r}: ']' without '['; quote odd keys as [\"a]b\"]")
        if key == "*":
            steps.append(WILDCARD)
        elif key.lstrip("-").isdigit():
            steps.append(int(key))
        else:
            steps.append(key)
        expect_key = False
        i = j
    if expect_key and steps:
        raise ValueError(f"invalid key path {path!r}: it ends with a dot")
    return tuple(steps)


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
    cached = page.item.get(_JSON_CACHE, _NOT_JSON)
    if cached is not _NOT_JSON:
        return cached
    doc: Any = None
    if page.body and is_json(page):
        try:
            doc = page.json()
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            log.warning("%s: response is not valid JSON (%s)", page.url, exc)
    page.item[_JSON_CACHE] = doc
    return doc


class JsonItemExtractor:
    """Fills `page.item` from a JSON response, or `page.item["_items"]` (one item per element) when
    `items_path` is set; follows URLs found at the `links` key paths. Other pages are left alone.

    An item is the configured fields resolved against the document (or each element); with no fields, the
    element itself when it is a mapping (or `{"value": element}`)."""

    def __init__(self, fields: dict[str, str] | None = None, items_path: str | None = None,
                 links: list[str] | None = None) -> None:  # fmt: skip
        self._fields = [(name, parse_key_path(p)) for name, p in (fields or {}).items()]
        self._items_path = parse_key_path(items_path) if items_path is not None else None
        self._links = [parse_key_path(p) for p in links or []]

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
            page.item["_items"] = [self._item(e) for e in elements]
        elif self._fields:
            page.item.update(self._item(doc))
        for path in self._links:
            found = resolve(doc, path)
            for url in found if isinstance(found, list) else [found]:
                if isinstance(url, str) and url.strip():
                    page.follow(url.strip())
