"""`crawler run JOB.yaml`: run a crawl job, showing progress, printing a summary, exiting with a code a
script can trust (0 ok, 1 error rate above `max_error_rate` or a crash, 2 bad job or usage, 130 stopped)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from crawler.cli import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from crawler.config.secrets import redact, redact_tree

log = logging.getLogger("crawler")

_EPILOG = """\
examples:
  crawler run configs/demo.yaml
  crawler run job.yaml --set scope.max_pages=50 --set rate_limit.per_host=5/s
  crawler run job.yaml -o items.jsonl.gz --log-level DEBUG --log-file crawl.log
  crawler run job.yaml --set 'start_urls=[https://example.com/a, https://example.com/b]'

--set takes any key of the job file as a dotted path; the value is typed by the job schema
(numbers, booleans, rates like 5/s, lists like [a, b]). Dict keys with dots are fine:
--set rate_limit.hosts.api.example.com=2/s.

exit codes: 0 done, 1 error rate above max_error_rate (or the crawl crashed),
            2 bad job file or usage, 130 stopped by Ctrl-C / SIGTERM.
Ctrl-C once stops cleanly (in-flight pages finish, items are flushed whole); twice quits at once.
"""


NO_ITEMS_WARNING = ("the job has no output.items: items are counted but not written anywhere "
                    "(set output.items, or -o FILE: .jsonl, .json, .csv, or - for standard output)")


class _StartupError(Exception):
    """The crawl could not start (unwritable output, a stage that fails to build, ...): exit 2."""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run a crawl job", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Crawl as a YAML job file says, writing items and files.",
                       epilog=_EPILOG)  # fmt: skip
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key, e.g. --set concurrency.workers=32 (repeatable)")  # fmt: skip
    p.add_argument("-o", "--output", metavar="ITEMS_PATH",
                   help="items file (.jsonl, .json, .csv, optionally .gz; - for JSON lines on standard "
                        "output); overrides output.items")  # fmt: skip
    p.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    p.add_argument("--log-file", help="also write the log to this file")
    p.add_argument("--max-error-rate", type=float, default=None, metavar="RATE",
                   help="exit 1 when failed/fetched URLs is above RATE (0..1); overrides max_error_rate")  # fmt: skip
    p.add_argument("--progress", choices=["auto", "live", "plain", "off"], default="auto",
                   help="live panel on a terminal, log lines otherwise (default: auto)")  # fmt: skip
    p.add_argument("--stall-timeout", type=float, metavar="SECONDS",
                   help="stop with exit 1 when no request finishes for this long, after logging what each "
                        "host waits for (default 600; overrides stall_timeout)")  # fmt: skip
    p.add_argument("--proxy", metavar="URL",
                   help="send every request through this http:// proxy (user:password@ for Basic auth); "
                        "overrides http.proxy and the environment's http_proxy/https_proxy")  # fmt: skip
    p.add_argument("--fresh", action="store_true", help="discard saved crawl state before starting")
    p.add_argument("--recrawl", action="store_true",
                   help="revisit every page the state remembers, with If-None-Match / If-Modified-Since from "
                        "the last fetch: items only for pages that changed (needs state: DIR)")  # fmt: skip
    p.add_argument("--processes", type=int, metavar="N",
                   help="run N engine processes over one sharded frontier (uses N cores); "
                        "overrides concurrency.processes")  # fmt: skip
    p.set_defaults(handler=main)


def _use_rich_logging(console: Any) -> None:
    """Route terminal log lines through the live panel's console so they scroll above it."""
    from rich.logging import RichHandler

    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and getattr(handler, "stream", None) is sys.stderr:
            rich_handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
            rich_handler.setLevel(handler.level)
            root.removeHandler(handler)
            root.addHandler(rich_handler)



def _discard_state(job: Any) -> None:
    """`--fresh`: delete the job's saved frontier (the SQLite state directory, or its Redis keys)."""
    from crawler.engine.runtime import run_async
    from crawler.frontier.backends import discard_state

    if run_async(lambda: discard_state(job)):
        if job.frontier_kind == "redis":
            log.info("--fresh: deleted the Redis state of job %r", job.name)
        else:
            log.info("--fresh: deleted the saved state in %s", job.state)


