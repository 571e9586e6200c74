"""`crawler status JOB.yaml`: the progress of a resumable (SQLite `state:`) or distributed (Redis) crawl."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

from crawler.cli import EXIT_ERRORS, EXIT_OK, EXIT_USAGE
from crawler.config.secrets import redact, redact_tree

_EPILOG = """\
examples:
  crawler status job.yaml                       (while the crawl runs, or after it stopped)
  crawler status job.yaml --set frontier=redis://10.0.0.5:6379/0
  crawler status job.yaml --json
  crawler status job.yaml --repair               (Redis: hand back the work of dead workers now)

Shows requests done, queued and leased, the seen set, the busiest hosts and, on Redis, every worker:
whether it is alive, its pages/s, its lag (seconds since its last heartbeat; a live worker beats every few
seconds), its items file and the offset its last checkpoint vouches for. A worker that died leaves lines
past that offset in its file; they are cut off when a process takes its identity again, or by --repair.

--repair (Redis): every worker without a heartbeat for 15 s counts as dead; its leased requests go back on
their queues at once (instead of when their leases expire) and, when its items file is on this machine, the
file is cut back to its checkpoint, so the union of the items files stays every page exactly once.
exit code 0, 1 when the state cannot be read, 2 when the job keeps no shared state (neither `state:` nor a
redis:// frontier) or --repair is asked of a job without workers.
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
    p.add_argument("--repair", action="store_true",
                   help="Redis: requeue the leases of dead workers now and trim their items files")  # fmt: skip
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
    from crawler.frontier.backends import read_status, repair_state

    if args.repair:
        try:
            repaired = run_async(lambda: repair_state(job))
        except Exception as exc:  # Redis unreachable
            print(f"crawler status: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_ERRORS
        if repaired is None:
            print(f"crawler status: --repair applies to a Redis frontier; job {job.name!r} has none (a `state:` "
                  "crawl has one process: rerun it)", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        for line in _trim_repaired(repaired):
            print(line, file=sys.stderr)
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


def _trim_repaired(repaired: list[dict[str, Any]]) -> list[str]:
    """Cut each dead worker's items file (when it is on this machine) back to its checkpoint: the lines past
    it belong to the pages just requeued, which other workers will write again."""
    lines = []
    if not repaired:
        lines.append("repair: no dead workers")
    here = socket.gethostname()
    for w in repaired:
        note = f"repair: worker {w['worker']}: {_n(w['requeued'])} leased requests queued again"
        offset = (w["checkpoint"] or {}).get("items_offset")
        items = w["items"]
        size = _size(items) if items else None
        if offset is not None and size is not None and size > offset:
            if w["host"] == here:
                os.truncate(items, offset)
                note += f"; {items} cut back to its checkpoint ({_n(size - offset)} bytes dropped)"
            else:
                note += f"; its items file is on {w['host']}: cut {items} back to {offset} bytes there"
        lines.append(note)
    return lines


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
                        tail = f"  ({_n(size - offset)} bytes past the checkpoint: rerun this worker, or --repair, to trim them)"
                lag = "-" if w.get("lag") is None else f"{w['lag']:.0f}s"
                lines.append(f"  {w['worker']}  {'alive' if w['alive'] else 'stopped'}"
                             f"  {w.get('pages_per_second', 0):,.1f} pages/s  lag {lag}  done {_n(w.get('acked', 0))}"
                             f"  leased {_n(w['leased'])}  items {w['items'] or '-'}"
                             f"  offset {'-' if offset is None else _n(offset)}{tail}")  # fmt: skip
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
