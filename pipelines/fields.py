"""Field extraction by CSS selectors: `title`, `h1::text`, `a.next::attr(href)`, `li::text[]` (all)."""

from __future__ import annotations

from typing import Any, Self

from crawler.config.job import Job
from crawler.config.specs import FieldSpec, parse_field_spec
from crawler.model.page import Page

__all__ = ["FieldExtractor"]

class FieldExtractor:
    """Fills `page.item` from CSS selectors; non-HTML pages are left alone."""

    def __init__(self, fields: dict[str, str]) -> None:
        self._specs = [(name, parse_field_spec(spec)) for name, spec in fields.items()]

    @classmethod
    def from_job(cls, job: Job) -> Self | None:
        return cls(job.extract.fields) if job.extract.fields else None

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
