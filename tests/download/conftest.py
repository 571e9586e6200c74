"""Fixtures for the downloader tests: the edge-case app under hypercorn and nginx from the distribution,
both on loopback, plus a helper that runs `crawler download` as a subprocess and measures its peak RSS."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crawler import RetryConfig
from crawler._config import BackoffConfig

from .servers import EdgeServer, NginxServer, find_nginx

REPO_ROOT = Path(__file__).resolve().parents[2]
GiB = 1 << 30


@pytest.fixture(scope="session")
def edge() -> Iterator[EdgeServer]:
    with EdgeServer() as server:
        yield server


@pytest.fixture
def key() -> str:
    """A key no other test uses, so the edge server's per-key state (versions, hits) is this test's own."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def fast_retry() -> RetryConfig:
    return RetryConfig(attempts=3, backoff=BackoffConfig(initial=0.01, max=0.05, jitter=0))


@dataclass
class NginxSite:
    server: NginxServer
    root: Path
    sha256: dict[str, str]

    def url(self, name: str) -> str:
        return self.server.url_for(name)


def _write_random(path: Path, size: int, seed: int) -> str:
    rng = random.Random(seed)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(left, 1 << 20))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxSite]:
    if find_nginx() is None:
        message = "nginx is not installed (apt-get install nginx-light; .ci/run does)"
        if os.environ.get("CI") or os.environ.get("CRAWLER_REQUIRE_NGINX"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("nginx-www")
    sums = {
        "small.bin": _write_random(root / "small.bin", 3_000_000, 1),
        "seg.bin": _write_random(root / "seg.bin", 24_000_000, 2),
        "kill.bin": _write_random(root / "kill.bin", 12_000_000, 3),
    }
    (root / "many").mkdir()
    for i in range(40):
        sums[f"many/f{i:02d}.bin"] = _write_random(root / "many" / f"f{i:02d}.bin", 50_000 + 5_000 * i, 100 + i)
    with open(root / "sparse-1g.bin", "wb") as f:
        f.truncate(GiB)
    with NginxServer(root, slow_rate="3m") as server:
        yield NginxSite(server, root, sums)


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    max_rss: int  # bytes


def run_cli(*args: str, cwd: Path | None = None, stdin: str | None = None, timeout: float = 60.0) -> CliRun:
    """`python -m crawler download ARGS` in a subprocess; peak RSS from wait4's rusage of that child."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "crawler", "download", *args], cwd=cwd, env=env,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"crawler download timed out:\n{err}") from None
    return CliRun(proc.returncode, out, err, _child_rusage_maxrss(proc))


def _child_rusage_maxrss(proc: subprocess.Popen[str]) -> int:
    # communicate() reaped the child already; its rusage went to RUSAGE_CHILDREN, which holds the
    # maximum over every child reaped so far. Tests that need this child's own peak use spawn_cli.
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def spawn_cli(*args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "crawler", "download", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def wait_with_rusage(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> tuple[int, int, bytes, bytes]:
    """Wait for `proc` (its pipes drained by threads) and return (returncode, peak RSS bytes, out, err),
    the peak from wait4's rusage of exactly this child."""
    import threading
    import time

    buffers: dict[str, bytes] = {}

    def drain(name: str, stream: object) -> None:
        buffers[name] = stream.read()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]  # fmt: skip
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise AssertionError("crawler download timed out")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join(5)
    return proc.returncode, usage.ru_maxrss * 1024, buffers.get("out", b""), buffers.get("err", b"")
