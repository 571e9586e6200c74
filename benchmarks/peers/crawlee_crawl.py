"""Crawlee for Python's ParselCrawler, the same job: follow every link on the host from the start page, one
item (url, title) per page. Items go through Crawlee's own dataset (`push_data`, its default storage client)
and are written out as JSON lines when the crawl ends (inside the timed run). Concurrency is pinned at 64 (min,
desired and max), robots.txt is off (Crawlee's default), everything else is Crawlee's default (its HTTP client
is impit; https runs turn its certificate check off). Storage lives under --storage and is purged at start.

    python crawlee_crawl.py --start http://127.0.0.1:8080/p/0.html --out items.jsonl --storage DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections import Counter
from typing import Any


async def crawl(start: str, out: str, concurrency: int, insecure: bool) -> dict[str, Any]:
    from crawlee import ConcurrencySettings
    from crawlee.crawlers import ParselCrawler, ParselCrawlingContext
    from crawlee.http_clients import ImpitHttpClient
    from crawlee.storages import Dataset

    versions: Counter[str] = Counter()
    crawler = ParselCrawler(
        # Crawlee's default client (impit); only certificate checks are off for the throwaway TLS CA.
        http_client=ImpitHttpClient(verify=False) if insecure else None,
        concurrency_settings=ConcurrencySettings(
            min_concurrency=concurrency, desired_concurrency=concurrency, max_concurrency=concurrency
        ),
        configure_logging=False,
    )

    @crawler.router.default_handler
    async def handler(context: ParselCrawlingContext) -> None:
        versions[context.http_response.http_version] += 1
        await context.push_data(
            {"url": context.request.url, "title": context.selector.css("title::text").get()}
        )
        await context.enqueue_links()

    started = time.perf_counter()
    stats = await crawler.run([start])
    dataset = await Dataset.open()
    lines = [json.dumps(item) + "\n" async for item in dataset.iterate_items()]
    with open(out, "w", encoding="utf-8") as f:  # noqa: ASYNC230 - the crawl is over, nothing else runs
        f.writelines(lines)
    seconds = time.perf_counter() - started
    return {"pages": stats.requests_finished, "seconds": seconds, "errors": stats.requests_failed,
            "http_version": ",".join(sorted(versions))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--insecure", action="store_true", help="TLS without certificate checks (https runs)")
    args = ap.parse_args()
    os.environ["CRAWLEE_STORAGE_DIR"] = args.storage
    os.environ["CRAWLEE_PURGE_ON_START"] = "true"
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(crawl(args.start, args.out, args.concurrency, args.insecure))))


if __name__ == "__main__":
    main()
