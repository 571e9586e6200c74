"""The one loopback server launcher: `AsgiServer` runs any ASGI app, named by import path, under hypercorn
in a subprocess, cleartext HTTP/1.1 or HTTP/2 over TLS (ALPN h2, http/1.1; trustme certificates), with the
server-side request log of `crawler.demo.asgi.RequestLogger`. `free_port()` is the one free-port probe.

The subprocess half is `python -m crawler.demo.launcher --app module:attr ...`: it binds the socket itself,
so a busy fixed port can fall back to a free one, reports the port it got through a file, and exits when
its parent dies, so a killed test run never leaves servers holding ports.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import importlib.util
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from crawler.demo.extra import require_demo_extra
from crawler.demo.tls import TlsFiles, tls_files

__all__ = ["AsgiServer", "free_port", "wait_listening"]

START_TIMEOUT = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now. Another process may take it before you bind: where you can,
    let the server bind port 0 itself (AsgiServer does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_listening(
    host: str, port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = START_TIMEOUT
) -> None:
    """Wait until `host:port` accepts a connection; raise RuntimeError if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listened on {host}:{port} within {timeout}s") from None
            time.sleep(0.02)


def _import_root(app: str) -> str | None:
    """The sys.path entry the app's top-level package is found under, so the child imports it too
    (`tests.x:app` from a repository checkout works without PYTHONPATH)."""
    top = app.partition(":")[0].partition(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return str(Path(next(iter(spec.submodule_search_locations))).parent)
    return str(Path(spec.origin).parent) if spec.origin else None


class AsgiServer:
    """An ASGI app (`"package.module:attribute"`) under hypercorn in a subprocess on a loopback port.

    Use as a context manager, or call start()/stop(). `url` has no trailing slash
    (`https://127.0.0.1:PORT`); `host_key` is the crawler's per-host key (`127.0.0.1:PORT`). `env` goes to
    the server process (apps read their settings from it). TLS material comes from `tls_dir` (a directory
    to write a new CA into, or a TlsFiles), else the per-process shared CA. `log=False` serves the app bare
    (no request log, no `/__log`): for benchmarks.
    """

    def __init__(
        self,
        app: str,
        *,
        tls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        fallback_port: bool = True,
        env: dict[str, str] | None = None,
        tls_dir: str | Path | TlsFiles | None = None,
        keep_alive_timeout: float = 75.0,
        keep_alive_max_requests: int = 10_000_000,
        graceful_timeout: float = 1.0,
        log: bool = True,
    ) -> None:
        self.app = app
        self.tls = tls
        self.host = host
        self.requested_port = port
        self.fallback_port = fallback_port
        self.env = dict(env or {})
        self.keep_alive_timeout = keep_alive_timeout
        self.keep_alive_max_requests = keep_alive_max_requests
        self.graceful_timeout = graceful_timeout
        self.logging = log
        # The CA exists even for cleartext servers, so `ca_path` is always a usable `http.verify` value.
        self._tls = tls_dir if isinstance(tls_dir, TlsFiles) else tls_files(tls_dir)
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._client: Any = None  # httpx.Client, imported on start

    # --- addresses ---------------------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url_for(self, path: str, **params: Any) -> str:
        """The URL of `path`; keyword arguments (None values dropped) become the query string."""
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return self.url + (path if path.startswith("/") else "/" + path) + (f"?{query}" if query else "")

    @property
    def host_key(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ca_path(self) -> str:
        return str(self._tls.ca_path)

    @property
    def tls_material(self) -> TlsFiles:
        return self._tls

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting this server."""
        return self._tls.client_context()

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> AsgiServer:
        if self._proc is not None:
            return self
        require_demo_extra("hypercorn")
        import httpx

        self._workdir = Path(tempfile.mkdtemp(prefix="crawler-server-"))
        port_file = self._workdir / "port"
        args = [
            sys.executable, "-m", "crawler.demo.launcher", "--app", self.app,
            "--host", self.host, "--port", str(self.requested_port), "--port-file", str(port_file),
            "--keep-alive-timeout", str(self.keep_alive_timeout),
            "--keep-alive-max-requests", str(self.keep_alive_max_requests),
            "--graceful-timeout", str(self.graceful_timeout),
        ]  # fmt: skip
        if self.fallback_port:
            args.append("--fallback-port")
        if not self.logging:
            args.append("--no-log")
        if self.tls:
            args += ["--certfile", str(self._tls.cert_path), "--keyfile", str(self._tls.key_path)]
        env = {**os.environ, **self.env}
        root = _import_root(self.app)
        if root is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        with open(self._workdir / "server.log", "wb") as output:
            self._proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                          stderr=subprocess.STDOUT)  # fmt: skip
        try:
            self.port = self._wait_for_port(port_file)
            if self.logging:
                self._client = httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=10.0,
                                            trust_env=False)  # fmt: skip
                self._wait_until_answering()
            else:
                wait_listening(self.host, self.port, self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_port(self, port_file: Path) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if port_file.exists():
                return int(port_file.read_text())
            self._check_alive()
            time.sleep(0.02)
        raise RuntimeError(f"{self.app} did not report its port within {START_TIMEOUT}s:\n{self.output()}")

    def _wait_until_answering(self) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self._client.get("/__log", params={"prefix": "\0"}).status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            self._check_alive()
            time.sleep(0.05)

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"{self.app} exited with {self._proc.returncode}:\n{self.output()}")

    def output(self) -> str:
        """What the server process printed (errors, tracebacks): for failure messages."""
        if self._workdir is None or not (self._workdir / "server.log").exists():
            return ""
        return (self._workdir / "server.log").read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> AsgiServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.port is not None else "not started"
        return f"{type(self).__name__}({self.app}, {where})"

    # --- the server-side log ----------------------------------------------------------------------------

    def _get(self, path: str, **params: str) -> Any:
        if self._client is None:
            raise RuntimeError("the server is not started, or runs without a request log")
        response = self._client.get(path, params=params)
        response.raise_for_status()
        return response

    def log(self, prefix: str | None = None, clear: bool = False) -> list[dict[str, Any]]:
        """Requests the server received, oldest first (the entry keys are listed in crawler.demo.asgi).
        `prefix` keeps only paths starting with it; `clear` empties the log after reading."""
        params = {"clear": "1"} if clear else {}
        if prefix is not None:
            params["prefix"] = prefix
        requests: list[dict[str, Any]] = self._get("/__log", **params).json()["requests"]
        return requests

    def counters(self) -> Counter[str]:
        """requests, inflight, max_inflight (since the last clear), and what the app counted (0 if never)."""
        return Counter(self._get("/__log", prefix="\0").json()["counters"])

    def clear_log(self) -> None:
        self._get("/__log", prefix="\0", clear="1")

    def reset(self) -> None:
        """Clear the log and the app's own state (hit counts, tokens, versions)."""
        self._get("/__reset")

    def paths(self, prefix: str | None = None) -> list[str]:
        return [entry["path"] for entry in self.log(prefix)]


# --- the subprocess -------------------------------------------------------------------------------------


def _bind(host: str, port: int, fallback: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if not (fallback and port != 0 and exc.errno == errno.EADDRINUSE):
            raise
        sock.bind((host, 0))
    sock.listen(1024)
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def _load_app(path: str, logged: bool) -> Any:
    module_name, _, attribute = path.partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
    if not logged:
        return app
    from crawler.demo.asgi import RequestLogger

    return RequestLogger(app)


async def _serve(args: argparse.Namespace, sock: socket.socket) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    app = _load_app(args.app, not args.no_log)
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.backlog = 1024
    config.accesslog = None
    config.graceful_timeout = args.graceful_timeout
    config.keep_alive_timeout = args.keep_alive_timeout
    config.keep_alive_max_requests = args.keep_alive_max_requests
    if args.certfile:
        config.certfile = args.certfile
        config.keyfile = args.keyfile
        config.alpn_protocols = ["h2", "http/1.1"]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()

    async def orphaned() -> None:
        # If the parent dies without stopping us, do not linger holding the port.
        while os.getppid() == parent:  # noqa: ASYNC110 - no event fires when the parent dies
            await asyncio.sleep(1.0)
        stop.set()

    watcher = asyncio.create_task(orphaned())
    await serve(app, config, shutdown_trigger=stop.wait)
    watcher.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve an ASGI app on loopback with hypercorn.")
    parser.add_argument("--app", required=True, help="import path, package.module:attribute")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fallback-port", action="store_true", help="if --port is busy, take a free one")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--keep-alive-timeout", type=float, default=75.0)
    parser.add_argument("--keep-alive-max-requests", type=int, default=10_000_000)
    parser.add_argument("--graceful-timeout", type=float, default=1.0)
    parser.add_argument("--no-log", action="store_true", help="serve the app without the request log")
    args = parser.parse_args(argv)

    sock = _bind(args.host, args.port, args.fallback_port)
    port = sock.getsockname()[1]
    if args.port_file:
        # Write then rename, so the parent never reads a half-written number.
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(str(port))
        tmp.replace(args.port_file)
    else:
        print(f"serving {args.app} on {args.host}:{port}", flush=True)

    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args, sock))
    else:
        uvloop.run(_serve(args, sock))


if __name__ == "__main__":
    main()
