"""Field extraction by CSS selectors: `title`, `h1::text`, `a.next::attr(href)`, `li::text[]` (all)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selectolax.lexbor import LexborHTMLParser as HTMLParser

if TYPE_CHECKING:
    from crawler import Page

__all__ = ["FieldExtractor", "FieldSpec", "parse_field_spec"]

_SPEC_RE = re.compile(r"^(?P<css>.*?)(?:::(?P<kind>text|attr\((?P<attr>[^)]+)\)|html))?(?P<all>\[\])?\s*$", re.S)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    css: str
    kind: str  # "text" | "attr" | "html"
    attr: str | None
    all: bool


def parse_field_spec(spec: str) -> FieldSpec:
    """Parse `selector[::text|::attr(name)|::html][[]]`; raises ValueError for an invalid selector."""
    m = _SPEC_RE.match(spec.strip())
    if not m or not m.group("css").strip():
        raise ValueError(f"{spec!r} is not a CSS selector with an optional ::text, ::attr(name) or ::html")
    css = m.group("css").strip()
    try:
        HTMLParser("<html></html>").css(css)
    except Exception as exc:  # selectolax raises ValueError or its own errors for bad selectors
        raise ValueError(f"invalid CSS selector {css!r}: {exc}") from None
    kind = (m.group("kind") or "text").split("(", 1)[0]
    return FieldSpec(css, kind, (m.group("attr") or "").strip().strip("\"'") or None, bool(m.group("all")))


class FieldExtractor:
    """Fills `page.item` from CSS selectors; non-HTML pages are left alone."""

    def __init__(self, fields: dict[str, str]) -> None:
        self._specs = [(name, parse_field_spec(spec)) for name, spec in fields.items()]

    def __call__(self, page: Page) -> None:
        if not self._specs or not page.is_html:
            return
        tree = page.html
        item = page.item
        for name, spec in self._specs:
            if spec.all:
                item[name] = [v for v in (self._value(n, spec) for n in tree.css(spec.css)) if v is not None]
            else:
                node = tree.css_first(spec.css)
                item[name] = None if node is None else self._value(node, spec)

    @staticmethod
    def _value(node: Any, spec: FieldSpec) -> str | None:
        if spec.kind == "attr":
            value = node.attributes.get(spec.attr)
            return None if value is None else str(value).strip()
        if spec.kind == "html":
            return str(node.html)
        return str(node.text(deep=True, separator=" ", strip=True))
