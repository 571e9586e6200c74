"""Field extraction by CSS selectors: `title` (the subtree's text), `h1::text` (the element's own text, as in
Scrapy), `a.next::attr(href)`, `li::text[]` (every match), `{css: ..., re: ...}` (a regex on each value),
and per-route field maps (`routes:`): the first matching route's `fields`, else `extract.fields`."""

from __future__ import annotations

from typing import Any, Self

from crawler.config.job import FieldValue, Job, field_spec
from crawler.config.routes import Routes
from crawler.config.specs import FieldSpec
from crawler.model.page import Page

__all__ = ["FieldExtractor", "extract_fields"]

Specs = list[tuple[str, FieldSpec]]


def _specs(fields: dict[str, FieldValue]) -> Specs:
    return [(name, field_spec(value)) for name, value in fields.items()]


class FieldExtractor:
    """Fills `page.item` from CSS selectors; non-HTML pages are left alone."""

    def __init__(self, fields: dict[str, FieldValue], routes: Routes | None = None) -> None:
        self._specs = _specs(fields)
        self._routes = routes
        # Per route: its own specs, or None for "the job's fields".
        self._route_specs = [None if r.fields is None else _specs(r.fields) for r in routes.routes] if routes else []

    @classmethod
    def from_job(cls, job: Job) -> Self | None:
        if not job.extract.fields and not any(r.fields for r in job.routes):
            return None
        return cls(job.extract.fields, Routes.of_job(job))

    def specs_for(self, url: str) -> Specs:
        """The fields extracted from the page at `url`: its route's, else the job's."""
        if self._routes is not None:
            i = self._routes.index(url)
            if i is not None:
                specs = self._route_specs[i]
                if specs is not None:
                    return specs
        return self._specs

    def __call__(self, page: Page) -> None:
        if not page.is_html:
            return
        specs = self.specs_for(page.url)
        if specs:
            page.item.update(extract_fields(page, specs))


def extract_fields(page: Page, specs: Specs) -> dict[str, Any]:
    """The values of `specs` on an HTML page (also what `crawler fetch` and `crawler shell` show)."""
    tree = page.html
    item: dict[str, Any] = {}
    for name, spec in specs:
        if spec.all:
            item[name] = [v for v in (_value(n, spec) for n in tree.css(spec.css)) if v]
        else:
            node = tree.css_first(spec.css)
            item[name] = None if node is None else _value(node, spec)
    return item


def _value(node: Any, spec: FieldSpec) -> str | None:
    value: str | None
    if spec.kind == "attr":
        raw = node.attributes.get(spec.attr)
        value = None if raw is None else str(raw).strip()
    elif spec.kind == "html":
        value = str(node.html)
    else:
        # `::text` is the element's own text nodes (Scrapy/parsel): `<h1>Title <a>¶</a></h1>` gives "Title".
        value = str(node.text(deep=spec.kind == "all-text", separator=" ", strip=True))
    pattern = spec.pattern
    if pattern is None or value is None:
        return value
    m = pattern.search(value)
    if m is None:
        return None
    return m.group(1) if pattern.groups else m.group(0)
