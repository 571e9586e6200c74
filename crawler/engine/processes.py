"""Multi-process crawls on one machine (`concurrency.processes: N`): N engine processes, one frontier.

The frontier is sharded by URL fingerprint (see `crawler/frontier/sharded.py`): each process queues and dedups only
its own URLs and sends the others' up a pipe; this parent routes those batches and detects the end (all
processes idle, every routed batch received). Concurrency, per-host rates and in-flight caps, and
`max_pages` are totals: each process gets 1/N of them, so a host sees the configured rate in all.
All processes append whole lines to the one items file (O_APPEND writes of complete lines).

Each process gets its job (secrets included) as the first message down its pipe: no file on disk, nothing on
the command line. A process dies with this parent (see `crawler/engine/shard.py`).

The command line forks the processes (`fork_children`) before its event loop starts, once the engine is
imported: a child then starts crawling without importing anything (importing the engine costs ~0.4 s of CPU,
three times over with two spawned processes: ~15% of the CPU of a 10,000-page crawl). Where forking is not
safe (not Linux, threads running, or an event loop already running, as in a library call) they are spawned
as `python -m crawler.engine.shard`. Both kinds run the same `shard.main`.

For crawls across machines, use the Redis frontier instead: any number of `crawler run` processes
share it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Protocol

import orjson

from crawler.config.job import Job
from crawler.config.units import Rate
from crawler.frontier.sharded import (
    DONE,
    FINAL,
    JOB,
    PUSH,
    ROUTE,
    STATUS,
    open_pipes,
    read_message,
    write_message,
)
from crawler.output.stats import Stats
from crawler.output.writers import open_writer

__all__ = ["fork_children", "run_processes", "shard_job"]

log = logging.getLogger("crawler")


def _split(total: int, count: int, index: int) -> int:
    return total // count + (1 if index < total % count else 0)


def _scale(rate: Rate | None, count: int) -> Rate | None:
    return None if rate is None else Rate(count=rate.count / count, period=rate.period)


def shard_job(job: Job, index: int, count: int) -> Job:
    """The job one of `count` processes runs: 1/count of every total, appending to the shared outputs."""
    c, r, s = job.concurrency, job.rate_limit, job.scope
    return job.model_copy(update={
        "concurrency": c.model_copy(update={"workers": math.ceil(c.workers / count),
                                            "per_host": math.ceil(c.per_host / count), "processes": 1}),
        "rate_limit": r.model_copy(update={"per_host": _scale(r.per_host, count),
                                           "hosts": {h: _scale(v, count) for h, v in r.hosts.items()}}),
        "scope": s.model_copy(update={
            "max_pages": None if s.max_pages is None else _split(s.max_pages, count, index),
            # A host's URLs are spread over the shards by fingerprint: its page budget is split too.
            "max_pages_per_host": (None if s.max_pages_per_host is None
                                   else _split(s.max_pages_per_host, count, index)),
        }),
        "output": job.output.model_copy(update={"overwrite": False, "stats": None}),
        "memory_queue": math.ceil(job.memory_queue / count),
    })  # fmt: skip


def _prepare_outputs(job: Job) -> None:
    """Create (or truncate) the shared items file once, with its CSV header, before the processes append."""
    if not job.output.items:
        return
    writer = open_writer(job.output.items, columns=job.item_columns,
                         overwrite=job.output.overwrite)  # fmt: skip
    writer.close()


class _Process(Protocol):
    """What the parent needs of a child process: `subprocess.Popen`'s poll, send_signal and returncode."""

    returncode: int | None

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...


class _Forked:
    """A forked child, seen through the part of `subprocess.Popen`'s interface the parent uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, its code unknown
                self.returncode = 1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


class _Child:
    def __init__(self, index: int, proc: _Process, up_r: int, down_w: int) -> None:
        self.index = index
        self.proc = proc
        self.up_r = up_r
        self.down_w = down_w
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.forwarded = 0
        self.idle = False
        self.received = 0
        self.final: dict[str, object] | None = None


def _can_fork() -> bool:
    """Forking copies only the calling thread, and an event loop's state would be shared with the child."""
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


def _start_child(index: int, count: int, log_level: str, siblings: list[_Child], *, fork: bool) -> _Child:
    """Start process `index` running `shard.main` with its pipes: forked (this process's imports shared) or
    spawned as `python -m crawler.engine.shard`; either way it is in its own session, so Ctrl-C reaches it
    through this parent, once."""
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    args = [str(index), str(count), str(up_w), str(down_r), log_level, str(os.getpid())]
    proc: _Process
    if fork:
        proc = _Forked(_fork(args, close=(up_r, down_w, *(f for c in siblings for f in (c.up_r, c.down_w)))))
    else:
        proc = subprocess.Popen([sys.executable, "-m", "crawler.engine.shard", *args], pass_fds=(up_w, down_r),
                                start_new_session=True)  # fmt: skip
    os.close(up_w)
    os.close(down_r)
    return _Child(index, proc, up_r, down_w)


