"""Real loopback servers for the downloader tests and benchmark: nginx from the distribution (ranges,
sendfile, large files) with a generated config, and the edge-case ASGI app under hypercorn.

Both run as subprocesses on free ports and are stopped by `stop()` (or the context manager).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import httpx

__all__ = ["EdgeServer", "ForwardProxy", "NginxServer", "find_nginx", "find_tinyproxy", "free_port"]

_START_TIMEOUT = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {proc.returncode}: {log.read_text(errors='replace')[-3000:]}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not start listening on {host}:{port}")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def find_nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)  # fmt: skip


class NginxServer:
    """nginx serving `root` on a free loopback port. `/slow/...` serves the same files at `slow_rate`
    (nginx's limit_rate) for tests that must interrupt a transfer. The access log records Range and
    If-Range of every request (`requests()`)."""

    def __init__(
        self, root: str | os.PathLike[str], *, host: str = "127.0.0.1", slow_rate: str = "4m"
    ) -> None:
        self.root = Path(root).resolve()
        self.host = host
        self.slow_rate = slow_rate
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        return f"{self.url}/{quote(path.lstrip('/'))}"

    def _config(self, port: int) -> str:
        assert self._dir is not None
        d = self._dir
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = " ".join(
            f"{k}_temp_path {d}/tmp;" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""{user}daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format dl escape=none '$request_uri\\t$status\\t$http_range\\t$http_if_range\\t$body_bytes_sent';
    access_log {d}/access.log dl;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    {temp}
    server {{
        listen {self.host}:{port};
        root {self.root};
        location /slow/ {{
            alias {self.root}/;
            limit_rate {self.slow_rate};
        }}
    }}
}}
"""

    def start(self) -> NginxServer:
        nginx = find_nginx()
        if nginx is None:
            raise FileNotFoundError("nginx is not installed (apt-get install nginx-light)")
        self._dir = Path(tempfile.mkdtemp(prefix="crawler-nginx-"))
        (self._dir / "tmp").mkdir()
        for d in (self._dir, self.root):  # workers may run as another user
            d.chmod(d.stat().st_mode | 0o755)
        last_error: Exception | None = None
        for _ in range(5):
            port = free_port(self.host)
            conf = self._dir / "nginx.conf"
            conf.write_text(self._config(port))
            log = self._dir / "stderr.log"
            with open(log, "wb") as out:
                self._proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(self._dir), "-e", "stderr"],
                                              stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
            try:
                _wait_listening(self.host, port, self._proc, "nginx", log)
            except RuntimeError as exc:  # most likely the port was taken meanwhile
                last_error = exc
                _stop(self._proc)
                continue
            self.port = port
            return self
        self.stop()
        raise RuntimeError(f"nginx did not start: {last_error}")

    def requests(self) -> list[dict[str, str]]:
        """The access log: uri, status, range, if_range, bytes (nginx writes it unbuffered)."""
        assert self._dir is not None
        path = self._dir / "access.log"
        out = []
        if path.exists():
            for line in path.read_text().splitlines():
                uri, status, rng, if_range, sent = (line.split("\t") + [""] * 5)[:5]
                out.append({"uri": uri, "status": status, "range": "" if rng == "-" else rng,
                            "if_range": "" if if_range == "-" else if_range, "bytes": sent})  # fmt: skip
        return out

    def stop(self) -> None:
        _stop(self._proc, signal.SIGQUIT if self._proc and self._proc.poll() is None else signal.SIGTERM)
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class EdgeServer:
    """The edge-case app (`tests/download/app.py`) under hypercorn, HTTP/1.1 on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str, **params: Any) -> str:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"{self.url}{path}" + (f"?{query}" if query else "")

    def start(self) -> EdgeServer:
        self._dir = Path(tempfile.mkdtemp(prefix="crawler-edge-"))
        port_file = self._dir / "port"
        log = self._dir / "server.log"
        with open(log, "wb") as out:
            self._proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("app.py")), "--host", self.host,
                 "--port-file", str(port_file)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT
        while not port_file.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"edge server did not start: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        _wait_listening(self.host, self.port, self._proc, "edge server", log)
        self._client = httpx.Client(base_url=self.url, timeout=10, trust_env=False)
        return self

    def log(self, clear: bool = False) -> list[dict[str, Any]]:
        assert self._client is not None
        data: list[dict[str, Any]] = json.loads(
            self._client.get("/__log", params={"clear": "1"} if clear else {}).content
        )
        return data

    def requests_for(self, key: str) -> list[dict[str, Any]]:
        return [r for r in self.log() if r["query"].get("key") == key]

    def bump(self, key: str) -> None:
        assert self._client is not None
        self._client.get("/__bump", params={"key": key}).raise_for_status()

    def shape(self, key: str, **rules: int) -> None:
        """Out-of-band misbehaviour for `key` (see `/__shape` in app.py); no rules: back to normal."""
        assert self._client is not None
        self._client.get("/__shape", params={"key": key, **rules}).raise_for_status()

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        _stop(self._proc)
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> EdgeServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def find_tinyproxy() -> str | None:
    return shutil.which("tinyproxy") or next((p for p in ("/usr/bin/tinyproxy", "/usr/sbin/tinyproxy")
                                              if os.access(p, os.X_OK)), None)  # fmt: skip


class ForwardProxy:
    """tinyproxy from the distribution, a real forwarding HTTP proxy, on a free loopback port. `requests()`
    lists the request lines it forwarded (from its log)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ForwardProxy:
        exe = find_tinyproxy()
        if exe is None:
            raise FileNotFoundError("tinyproxy is not installed (apt-get install tinyproxy)")
        self._dir = Path(tempfile.mkdtemp(prefix="crawler-proxy-"))
        self._dir.chmod(0o777)  # tinyproxy may drop to another user
        self.port = free_port(self.host)
        conf = self._dir / "tinyproxy.conf"
        conf.write_text(f"Port {self.port}\nListen {self.host}\nTimeout 60\nLogFile \"{self._dir}/proxy.log\"\n"
                        f"LogLevel Connect\nMaxClients 200\nAllow 127.0.0.1\nDisableViaHeader Yes\n")  # fmt: skip
        log = self._dir / "stderr.log"
        with open(log, "wb") as out:
            self._proc = subprocess.Popen([exe, "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        _wait_listening(self.host, self.port, self._proc, "tinyproxy", log)
        return self

    def requests(self) -> list[str]:
        """`GET http://host:port/path HTTP/1.1` for each request forwarded so far."""
        assert self._dir is not None
        path = self._dir / "proxy.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return [line.split("): ", 1)[1] for line in text.splitlines() if "Request (file descriptor" in line]

    def stop(self) -> None:
        _stop(self._proc)
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
