"""The built-in pipeline stages: what runs on a page after it is fetched. Installed as `crawler.pipelines`.

A stage is any callable `stage(page)` (sync or async). It may edit `page.item`, add work with
`page.follow(url)`, replace the page by returning another `Page`, or drop it by raising `DropPage`.
The engine names these the way a job names its own stages, by import path (`crawler.engine.stages`),
and builds each class with its `from_job(job)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crawler.pipelines.fields import FieldExtractor
    from crawler.pipelines.json_items import JsonItemExtractor
    from crawler.pipelines.links import LinkExtractor
    from crawler.pipelines.paginate import Paginator
    from crawler.pipelines.sitemaps import SitemapStage

__all__ = ["FieldExtractor", "JsonItemExtractor", "LinkExtractor", "Paginator", "SitemapStage"]

# Loaded on first use: the engine imports only the stages a job needs (`crawler.pipelines.links`), and
# importing one stage's module must not import the others through this package.
_LAZY = {
    "FieldExtractor": "crawler.pipelines.fields",
    "JsonItemExtractor": "crawler.pipelines.json_items",
    "LinkExtractor": "crawler.pipelines.links",
    "Paginator": "crawler.pipelines.paginate",
    "SitemapStage": "crawler.pipelines.sitemaps",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'crawler.pipelines' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
