"""The stages a job's config asks for beyond links, fields, files and the item writer: sitemaps, JSON
items and pagination. The engine installs them first in the pipeline (`job_stages(job, owner=crawler)`)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from pipelines.json_items import JsonItemExtractor
from pipelines.paginate import Paginator
from pipelines.sitemaps import SitemapStage

if TYPE_CHECKING:
    from crawler import Job

__all__ = ["job_stages"]

_built_for: weakref.WeakSet[Any] = weakref.WeakSet()


def job_stages(job: Job, owner: Any = None) -> list[Any]:
    """Sitemap reader, JSON item extractor and paginator, as configured, in that order.

    With an `owner` (a Crawler), the stages are built once per owner: a second call returns `[]`, so a
    caller that passes them as user stages and an engine that installs them itself never double them.
    """
    if owner is not None:
        if owner in _built_for:
            return []
        _built_for.add(owner)
    sort_query = not job.scope.keep_query_order
    stages: list[Any] = []
    if job.start_sitemaps or job.scope.sitemaps:
        stages.append(SitemapStage(sort_query=sort_query))
    extract = job.extract
    if extract.json_fields or extract.items_path or extract.json_links:
        stages.append(JsonItemExtractor(extract.json_fields, extract.items_path, extract.json_links))
    if job.paginate is not None:
        stages.append(Paginator(job.paginate, items_path=extract.items_path, sort_query=sort_query))
    return stages
