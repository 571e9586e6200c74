"""Peak memory of a child process, measured from outside: VmHWM (the resident high-water mark of the
process's own address space) polled from /proc until it exits.

wait4's ru_maxrss cannot be used for this: Linux folds the parent's high-water mark into the child's
when the child execs, so a small `curl` would report the size of the Python process that started it.
"""

from __future__ import annotations

import subprocess
import time

__all__ = ["wait_measuring_peak"]


def _vm_hwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def wait_measuring_peak(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 600.0,
                        interval: float = 0.005) -> tuple[int, int]:  # fmt: skip
    """Wait for `proc` (its output must go to files, not pipes) and return (exit code, peak RSS bytes)."""
    deadline = time.monotonic() + timeout
    peak = 0
    while True:
        hwm = _vm_hwm(proc.pid)
        if hwm is not None:
            peak = max(peak, hwm)
        code = proc.poll()
        if code is not None:
            return code, peak
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"{proc.args!r} did not finish within {timeout}s")
        time.sleep(interval)
