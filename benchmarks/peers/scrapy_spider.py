"""Scrapy, the equivalent of our crawl: follow every link on the start page's host, one item (url, title) per page,
written by Scrapy's JSON lines feed exporter. 64 concurrent requests (in total and per domain), robots.txt
off, no delay, no autothrottle; everything else is Scrapy's default.

    python scrapy_spider.py --start http://127.0.0.1:8080/p/0.html --out items.jsonl [--h2]

`--h2` routes https:// through Scrapy's HTTP/2 download handler (TLS + ALPN; Scrapy has no cleartext h2).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess


class SiteSpider(scrapy.Spider):
    name = "bench"

    def __init__(self, start: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_urls = [start]
        # Same host only, as our crawler and Crawlee do by default (real pages link to the web at large).
        self.allowed_domains = [urlsplit(start).hostname or ""]
        self.protocols: Counter[str] = Counter()

    def parse(self, response: scrapy.http.Response) -> Any:
        self.protocols[str(response.protocol)] += 1
        yield {"url": response.url, "title": response.css("title::text").get()}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--h2", action="store_true")
    args = ap.parse_args()
    settings: dict[str, Any] = {
        "CONCURRENT_REQUESTS": args.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
        "ROBOTSTXT_OBEY": False,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "FEEDS": {args.out: {"format": "jsonlines", "overwrite": True}},
    }
    if args.h2:
        settings["DOWNLOAD_HANDLERS"] = {"https": "scrapy.core.downloader.handlers.http2.H2DownloadHandler"}
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(SiteSpider)
    started = time.perf_counter()
    process.crawl(crawler, start=args.start)
    process.start()
    seconds = time.perf_counter() - started
    stats = crawler.stats.get_stats() if crawler.stats else {}
    print(json.dumps({
        "pages": stats.get("response_received_count", 0),
        "items": stats.get("item_scraped_count", 0),
        "seconds": seconds,
        "errors": stats.get("log_count/ERROR", 0),
        "http_version": ",".join(sorted(crawler.spider.protocols)) if crawler.spider else "",
    }))  # fmt: skip


if __name__ == "__main__":
    main()
