"""Micro-benchmark of the fetch path: req/s of GETs of a ~8.5 KB page on loopback, several clients side by side.

    .venv/bin/python benchmarks/transport_bench.py                      # all clients, C = 1, 64, 256
    .venv/bin/python benchmarks/transport_bench.py --concurrency 64 --duration 5 --loop uvloop
    .venv/bin/python benchmarks/transport_bench.py --aiohttp-python /tmp/benchvenv/bin/python
    .venv/bin/python benchmarks/transport_bench.py --keepalive-requests 100   # nginx says GOAWAY often

Serves the page with nginx from Debian (`apt-get install -y nginx-light`), run as a non-daemon child on free
loopback ports: cleartext HTTP/1.1, and TLS with h2 (certificates from trustme). Without nginx it falls back to
hypercorn. Every (client, concurrency) case runs in its own fresh interpreter; aiohttp (never a project
dependency: `python3.11 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install aiohttp uvloop`) runs from the
interpreter given by --aiohttp-python (default: this one, else /tmp/benchvenv), or is skipped when none has it.
Rounds are interleaved (each client once per round) and the median is reported, since a shared machine's
load moves between runs; `httpx-no-io` is the httpx client over a transport answering from memory, the
ceiling any transport under httpx can reach.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = str(Path(__file__).resolve().parent.parent)
PAGE_SIZE = 8500
LIMITS = {
    "max_connections": 100,
    "max_keepalive_connections": 100,
    "keepalive_expiry": 30.0,
}  # product defaults

CLIENTS = {
    "httpx-no-io": "httpx.AsyncClient over a transport answering from memory: the client's own ceiling",
    "httpx-default": "httpx.AsyncClient() with its default transport and limits (httpcore), HTTP/1.1",
    "ours-h1": "httpx.AsyncClient over make_transport(http2=False), HTTP/1.1 cleartext",
    "ours-h1-tls": "httpx.AsyncClient over make_transport(http2=False), HTTP/1.1 over TLS",
    "httpx-default-h2": "httpx.AsyncClient(http2=True) with its default transport and limits, HTTP/2 over TLS",
    "ours-h2": "httpx.AsyncClient over make_transport(http2=True), HTTP/2 over TLS (ALPN)",
    "aiohttp": "bare aiohttp.ClientSession, HTTP/1.1 cleartext (reference)",
}


def _page() -> bytes:
    row = b"<p>The quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet.</p>\n"
    head = b"<!doctype html><html><head><title>bench page</title></head><body>\n"
    body = head + row * ((PAGE_SIZE - len(head) - 15) // len(row))
    return body.ljust(PAGE_SIZE - 15, b" ") + b"</body></html>\n"


PAGE = _page()


async def page_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The page as a bare ASGI app: what hypercorn serves when nginx is missing."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(PAGE)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": PAGE})


class Servers:
    """nginx (or hypercorn) serving /page.html on a cleartext and a TLS (h2 + http/1.1) port."""

    def __init__(self, keepalive_requests: int = 1_000_000) -> None:
        self.keepalive_requests = keepalive_requests
        self.dir = Path(tempfile.mkdtemp(prefix="transport-bench-"))
        self.dir.chmod(0o755)  # nginx workers run as an unprivileged user when started as root
        self.ca_path = self.dir / "tls" / "ca.pem"
        self.http_port = self.https_port = 0
        self.kind = ""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._asgi: list[Any] = []

    def start(self) -> None:
        # Imported here: the case runner may be an interpreter without the project (aiohttp's).
        if REPO not in sys.path:
            sys.path.insert(0, REPO)
        from benchmarks.nginx import find_nginx
        from crawler.demo.launcher import free_port, wait_listening
        from crawler.demo.tls import tls_files

        self.tls = tls_files(self.dir / "tls")
        (self.dir / "www").mkdir()
        (self.dir / "www" / "page.html").write_bytes(PAGE)
        nginx = find_nginx()
        if nginx:
            self.http_port = free_port()
            self.https_port = free_port()
            self._start_nginx(nginx)
            for port in (self.http_port, self.https_port):
                wait_listening("127.0.0.1", port, self._procs[-1])
        else:
            self._start_hypercorn()

    def _start_nginx(self, nginx: str) -> None:
        self.kind = "nginx"
        (self.dir / "logs").mkdir()
        conf = textwrap.dedent(f"""
            worker_processes 1;
            error_log {self.dir}/logs/error.log warn;
            pid {self.dir}/nginx.pid;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                sendfile on;
                tcp_nopush on;
                keepalive_timeout 65;
                keepalive_requests {self.keepalive_requests};
                client_body_temp_path {self.dir}/tmp_body;
                proxy_temp_path {self.dir}/tmp_proxy;
                fastcgi_temp_path {self.dir}/tmp_fcgi;
                uwsgi_temp_path {self.dir}/tmp_uwsgi;
                scgi_temp_path {self.dir}/tmp_scgi;
                types {{ text/html html; }}
                server {{
                    listen 127.0.0.1:{self.http_port};
                    root {self.dir}/www;
                }}
                server {{
                    listen 127.0.0.1:{self.https_port} ssl http2;
                    ssl_certificate {self.tls.cert_path};
                    ssl_certificate_key {self.tls.key_path};
                    http2_max_concurrent_streams 256;
                    root {self.dir}/www;
                }}
            }}
        """)
        (self.dir / "nginx.conf").write_text(conf)
        self._procs.append(subprocess.Popen(
            [nginx, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-g", "daemon off;"],
            stderr=subprocess.DEVNULL,
        ))  # fmt: skip

    def _start_hypercorn(self) -> None:
        from crawler.demo.launcher import AsgiServer

        self.kind = "hypercorn"
        for tls in (False, True):
            server = AsgiServer("benchmarks.transport_bench:page_app", tls=tls, tls_dir=self.tls, log=False,
                                keep_alive_max_requests=self.keepalive_requests)  # fmt: skip
            self._asgi.append(server.start())
        self.http_port, self.https_port = (server.port or 0 for server in self._asgi)

    def stop(self) -> None:
        for server in self._asgi:
            server.stop()
        for p in self._procs:
            p.terminate()
        for p in self._procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- one case, in a fresh interpreter ------------------------------------------------------------------


async def _run_case(client: str, url: str, ca: str, concurrency: int, duration: float) -> dict[str, float]:
    if client == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=LIMITS["max_connections"]))

        async def fetch() -> int:
            async with session.get(url) as r:
                return len(await r.read())

        async def close() -> None:
            await session.close()

        version = "HTTP/1.1"
    else:
        import ssl

        import httpx

        sys.path.insert(0, REPO)
        from crawler.http.transport.transport import make_transport

        limits = httpx.Limits(**LIMITS)
        verify = ssl.create_default_context(cafile=ca)
        http2 = client.endswith("h2")
        if client.startswith("ours"):
            transport = make_transport(http2=http2, verify=verify, limits=limits)
            c = httpx.AsyncClient(transport=transport)
        elif client == "httpx-no-io":
            c = httpx.AsyncClient(transport=_memory_transport())
        else:
            c = httpx.AsyncClient(http2=http2, verify=verify)  # httpx's defaults, limits included
        seen: set[str] = set()

        async def fetch() -> int:
            r = await c.get(url)
            seen.add(r.http_version)
            return len(r.content)

        async def close() -> None:
            await c.aclose()

    # Warm up: open the connections, fill caches.
    await asyncio.gather(*(fetch() for _ in range(concurrency)))
    for _ in range(3):
        await fetch()
    done = 0
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            n = await fetch()
            if n != PAGE_SIZE:
                raise RuntimeError(f"got {n} bytes, expected {PAGE_SIZE}")
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await close()
    if client != "aiohttp":
        version = ",".join(sorted(seen))
    return {"rps": done / elapsed, "requests": done, "http_version": version}  # type: ignore[dict-item]


def _memory_transport_class() -> type:
    import httpx

    body = _page()
    headers = [(b"Server", b"nginx/1.22.1"), (b"Date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
               (b"Content-Type", b"text/html"), (b"Content-Length", str(len(body)).encode()),
               (b"Last-Modified", b"Mon, 01 Jan 2024 00:00:00 GMT"), (b"Connection", b"keep-alive"),
               (b"ETag", b'"659200-2134"'), (b"Accept-Ranges", b"bytes")]  # fmt: skip

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield body

    class MemoryTransport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(0)  # one trip through the loop, as a real response would take
            return httpx.Response(
                200, headers=headers, stream=Body(), extensions={"http_version": b"HTTP/1.1"}
            )

    return MemoryTransport


def _memory_transport() -> Any:
    return _memory_transport_class()()


def _case_main(args: argparse.Namespace) -> None:
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    result = asyncio.run(_run_case(args.client, args.url, args.ca, args.c, args.duration))
    print(json.dumps(result))


def _aiohttp_python(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else [sys.executable, "/tmp/benchvenv/bin/python"]
    for py in candidates:
        if py and Path(py).exists():
            ok = subprocess.run([py, "-c", "import aiohttp"], capture_output=True).returncode == 0
            if ok:
                return py
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", default="1,64,256", help="comma-separated, default 1,64,256")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds measured per case (after warm-up)")
    ap.add_argument(
        "--clients", default=",".join(CLIENTS), help="comma-separated subset of: " + ", ".join(CLIENTS)
    )
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop", "both"])
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--aiohttp-python", default=None, help="an interpreter with aiohttp installed")
    ap.add_argument("--keepalive-requests", type=int, default=1_000_000,
                    help="nginx's requests per connection before it closes it (GOAWAY in h2); nginx's default is 1000")  # fmt: skip
    # internal: one case
    ap.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--ca", help=argparse.SUPPRESS)
    ap.add_argument("--c", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        _case_main(args)
        return

    concurrencies = [int(x) for x in args.concurrency.split(",")]
    clients = [c for c in args.clients.split(",") if c]
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    aio_py = _aiohttp_python(args.aiohttp_python) if "aiohttp" in clients else None
    servers = Servers(args.keepalive_requests)
    servers.start()
    print(f"server: {servers.kind}, page {PAGE_SIZE} B, our limits {LIMITS} (httpx rows: httpx defaults), {args.duration:g}s per case, "
          f"{os.cpu_count()} CPUs", flush=True)  # fmt: skip
    if "aiohttp" in clients and aio_py is None:
        print("aiohttp: skipped (no interpreter with aiohttp; see --aiohttp-python)", flush=True)
        clients.remove("aiohttp")
    # Other work on the machine skews single runs: every round runs each client once, interleaved, and the
    # table reports the median of the rounds.
    results: dict[tuple[str, str, int], list[float]] = {}
    versions: dict[tuple[str, str], str] = {}
    try:
        for loop in loops:
            for c in concurrencies:
                for round_ in range(args.repeat):
                    for client in clients:
                        rps, version = _run_one(servers, client, loop, c, args.duration, aio_py)
                        results.setdefault((loop, client, c), []).append(rps)
                        if version:
                            versions[(loop, client)] = version
                        print(f"  {loop:7} C={c:<4} round {round_ + 1}  {client:17} {rps:>8,.0f} req/s  ({version})",
                              flush=True)  # fmt: skip
    finally:
        servers.stop()

    print(
        f"\nmedian of {args.repeat} interleaved round(s); load average at the end: {os.getloadavg()[0]:.2f}"
    )
    print("| loop | client | protocol | " + " | ".join(f"C={c}" for c in concurrencies) + " |")
    print("|" + "---|" * (3 + len(concurrencies)))
    for loop in loops:
        for client in clients:
            cells = []
            for c in concurrencies:
                runs = sorted(results.get((loop, client, c), []))
                ok = [r for r in runs if r > 0]
                cells.append(f"{statistics.median(ok):,.0f}" if ok else "error")
            version = versions.get((loop, client), "")
            print(f"| {loop} | {client} | {version} | " + " | ".join(cells) + " |")


def _run_one(servers: Servers, client: str, loop: str, c: int, duration: float,
             aio_py: str | None) -> tuple[float, str]:  # fmt: skip
    py = aio_py if client == "aiohttp" and aio_py else sys.executable
    tls = client.endswith("h2") or client.endswith("tls")
    port = servers.https_port if tls else servers.http_port
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/page.html"
    cmd = [py, str(Path(__file__).resolve()), "--case", "--client", client, "--url", url,
           "--ca", str(servers.ca_path), "--c", str(c), "--duration", str(duration), "--loop", loop]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        print(f"{client} C={c} ({loop}): failed\n{out.stderr[-2000:]}", flush=True)
        return 0.0, ""
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return float(res["rps"]), str(res["http_version"])


if __name__ == "__main__":
    main()
