"""How fast a crawl can archive pages: `output.warc` (FastWARC, gzip per record) at compression levels 1
and 6, against warcio (the other maintained WARC library; its writer always compresses at level 9).

    python -m benchmarks.warc_write [--pages 1000] [--size 50000]

Each page is a request and a response record; bodies are random words (text that compresses like HTML).
"""

from __future__ import annotations

import argparse
import io
import random
import string
import tempfile
import time
from pathlib import Path

import httpx

from crawler.model.page import Page
from crawler.model.request import Request
from crawler.output.warc import WarcArchive


def _bodies(size: int, n: int = 20) -> list[bytes]:
    rng = random.Random(7)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(3000)]
    out = []
    for _ in range(n):
        words: list[str] = []
        while sum(map(len, words)) + len(words) < size:
            words.append(rng.choice(vocabulary))
        out.append(f"<html><body><p>{' '.join(words)}</p></body></html>".encode())
    return out


def _pages(bodies: list[bytes], count: int) -> list[Page]:
    headers = httpx.Headers({"content-type": "text/html", "server": "bench"})
    pages = []
    for i in range(count):
        url = f"https://example.com/p{i}.html"
        pages.append(Page(Request.make(url, referer="https://example.com/"), url, 200, "HTTP/1.1", headers,
                          bodies[i % len(bodies)]))  # fmt: skip
    return pages


def ours(pages: list[Page], directory: Path, level: int) -> float:
    archive = WarcArchive(directory / f"ours-{level}.warc.gz", compression_level=level,
                          request_headers={"User-Agent": "bench"})  # fmt: skip
    started = time.perf_counter()
    for page in pages:
        archive.write_sync(page)
    archive.close()
    return time.perf_counter() - started


def warcio(pages: list[Page], directory: Path) -> float:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    started = time.perf_counter()
    with open(directory / "warcio.warc.gz", "wb") as f:
        writer = WARCWriter(f, gzip=True, warc_version="1.1")
        for page in pages:
            http = StatusAndHeaders("200 OK", list(page.headers.items()), protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(page.url, "response", payload=io.BytesIO(page.body),
                                                          http_headers=http))  # fmt: skip
            request = StatusAndHeaders("GET /p HTTP/1.1", [("Host", "example.com")], is_http_request=True)
            writer.write_record(writer.create_warc_record(page.url, "request", payload=io.BytesIO(b""),
                                                          http_headers=request))  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=50_000, help="bytes of each body")
    args = parser.parse_args()
    pages = _pages(_bodies(args.size), args.pages)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, run in (("FastWARC level 1", lambda: ours(pages, directory, 1)),
                          ("FastWARC level 6", lambda: ours(pages, directory, 6)),
                          ("warcio (level 9)", lambda: warcio(pages, directory))):  # fmt: skip
            seconds = run()
            print(f"{name:18} {args.pages / seconds:8.0f} pages/s  {seconds * 1000 / args.pages:6.2f} ms/page")
        for f in sorted(directory.iterdir()):
            print(f"{f.name:20} {f.stat().st_size / 1e6:6.1f} MB")


if __name__ == "__main__":
    main()
