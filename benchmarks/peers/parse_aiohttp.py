"""Ceiling for a parsing crawler: the aiohttp fetch loop (fetch_aiohttp.py) plus what every crawl must do per
page, with selectolax's lexbor parser: parse the body, read the title, and read every `a[href]` value (no URL
resolution, no dedup, no output). On real pages this is the one-core parse ceiling.

    python parse_aiohttp.py --urls urls.txt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def fetch_all(urls: list[str], concurrency: int) -> dict[str, float]:
    import aiohttp
    from selectolax.lexbor import LexborHTMLParser

    pending = iter(urls)
    pages = nbytes = errors = links = titles = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal pages, nbytes, errors, links, titles
            for url in pending:
                async with session.get(url) as r:
                    body = await r.read()
                    if r.status != 200:
                        errors += 1
                        continue
                pages += 1
                nbytes += len(body)
                tree = LexborHTMLParser(body)
                title = tree.css_first("title")
                if title is not None and title.text(deep=True, separator=" ", strip=True):
                    titles += 1
                links += sum(1 for node in tree.css("a[href]") if node.attrs.get("href"))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"pages": pages, "bytes": nbytes, "seconds": seconds, "errors": errors, "links": links, "titles": titles}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--urls", required=True)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    with open(args.urls) as f:
        urls = [line.strip() for line in f if line.strip()]
    print(json.dumps(asyncio.run(fetch_all(urls, args.concurrency))))


if __name__ == "__main__":
    main()
