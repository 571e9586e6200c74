"""`crawler download`: fetch URLs or an (aria2-style) input file into a directory: resumable, verified,
atomic, segmented. Exit 0 when every file is complete and verified, 1 when any failed, 2 on usage errors."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

from crawler.cli import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

_EPILOG = """\
input file (-i): one URL per line, or aria2's format, options indented under their URL:
  https://example.com/a.iso
    out=debian.iso
    dir=isos
    checksum=sha-256=9f86d08...
    header=Authorization: Bearer XYZ

examples:
  crawler download https://example.com/a.iso -d downloads -x 8
  crawler download -i urls.txt -d out -j 32 --rate-limit 10/s --json
  cat urls.txt | crawler download -i - --limit-rate 5M
"""


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return n


def _count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 0 <= n <= 1000:
        raise argparse.ArgumentTypeError(f"{value!r} must be between 0 and 1000")
    return n


def _seconds(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not n > 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be positive")
    return n


def _max_time(value: str) -> float | None:
    try:
        n = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if n < 0 or n != n:
        raise argparse.ArgumentTypeError(f"{value!r} must be 0 (no limit) or more")
    return n or None


def _size(value: str) -> int:
    from crawler.config.units import parse_size

    try:
        size = parse_size(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not size:
        raise argparse.ArgumentTypeError(f"{value!r} must be more than 0 bytes")
    return size


def _rate(value: str) -> Any:
    from crawler.config.units import parse_rate

    try:
        return parse_rate(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _checksum(value: str) -> Any:
    from crawler.downloader import Checksum, InputError

    try:
        return Checksum.parse(value)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _header(value: str) -> tuple[str, str]:
    from crawler.downloader.entries import InputError, parse_header

    try:
        return parse_header(value)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("download", help="download URLs or an input file: resumable, verified, segmented",
                       description="Download files: resumable (NAME.part + sidecar, Range/If-Range), verified\n"
                                   "(--checksum, checksum= in -i files), atomic (renamed into place when\n"
                                   "complete), -j files at once, -x ranged segments per file.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("urls", nargs="*", metavar="URL", help="URLs to download")
    p.add_argument("-i", "--input-file", metavar="FILE", help="URL list or aria2 input file ('-' for stdin)")
    p.add_argument("-d", "--dir", default=".", metavar="DIR", help="destination directory (default: .)")
    p.add_argument("-o", "--out", metavar="NAME", help="file name (a single URL only)")
    p.add_argument("-j", "--jobs", type=_positive, default=16, metavar="N", help="files at once (default 16)")
    p.add_argument("-x", "--split", type=_positive, default=1, metavar="N",
                   help="ranged segments per file when the server allows ranges (default 1, max 64)")  # fmt: skip
    p.add_argument("-k", "--min-split-size", type=_size, default=4 << 20, metavar="SIZE",
                   help="smallest segment -x makes (default 4MiB)")  # fmt: skip
    p.add_argument("--checksum", type=_checksum, metavar="ALGO=HEX",
                   help="expected digest, e.g. sha-256=HEX (a single URL only; md5, sha-1, sha-512 too)")  # fmt: skip
    p.add_argument("--max-size", type=_size, metavar="SIZE", help="fail a file larger than this (e.g. 2GB)")
    p.add_argument("--rate-limit", type=_rate, metavar="RATE",
                   help="requests per host, e.g. 10/s or 100/m (default: unlimited)")  # fmt: skip
    p.add_argument("--max-per-host", type=_positive, default=16, metavar="N",
                   help="requests in flight per host (default 16)")  # fmt: skip
    p.add_argument("--limit-rate", type=_size, metavar="SPEED", help="cap the total speed, bytes/s (e.g. 5M)")
    p.add_argument("--no-continue", dest="resume", action="store_false",
                   help="ignore partial downloads from earlier runs and start over")  # fmt: skip
    coll = p.add_mutually_exclusive_group()
    coll.add_argument("--on-collision", dest="collision", choices=("rename", "overwrite", "fail", "skip"),
                      help="when the name is taken, by another entry of this run or by a file that is not this "
                           "URL's: rename (name.1.ext, the default), overwrite, fail, or skip (keep a file of "
                           "the same size)")  # fmt: skip
    coll.add_argument("--rename", dest="collision", action="store_const", const="rename",
                      help="same as --on-collision rename")  # fmt: skip
    coll.add_argument("--overwrite", dest="collision", action="store_const", const="overwrite",
                      help="same as --on-collision overwrite")  # fmt: skip
    coll.add_argument("--skip-existing", dest="collision", action="store_const", const="skip",
                      help="same as --on-collision skip")  # fmt: skip
    p.set_defaults(collision="rename")
    p.add_argument("-H", "--header", dest="headers", type=_header, action="append", default=[],
                   metavar="'K: V'", help="extra request header (repeatable)")  # fmt: skip
    p.add_argument("-U", "--user-agent", metavar="UA", help="User-Agent header")
    p.add_argument("--http1", action="store_true", help="HTTP/1.1 only (default: HTTP/2 where offered)")
    p.add_argument("--max-redirects", "--max-redirs", type=_count, default=10, metavar="N",
                   help="redirects followed per request (default 10; 0: none); a hop to another origin drops "
                        "the -H and header= headers")  # fmt: skip
    p.add_argument("-m", "--max-tries", type=_positive, default=4, metavar="N",
                   help="attempts per request, Retry-After honoured (default 4)")  # fmt: skip
    p.add_argument("--timeout", type=_seconds, default=30.0, metavar="SEC", help="per read (default 30)")
    p.add_argument("--max-time", type=_max_time, default=86_400.0, metavar="SEC",
                   help="give up on a file after this long, retries and mirrors included; the part is kept "
                        "(default 86400, a day; 0: no limit)")  # fmt: skip
    p.add_argument("-Y", "--speed-limit", type=_size, metavar="SPEED",
                   help="fail a URL that streams slower than SPEED bytes/s for --speed-time (e.g. 1K)")  # fmt: skip
    p.add_argument("-y", "--speed-time", type=_seconds, default=30.0, metavar="SEC",
                   help="how long a URL may stay under --speed-limit (default 30)")  # fmt: skip
    p.add_argument("--connect-timeout", type=_seconds, default=10.0, metavar="SEC", help="default 10")
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--ca-bundle", metavar="FILE", help="trust this CA bundle")
    p.add_argument("--proxy", metavar="URL",
                   help="send requests through this proxy (http://[user:pass@]host:port); without it, "
                        "http_proxy/https_proxy/no_proxy from the environment apply, as for curl and wget")  # fmt: skip
    p.add_argument("--warc", metavar="FILE",
                   help="also write a WARC archive: a request and a response record for every file downloaded "
                        "(FILE.warc.gz compresses each record, FILE.warc does not), as wget --warc-file")  # fmt: skip
    p.add_argument("--progress", choices=["auto", "live", "plain", "off"], default="auto",
                   help="live display (auto: on a terminal), plain lines every --progress-interval "
                        "(auto: otherwise), or none")  # fmt: skip
    p.add_argument("--progress-interval", type=_seconds, default=5.0, metavar="SEC",
                   help="seconds between plain progress lines (default 5)")  # fmt: skip
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "-q", "--quiet", action="store_true", help="no progress or summary; failures still listed"
    )
    out.add_argument("--json", action="store_true", help="one JSON object per finished file on stdout (progress and summary stay on stderr)")
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default), ERROR")
    p.set_defaults(handler=main)


def _usage_error(message: str) -> int:
    print(f"crawler download: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _open_input(name: str) -> IO[str]:
    # Lines end at LF (CRLF too, stripped later) only: a lone CR inside a URL is an error, not a line break.
    if name == "-":
        if isinstance(sys.stdin, io.TextIOWrapper):
            sys.stdin.reconfigure(newline="\n")
        return sys.stdin
    return open(name, encoding="utf-8-sig", errors="replace", newline="\n")


def _lines(name: str) -> Iterator[str]:
    from crawler.downloader.entries import read_lines

    f = _open_input(name)
    try:
        yield from read_lines(f, "<stdin>" if name == "-" else name)
    finally:
        if f is not sys.stdin:
            f.close()


def main(args: argparse.Namespace) -> int:
    from crawler.config.job import HttpConfig, LimitsConfig, RetryConfig, TimeoutConfig
    from crawler.downloader import DownloadEntry, InputError, parse_input
    from crawler.engine.runtime import configure_logging

    configure_logging(args.log_level)
    # Everything the run needs is checked here, before any download starts.
    try:
        direct = [DownloadEntry(u, out=args.out, checksum=args.checksum) for u in args.urls]
    except InputError as exc:
        return _usage_error(str(exc))
    if not direct and not args.input_file:
        return _usage_error("give at least one URL or -i FILE")
    if (args.out or args.checksum) and (len(direct) != 1 or args.input_file):
        return _usage_error("-o/--out and --checksum apply to a single URL (use out=/checksum= in -i files)")
    if args.split > 64:
        return _usage_error("-x/--split is at most 64")
    if args.ca_bundle and not os.path.exists(args.ca_bundle):
        return _usage_error(f"CA bundle {args.ca_bundle!r} does not exist")
    total: int | None = len(direct)
    if args.input_file and args.input_file != "-":
        try:  # a validation pass: cheap, streaming, and a bad line is a usage error before anything starts
            total = len(direct) + sum(1 for _ in parse_input(_lines(args.input_file), args.input_file))
        except (InputError, OSError) as exc:
            return _usage_error(str(exc))
    elif args.input_file:
        total = None
    if os.path.exists(args.dir) and not os.path.isdir(args.dir):
        return _usage_error(f"-d {args.dir!r} is not a directory")

    headers = dict(args.headers)
    if args.user_agent:
        headers["User-Agent"] = args.user_agent
    conns = max(100, args.jobs * args.split)
    if args.proxy and "://" not in args.proxy:
        return _usage_error(f"--proxy {args.proxy!r} must be a URL such as http://host:port")
    http = HttpConfig(http2=not args.http1, verify=False if args.insecure else (args.ca_bundle or True),
                      proxy=args.proxy, trust_env=True, max_redirects=args.max_redirects,
                      timeout=TimeoutConfig(connect=args.connect_timeout, read=args.timeout, write=args.timeout,
                                            pool=None),
                      limits=LimitsConfig(max_connections=conns, max_keepalive_connections=conns))  # fmt: skip
    retry = RetryConfig(attempts=args.max_tries)

    def entries() -> Iterator[DownloadEntry]:
        yield from direct
        if args.input_file:
            name = "<stdin>" if args.input_file == "-" else args.input_file
            yield from parse_input(_lines(args.input_file), name)

    from crawler.engine.runtime import run_async

    try:
        return run_async(lambda: _run(args, entries(), total, http, retry, headers))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # never a traceback for the user; --log-level DEBUG shows it
        logging.getLogger("crawler.download").debug("download failed", exc_info=True)
        print(f"crawler download: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERRORS


async def _run(args: argparse.Namespace, entries: Iterator[Any], total: int | None, http: Any, retry: Any,
               headers: dict[str, str]) -> int:  # fmt: skip
    import orjson

    from crawler.downloader import Downloader, DownloadResult, InputError
    from crawler.engine.runtime import install_stop_signals
    from crawler.model.errors import OutputError
    from crawler.output.report import download_summary, failure_lines

    failures: list[DownloadResult] = []
    stdout = sys.stdout.buffer
    display: Any = contextlib.nullcontext()
    interval = 0.25
    from crawler.cli.crawl_progress import choose_mode  # auto: live on a terminal, plain lines otherwise

    mode = "off" if args.quiet else choose_mode(args.progress)  # --json: stdout only; progress is on stderr
    if mode == "live":
        from crawler.cli.download_progress import ProgressDisplay  # rich costs ~25 ms to import: TTY only

        display = ProgressDisplay()
    elif mode == "plain":
        from crawler.cli.download_progress import PlainProgress

        display, interval = PlainProgress(), args.progress_interval

    def on_result(result: DownloadResult) -> None:
        if not result.ok:
            failures.append(result)
        if args.json:
            stdout.write(orjson.dumps(result.to_dict()) + b"\n")
            stdout.flush()

    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def stop() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()  # parts and sidecars stay: a rerun continues where this one stopped

    install_stop_signals(stop)
    started = time.monotonic()
    downloader = Downloader(args.dir, jobs=args.jobs, segments=args.split, http=http, retry=retry,
                            rate_limit=args.rate_limit, per_host=args.max_per_host, limit_rate=args.limit_rate,
                            max_size=args.max_size, collision=args.collision, resume=args.resume,
                            headers=headers, min_segment_size=args.min_split_size, max_time=args.max_time,
                            speed_limit=args.speed_limit, speed_time=args.speed_time,
                            on_progress=display if callable(display) else None, on_result=on_result,
                            progress_interval=interval, warc=args.warc)  # fmt: skip
    downloader.files_total = total
    code = EXIT_OK
    try:
        with display:
            async with downloader:
                async for _ in downloader.run(entries):
                    pass
    except asyncio.CancelledError:
        if not interrupted:
            raise
        code = EXIT_INTERRUPTED
    except InputError as exc:
        print(f"crawler download: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except OutputError as exc:  # the WARC archive cannot be written (a full disk): stop, say so, exit 1
        print(f"crawler download: stopped: {exc}", file=sys.stderr)
        code = EXIT_ERRORS
    elapsed = time.monotonic() - started
    d = downloader
    if not args.quiet:
        print(download_summary(d.files_done, d.files_skipped, d.files_failed, d.bytes_received, elapsed,
                               interrupted=code == EXIT_INTERRUPTED), file=sys.stderr)  # fmt: skip
    if failures:
        by_kind: dict[str, list[str]] = {}
        for f in failures:
            kind = f"http_{f.http_status}" if f.http_status and f.http_status >= 400 else "failed"
            by_kind.setdefault(kind, []).append(f"{f.url}: {f.error}")
        groups = [(kind, len(lines), lines) for kind, lines in by_kind.items()]
        print("\n".join(failure_lines(f"{len(failures)} failed:", groups, examples=None)), file=sys.stderr)
    if code != EXIT_OK:
        return code
    return EXIT_ERRORS if failures else EXIT_OK
