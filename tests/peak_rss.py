"""Peak memory of a child process, measured from outside: the one sampler of the tests and benchmarks.

`measure(argv, timeout=...)` runs a command to completion; `wait_measuring_peak(proc, timeout)` measures a
process already started. Both return a `Measured`: exit code (None when it was killed at the deadline),
peak RSS in bytes, wall seconds and CPU seconds.

Peak RSS is the sum over the process tree (the process and every descendant seen while it ran) of each
process's VmHWM, its own resident high-water mark, polled from /proc every `interval` seconds. VmHWM only
grows, so polling loses only what a process adds in its last interval before it exits; summing the marks
of processes that peaked at different times makes the figure an upper bound (for one process it is exact).
wait4's ru_maxrss cannot be used: Linux folds the parent's mark into a child that execs, so a small `curl`
started from pytest would report pytest's size. CPU seconds do come from wait4: user + system time of the
process and of the descendants it waited for.

The child's output must go to files or DEVNULL, not pipes: nobody reads a pipe while the sampler waits.
A child started in its own session (`measure` does this) has its whole process group killed at the
deadline, and again once it has exited, so no descendant outlives the measurement. Linux only (/proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["Measured", "measure", "wait_measuring_peak"]


@dataclass(frozen=True, slots=True)
class Measured:
    """One process, measured from outside."""

    code: int | None  # exit code; None: still running at the deadline, killed
    peak_rss: int  # bytes: the process tree's peak (see the module docstring)
    wall: float  # seconds from start (or from the call, for a process started elsewhere) to exit
    cpu: float  # user + system seconds of the process and the descendants it waited for

    @property
    def timed_out(self) -> bool:
        return self.code is None


def _vm_hwm(pid: int) -> int:
    """A live process's resident high-water mark in bytes; 0 when it is gone (or a zombie: no memory)."""
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _tree(pid: int) -> list[int]:
    """`pid` and its live descendants (from each thread's /proc children list)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError, ValueError), open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(x) for x in f.read().split()]
    return pids


def _leads_its_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def wait_measuring_peak(proc: subprocess.Popen[Any], timeout: float, *, interval: float = 0.01,
                        started: float | None = None) -> Measured:  # fmt: skip
    """Wait for `proc` (its output going to files, not pipes), sampling its tree's peak RSS; kill it (its
    process group when it leads one) after `timeout` seconds. `started`: its `time.monotonic()` start, for
    the wall time (default: now)."""
    begin = time.monotonic() if started is None else started
    deadline = begin + timeout
    leader = _leads_its_group(proc.pid)  # asked now: once it is reaped its pid names nothing
    marks: dict[int, int] = {}
    code: int | None = None
    while True:
        for pid in _tree(proc.pid):
            mark = _vm_hwm(pid)
            if mark > marks.get(pid, 0):
                marks[pid] = mark
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                if leader:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    os.kill(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(interval)
    wall = time.monotonic() - begin
    cpu = usage.ru_utime + usage.ru_stime
    # Popen reaps through its own bookkeeping; tell it the child is gone (returncode: the exit code, or the
    # negative signal number of a kill, as Popen itself would set it).
    proc.returncode = os.waitstatus_to_exitcode(status)
    if leader:  # a descendant may still hold the group (a crawl's worker processes): leave none behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return Measured(code=code, peak_rss=sum(marks.values()), wall=wall, cpu=cpu)


def measure(argv: list[str], *, timeout: float, cwd: str | Path | None = None, env: dict[str, str] | None = None,
            stdout: IO[Any] | int = subprocess.DEVNULL, stderr: IO[Any] | int = subprocess.DEVNULL,
            interval: float = 0.01) -> Measured:  # fmt: skip
    """Run `argv` in its own session (stdin from /dev/null, output to `stdout`/`stderr`: files or DEVNULL) and
    measure it; after `timeout` seconds its process group is killed and `code` is None."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd, env=env,
                            start_new_session=True)  # fmt: skip
    return wait_measuring_peak(proc, timeout, interval=interval, started=started)
