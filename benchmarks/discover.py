"""A crawl that discovers millions of URLs: peak RSS of the whole `crawler run` process (issue 10's bound: a
crawl that discovers 10M URLs stays under 300 MB).

A raw asyncio server on loopback serves generated pages: page N links to `--links` new pages (ids
N * links + 1 ...), each link unique, so every page fetched adds `--links` URLs to the frontier (seen set,
queue, spill) until `scope.max_pages` stops the crawl. Run as a separate `crawler run` process; its peak RSS
is the kernel's VmHWM, sampled over its lifetime.

    python -m benchmarks.discover                          # 1,000 pages x 10,000 links = 10M URLs discovered
    python -m benchmarks.discover --pages 100 --links 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["main"]


def _page(n: int, links: int) -> bytes:
    first = n * links + 1
    hrefs = "".join(f'<a href="/p/{i}">{i}</a>\n' for i in range(first, first + links))
    return f"<!doctype html><html><head><title>p{n}</title></head><body>{hrefs}</body></html>".encode()


class _Server:
    """HTTP/1.1 keep-alive on a loopback port, in a thread; pages made on the fly."""

    def __init__(self, links: int) -> None:
        self.links = links
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    path = head.split(b" ", 2)[1].decode()
                    if path.startswith("/p/"):
                        body, status = _page(int(path[3:]), self.links), b"200 OK"
                    else:
                        body, status = b"not here", b"404 Not Found"
                    writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/html\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = self._loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()


def _peak_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1000, help="pages fetched (scope.max_pages)")
    ap.add_argument("--links", type=int, default=10_000, help="new links per page (extract.max_links follows)")
    args = ap.parse_args(argv)
    server = _Server(args.links)
    work = Path(tempfile.mkdtemp(prefix="crawler-discover-"))
    job = work / "job.yaml"
    job.write_text(
        f"start_urls: ['http://127.0.0.1:{server.port}/p/0']\n"
        f"scope: {{max_pages: {args.pages}, robots_txt: false}}\n"
        "rate_limit: {per_host: unlimited}\n"
        "concurrency: {workers: 16, per_host: 16}\n"
        f"extract: {{max_links: {args.links}, fields: {{title: title}}}}\n"
        "http: {http2: false}\n"
        f"output: {{items: '{work / 'items.jsonl'}', stats: '{work / 'stats.json'}'}}\n"
    )
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "crawler", "run", str(job), "--progress", "off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _peak_rss(proc.pid))
        time.sleep(0.2)
    stderr = proc.stderr.read() if proc.stderr else ""
    wall = time.monotonic() - started
    stats = json.loads((work / "stats.json").read_text()) if (work / "stats.json").exists() else {}
    discovered = stats.get("pages", 0) * args.links
    print(json.dumps({"pages": stats.get("pages"), "links_per_page": args.links, "urls_discovered": discovered,
                      "exit": proc.returncode, "wall_s": round(wall, 1), "peak_rss_mb": round(peak / 1e6, 1)}))
    if proc.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
    return proc.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
