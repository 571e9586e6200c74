"""`make demo`: start the HTTP/2 + TLS demo site on 127.0.0.1:8443 (a free port if that one is busy),
crawl it with configs/demo.yaml through the library API, print a summary and stop the site.

    python -m tests.site.demo [--pages 2000] [--port 8443] [--set key=value ...]
    python -m tests.site.demo --serve      # only serve the site until Ctrl-C (for the README's examples)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from crawler.demo.site import SiteServer

REPO_ROOT = Path(__file__).resolve().parents[2]

if TYPE_CHECKING:
    from crawler import Stats

T = TypeVar("T")

DEMO_JOB = Path("configs/demo.yaml")
DEMO_HOST_KEY = "127.0.0.1:8443"  # what configs/demo.yaml's start URL names
TLS_DIR = Path("out/demo/tls")  # kept after the demo, so `crawler run` can be pointed at the CA by hand


async def crawl(job_path: Path, overrides: list[str], progress_every: int) -> tuple[Stats, Counter[str]]:
    from crawler import Crawler, Job

    job = Job.from_yaml(job_path, overrides=overrides)
    versions: Counter[str] = Counter()
    async with Crawler(job) as crawler:
        async for page in crawler.crawl():
            versions[page.http_version] += 1
            if progress_every and crawler.stats.pages % progress_every == 0:
                stats = crawler.stats
                print(f"  {stats.pages:>6} pages  {stats.pages_per_second:7.1f} pages/s  last: {page.url}")
    return crawler.stats, versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=2000, help="pages the demo site serves (default 2000)")
    parser.add_argument("--port", type=int, default=8443, help="port to try first (default 8443)")
    parser.add_argument("--job", type=Path, default=DEMO_JOB, help="job file (default configs/demo.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a job key, e.g. --set concurrency.workers=16")  # fmt: skip
    parser.add_argument(
        "--progress-every", type=int, default=500, metavar="N", help="0 for no progress lines"
    )
    parser.add_argument("--serve", action="store_true", help="only serve the demo site until Ctrl-C")
    args = parser.parse_args(argv)

    # The job's relative paths (out/demo/...) mean the repository root, wherever make was run from.
    os.chdir(REPO_ROOT)
    with SiteServer(tls=True, port=args.port, pages=args.pages, tls_dir=TLS_DIR) as site:
        overrides = [f"http.verify={site.ca_path}"]
        if site.host_key != DEMO_HOST_KEY:
            if args.port and site.port != args.port:
                print(f"port {args.port} is busy: the demo site is on {site.url} instead")
            overrides.append(f'start_urls=["{site.url}/"]')
        overrides += args.overrides
        print(f"demo site: {site.url}/ ({args.pages} pages, HTTP/2 over TLS, CA {site.ca_path})")
        if args.serve:
            print("serving until Ctrl-C", flush=True)
            try:
                while site.running:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
            return 0
        print(f"crawling with {args.job} ...")

        started = time.monotonic()
        try:
            stats, versions = _run(crawl(args.job, overrides, args.progress_every))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        wall = time.monotonic() - started
        server_versions = Counter(entry["http_version"] for entry in site.log())

    from crawler import Job

    job = Job.from_yaml(args.job, overrides=overrides)
    print()
    print(stats.summary())
    print()
    print(f"pages      {stats.pages} in {stats.elapsed:.2f}s, {stats.pages_per_second:.1f} pages/s "
          f"(wall {wall:.2f}s)")  # fmt: skip
    print(f"HTTP seen  by the crawler {dict(versions)}, by the server {_versions(server_versions)}")
    if job.output.items:
        items_path = Path(job.output.items).resolve()
        print(f"items      {_count_lines(items_path)} lines in {items_path}")
    if job.output.stats:
        # The library leaves the stats file to its caller (the CLI writes it too).
        stats_path = Path(job.output.stats).resolve()
        stats_path.parent.mkdir(parents=True, exist_ok=True)
        stats_path.write_text(json.dumps(stats.as_dict(), indent=2))
        print(f"stats      {stats_path}")
    return 0 if stats.pages and not stats.error_count else 1


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where installed, as the CLI does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _versions(counts: Counter[str]) -> dict[str, int]:
    return {f"HTTP/{v}": n for v, n in counts.items()}


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)


if __name__ == "__main__":
    sys.exit(main())