def main(args: argparse.Namespace) -> int:
    from crawler.cli.crawl_progress import CrawlProgress, choose_mode
    from crawler.config.job import load_job
    from crawler.config.jobfile import JobError
    from crawler.engine.crawler import Crawler
    from crawler.engine.runtime import (
        configure_logging,
        install_stop_signals,
        mask_secrets_in_logs,
        run_async,
    )
    from crawler.model.errors import OutputError

    try:
        configure_logging(args.log_level, args.log_file)
    except OSError as exc:
        print(f"crawler: cannot write the log file {args.log_file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output.items={args.output}")  # a string field: the value is taken verbatim
    if args.max_error_rate is not None:
        overrides.append(f"max_error_rate={args.max_error_rate}")
    if args.processes is not None:
        overrides.append(f"concurrency.processes={args.processes}")
    if args.stall_timeout is not None:
        overrides.append(f"stall_timeout={args.stall_timeout}")
    if args.proxy is not None:
        overrides.append(f"http.proxy={args.proxy}")  # a string field: taken verbatim
    try:
        job = load_job(args.job, overrides=overrides)
    except JobError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE
    mask_secrets_in_logs(job.secrets())
    if not (job.output.items or job.output.failures or job.output.warc):
        log.warning(NO_ITEMS_WARNING)
    if args.fresh:
        try:
            _discard_state(job)
        except Exception as exc:  # a crawl still holds the state, or Redis is unreachable
            print(f"crawler: cannot discard the saved state: {exc}", file=sys.stderr)
            return EXIT_USAGE

    if args.recrawl and (job.frontier_kind != "sqlite" or job.concurrency.processes > 1):
        print("crawler: --recrawl needs state: DIR (where the last run remembered its pages) and one process",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if job.concurrency.processes > 1 and job.frontier_kind == "memory":
        return _run_processes(job, args.log_level)

    try:
        crawler = Crawler(job, recrawl=args.recrawl)
    except Exception as exc:  # any failure to build the crawl is a startup error
        print(f"crawler: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE

    mode = choose_mode(args.progress)
    progress = CrawlProgress(crawler, mode=mode, interval=job.log_every)
    if mode == "live":
        _use_rich_logging(progress.console)

    async def go() -> None:
        # Second Ctrl-C: write out what the item writers hold (whole lines) before exiting.
        install_stop_signals(crawler.stop, crawler.flush_now)
        try:
            await crawler.open()
        except Exception as exc:
            await crawler.close()
            raise _StartupError(str(exc) or type(exc).__name__) from exc
        try:
            async with progress:
                await crawler.run()
        finally:
            await crawler.close()

    try:
        run_async(go)
    except _StartupError as exc:
        log.error("cannot start the crawl: %s", exc)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before the signal handlers were installed
        return EXIT_INTERRUPTED
    except OutputError as exc:  # a full disk: what was fetched is flushed or kept for the resume; exit 1
        log.error("crawl stopped: %s", exc)
        _report(job, crawler.stats)
        return EXIT_ERRORS
    except Exception as exc:  # a crash of the engine itself: say it in one line, keep the exit code honest
        log.error("crawl aborted: %s: %s", type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
        return EXIT_ERRORS
    code = _report(job, crawler.stats)
    if job.frontier_kind == "sqlite" and not args.recrawl and crawler.stats.requests == 0 and code == EXIT_OK:
        print(COMPLETE_HINT.format(state=job.state, job=args.job), file=sys.stderr)
    return code


COMPLETE_HINT = """crawl complete: the state in {state} has nothing left to fetch (every page of this job is done).
  to revisit its pages, asking only for what changed:  crawler run {job} --recrawl
  to start over from the start URLs:                  crawler run {job} --fresh"""


def _run_processes(job: Any, log_level: str) -> int:
    from crawler.engine.processes import fork_children, run_processes
    from crawler.engine.runtime import run_async

    count = job.concurrency.processes
    try:
        children = fork_children(count, log_level)
        stats = run_async(lambda: run_processes(job, count, log_level, children=children))
    except Exception as exc:
        log.error("crawl aborted: %s: %s", type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
        return EXIT_ERRORS
    return _report(job, stats)


def _report(job: Any, stats: Any) -> int:
    """Print the summary, write stats.json, and choose the exit code."""
    secrets = job.secrets()
    print(redact(stats.summary(), secrets), file=sys.stderr)
    if job.output.items and job.output.items != "-":
        print(f"items: {Path(job.output.items).resolve()}", file=sys.stderr)
    code = EXIT_OK
    if job.output.stats:
        try:
            path = Path(job.output.stats)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(redact_tree(stats.as_dict(), secrets), indent=2) + "\n", encoding="utf-8")
            print(f"stats: {path.resolve()}", file=sys.stderr)
        except OSError as exc:
            log.error("cannot write stats to %s: %s", job.output.stats, exc.strerror or exc)
            code = EXIT_ERRORS
    if stats.stalled:
        return EXIT_ERRORS
    if stats.interrupted:
        return EXIT_INTERRUPTED
    rate = stats.error_rate
    if job.max_error_rate is not None and rate > job.max_error_rate:
        log.error("error rate %.1f%% (%d of %d URLs failed) is above max_error_rate %.1f%%",
                  rate * 100, stats.error_count, stats.outcomes, job.max_error_rate * 100)  # fmt: skip
        return EXIT_ERRORS
    return code
