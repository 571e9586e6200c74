"""Running the test site for real: `SiteServer` starts hypercorn in a subprocess on a loopback port, either
cleartext HTTP/1.1 or HTTP/2 over TLS with trustme certificates, and reads the server-side request log.

The subprocess half lives here too (`python -m tests.site.server ...`): it binds the socket itself so a
busy fixed port can fall back to a free one, then reports the port it got through a file.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import errno
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["REPO_ROOT", "SiteServer", "TlsFiles", "tls_files"]

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every name the server certificate is valid for: tests use several loopback hosts as distinct hosts.
CERT_NAMES = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost", "::1"]
START_TIMEOUT = 20.0


class TlsFiles:
    """A trustme CA and a server certificate for CERT_NAMES, written as PEM files under `directory`."""

    def __init__(self, directory: Path) -> None:
        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="crawler test site")
        cert = ca.issue_cert(*CERT_NAMES)
        self.ca_path = directory / "ca.pem"
        self.cert_path = directory / "server.pem"
        self.key_path = directory / "server.key"
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert.cert_chain_pems[0].write_to_path(str(self.cert_path))
        for intermediate in cert.cert_chain_pems[1:]:
            intermediate.write_to_path(str(self.cert_path), append=True)
        cert.private_key_pem.write_to_path(str(self.key_path))

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


_shared_tls: TlsFiles | None = None


def tls_files(directory: str | Path | None = None) -> TlsFiles:
    """TLS material for a server. Without a directory, one CA per process shared by every server, so a
    single `http.verify` path trusts all of them."""
    global _shared_tls
    if directory is not None:
        return TlsFiles(Path(directory))
    if _shared_tls is None:
        tmp = Path(tempfile.mkdtemp(prefix="crawler-site-tls-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        _shared_tls = TlsFiles(tmp)
    return _shared_tls


class SiteServer:
    """The test site in a hypercorn subprocess. Use as a context manager, or call start()/stop().

    `url` is the base URL without a trailing slash (`https://127.0.0.1:PORT`); `host_key` is the crawler's
    per-host key (`127.0.0.1:PORT`). Site variants are SITE_* settings (see `tests.site.app.SiteSettings`).
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        fallback_port: bool = True,
        pages: int = 200,
        robots: str = "allow",
        env: dict[str, str] | None = None,
        tls_dir: str | Path | None = None,
        keep_alive_timeout: float = 75.0,
        keep_alive_max_requests: int = 10_000_000,
    ) -> None:
        self.tls = tls
        self.host = host
        self.requested_port = port
        self.fallback_port = fallback_port
        self.pages = pages
        self.robots = robots
        self.env = {"SITE_PAGES": str(pages), "SITE_ROBOTS": robots, **(env or {})}
        self.keep_alive_timeout = keep_alive_timeout
        self.keep_alive_max_requests = keep_alive_max_requests
        # The CA exists even for cleartext servers, so `ca_path` is always a usable `http.verify` value.
        self._tls = tls_files(tls_dir)
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._client: httpx.Client | None = None

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

    def url_for(self, path: str) -> str:
        return self.url + (path if path.startswith("/") else "/" + path)

    @property
    def host_key(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ca_path(self) -> str:
        return str(self._tls.ca_path)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting this server (httpx 0.28 deprecates `verify=<path>`)."""
        return self._tls.client_context()

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> SiteServer:
        if self._proc is not None:
            return self
        self._workdir = Path(tempfile.mkdtemp(prefix="crawler-site-"))
        port_file = self._workdir / "port"
        output = open(self._workdir / "server.log", "wb")  # closed below, once the child has it
        args = [
            sys.executable, "-m", "tests.site.server",
            "--host", self.host, "--port", str(self.requested_port), "--port-file", str(port_file),
            "--keep-alive-timeout", str(self.keep_alive_timeout),
            "--keep-alive-max-requests", str(self.keep_alive_max_requests),
        ]  # fmt: skip
        if self.fallback_port:
            args.append("--fallback-port")
        if self.tls:
            args += ["--certfile", str(self._tls.cert_path), "--keyfile", str(self._tls.key_path)]
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        output.close()
        try:
            self.port = self._wait_for_port(port_file)
            self._client = httpx.Client(
                base_url=self.url, verify=self.ssl_context(), http2=self.tls, timeout=10.0, trust_env=False
            )
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_port(self, port_file: Path) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if port_file.exists():
                return int(port_file.read_text())
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"test site exited with {self._proc.returncode}:\n{self.output()}")
            time.sleep(0.02)
        raise RuntimeError(f"test site did not report its port within {START_TIMEOUT}s:\n{self.output()}")

    def _wait_until_answering(self) -> None:
        assert self._client is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self._client.get("/__health").status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"test site exited with {self._proc.returncode}:\n{self.output()}")
            time.sleep(0.05)

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

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.port is not None else "not started"
        return f"SiteServer({where}, pages={self.pages}, robots={self.robots!r})"

    # --- the server-side log ----------------------------------------------------------------------------

    def _get_log(self, **params: str) -> dict[str, Any]:
        if self._client is None:
            raise RuntimeError("the server is not started")
        response = self._client.get("/__log", params=params)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def log(self, prefix: str | None = None, clear: bool = False) -> list[dict[str, Any]]:
        """Requests the server received, oldest first; each has seq, method, path, query, http_version,
        scheme, client ("ip:port" of the connection), headers, t/t_end (server monotonic), status, inflight.
        `prefix` keeps only paths starting with it; `clear` empties the log after reading."""
        params = {"clear": "1"} if clear else {}
        if prefix is not None:
            params["prefix"] = prefix
        requests: list[dict[str, Any]] = self._get_log(**params)["requests"]
        return requests

    def counters(self) -> dict[str, int]:
        """requests, inflight, max_inflight (since the last clear) and tokens_issued by /oauth/token."""
        counters: dict[str, int] = self._get_log(prefix="\0")["counters"]
        return counters

    def clear_log(self) -> None:
        self._get_log(prefix="\0", clear="1")

    def reset(self) -> None:
        """Clear the log and forget /retry-after and /flaky hit counts and issued tokens."""
        self._get_log(prefix="\0", reset="1")

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


async def _serve(args: argparse.Namespace, sock: socket.socket) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from tests.site.app import app

    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.backlog = 1024
    config.accesslog = None
    config.graceful_timeout = 1.0
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
        # If the test process dies without stopping us, do not linger holding the port.
        while os.getppid() == parent:  # noqa: ASYNC110 - no event fires when the parent dies
            await asyncio.sleep(1.0)
        stop.set()

    watcher = asyncio.create_task(orphaned())
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    watcher.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the crawler test site (one variant per process).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fallback-port", action="store_true", help="if --port is busy, take a free one")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--keep-alive-timeout", type=float, default=75.0)
    parser.add_argument("--keep-alive-max-requests", type=int, default=10_000_000)
    args = parser.parse_args(argv)

    sock = _bind(args.host, args.port, args.fallback_port)
    port = sock.getsockname()[1]
    if args.port_file:
        # Write then rename, so the parent never reads a half-written number.
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(str(port))
        tmp.replace(args.port_file)
    else:
        print(f"serving on {args.host}:{port}", flush=True)

    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args, sock))
    else:
        uvloop.run(_serve(args, sock))


if __name__ == "__main__":
    main()
