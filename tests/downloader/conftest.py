"""Fixtures for the downloader tests: the edge-case app under hypercorn and nginx from the distribution,
both on loopback, plus a helper that runs `crawler download` as a subprocess and measures its peak RSS."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crawler import RetryConfig
from crawler.config.job import BackoffConfig
from tests.cli.conftest import crawler_command
from tests.http.tinyproxy import TinyProxy
from tests.peak_rss import wait_measuring_peak

from .servers import EdgeServer, NginxServer, find_nginx

REPO_ROOT = Path(__file__).resolve().parents[2]
GiB = 1 << 30


@pytest.fixture(scope="session")
def edge() -> Iterator[EdgeServer]:
    with EdgeServer() as server:
        yield server


@pytest.fixture(scope="session")
def edge2() -> Iterator[EdgeServer]:
    """A second origin (another port), for redirects that leave the first."""
    with EdgeServer() as server:
        yield server


@pytest.fixture(scope="session")
def forward_proxy() -> Iterator[TinyProxy]:
    """tinyproxy (tests/http/tinyproxy.py: fails when CRAWLER_REQUIRE_PROXY=1 and it is missing, else skips)."""
    proxy = TinyProxy().start()
    try:
        yield proxy
    finally:
        proxy.stop()


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
        sums[f"many/f{i:02d}.bin"] = _write_random(
            root / "many" / f"f{i:02d}.bin", 50_000 + 5_000 * i, 100 + i
        )
    with open(root / "sparse-1g.bin", "wb") as f:
        f.truncate(GiB)
    with NginxServer(root, slow_rate="3m") as server:
        yield NginxSite(server, root, sums)


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }


def run_cli(*args: str, cwd: Path | None = None, stdin: str | None = None, timeout: float = 60.0) -> CliRun:
    """`crawler download ARGS` (the installed console script) in a subprocess."""
    try:
        done = subprocess.run([*crawler_command(), "download", *args], cwd=cwd, env=_env(),
                              input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"crawler download timed out:\n{exc.stderr}") from None
    return CliRun(done.returncode, done.stdout, done.stderr)


class Spawned:
    """A `crawler download` running in the background, its output going to files."""

    def __init__(self, args: tuple[str, ...], directory: Path) -> None:
        self._out = open(directory / "stdout", "w+b")
        self._err = open(directory / "stderr", "w+b")
        self.proc = subprocess.Popen([*crawler_command(), "download", *args], env=_env(),
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err)  # fmt: skip

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 120.0) -> tuple[int, int, bytes, bytes]:
        """Wait; returns (exit code, peak RSS bytes, stdout, stderr)."""
        try:
            measured = wait_measuring_peak(self.proc, timeout)
            if measured.code is None:
                raise TimeoutError(f"crawler download did not finish within {timeout}s")
            code, peak = measured.code, measured.peak_rss
            self._out.seek(0)
            self._err.seek(0)
            return code, peak, self._out.read(), self._err.read()
        finally:
            self._out.close()
            self._err.close()


def spawn_cli(*args: str, workdir: Path) -> Spawned:
    return Spawned(args, workdir)