def _fork(args: list[str], close: tuple[int, ...]) -> int:
    """Fork a child that closes `close` (the parent's ends of every pipe: a sibling's pipe must reach end of
    file when the parent dies) and runs `shard.main(args)`; its pid."""
    from crawler.engine import shard

    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # else the child would write the parent's buffered output again
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        code = 1
        try:
            os.setsid()
            for fd in close:
                os.close(fd)
            code = shard.main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # exiting anyway
                    pass
            os._exit(code)
    return pid


def fork_children(count: int, log_level: str) -> list[_Child] | None:
    """Fork the `count` processes of a crawl now, before the caller starts its event loop (see the module
    doc); None where forking is not safe (they are spawned by `run_processes` then). Pass the result to
    `run_processes`."""
    if not _can_fork():
        return None
    from crawler.engine import shard  # noqa: F401 - imported once here, not once per child

    children: list[_Child] = []
    for i in range(count):
        children.append(_start_child(i, count, log_level, children, fork=True))
    return children


async def _run(job: Job, count: int, log_level: str, children: list[_Child] | None) -> Stats:
    _prepare_outputs(job)
    if children is None:
        children = [_start_child(i, count, log_level, [], fork=False) for i in range(count)]
    loop = asyncio.get_running_loop()
    for child in children:
        child.reader, child.writer = await open_pipes(child.down_w, child.up_r)
        write_message(child.writer, JOB, shard_job(job, child.index, count).model_dump_json(by_alias=True).encode())

    finished = asyncio.Event()
    stats = Stats()
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        stats.interrupted = True
        log.warning("stopping %d processes%s", count, "" if interrupts == 1 else " now")
        for child in children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGINT)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    def check_done() -> None:
        # A process that has exited (its share of max_pages done) takes no more work.
        if finished.is_set():
            return
        if all((c.idle and c.received == c.forwarded) or c.proc.poll() is not None for c in children):
            finished.set()
            for c in children:
                if c.writer is not None and c.proc.poll() is None:
                    write_message(c.writer, DONE)

    async def pump(child: _Child) -> None:
        assert child.reader is not None
        while True:
            try:
                kind, payload = await read_message(child.reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if kind == ROUTE:
                target = children[payload[0]]
                if target.writer is None or target.proc.poll() is not None or target.writer.is_closing():
                    continue
                write_message(target.writer, PUSH, payload[1:])
                target.forwarded += 1
                target.idle = False  # until it says otherwise, after this batch
            elif kind == STATUS:
                status = orjson.loads(payload)
                child.idle, child.received = status["idle"], status["received"]
                check_done()
            elif kind == FINAL:
                child.final = orjson.loads(payload)

    pumps = [asyncio.create_task(pump(c)) for c in children]
    started = time.monotonic()
    last_log = started
    while any(c.proc.poll() is None for c in children):
        await asyncio.sleep(0.1)
        check_done()
        if time.monotonic() - last_log >= job.log_every:
            last_log = time.monotonic()
            log.info("%d processes running, %.0fs", sum(c.proc.poll() is None for c in children),
                     last_log - started)  # fmt: skip
    await asyncio.gather(*pumps, return_exceptions=True)
    for c in children:
        if c.writer is not None:
            c.writer.close()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    for c in children:
        if c.final is not None:
            stats.merge(c.final)
        elif c.proc.returncode not in (0, None):
            stats.error(f"process_exit_{c.proc.returncode}", f"process {c.index}")
    stats.started = started
    stats.finished = time.monotonic()
    return stats


async def run_processes(job: Job, count: int, log_level: str = "INFO", *,
                        children: list[_Child] | None = None) -> Stats:  # fmt: skip
    """Run `job` on `count` engine processes sharing one sharded frontier; returns the merged stats.
    `children`: what `fork_children(count, ...)` returned, else they are spawned now."""
    if job.frontier_kind != "memory":
        raise ValueError("concurrency.processes > 1 shards the in-memory frontier; with state: or a Redis "
                         "frontier, run several `crawler run` processes on the shared frontier instead")  # fmt: skip
    if children is not None and len(children) != count:
        raise ValueError(f"{len(children)} forked processes for a crawl of {count}")
    return await _run(job, count, log_level, children)
