"""Ceiling: a bare aiohttp fetch loop over the site's URLs (no parsing, no dedup), 64 workers sharing one
ClientSession whose connector allows 64 connections. HTTP/1.1 only (aiohttp has no HTTP/2).

    python fetch_aiohttp.py --urls urls.txt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def fetch_all(urls: list[str], concurrency: int) -> dict[str, float]:
    import aiohttp

    pending = iter(urls)
    pages = 0
    nbytes = 0
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal pages, nbytes, errors
            for url in pending:
                async with session.get(url) as r:
                    body = await r.read()
                    if r.status == 200:
                        pages += 1
                        nbytes += len(body)
                    else:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"pages": pages, "bytes": nbytes, "seconds": seconds, "errors": errors}


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
