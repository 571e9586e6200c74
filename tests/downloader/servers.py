"""Real loopback servers for the downloader tests and benchmark: nginx from the distribution (ranges,
sendfile, large files) with a generated config, and the edge-case ASGI app under the one launcher
(crawler/demo/launcher.py).

Both run as subprocesses on free ports and are stopped by `stop()` (or the context manager).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote

from benchmarks.nginx import find_nginx
from crawler.demo.launcher import AsgiServer, free_port, wait_listening

__all__ = ["EdgeServer", "NginxServer", "find_nginx", "free_port"]


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class NginxServer:
    """nginx serving `root` on a free loopback port. `/slow/...` serves the same files at `slow_rate`
    (nginx's limit_rate) for tests that must interrupt a transfer. The access log records Range and
    If-Range of every request (`requests()`)."""

    def __init__(
        self, root: str | os.PathLike[str], *, host: str = "127.0.0.1", slow_rate: str = "4m",
        http_extra: str = "", server_extra: str = "",
    ) -> None:
        self.root = Path(root).resolve()
        self.host = host
        self.slow_rate = slow_rate
        # Extra nginx directives for one test's needs (e.g. limit_req zones and locations).
        self.http_extra = http_extra
        self.server_extra = server_extra
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
    {self.http_extra}
    server {{
        listen {self.host}:{port};
        root {self.root};
        location /slow/ {{
            alias {self.root}/;
            limit_rate {self.slow_rate};
        }}
        {self.server_extra}
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
                wait_listening(self.host, port, self._proc)
            except RuntimeError as exc:  # most likely the port was taken meanwhile
                last_error = RuntimeError(f"{exc}: {log.read_text(errors='replace')[-3000:]}")
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


class EdgeServer(AsgiServer):
    """The edge-case app (`tests/downloader/app.py`) under the launcher, HTTP/1.1 on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", **kwargs: Any) -> None:
        super().__init__("tests.downloader.app:app", host=host, keep_alive_timeout=30, graceful_timeout=0.5,
                         **kwargs)  # fmt: skip

    def start(self) -> EdgeServer:
        super().start()
        return self

    def __enter__(self) -> EdgeServer:
        return self.start()

    def log(self, prefix: str | None = None, clear: bool = False) -> list[dict[str, Any]]:  # type: ignore[override]
        """The requests seen, oldest first: path, query (a dict), range, if_range, status, t, user_agent,
        accept_encoding, sent (body bytes the app sent so far), headers (all of them, lower-case names)."""
        return [
            {"path": e["path"], "query": dict(parse_qsl(e["query"], keep_blank_values=True)),
             "range": e["headers"].get("range"), "if_range": e["headers"].get("if-range"), "status": e["status"],
             "t": e["t"], "user_agent": e["headers"].get("user-agent"),
             "accept_encoding": e["headers"].get("accept-encoding"), "sent": e.get("sent", 0),
             "headers": e["headers"]}
            for e in super().log(prefix, clear)
        ]  # fmt: skip

    def requests_for(self, key: str) -> list[dict[str, Any]]:
        return [r for r in self.log() if r["query"].get("key") == key]

    def bump(self, key: str) -> None:
        self._get("/__bump", key=key)

    def shape(self, key: str, **rules: int) -> None:
        """Out-of-band misbehaviour for `key` (see `/__shape` in app.py); no rules: back to normal."""
        self._get("/__shape", key=key, **{k: str(v) for k, v in rules.items()})
