"""A real forwarding proxy for the proxy tests: Debian's tinyproxy in a subprocess on a loopback port, its
log read back so a test can assert which requests went through it.

`.ci/run` installs tinyproxy and sets CRAWLER_REQUIRE_PROXY=1, so a missing binary fails there; elsewhere
the tests that need it skip.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from crawler.demo.launcher import free_port

__all__ = ["TinyProxy", "require_tinyproxy"]

# "Request (file descriptor 7): GET http://127.0.0.1:5000/x HTTP/1.1" and "...: CONNECT 127.0.0.1:5001 HTTP/1.1"
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/1\.\d")


def require_tinyproxy() -> str:
    """The tinyproxy binary; fails when CRAWLER_REQUIRE_PROXY=1 and it is missing, else skips."""
    path = shutil.which("tinyproxy") or ("/usr/bin/tinyproxy" if os.path.exists("/usr/bin/tinyproxy") else None)
    if path is None:
        message = "tinyproxy is not installed (apt-get install tinyproxy)"
        if os.environ.get("CRAWLER_REQUIRE_PROXY") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


class TinyProxy:
    """tinyproxy on 127.0.0.1:<free port>, logging every request; `auth` = (user, password) for BasicAuth."""

    def __init__(self, auth: tuple[str, str] | None = None) -> None:
        self.binary = require_tinyproxy()
        self.auth = auth
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="crawler-tinyproxy-"))
        os.chmod(self.dir, 0o777)  # tinyproxy may drop to another user when started as root
        self.log_path = self.dir / "tinyproxy.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.auth is None:
            return f"http://127.0.0.1:{self.port}"
        return f"http://{self.auth[0]}:{self.auth[1]}@127.0.0.1:{self.port}"

    @property
    def bare_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TinyProxy:
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f'LogFile "{self.log_path}"',
            "LogLevel Connect",
            "MaxClients 200",
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
        ]
        if self.auth is not None:
            lines.append(f"BasicAuth {self.auth[0]} {self.auth[1]}")
        conf = self.dir / "tinyproxy.conf"
        conf.write_text("\n".join(lines) + "\n")
        self._proc = subprocess.Popen([self.binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"tinyproxy exited with {self._proc.returncode}: {self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("tinyproxy did not listen in 15 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def requests(self, settle: float = 0.3) -> list[tuple[str, str]]:
        """(method, target) of every request the proxy logged; waits `settle` s for the log to catch up."""
        time.sleep(settle)
        return _REQUEST.findall(self.log_text())
