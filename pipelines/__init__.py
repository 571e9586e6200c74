"""The built-in pipeline stages: what runs on a page after it is fetched. Installed as `crawler.pipelines`.

A stage is any callable `stage(page)` (sync or async). It may edit `page.item`, add work with
`page.follow(url)`, replace the page by returning another `Page`, or drop it by raising `DropPage`.
The engine names these the way a job names its own stages, by import path (`crawler.engine.stages`),
and builds each class with its `from_job(job)`.
"""

from crawler.pipelines.fields import FieldExtractor
from crawler.pipelines.json_items import JsonItemExtractor
from crawler.pipelines.links import LinkExtractor
from crawler.pipelines.paginate import Paginator
from crawler.pipelines.sitemaps import SitemapStage

__all__ = ["FieldExtractor", "JsonItemExtractor", "LinkExtractor", "Paginator", "SitemapStage"]
