"""Shared by the engine tests: a job against a test server, and a crawl collecting every page."""

from __future__ import annotations

from typing import Any

from crawler import Crawler, Job, Page


def make_job(start_urls: list[str], ca: str, **sections: Any) -> Job:
    """A job with no politeness delays (loopback servers we own), robots off, quick retries; each keyword
    is merged into that section (or replaces a non-mapping key)."""
    data: dict[str, Any] = {
        "start_urls": start_urls,
        "http": {"verify": ca},
        "rate_limit": {"per_host": "unlimited"},
        "scope": {"robots_txt": False},
        "retry": {"backoff": {"initial": 0.05, "max": 0.2}},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return Job.model_validate(data)


async def crawl_all(job: Job) -> tuple[list[Page], Crawler]:
    pages = []
    async with Crawler(job) as crawler:
        async for page in crawler.crawl():
            pages.append(page)
    return pages, crawler
