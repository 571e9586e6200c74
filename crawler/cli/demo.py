"""`crawler demo`: serve the HTTP/2 + TLS demo site on 127.0.0.1:8443 (a free port if that one is busy),
crawl it with the demo job (crawler/demo/demo.yaml) through the library API, print a summary with pages/s,
and stop the site. `--serve` only serves the site until Ctrl-C (for the README's library example).

Needs the `demo` extra (hypercorn, trustme). Paths are relative to the current directory: the site's CA
goes to out/demo/tls/ca.pem, the items and stats to out/demo/ (the job's `output`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from crawler.cli import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from crawler.config.job import Job
    from crawler.output.stats import Stats

DEMO_HOST_KEY = "127.0.0.1:8443"  # what the demo job's start URL names
TLS_DIR = Path("out/demo/tls")  # kept after the demo, so `crawler run` can be pointed at the CA by hand

_EPILOG = """\
examples:
  crawler demo                          serve 2,000 pages, crawl them, print pages/s
  crawler demo --pages 500 --set concurrency.workers=16
  crawler demo --serve                  only serve the site (https://127.0.0.1:8443/) until Ctrl-C
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="serve a local HTTP/2 demo site and crawl it",
                       description="Serve a generated HTTP/2 + TLS site on loopback and crawl it with the demo job.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--pages", type=int, default=2000, help="pages the demo site serves (default 2000)")
    p.add_argument("--port", type=int, default=8443, help="port to try first (default 8443; 0: any)")
    p.add_argument("--job", type=Path, default=None, help="job file (default: the packaged demo job)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key, e.g. --set concurrency.workers=16")  # fmt: skip
    p.add_argument("--progress-every", type=int, default=500, metavar="N", help="0 for no progress lines")
    p.add_argument("--serve", action="store_true", help="only serve the demo site until Ctrl-C")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from crawler.demo.extra import missing_demo_packages

    missing = missing_demo_packages()
    if missing:
        print(f"crawler demo: {' and '.join(missing)} not installed. The demo site needs the 'demo' extra:\n"
              "  pip install 'crawler[demo]'      (in a clone: pip install -e '.[demo]', or make demo)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE

    from crawler.config.job import load_job
    from crawler.config.jobfile import JobError
    from crawler.demo.site import DEMO_JOB, SiteServer
    from crawler.engine.runtime import run_async

    job_path = args.job or DEMO_JOB
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
            return EXIT_OK
        try:
            job = load_job(job_path, overrides=overrides)
        except JobError as exc:
            print(exc.render(), file=sys.stderr)
            return EXIT_USAGE
        print(f"crawling with {job_path} ...", flush=True)

        started = time.monotonic()
        try:
            stats, versions = run_async(lambda: _crawl(job, args.progress_every))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        wall = time.monotonic() - started
        server_versions = Counter(entry["http_version"] for entry in site.log())

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
        # The library leaves the stats file to its caller (`crawler run` writes it too).
        stats_path = Path(job.output.stats).resolve()
        stats_path.parent.mkdir(parents=True, exist_ok=True)
        stats_path.write_text(json.dumps(stats.as_dict(), indent=2))
        print(f"stats      {stats_path}")
    return EXIT_OK if stats.pages and not stats.error_count else EXIT_ERRORS


async def _crawl(job: Job, progress_every: int) -> tuple[Stats, Counter[str]]:
    from crawler.engine.crawler import Crawler

    versions: Counter[str] = Counter()
    async with Crawler(job) as crawler:
        async for page in crawler.crawl():
            versions[page.http_version] += 1
            if progress_every and crawler.stats.pages % progress_every == 0:
                stats = crawler.stats
                print(f"  {stats.pages:>6} pages  {stats.pages_per_second:7.1f} pages/s  last: {page.url}")
    return crawler.stats, versions


def _versions(counts: Counter[str]) -> dict[str, int]:
    return {f"HTTP/{v}": n for v, n in counts.items()}


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)
