"""`crawler status JOB.yaml`: the progress of a resumable (SQLite `state:`) or distributed (Redis) crawl."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from crawler.cli import EXIT_ERRORS, EXIT_OK, EXIT_USAGE
from crawler.config.secrets import redact, redact_tree

_EPILOG = """\
examples:
  crawler status job.yaml                       (while the crawl runs, or after it stopped)
  crawler status job.yaml --set frontier=redis://10.0.0.5:6379/0
  crawler status job.yaml --json

Shows requests done, queued and leased, the seen set, the busiest hosts and, on Redis, every worker:
whether it is alive, its items file and the offset its last checkpoint vouches for. A worker that died
leaves lines past that offset in its file; they are cut off when a process takes its identity again.
exit code 0, or 2 when the job keeps no shared state (neither `state:` nor a redis:// frontier).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="show the progress of a resumable or distributed crawl",
                       description="Show the shared progress of a crawl kept in SQLite (state:) or Redis.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key, as with crawler run (repeatable)")  # fmt: skip
    p.add_argument("--hosts", type=int, default=10, metavar="N", help="show the N busiest hosts (default 10)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from crawler.config.job import load_job
    from crawler.config.jobfile import JobError

    try:
        job = load_job(args.job, overrides=list(args.overrides))
    except JobError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE
    from crawler.engine.runtime import run_async
    from crawler.frontier.backends import read_status

    try:
        status = run_async(lambda: read_status(job, top_hosts=args.hosts))
    except Exception as exc:  # Redis unreachable, unreadable database
        print(redact(f"crawler status: {type(exc).__name__}: {exc}", job.secrets()), file=sys.stderr)
        return EXIT_ERRORS
    if status is None:
        if job.state is None:
            print(f"crawler status: job {job.name!r} keeps no state: set `state: DIR` (resumable) or "
                  "`frontier: redis://...` (distributed)", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        status = {"backend": "sqlite", "state": job.state, "started": False}
    status = redact_tree(status, job.secrets())
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(render(status))
    return EXIT_OK


def _n(value: Any) -> str:
    return f"{int(value):,}"


def render(status: dict[str, Any]) -> str:
    if status.get("started") is False:
        return f"no saved state in {status['state']} yet (the crawl has not run)"
    lines = []
    if status["backend"] == "sqlite":
        where = f"state {status['state']}  ({'a crawl is running' if status['running'] else 'not running'})"
        lines.append(where)
        lines.append(f"done {_n(status['done'])}  queued {_n(status['queued'])}  seen {_n(status['seen'])}"
                     f"  pushed {_n(status['pushed'])}")  # fmt: skip
        if status["running"]:
            lines.append("  (queued includes the requests in flight; figures are as of the last commit)")
        if status.get("checkpoint"):
            lines.append(f"checkpoint {json.dumps(status['checkpoint'])}")
    else:
        lines.append(f"job {status['job']!r} on Redis")
        lines.append(f"done {_n(status['done'])}  queued {_n(status['queued'])}  leased {_n(status['leased'])}"
                     f"  seen {_n(status['seen'])}  requeued {_n(status['requeued'])}")  # fmt: skip
        if status["lost_leases"]:
            lines.append(
                f"  {_n(status['lost_leases'])} acks came after the lease had passed to another worker"
            )
        if status["workers"]:
            lines.append("workers:")
            for w in status["workers"]:
                cp = w["checkpoint"] or {}
                offset = cp.get("items_offset")
                tail = ""
                if offset is not None and w["items"] and not w["alive"]:
                    size = _size(w["items"])
                    if size is not None and size > offset:
                        tail = f"  ({_n(size - offset)} bytes past the checkpoint: rerun this worker to trim them)"
                lines.append(f"  {w['worker']}  {'alive' if w['alive'] else 'stopped'}  leased {_n(w['leased'])}"
                             f"  items {w['items'] or '-'}  offset {'-' if offset is None else _n(offset)}{tail}")  # fmt: skip
    if status["hosts"]:
        lines.append("hosts:")
        width = max(len(h["host"]) for h in status["hosts"])
        for h in status["hosts"]:
            lines.append(f"  {h['host']:<{width}}  done {_n(h['done']):>9}  queued {_n(h['queued']):>9}")
    return "\n".join(lines)


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None
