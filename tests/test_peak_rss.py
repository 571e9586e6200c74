"""The one peak-RSS sampler (tests/peak_rss.py): what it counts (a peak already freed, descendants, not the
parent that started the child), what it reports (exit code, CPU), and that a run past its deadline ends with
its whole process group."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.peak_rss import measure, wait_measuring_peak

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
              pytest.mark.timeout(60)]  # fmt: skip

MB = 1_000_000
_TOUCH = "def touch(n):\n    b = bytearray(n)\n    for i in range(0, n, 4096): b[i] = 1\n    return b\n"


def _python(code: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", _TOUCH + code]


def test_a_peak_already_freed_is_counted_with_the_exit_code_and_cpu() -> None:
    res = measure(_python("b = touch(120_000_000)\ndel b\nimport time; time.sleep(0.3)\nraise SystemExit(3)"),
                  timeout=30)  # fmt: skip
    assert res.code == 3 and not res.timed_out
    assert 120 * MB < res.peak_rss < 200 * MB
    assert 0 < res.cpu < 30 and res.wall >= 0.3


def test_descendants_are_counted() -> None:
    child = "import subprocess, sys\nsubprocess.run([sys.executable, '-I', '-S', '-c', sys.argv[1]], check=True)"
    grandchild = _TOUCH + "b = touch(100_000_000)\nimport time; time.sleep(0.5)"
    res = measure([*_python(child), grandchild], timeout=30)
    assert res.code == 0
    assert res.peak_rss > 100 * MB + 5 * MB  # the grandchild's 100 MB and both interpreters


def test_the_parent_that_started_the_child_is_not_counted() -> None:
    # wait4's ru_maxrss would report this process's size for a child that execs: the reason for /proc.
    ballast = bytearray(150 * MB)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    res = measure(["sleep", "0.3"], timeout=30)
    assert res.code == 0 and 0 < res.peak_rss < 20 * MB
    del ballast


def test_a_run_past_its_deadline_is_killed_with_its_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = (f"import subprocess, time\np = subprocess.Popen(['sleep', '60'])\nopen({str(pid_file)!r}, 'w')"
            ".write(str(p.pid))\ntime.sleep(60)")  # fmt: skip
    started = time.monotonic()
    res = measure(_python(code), timeout=1.5)
    assert res.timed_out and res.code is None and time.monotonic() - started < 10
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), f"the grandchild {grandchild} outlived the deadline"


def _alive(pid: int) -> bool:
    """Running, not gone and not a zombie (a killed orphan waits for init to reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def test_a_process_started_elsewhere_is_measured_and_its_popen_knows_it_ended() -> None:
    proc = subprocess.Popen(_python("b = touch(60_000_000)\nimport time; time.sleep(0.2)"),
                            stdout=subprocess.DEVNULL)  # fmt: skip
    res = wait_measuring_peak(proc, 30)
    assert res.code == 0 and res.peak_rss > 60 * MB
    assert proc.poll() == 0 and proc.returncode == 0
