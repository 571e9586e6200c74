"""The benchmark crawl on each frontier: pages/s in memory, with `state:` (SQLite), and on Redis with one and
two processes. Same site, same job, runs interleaved, median of the repeats.

    python -m tests.frontier.crawl_bench                      # 10,000 pages, 3 repeats
    python -m tests.frontier.crawl_bench --pages 3000 --repeats 5 --variants memory sqlite

The site is the test site's pages (crawler/demo/site.py: 2-8 KB, 11-13 links each) rendered to files and served by
nginx (one worker; `--server site` uses the hypercorn test site itself, which then limits the crawl); the job follows every link with 64 workers, no rate limit, no robots.txt,
and writes a title per page as JSON lines. "wall" is pages over the wall time from starting the process(es)
to the last exit, interpreter start-up included; "engine" is the crawler's own figure (one process only);
"CPU" is the crawler processes' own user+system time (from wait4), which other load on a shared machine
disturbs far less than wall time. Redis's own CPU is not included.
Redis needs `redis-server` (started privately on a free port).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from crawler.demo.launcher import free_port  # noqa: E402
from crawler.demo.site import SiteServer, page_links, render_home, render_page  # noqa: E402
from tests.frontier._backends import start_redis  # noqa: E402
from tests.frontier._crawl import count_lines, write_job  # noqa: E402

VARIANTS = ["memory", "sqlite", "redis-1", "redis-2"]
_RATE_RE = re.compile(r"([\d,.]+) pages/s")


Result = tuple[int, float, float | None, float]


class StaticSite:
    """The test site's pages rendered to files and served by nginx (one worker), so that the server is not
    what limits the crawl. Same URLs, same links as `SiteServer`.

    With `hosts` > 1 the site is spread over that many hosts, 127.0.0.1 ... 127.0.0.N (loopback answers on the
    whole 127/8), one nginx listening on each: page k lives on host k % N, and every link is absolute to its
    target's host (same link graph). A crawl of it reaches `expected_urls()`, each once."""

    def __init__(self, pages: int, workdir: Path, *, hosts: int = 1) -> None:
        self.pages = pages
        self.dir = workdir / "nginx"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hosts = [f"127.0.0.{i + 1}" for i in range(hosts)]
        self.proc: subprocess.Popen[bytes] | None = None

    def page_url(self, k: int) -> str:
        return f"http://{self.hosts[k % len(self.hosts)]}:{self.port}/page/{k}"

    def expected_urls(self) -> set[str]:
        return {self.url + "/"} | {self.page_url(k) for k in range(self.pages)}

    def _render_page(self, n: int) -> bytes:
        if len(self.hosts) == 1:
            return render_page(n, self.pages, self.url)
        links = "\n".join(f'<li><a href="{self.page_url(k)}">Page {k}</a></li>' for k in page_links(n, self.pages))
        filler = ("crawl fetch frontier shard host queue " * 200)[: 1000 + (n * 7919) % 5300]
        return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n<title>Page {n}</title></head>'
                f"<body><h1>Page {n}</h1>\n<nav><ul>\n{links}\n</ul></nav>\n<article>{filler}</article>"
                "</body></html>\n").encode()  # fmt: skip

    def _render_home(self) -> bytes:
        if len(self.hosts) == 1:
            return render_home(self.pages)
        links = "\n".join(f'<li><a href="{self.page_url(k)}">Page {k}</a></li>' for k in range(min(self.pages, 10)))
        return f"<!doctype html>\n<html><head><title>Home</title></head><body><ul>{links}</ul></body></html>\n".encode()

    def __enter__(self) -> StaticSite:
        www = self.dir / "www"
        (www / "page").mkdir(parents=True)
        (self.dir / "logs").mkdir()
        for d in (self.dir.parent, self.dir, www, www / "page"):
            d.chmod(0o755)  # nginx workers run as an unprivileged user when started as root
        (www / "index.html").write_bytes(self._render_home())
        for n in range(self.pages):
            (www / "page" / str(n)).write_bytes(self._render_page(n))
        listen = " ".join(f"listen {h}:{self.port};" for h in self.hosts)
        conf = f"""
worker_processes 1;
error_log {self.dir}/logs/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    default_type text/html;
    client_body_temp_path {self.dir}/tmp_body;
    proxy_temp_path {self.dir}/tmp_proxy;
    fastcgi_temp_path {self.dir}/tmp_fcgi;
    uwsgi_temp_path {self.dir}/tmp_uwsgi;
    scgi_temp_path {self.dir}/tmp_scgi;
    server {{ {listen} root {www}; location = /robots.txt {{ return 404; }} }}
}}
"""
        (self.dir / "nginx.conf").write_text(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([nginx, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                                      "-g", "daemon off;"], stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nginx did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()


def nginx_available() -> bool:
    return bool(shutil.which("nginx") or Path("/usr/sbin/nginx").exists())


def run_variant(variant: str, site: SiteServer | StaticSite, redis_url: str | None, workdir: Path) -> Result:
    """(pages written, wall pages/s, the engine's own pages/s, crawler CPU seconds per 1,000 pages)."""
    run = workdir / uuid.uuid4().hex[:8]
    run.mkdir()
    extra: dict[str, object] = {
        "concurrency": {"workers": 64, "per_host": 64},
        "output": {"flush_every": 0.5},
    }
    workers = ["A"]
    if variant == "sqlite":
        extra["state"] = str(run / "state")
    elif variant.startswith("redis"):
        assert redis_url is not None
        extra["frontier"] = redis_url
        extra["name"] = f"bench-{run.name}"
        workers = ["A", "B"] if variant == "redis-2" else ["A"]
    files = [run / f"items-{w}.jsonl" for w in workers]
    procs = []
    logs = []
    started = time.perf_counter()
    for w, items in zip(workers, files, strict=True):
        job = write_job(run / f"job-{w}.yaml", site.url, items=items, **extra)  # type: ignore[arg-type]
        log = open(run / f"{w}.log", "w")
        logs.append(run / f"{w}.log")
        env = {"CRAWLER_WORKER": w, "PYTHONPATH": str(REPO_ROOT)}
        procs.append(subprocess.Popen([sys.executable, "-m", "crawler", "run", str(job), "--log-level", "WARNING"],
                                      cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **env}))  # fmt: skip
        log.close()
    cpu = 0.0
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)  # the child's own CPU time, not the machine's
        p.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
    wall = time.perf_counter() - started
    for p, log_path in zip(procs, logs, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"{variant} failed:\n{log_path.read_text()[-3000:]}")
    pages = count_lines(files)
    engine = None
    if len(procs) == 1:
        m = _RATE_RE.search(logs[0].read_text())
        engine = float(m.group(1).replace(",", "")) if m else None
    shutil.rmtree(run, ignore_errors=True)
    return pages, pages / wall, engine, cpu / pages * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--server", choices=["nginx", "site"], default="nginx" if nginx_available() else "site",
                        help="nginx serving the pages as files (default when installed), or the test site")  # fmt: skip
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crawl-bench-"))
    redis = start_redis() if any(v.startswith("redis") for v in args.variants) else None
    results: dict[str, list[Result]] = {v: [] for v in args.variants}
    try:
        server = (
            StaticSite(args.pages, workdir)
            if args.server == "nginx"
            else SiteServer(tls=False, pages=args.pages)
        )
        with server as site:
            for i in range(args.repeats):
                # Rotate the order each repeat: whatever runs first after a pause on a shared machine pays for it.
                for v in args.variants[i % len(args.variants) :] + args.variants[: i % len(args.variants)]:
                    r = run_variant(v, site, redis.url if redis else None, workdir)
                    results[v].append(r)
                    engine = f"{r[2]:.0f}" if r[2] is not None else "-"
                    print(f"run {i + 1} {v}: {r[0]} pages, wall {r[1]:.0f} pages/s, engine {engine}, "
                          f"{r[3]:.2f} CPU s per 1k pages", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    base = statistics.median(r[1] for r in results[args.variants[0]])
    print(f"\n{args.pages + 1:,} pages from {args.server}, 64 workers, median of {args.repeats}\n")
    base_cpu = statistics.median(r[3] for r in results[args.variants[0]])
    print(f"| frontier | pages/s (wall) | vs {args.variants[0]} | pages/s (engine) | crawler CPU s / 1k pages "
          f"| pages per CPU-second vs {args.variants[0]} |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for v, rs in results.items():
        wall = statistics.median(r[1] for r in rs)
        engines = [r[2] for r in rs if r[2] is not None]
        engine = f"{statistics.median(engines):.0f}" if engines else "-"
        cpu = statistics.median(r[3] for r in rs)
        print(f"| {v} | {wall:.0f} | {wall / base:.0%} | {engine} | {cpu:.2f} | {base_cpu / cpu:.0%} |")


if __name__ == "__main__":
    main()
