"""`crawler run JOB.yaml`: run a crawl job."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from crawler.cli import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from crawler.cli._common import configure_logging, install_stop_signals, run_async

log = logging.getLogger("crawler")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run a crawl job", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Crawl as a YAML job file says, writing items and files.",
                       epilog="examples:\n  crawler run configs/demo.yaml\n"
                              "  crawler run job.yaml --set scope.max_pages=50 --set rate_limit.per_host=5/s\n"
                              "  crawler run job.yaml -o items.csv --log-level DEBUG")  # fmt: skip
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key, e.g. --set concurrency.workers=32 (repeatable)")  # fmt: skip
    p.add_argument("-o", "--output", help="items file (.jsonl or .csv); overrides output.items")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-file", help="also write the log to this file")
    p.add_argument("--max-error-rate", type=float, default=None,
                   help="exit 1 when errors/requests exceeds this (default: any error... see docs)")  # fmt: skip
    p.add_argument("--fresh", action="store_true", help="discard saved crawl state before starting")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from crawler import Crawler, JobError

    configure_logging(args.log_level, args.log_file)
    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output.items={args.output}")
    try:
        from crawler._jobfile import load_job

        job = load_job(args.job, overrides=overrides)
    except JobError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE

    crawler = Crawler(job)

    async def go() -> None:
        def force() -> None:
            # Second Ctrl-C: write out what the item writers hold (whole lines) before exiting.
            for stage in getattr(crawler, "_flushers", []):
                try:
                    stage.flush()
                except Exception:  # noqa: BLE001 - exiting anyway
                    pass

        install_stop_signals(crawler.stop, force)
        async with crawler:
            await crawler.run()

    try:
        run_async(go)
    except Exception as exc:  # a crash of the engine itself: say it in one line, keep the exit code honest
        log.error("crawl aborted: %s: %s", type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
        return EXIT_ERRORS
    stats = crawler.stats
    print(stats.summary(), file=sys.stderr)
    if job.output.items:
        print(f"items: {Path(job.output.items).resolve()}", file=sys.stderr)
    if job.output.stats:
        Path(job.output.stats).parent.mkdir(parents=True, exist_ok=True)
        Path(job.output.stats).write_text(json.dumps(stats.as_dict(), indent=2))
    if stats.interrupted:
        return EXIT_INTERRUPTED
    if args.max_error_rate is not None and stats.requests:
        if stats.error_count / stats.requests > args.max_error_rate:
            return EXIT_ERRORS
    return EXIT_OK
