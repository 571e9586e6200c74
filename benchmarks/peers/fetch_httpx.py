"""Ceiling: a bare `httpx.AsyncClient` fetch loop over the site's URLs (no parsing, no dedup), 64 workers
sharing one client. Default client (httpx's own limits and transport) unless told otherwise:

    python fetch_httpx.py --urls urls.txt                       # HTTP/1.1, httpx.AsyncClient()
    python fetch_httpx.py --urls urls.txt --h2 --ca ca.pem      # HTTP/2 over TLS (ALPN), one connection
    python fetch_httpx.py --urls urls.txt --h2c                 # HTTP/2 cleartext, prior knowledge
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any


async def fetch_all(urls: list[str], concurrency: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    import httpx

    pending = iter(urls)
    pages = 0
    nbytes = 0
    errors = 0
    versions: set[str] = set()
    async with httpx.AsyncClient(**kwargs) as client:

        async def worker() -> None:
            nonlocal pages, nbytes, errors
            for url in pending:
                r = await client.get(url)
                versions.add(r.http_version)
                if r.status_code == 200:
                    pages += 1
                    nbytes += len(r.content)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"pages": pages, "bytes": nbytes, "seconds": seconds, "errors": errors,
            "http_version": ",".join(sorted(versions))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--urls", required=True)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--h2", action="store_true", help="HTTP/2 over TLS")
    ap.add_argument("--h2c", action="store_true", help="HTTP/2 cleartext with prior knowledge")
    ap.add_argument("--ca", help="CA bundle for TLS")
    args = ap.parse_args()
    kwargs: dict[str, Any] = {}
    if args.h2:
        kwargs["http2"] = True
    if args.h2c:
        kwargs.update(http1=False, http2=True)
    if args.ca:
        import ssl

        kwargs["verify"] = ssl.create_default_context(cafile=args.ca)
    with open(args.urls) as f:
        urls = [line.strip() for line in f if line.strip()]
    print(json.dumps(asyncio.run(fetch_all(urls, args.concurrency, kwargs))))


if __name__ == "__main__":
    main()
