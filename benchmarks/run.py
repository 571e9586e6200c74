"""`make bench`: our crawler next to Scrapy, Crawlee and bare fetch loops on one generated site, downloads next
to curl and aria2c, and the frontier's memory per URL; writes benchmarks/RESULTS.md and benchmarks/results.png.

    python -m benchmarks.run                  # everything: 10,000 pages, median of 3 (~60 min on 2 cores)
    python -m benchmarks.run --quick          # 2,000 pages, 1 repeat, small downloads (writes under _work/)
    python -m benchmarks.run --only crawl --tools ours-h1,scrapy-h1 --repeats 1

Everything runs on loopback. nginx (Debian's package; installed with apt-get when missing) serves the site with
one worker process: the machine has 2 cores, one for the server and one for the client under test. Peers are
installed into their own venv (benchmarks/_venv_peers), never into the project's dependencies. Every run is a
separate process, measured from outside: wall time from spawn to exit (interpreter start-up included), CPU
seconds from wait4's rusage, peak RSS from /proc (the sum of the VmHWM marks over its process tree:
`tests.peak_rss`). Runs are interleaved tool after tool, `--repeats` times; the table shows medians (peak
RSS: the max).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.nginx import Nginx  # noqa: E402
from benchmarks.realpages import build_real_site  # noqa: E402
from benchmarks.site import generate_site, page_path  # noqa: E402
from tests.peak_rss import measure as measure_process  # noqa: E402

__all__ = [
    "CRAWL_TOOLS",
    "REAL_TOOLS",
    "BenchSite",
    "ProcResult",
    "measure",
    "render_markdown",
    "run_crawls",
    "run_memory",
    "summarize_crawls",
]

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / "_work"
PEERS_VENV = BENCH_DIR / "_venv_peers"
PEERS_DIR = BENCH_DIR / "peers"
PEER_PACKAGES = ["scrapy", "crawlee[parsel]", "aiohttp", "selectolax", "httpx[http2]", "matplotlib", "py-spy"]
PEER_DISTS = [
    "scrapy",
    "twisted",
    "crawlee",
    "impit",
    "parsel",
    "aiohttp",
    "selectolax",
    "httpx",
    "h2",
    "matplotlib",
    "py-spy",
]
CONCURRENCY = 64
MB = 1_000_000
Log = Callable[[str], None]


# -- measuring one process ------------------------------------------------------------------------------------


@dataclass
class ProcResult:
    """One process, measured from outside."""

    code: int | None
    wall: float
    cpu: float  # user + system seconds of the process and the children it waited for
    peak_rss: int  # bytes
    stdout: str
    stderr_tail: str
    timed_out: bool = False


def measure(argv: list[str], *, timeout: float, cwd: str | Path | None = None, env: dict[str, str] | None = None,
            interval: float = 0.02) -> ProcResult:  # fmt: skip
    """Run `argv` to completion (killing its process group after `timeout` seconds) and measure it with the
    tests' one sampler (`tests.peak_rss`): peak RSS is the sum of the process tree's VmHWM marks (exact for one
    process; for a crawl with worker processes an upper bound), CPU from wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        res = measure_process(argv, timeout=timeout, cwd=cwd, env=env, stdout=out, stderr=err, interval=interval)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read()[-3000:].decode(errors="replace")
    return ProcResult(code=res.code, wall=res.wall, cpu=res.cpu, peak_rss=res.peak_rss, stdout=stdout,
                      stderr_tail=stderr, timed_out=res.timed_out)  # fmt: skip


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


# -- the peers' venv --------------------------------------------------------------------------------------------


@dataclass
class Peers:
    python: str | None
    versions: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def has(self, dist: str) -> bool:
        return self.python is not None and dist in self.versions


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _peer_versions(python: str) -> dict[str, str]:
    code = ("import importlib.metadata as m, json\nout = {}\n"
            f"for d in {PEER_DISTS!r}:\n"
            "    try: out[d] = m.version(d)\n    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")  # fmt: skip
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def ensure_peers(venv: Path = PEERS_VENV, *, install: bool = True, log: Log = print) -> Peers:
    """The peers' interpreter, creating the venv and installing the peers with pip when needed. A peer that
    cannot be installed is reported, not fatal."""
    python = _venv_python(venv)
    wanted = {"scrapy", "crawlee", "aiohttp", "selectolax", "httpx", "matplotlib", "py-spy"}
    if python.exists() and wanted <= set(_peer_versions(str(python))):
        return Peers(str(python), _peer_versions(str(python)))
    if not install:
        return Peers(str(python) if python.exists() else None, _peer_versions(str(python)) if python.exists() else {},
                     ["peers venv missing and --no-install given"])  # fmt: skip
    problems: list[str] = []
    if not python.exists():
        base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
        log(f"creating the peers' venv {venv} (with {base})")
        proc = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True)
        if proc.returncode != 0:
            return Peers(None, {}, [f"cannot create the peers venv: {proc.stderr.strip()[-300:]}"])
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], capture_output=True)
    log(f"installing peers into {venv}: {' '.join(PEER_PACKAGES)}")
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], capture_output=True, text=True
    )
    if proc.returncode != 0:  # install what can be installed, one by one
        for pkg in PEER_PACKAGES:
            one = subprocess.run(
                [str(python), "-m", "pip", "install", "-q", pkg], capture_output=True, text=True
            )
            if one.returncode != 0:
                tail = (one.stderr.strip().splitlines() or ["pip failed"])[-1]
                problems.append(f"{pkg}: pip install failed: {tail[-200:]}")
                log(f"  {pkg}: not installed ({tail[-200:]})")
    return Peers(str(python), _peer_versions(str(python)), problems)


# -- crawls ------------------------------------------------------------------------------------------------------


@dataclass
class BenchSite:
    """What a crawl benchmark serves: the nginx root, the start page, and the pages every crawler must reach
    (the fetch loops fetch exactly these)."""

    name: str
    www: Path
    start: str  # URL path
    paths: list[str]  # URL paths
    sizes: dict[str, int]  # URL path -> bytes


def synthetic_site(www: Path) -> BenchSite:
    """The generated site (benchmarks/site.py) under `www`."""
    pages = sorted((www / "p").glob("*.html"), key=lambda p: int(p.stem))
    paths = [page_path(int(p.stem)) for p in pages]
    sizes = {page_path(int(p.stem)): p.stat().st_size for p in pages}
    return BenchSite("synthetic", www, page_path(0), paths, sizes)


def real_site(workdir: Path, mounts: int, log: Log = print) -> BenchSite:
    """The Python docs mounted `mounts` times (benchmarks/realpages.py)."""
    real = build_real_site(workdir / f"real-{mounts}", mounts=mounts, log=log)
    return BenchSite("real", real.www, real.start, real.paths, real.sizes)


@dataclass
class Target:
    """Where a run points: the nginx base URL of one protocol, and its CA when TLS."""

    base: str
    protocol: str
    ca: str | None


@dataclass
class CrawlTool:
    key: str
    label: str
    protocol: str  # "h1", "h2c", "h2"
    kind: str  # "crawler" (follows links, writes items) or "ceiling" (fetches a URL list)
    needs: str | None  # a peer distribution, or None for ours
    argv: Callable[[RunContext], list[str]]
    note: str = ""
    root: Path = REPO_ROOT  # the checkout whose crawler runs (ours unless --baseline)


@dataclass
class RunContext:
    target: Target
    run_dir: Path
    peers_python: str
    urls_file: Path
    start_url: str


PROTOCOL_LABEL = {"h1": "HTTP/1.1", "h2c": "HTTP/2 cleartext (prior knowledge)", "h2": "HTTP/2 + TLS"}


def _job_yaml(ctx: RunContext, *, http2: bool) -> Path:
    job = {
        "name": "bench",
        "start_urls": [ctx.start_url],
        "scope": {"robots_txt": False},
        "concurrency": {"workers": CONCURRENCY, "per_host": CONCURRENCY},
        "rate_limit": {"per_host": "unlimited"},
        "http": {"http2": http2, "http2_prior_knowledge": http2 and ctx.target.ca is None,
                 "limits": {"max_connections": CONCURRENCY,
                                            "max_keepalive_connections": CONCURRENCY},
                 **({"verify": ctx.target.ca} if ctx.target.ca else {})},
        "extract": {"fields": {"title": "title"}},
        "output": {"items": str(ctx.run_dir / "items.jsonl"), "stats": str(ctx.run_dir / "stats.json")},
    }  # fmt: skip
    path = ctx.run_dir / "job.yaml"
    path.write_text(json.dumps(job, indent=2))  # JSON is YAML
    return path


def _ours(http2: bool, processes: int = 1, python: str | None = None) -> Callable[[RunContext], list[str]]:
    def argv(ctx: RunContext) -> list[str]:
        cmd = [python or sys.executable, "-m", "crawler", "run", str(_job_yaml(ctx, http2=http2)), "--progress", "off",
               "--log-level", "WARNING"]  # fmt: skip
        if processes > 1:
            cmd += ["--processes", str(processes)]
        return cmd

    return argv


def _peer(script: str, *extra: str) -> Callable[[RunContext], list[str]]:
    def argv(ctx: RunContext) -> list[str]:
        args = [ctx.peers_python, str(PEERS_DIR / script)]
        for e in extra:
            args.append(
                e.format(start=ctx.start_url, out=ctx.run_dir / "items.jsonl", urls=ctx.urls_file,
                         ca=ctx.target.ca or "", storage=ctx.run_dir / "storage", c=CONCURRENCY)
            )  # fmt: skip
        return args

    return argv


CRAWL_TOOLS: dict[str, CrawlTool] = {t.key: t for t in [
    CrawlTool("ours-h1", "crawler (ours)", "h1", "crawler", None, _ours(http2=False)),
    CrawlTool("ours-h1-p2", "crawler (ours) --processes 2", "h1", "crawler", None, _ours(False, processes=2)),
    CrawlTool("scrapy-h1", "Scrapy", "h1", "crawler", "scrapy",
              _peer("scrapy_spider.py", "--start", "{start}", "--out", "{out}", "--concurrency", "{c}")),
    CrawlTool("crawlee-h1", "Crawlee ParselCrawler", "h1", "crawler", "crawlee",
              _peer("crawlee_crawl.py", "--start", "{start}", "--out", "{out}", "--storage", "{storage}",
                    "--concurrency", "{c}")),
    CrawlTool("aiohttp-h1", "aiohttp fetch loop (ceiling)", "h1", "ceiling", "aiohttp",
              _peer("fetch_aiohttp.py", "--urls", "{urls}", "--concurrency", "{c}")),
    CrawlTool("parse-h1", "aiohttp + selectolax parse loop (title + every a[href])", "h1", "ceiling", "selectolax",
              _peer("parse_aiohttp.py", "--urls", "{urls}", "--concurrency", "{c}")),
    CrawlTool("httpx-h1", "httpx.AsyncClient() fetch loop", "h1", "ceiling", "httpx",
              _peer("fetch_httpx.py", "--urls", "{urls}", "--concurrency", "{c}")),
    CrawlTool("ours-h2c", "crawler (ours)", "h2c", "crawler", None, _ours(http2=True)),
    CrawlTool("httpx-h2c", "httpx fetch loop, 1 connection", "h2c", "ceiling", "httpx",
              _peer("fetch_httpx.py", "--urls", "{urls}", "--concurrency", "{c}", "--h2c")),
    CrawlTool("ours-h2", "crawler (ours)", "h2", "crawler", None, _ours(http2=True)),
    CrawlTool("scrapy-h2", "Scrapy (H2DownloadHandler)", "h2", "crawler", "scrapy",
              _peer("scrapy_spider.py", "--start", "{start}", "--out", "{out}", "--concurrency", "{c}", "--h2")),
    CrawlTool("crawlee-h2", "Crawlee ParselCrawler", "h2", "crawler", "crawlee",
              _peer("crawlee_crawl.py", "--start", "{start}", "--out", "{out}", "--storage", "{storage}",
                    "--concurrency", "{c}", "--insecure")),
    CrawlTool("httpx-h2", "httpx fetch loop, 1 connection", "h2", "ceiling", "httpx",
              _peer("fetch_httpx.py", "--urls", "{urls}", "--concurrency", "{c}", "--h2", "--ca", "{ca}")),
]}  # fmt: skip
# --processes 2 joins when `crawler run --help` offers it; Crawlee over TLS (~2 min a run) only when asked for.
DEFAULT_TOOLS = [k for k in CRAWL_TOOLS if k not in ("ours-h1-p2", "crawlee-h2", "parse-h1")]
# The real-page workload (Python docs): where the cost moves from HTTP to parsing and URL handling.
REAL_TOOLS = ["ours-h1", "ours-h1-p2", "scrapy-h1", "crawlee-h1", "aiohttp-h1", "parse-h1"]


def crawler_has_processes() -> bool:
    """Does `crawler run --help` offer --processes (the multi-process mode)?"""
    proc = subprocess.run([sys.executable, "-m", "crawler", "run", "--help"], capture_output=True, text=True,
                          cwd=REPO_ROOT)  # fmt: skip
    return "--processes" in proc.stdout


def _read_items(path: Path) -> tuple[set[str], int]:
    """Distinct URLs that came with a title, and the number of lines."""
    urls: set[str] = set()
    lines = 0
    if not path.exists():
        return urls, 0
    with open(path, "rb") as f:
        for line in f:
            lines += 1
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("title"):
                urls.add(item["url"])
    return urls, lines


def _one_crawl(tool: CrawlTool, ctx: RunContext, nginx: Nginx | None, sizes: dict[str, int], expected: int,
               timeout: float) -> dict[str, Any]:  # fmt: skip
    """Run one tool once; a dict of what was measured."""
    shutil.rmtree(ctx.run_dir, ignore_errors=True)
    ctx.run_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if tool.needs is None:
        env["PYTHONPATH"] = str(tool.root)
    argv = tool.argv(ctx)
    load = _loadavg()
    server_cpu0 = nginx.server_cpu_seconds() if nginx else 0.0
    res = measure(argv, timeout=timeout, cwd=ctx.run_dir if tool.needs else tool.root, env=env)
    server_cpu = (nginx.server_cpu_seconds() - server_cpu0) if nginx else 0.0
    row: dict[str, Any] = {"wall": res.wall, "cpu": res.cpu, "peak_rss": res.peak_rss, "code": res.code,
                           "server_cpu": server_cpu, "load": load}  # fmt: skip
    report: dict[str, Any] = {}
    for line in reversed(res.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                report = json.loads(line)
                break
            except ValueError:
                pass
    if tool.kind == "crawler":
        urls, lines = _read_items(ctx.run_dir / "items.jsonl")
        row["pages"] = len(urls)
        row["lines"] = lines
        row["bytes"] = sum(sizes.get(_path_of(u), 0) for u in urls)
        if tool.needs is None and (ctx.run_dir / "stats.json").exists():
            stats = json.loads((ctx.run_dir / "stats.json").read_text())
            row["own_seconds"] = stats.get("elapsed")
            row["http_versions"] = stats.get("http_versions")
        else:
            row["own_seconds"] = report.get("seconds")
            row["http_versions"] = report.get("http_version")
    else:
        row["pages"] = report.get("pages", 0)
        row["lines"] = row["pages"]
        row["bytes"] = report.get("bytes", 0)
        row["own_seconds"] = report.get("seconds")
        if report.get("http_version"):
            row["http_versions"] = report["http_version"]
    problem = None
    if res.timed_out:
        problem = f"timed out after {timeout:.0f} s"
    elif res.code != 0:
        problem = f"exit {res.code}: {res.stderr_tail.strip()[-400:]}"
    elif row["pages"] < expected:
        problem = f"only {row['pages']} of {expected} pages: {res.stderr_tail.strip()[-300:]}"
    row["error"] = problem
    row["pages_per_s"] = row["pages"] / res.wall if res.wall > 0 else 0.0
    own = row.get("own_seconds")
    row["own_pages_per_s"] = row["pages"] / own if own else None
    row["mb_per_s"] = row["bytes"] / MB / res.wall if res.wall > 0 else 0.0
    return row


def _path_of(url: str) -> str:
    i = url.find("/", url.find("://") + 3)
    return url[i:] if i >= 0 else "/"


def run_crawls(nginx: Nginx, site: BenchSite | Path, *, tools: Iterable[str], repeats: int, peers: Peers,
               workdir: Path, timeout: float, log: Log = print,
               peer_repeats: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Crawl the site (a `BenchSite`, or the generated site's root) with each tool `repeats` times,
    interleaved; one summary dict per tool (see `summarize_crawls`), in `tools` order. `peer_repeats`: how
    many of those rounds the peer crawlers (Scrapy, Crawlee) run (all when None): on real pages one run of
    Scrapy takes ~14 minutes."""
    if not isinstance(site, BenchSite):
        site = synthetic_site(site)
    sizes = site.sizes
    expected = len(site.paths)
    targets = {
        "h1": Target(nginx.http_url, "h1", None),
        "h2c": Target(nginx.h2c_url, "h2c", None),
        "h2": Target(nginx.https_url, "h2", str(nginx.ca_path)),
    }
    urls_files = {}
    for proto, target in targets.items():
        f = workdir / f"urls-{site.name}-{proto}.txt"
        f.write_text("".join(f"{target.base}{path}\n" for path in site.paths))
        urls_files[proto] = f
    selected = [CRAWL_TOOLS[k] for k in tools]
    runs: dict[str, list[dict[str, Any]]] = {t.key: [] for t in selected}
    skipped: dict[str, str] = {}
    for t in selected:
        if t.note:
            skipped[t.key] = t.note
        elif t.needs is not None and not peers.has(t.needs):
            skipped[t.key] = f"not run: {t.needs} is not installed in the peers venv"
    for r in range(repeats):
        for t in selected:
            if t.key in skipped:
                continue
            if peer_repeats is not None and t.kind == "crawler" and t.needs is not None and r >= peer_repeats:
                continue
            target = targets[t.protocol]
            ctx = RunContext(target=target, run_dir=workdir / "runs" / t.key, peers_python=peers.python or "",
                             urls_file=urls_files[t.protocol], start_url=f"{target.base}{site.start}")  # fmt: skip
            row = _one_crawl(t, ctx, nginx, sizes, expected, timeout)
            runs[t.key].append(row)
            status = f"  FAILED: {row['error']}" if row["error"] else ""
            cpu_ms = 1000 * row["cpu"] / row["pages"] if row["pages"] else float("nan")
            log(f"  run {r + 1}/{repeats} {t.key:11s} {row['pages_per_s']:8.1f} pages/s  {row['pages']:>6} pages  "
                f"{row['wall']:6.1f} s  cpu {row['cpu']:5.1f} s ({cpu_ms:.2f} ms/page)  rss {row['peak_rss'] / MB:6.1f} MB  "
                f"server cpu {row['server_cpu']:4.1f} s  load {row['load']:.1f}{status}")  # fmt: skip
        shutil.rmtree(workdir / "runs", ignore_errors=True)
    return summarize_crawls(selected, runs, skipped)


def summarize_crawls(tools: list[CrawlTool], runs: dict[str, list[dict[str, Any]]],
                     skipped: dict[str, str]) -> list[dict[str, Any]]:  # fmt: skip
    """Medians over the good runs of each tool (peak RSS: the max), and its ratios to Scrapy and aiohttp."""
    out: list[dict[str, Any]] = []
    for t in tools:
        base = {"key": t.key, "tool": t.label, "protocol": t.protocol, "kind": t.kind}
        if t.key in skipped:
            out.append({**base, "ok": False, "error": skipped[t.key], "runs": []})
            continue
        good = [r for r in runs.get(t.key, []) if not r["error"]]
        if not good:
            errs = [r["error"] for r in runs.get(t.key, [])]
            out.append(
                {**base, "ok": False, "error": errs[0] if errs else "no run", "runs": runs.get(t.key, [])}
            )
            continue

        def med(k: str, rows: list[dict[str, Any]] = good) -> float | None:
            vals = [r[k] for r in rows if r.get(k) is not None]
            return statistics.median(vals) if vals else None

        out.append({
            **base, "ok": True, "error": None,
            "pages": int(med("pages") or 0),
            "pages_per_s": med("pages_per_s"),
            "own_pages_per_s": med("own_pages_per_s"),
            "mb_per_s": med("mb_per_s"),
            "wall": med("wall"),
            "cpu": med("cpu"),
            "server_cpu": med("server_cpu"),
            "peak_rss_mb": max(r["peak_rss"] for r in good) / MB,
            "http_versions": good[-1].get("http_versions"),
            "failed_runs": len(runs[t.key]) - len(good),
            "runs": [round(r["pages_per_s"], 1) for r in runs[t.key]],
            "loads": [round(r["load"], 2) for r in runs[t.key]],
        })  # fmt: skip
    by_key = {r["key"]: r for r in out}
    scrapy = by_key.get("scrapy-h1", {}).get("pages_per_s") if by_key.get("scrapy-h1", {}).get("ok") else None
    aio = by_key.get("aiohttp-h1", {}).get("pages_per_s") if by_key.get("aiohttp-h1", {}).get("ok") else None
    aio_own = by_key.get("aiohttp-h1", {}).get("own_pages_per_s") if aio else None
    parse = by_key.get("parse-h1", {})
    for r in out:
        if r["ok"]:
            r["cpu_ms_per_page"] = 1000 * r["cpu"] / r["pages"] if r["pages"] and r["cpu"] else None
            r["x_parse"] = r["pages_per_s"] / parse["pages_per_s"] if parse.get("ok") else None
            r["x_scrapy"] = r["pages_per_s"] / scrapy if scrapy else None
            r["x_aiohttp"] = r["pages_per_s"] / aio if aio else None
            r["x_aiohttp_loop"] = r["pages_per_s"] / aio_own if aio_own else None
    return out


# -- memory -------------------------------------------------------------------------------------------------------


# The default set takes ~5 min (the memory frontier at 10M holds 10M Request objects in ~5 GB); --memory-all
# adds SQLite and Redis at 10M, 5-10 min each (they spend it inserting).
MEMORY_CASES = [("seen-set", 1_000_000), ("seen-set", 10_000_000), ("python-set", 1_000_000),
                ("python-set", 10_000_000), ("memory", 1_000_000), ("sqlite", 1_000_000),
                ("memory", 10_000_000), ("redis", 1_000_000)]  # fmt: skip
ALL_MEMORY_CASES = [*MEMORY_CASES, ("sqlite", 10_000_000), ("redis", 10_000_000)]
QUICK_MEMORY_CASES = [("seen-set", 1_000_000), ("python-set", 1_000_000), ("memory", 1_000_000)]


def run_memory(
    cases: list[tuple[str, int]], *, timeout: float = 1800, log: Log = print
) -> list[dict[str, Any]]:
    """benchmarks/frontier_memory.py, one case per fresh interpreter (its `--one` entry point)."""
    rows = []
    for case, n in cases:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.frontier_memory", "--one", case, str(n)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if proc.returncode != 0:
            rows.append(
                {"case": case, "urls": n, "error": proc.stderr.strip()[-300:] or f"exit {proc.returncode}"}
            )
            log(f"  memory {case} {n:,}: failed")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        main = row.get("rss_bytes_per_url", row.get("seen_bytes_per_url"))
        log(f"  memory {case:10s} {n:>11,} URLs: {main if main is None else round(main, 1)} bytes/URL")
    return rows


# -- profile --------------------------------------------------------------------------------------------------------


_FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _area(path: str) -> str:
    """A readable name for the code a frame belongs to: py-spy shortens file names to the package path
    (`crawler/engine/crawler.py`, `asyncio/runners.py`), which is what we want."""
    if path.startswith("<frozen importlib"):
        return "importlib (start-up imports)"
    area = path.removesuffix(".py").removesuffix("/__init__")
    return area or "?"


_OWN_LAYERS = ("crawler/", "pipelines/", "httpx/", "httpcore/", "selectolax", "orjson", "h2/", "hpack/")


def summarize_collapsed(text: str, top: int = 15) -> dict[str, Any]:
    """Self time by area (package/module) and by function from py-spy's collapsed stacks."""
    by_area: dict[str, int] = {}
    by_func: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [f for f in stack.split(";") if not f.startswith("process ")]  # --subprocesses roots
        if not frames:
            continue
        leaf = frames[-1]
        m = _FRAME_RE.match(leaf)
        func, file = (m.group("func"), m.group("file")) if m else (leaf, "?")
        area = _area(file)
        by_area[area] = by_area.get(area, 0) + count
        key = f"{func} ({area})"
        by_func[key] = by_func.get(key, 0) + count
        seen: set[str] = set()
        for fr in frames:
            fm = _FRAME_RE.match(fr)
            a = _area(fm.group("file")) if fm else "?"
            if (
                a not in seen
                and a.startswith(_OWN_LAYERS)
                and not a.startswith(("crawler/cli", "crawler/__main__"))
            ):
                seen.add(a)
                inclusive[a] = inclusive.get(a, 0) + count

    def pct(d: dict[str, int]) -> list[tuple[str, float]]:
        return (
            [(k, 100 * v / total) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]] if total else []
        )

    return {"samples": total, "self_by_area": pct(by_area), "self_by_function": pct(by_func),
            "inclusive_by_area": pct(inclusive)}  # fmt: skip


def profile_ours(nginx: Nginx, peers: Peers, workdir: Path, *, pages: int, timeout: float,
                 log: Log = print, site: BenchSite | None = None) -> dict[str, Any]:  # fmt: skip
    """Our HTTP/1.1 crawl once more under py-spy (sampling, 250 Hz, CPU time only); the synthetic site
    unless `site` is given."""
    name = "ours-h1" if site is None else f"ours-h1-{site.name}"
    pyspy = Path(peers.python).parent / "py-spy" if peers.python else None
    if pyspy is None or not pyspy.exists():
        return {"error": "py-spy is not installed in the peers venv"}
    run_dir = workdir / f"profile-{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    target = Target(nginx.http_url, "h1", None)
    ctx = RunContext(target=target, run_dir=run_dir, peers_python=peers.python or "", urls_file=run_dir / "-",
                     start_url=f"{nginx.http_url}{site.start if site else page_path(0)}")  # fmt: skip
    crawl = _ours(http2=False)(ctx)
    out = run_dir / "profile.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    res = measure([str(pyspy), "record", "--format", "raw", "--rate", "250", "--subprocesses", "-o", str(out),
                   "--", *crawl], timeout=timeout, cwd=REPO_ROOT, env=env)  # fmt: skip
    if res.code != 0 or not out.exists():
        return {"error": f"py-spy failed (exit {res.code}): {res.stderr_tail.strip()[-300:]}"}
    summary = summarize_collapsed(out.read_text())
    urls, _ = _read_items(run_dir / "items.jsonl")
    summary.update(
        pages=len(urls), wall=res.wall, tool="py-spy record --rate 250 (CPU samples only, not idle)"
    )
    shutil.copy(out, workdir / f"profile-{name}.txt")
    log(f"  profile: {summary['samples']} samples, top areas: "
        + ", ".join(f"{a} {p:.0f}%" for a, p in summary["self_by_area"][:5]))  # fmt: skip
    return summary


# -- machine and versions --------------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    info: dict[str, str] = {"cores": str(os.cpu_count()), "kernel": platform.release(),
                            "python": platform.python_version()}  # fmt: skip
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        info["memory"] = f"{int(mem.split()[1]) / 1024 / 1024:.1f} GiB"
        osr = dict(
            line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
        )
        info["os"] = osr.get("PRETTY_NAME", "").strip('"')
    except (OSError, StopIteration, ValueError):
        pass
    return info


def _tool_version(argv: list[str], pattern: str) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(pattern, proc.stdout + proc.stderr)
    return m.group(1) if m else None


def versions(peers: Peers, nginx_text: str) -> dict[str, str]:
    import importlib.metadata as md

    out: dict[str, str] = {}
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "crawler", "pipelines"],
                           cwd=REPO_ROOT, capture_output=True, text=True)  # fmt: skip
    out["crawler"] = (sha.stdout.strip() or "?") + (
        " (+ uncommitted changes)" if dirty.stdout.strip() else ""
    )
    for dist in ("httpx", "httpcore", "httptools", "selectolax", "uvloop"):
        try:
            out[f"{dist} (ours)"] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    for dist, v in peers.versions.items():
        out[dist] = v
    out["nginx"] = nginx_text.removeprefix("nginx ")
    for name, argv, pat in (("curl", ["curl", "--version"], r"curl (\S+)"),
                            ("aria2c", ["aria2c", "--version"], r"aria2 version (\S+)")):  # fmt: skip
        v = _tool_version(argv, pat)
        if v:
            out[name] = v
    return out


# -- RESULTS.md -------------------------------------------------------------------------------------------------------


def _f(x: float | None, fmt: str = ",.0f", none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def _crawl_table(rows: list[dict[str, Any]]) -> list[str]:
    parse = any(r["key"] == "parse-h1" for r in rows)
    lines = ["| protocol | tool | pages/s (median) | x Scrapy | x aiohttp | " + ("x parse loop | " if parse else "")
             + "MB/s | CPU s | CPU ms per page | server CPU s | peak RSS MB | pages | own timer pages/s | "
             "runs (pages/s) |",
             "|---|---|---:|---:|---:|" + ("---:|" if parse else "") + "---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        proto = PROTOCOL_LABEL[r["protocol"]]
        if not r["ok"]:
            lines.append(f"| {proto} | {r['tool']} | {_md_escape(r['error'] or 'not run')} |" + " |" * (10 + parse))
            continue
        lines.append(
            f"| {proto} | {'**' + r['tool'] + '**' if r['key'].startswith('ours') else r['tool']} | "
            f"{_f(r['pages_per_s'])} | {_f(r.get('x_scrapy'), '.1f')} | {_f(r.get('x_aiohttp'), '.2f')} | "
            + (f"{_f(r.get('x_parse'), '.2f')} | " if parse else "") +
            f"{_f(r['mb_per_s'], '.1f')} | {_f(r['cpu'], '.1f')} | {_f(r.get('cpu_ms_per_page'), '.2f')} | "
            f"{_f(r['server_cpu'], '.1f')} | "
            f"{_f(r['peak_rss_mb'], '.0f')} | {r['pages']:,} | {_f(r.get('own_pages_per_s'))} | "
            f"{', '.join(f'{x:,.0f}' for x in r['runs'])}{' (' + str(r['failed_runs']) + ' failed)' if r['failed_runs'] else ''} |"
        )  # fmt: skip
    return lines


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")[:300]


def _download_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| case | tool | MB/s (median) | x curl | peak RSS MB | runs (MB/s) |",
        "|---|---|---:|---:|---:|---|",
    ]
    curl = {r["case"]: r["mbps"] for r in rows if r["tool"] in ("curl", "curl -Z 16") and r.get("mbps")}
    for r in rows:
        if not r.get("mbps"):
            lines.append(f"| {r['case']} | {r['tool']} | not run: {_md_escape(str(r.get('error')))} | | | |")
            continue
        ref = curl.get(r["case"])
        lines.append(f"| {r['case']} | {r['tool']} | {r['mbps']:.0f} | {_f(r['mbps'] / ref if ref else None, '.2f')} | "
                     f"{r['peak_rss_mb']:.0f} | {', '.join(f'{x:.0f}' for x in r['runs'])} |")  # fmt: skip
    return lines


def _memory_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| structure | URLs | RSS bytes per URL (total / marginal) | notes |", "|---|---:|---:|---|"]
    names = {"seen-set": "seen set (CompactSeenSet)", "python-set": "Python set[int] (reference)",
             "memory": "MemoryFrontier, all queued", "sqlite": "SqliteFrontier, all queued",
             "redis": "RedisFrontier (redis-server used_memory)"}  # fmt: skip
    for r in rows:
        name = names.get(r["case"], r["case"])
        if r.get("error") or r.get("skipped"):
            lines.append(
                f"| {name} | {r['urls']:,} | not run | {_md_escape(r.get('error') or r.get('skipped'))} |"
            )
            continue
        if r["case"] == "redis":
            lines.append(f"| {name} | {r['urls']:,} | {r['seen_bytes_per_url']:.1f} (seen set only) | "
                         f"seen + queued: {r['seen_and_queued_bytes_per_url']:.0f} B/URL in Redis |")  # fmt: skip
            continue
        notes = []
        if "table_bytes_per_url" in r:
            notes.append(f"hash tables {r['table_bytes_per_url']:.1f} B/URL")
        if "disk_bytes_per_url" in r:
            notes.append(
                f"queue on disk {r['disk_bytes_per_url']:.0f} B/URL, {r['queued_in_memory']:,} in memory"
            )
        notes.append(f"{r['seconds']:.0f} s to build")
        lines.append(f"| {name} | {r['urls']:,} | {r['rss_bytes_per_url']:.1f} / "
                     f"{r.get('marginal_bytes_per_url', float('nan')):.1f} | {'; '.join(notes)} |")  # fmt: skip
    return lines


CAVEATS = [
    "Our h2c row uses `http.http2_prior_knowledge: true`; the h2c ceiling is httpx's (`http1=False, http2=True`). "
    "Scrapy and Crawlee have no h2c; aiohttp has no HTTP/2 at all.",
    "Scrapy fetches the start page twice (start requests bypass its dupefilter and the last page links back "
    "to page 0): pages counts distinct URLs with a title, so that extra response is not counted.",
    "Crawlee stores items in its default (file-system) dataset through `push_data` and they are exported to "
    "JSON lines at the end, inside the timed run; over TLS its certificate check is off (impit has no CA option).",
    "The ceilings fetch the known URL list once, with no parsing and no dedup; their own-timer rate excludes "
    "interpreter start-up and is the figure to compare with the bare-client micro-benchmarks.",
    "Real pages: Scrapy is kept to the start page's host with `allowed_domains` (the docs link to python.org and "
    "GitHub, and there is no network); our crawler and Crawlee stay on the host by default.",
    "Start-up rows run against an http:// server: our certifi CA bundle is read by the first TLS connection, "
    "so an https:// crawl's first request costs ~20-30 ms more.",
    "A 2-core machine shared with other work: the load average is in the header, and per-run loads are in the "
    "run's JSON (benchmarks/_work/results.json). Runs are interleaved so drift hits every tool alike.",
]


def _per_cpu_second(row: dict[str, Any]) -> float | None:
    return row["pages"] / row["cpu"] if row.get("ok") and row.get("cpu") else None


def _issue12_targets(results: dict[str, Any], add: Callable[..., None], out: list[dict[str, Any]]) -> None:
    """Real pages at the parser's limit, the synthetic crawl near a bare fetch loop, --processes 2 efficiency,
    start-up. Wall-clock ratios come with the CPU-per-page ratio, which a busy machine does not skew."""
    real = {r["key"]: r for r in results.get("real") or []}
    crawl = {r["key"]: r for r in results.get("crawl") or []}
    if real:
        best = max((real[k] for k in ("ours-h1", "ours-h1-p2") if real.get(k, {}).get("ok")),
                   key=lambda r: r["pages_per_s"], default=None)  # fmt: skip
        add("real pages >= 1,000 pages/s (2 cores; --processes 2 allowed)", best and best["pages_per_s"], 1000,
            "pages/s", detail=f"{_f(best and best['pages_per_s'])} pages/s ({best['tool'] if best else '-'})")  # fmt: skip
        one, parse = real.get("ours-h1", {}), real.get("parse-h1", {})
        x = one.get("x_parse") if one.get("ok") else None
        cpu_x = (parse["cpu_ms_per_page"] / one["cpu_ms_per_page"]
                 if one.get("ok") and parse.get("ok") and one.get("cpu_ms_per_page") else None)  # fmt: skip
        add("real pages, one process >= 0.8x the aiohttp + selectolax parse loop", x, 0.8, "x",
            detail=f"{_f(x, '.2f')}x its pages/s; CPU per page {_f(one.get('cpu_ms_per_page'), '.2f')} vs "
                   f"{_f(parse.get('cpu_ms_per_page'), '.2f')} ms ({_f(cpu_x, '.2f')}x)")  # fmt: skip
    for name, rows in (("real pages", real), ("synthetic", crawl)):
        one, two = _per_cpu_second(rows.get("ours-h1", {})), _per_cpu_second(rows.get("ours-h1-p2", {}))
        if rows:
            add(f"{name}: --processes 2 pages per CPU-second >= 90% of one process", two / one if one and two else None,
                0.9, "x", detail=f"{_f(two)} vs {_f(one)} pages per CPU-second")  # fmt: skip
    if crawl:
        one, aio = crawl.get("ours-h1", {}), crawl.get("aiohttp-h1", {})
        x = one.get("x_aiohttp") if one.get("ok") else None
        cpu_x = (aio["cpu_ms_per_page"] / one["cpu_ms_per_page"]
                 if one.get("ok") and aio.get("ok") and one.get("cpu_ms_per_page") else None)  # fmt: skip
        add("synthetic, one process >= 0.75x the bare aiohttp fetch loop", x, 0.75, "x",
            detail=f"{_f(x, '.2f')}x its pages/s; CPU per page {_f(one.get('cpu_ms_per_page'), '.3f')} vs "
                   f"{_f(aio.get('cpu_ms_per_page'), '.3f')} ms ({_f(cpu_x, '.2f')}x)")  # fmt: skip
    one, h2 = crawl.get("ours-h1", {}), crawl.get("ours-h2", {})
    if crawl:
        x = h2["pages_per_s"] / one["pages_per_s"] if one.get("ok") and h2.get("ok") else None
        cpu_x = (one["cpu_ms_per_page"] / h2["cpu_ms_per_page"]
                 if one.get("ok") and h2.get("ok") and h2.get("cpu_ms_per_page") else None)  # fmt: skip
        add("synthetic: HTTP/2 + TLS crawl >= 0.9x the HTTP/1.1 crawl", x, 0.9, "x",
            detail=f"{_f(h2.get('pages_per_s'))} vs {_f(one.get('pages_per_s'))} pages/s; CPU per page "
                   f"{_f(h2.get('cpu_ms_per_page'), '.2f')} vs {_f(one.get('cpu_ms_per_page'), '.2f')} ms "
                   f"({_f(cpu_x, '.2f')}x)")  # fmt: skip
    for row in results.get("memory") or []:
        if row["case"] == "memory" and "rss_bytes_per_url" in row:
            add(f"memory frontier <= 100 bytes RSS per queued URL at {row['urls']:,}", row["rss_bytes_per_url"],
                100, "B/URL", higher=False, detail=f"{row['rss_bytes_per_url']:.1f} B/URL")  # fmt: skip
    for row in results.get("startup") or []:
        if row["case"].startswith("crawler"):
            add(f"start-up <= 150 ms, exec to first request: `{row['case']}`", row.get("best_ms"), 150, "ms",
                higher=False, detail=f"best {_f(row.get('best_ms'))} ms, median {_f(row.get('median_ms'))} ms; "
                                     f"CPU by then {_f(row.get('cpu_ms'))} ms")  # fmt: skip


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue: the figure, the goal, met or short by how much."""
    out: list[dict[str, Any]] = []

    def add(
        name: str, value: float | None, goal: float, unit: str, higher: bool = True, detail: str = ""
    ) -> None:
        if value is None:
            out.append(
                {
                    "target": name,
                    "value": None,
                    "goal": goal,
                    "met": None,
                    "text": "not measured",
                    "detail": detail,
                }
            )
            return
        met = value >= goal if higher else value <= goal
        if met:
            text = "met"
        elif higher:
            text = f"short by {(goal - value) / goal * 100:.0f}% ({value:,.2f} vs {goal:,.2f} {unit})"
        else:
            text = f"over by {(value - goal) / goal * 100:.0f}% ({value:,.1f} vs {goal:,.1f} {unit})"
        out.append({"target": name, "value": value, "goal": goal, "met": met, "text": text, "detail": detail})

    _issue12_targets(results, add, out)
    crawl = {r["key"]: r for r in results.get("crawl") or []}
    ours = crawl.get("ours-h1", {})
    x = ours.get("x_scrapy") if ours.get("ok") else None
    add("whole-site crawl >= 5x Scrapy (HTTP/1.1)", x, 5.0, "x", detail=_f(x, ".1f") + "x Scrapy")
    add("stretch: >= 10x Scrapy", x, 10.0, "x", detail=_f(x, ".1f") + "x Scrapy")
    if ours.get("ok") and ours.get("x_aiohttp") is not None:
        out.append({"target": "ratio to the aiohttp ceiling (reported)", "value": ours["x_aiohttp"], "goal": None,
                    "met": True, "text": "reported",
                    "detail": f"{ours['x_aiohttp']:.2f}x the aiohttp loop's wall rate, "
                              f"{_f(ours.get('x_aiohttp_loop'), '.2f')}x its own-timer rate"})  # fmt: skip
    scr = crawl.get("scrapy-h1", {})
    if ours.get("ok") and scr.get("ok") and ours.get("cpu") and scr.get("cpu"):
        eff = (scr["cpu"] / scr["pages"]) / (ours["cpu"] / ours["pages"])
        out.append({"target": "CPU per page vs Scrapy, HTTP/1.1 (reported; does not depend on the machine's load)",
                    "value": eff, "goal": None, "met": True, "text": "reported",
                    "detail": f"{eff:.1f}x less CPU per page ({ours['cpu'] / ours['pages'] * 1000:.2f} vs "
                              f"{scr['cpu'] / scr['pages'] * 1000:.2f} ms)"})  # fmt: skip
    for key, peer, what in (("ours-h2", "scrapy-h2", "HTTP/2 + TLS crawl vs Scrapy's HTTP/2 handler"),
                            ("ours-h1-p2", "scrapy-h1", "--processes 2 crawl vs Scrapy")):  # fmt: skip
        a, b = crawl.get(key, {}), crawl.get(peer, {})
        if a.get("ok") and b.get("ok"):
            x2 = a["pages_per_s"] / b["pages_per_s"]
            out.append({"target": f"{what} (reported)", "value": x2, "goal": None, "met": True, "text": "reported",
                        "detail": f"{x2:.1f}x ({a['pages_per_s']:,.0f} vs {b['pages_per_s']:,.0f} pages/s)"})  # fmt: skip
    dl = {r["tool"]: r for r in results.get("downloads", [])}
    sizes = results.get("meta", {}).get("downloads", {"big_mb": 500, "small_count": 200})
    big, curl = dl.get("crawler -x1", {}), dl.get("curl", {})
    ratio = big["mbps"] / curl["mbps"] if big.get("mbps") and curl.get("mbps") else None
    add(f"single {sizes['big_mb']} MB download >= 0.5x curl", ratio, 0.5, "x",
        detail=f"{_f(big.get('mbps'))} vs {_f(curl.get('mbps'))} MB/s")  # fmt: skip
    add(f"single {sizes['big_mb']} MB download peak RSS <= 150 MB", big.get("peak_rss_mb"), 150, "MB",
        higher=False, detail=f"{_f(big.get('peak_rss_mb'), '.0f')} MB")  # fmt: skip
    many, aria = dl.get("crawler -j16", {}), dl.get("aria2c -j16", {})
    ratio = many["mbps"] / aria["mbps"] if many.get("mbps") and aria.get("mbps") else None
    add(
        f"{sizes['small_count']} x 1 MB >= aria2c -j16",
        ratio,
        1.0,
        "x",
        detail=f"{_f(many.get('mbps'))} vs {_f(aria.get('mbps'))} MB/s",
    )
    curl_z = dl.get("curl -Z 16", {})
    if many.get("mbps") and curl_z.get("mbps"):
        out.append({"target": f"{sizes['small_count']} x 1 MB vs curl -Z 16 (reported)",
                    "value": many["mbps"] / curl_z["mbps"], "goal": None, "met": True, "text": "reported",
                    "detail": f"{many['mbps'] / curl_z['mbps']:.2f}x ({many['mbps']:,.0f} vs {curl_z['mbps']:,.0f} "
                              "MB/s)"})  # fmt: skip
    seen = next((r for r in results.get("memory", []) if r["case"] == "seen-set" and r["urls"] == 10_000_000
                 and "rss_bytes_per_url" in r), None)  # fmt: skip
    add("<= 100 bytes RSS per seen URL at 10M", seen["rss_bytes_per_url"] if seen else None, 100, "B/URL",
        higher=False, detail=f"{seen['rss_bytes_per_url']:.1f} B/URL" if seen else "")  # fmt: skip
    return out


def render_markdown(results: dict[str, Any]) -> str:
    """RESULTS.md from a results dict (what `main` collects; see benchmarks/README.md)."""
    meta = results["meta"]
    m = meta["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `make bench` (`python -m benchmarks.run{' ' + meta['args'] if meta.get('args') else ''}`) on "
        f"{meta['date']}, in {meta['duration_min']:.0f} min. See [README.md](README.md) for the method.",
        "",
        f"**Machine**: {m.get('cpu', '?')}, {m.get('cores')} cores, {m.get('memory', '?')} RAM, {m.get('os', '?')}, "
        f"Linux {m.get('kernel')}, Python {m.get('python')}. Load average (1 min) {meta['load_before']:.2f} before "
        f"the run, {meta['load_after']:.2f} after (other work on the machine shows up here).",
        "",
        f"**Server**: {meta['nginx']} on loopback with `worker_processes 1`: of the 2 cores, one serves and one "
        "runs the client under test. Access log off, keep-alive without a request limit, sendfile, open-file cache.",
        "",
        "**Versions**: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
    ]  # fmt: skip
    if meta.get("problems"):
        lines += ["**Setup problems**: " + "; ".join(meta["problems"]), ""]
    if results.get("crawl") is not None:
        c = meta["crawl"]
        lines += [
            "## Whole-site crawl",
            "",
            f"{c['pages']:,} HTML pages of ~8 KB, ~14 links each, all reachable from page 0; concurrency "
            f"{CONCURRENCY}; every link followed, a title per page, JSON lines out. Median of {c['repeats']} "
            "interleaved runs. pages/s = distinct pages with a title in the output / wall time of the process, "
            'start-up included (the ceilings: pages fetched / wall time). "own timer" is the tool\'s own clock '
            "(first request to last, or the engine's elapsed). CPU s is the client's user + system time; server "
            "CPU s is nginx's. Ratios are to the HTTP/1.1 Scrapy and aiohttp rows.",
            "",
            *_crawl_table(results["crawl"]),
            "",
        ]
    if results.get("real") is not None:
        c = meta["real"]
        lines += [
            "## Real pages",
            "",
            f"The Python docs from Debian's `python3-doc` (median {c['median_kb']:.0f} KB, ~310 links per page), "
            f"mounted {c['mounts']} time{'s' if c['mounts'] != 1 else ''} under nginx: {c['pages']:,} pages reachable from the start page. Same rules "
            "as above: every link on the host followed, a title per page, JSON lines out; the fetch loops fetch "
            "exactly the pages the crawlers reach. The parse loop is aiohttp + selectolax parsing each page and "
            "reading its title and every `a[href]` value (no URL resolution, no dedup, no output): the one-core "
            f"parse ceiling. Median of {c['repeats']}"
            + (f" (Scrapy and Crawlee: {c['peer_repeats']} run{'s' if c['peer_repeats'] != 1 else ''}, "
               "`--real-peer-repeats`)" if c.get("peer_repeats", c["repeats"]) < c["repeats"] else "") + ".",
            "",
            *_crawl_table(results["real"]),
            "",
        ]
    if results.get("startup"):
        lines += ["## Start-up", "",
                  "From exec of the command to its first request reaching a loopback server (`benchmarks/startup.py`): "
                  "best and median of the runs, and the CPU the process had used by then.", "",
                  "| command | best ms | median ms | CPU ms by the first request |", "|---|---:|---:|---:|"]  # fmt: skip
        for row in results["startup"]:
            if row.get("error"):
                lines.append(f"| `{row['case']}` | {_md_escape(row['error'])} | | |")
            else:
                lines.append(f"| `{row['case']}` | {row['best_ms']:.0f} | {row['median_ms']:.0f} | {row['cpu_ms']:.0f} |")
        lines.append("")
    if results.get("targets"):
        lines += ["## Targets", "", "| target | result | status |", "|---|---|---|"]
        for t in results["targets"]:
            status = "met" if t["met"] else t["text"]
            if t["met"] is None:
                status = "not measured"
            elif t["text"] == "reported":
                status = "reported"
            lines.append(f"| {t['target']} | {t['detail']} | {status} |")
        lines.append("")
    for key, what, raw in (("profile", "synthetic site", "profile-ours-h1.txt"),
                           ("real_profile", "real pages", "profile-ours-h1-real.txt")):  # fmt: skip
        p = results.get(key)
        if not p:
            continue
        lines += [f"## Where our crawl's time goes: {what}", ""]
        if p.get("error"):
            lines += [f"Not profiled: {p['error']}", ""]
            continue
        lines += [
            f"Our HTTP/1.1 crawl ({p['pages']:,} pages, {p['wall']:.1f} s under the profiler) sampled by "
            f"{p['tool']}: {p['samples']:,} samples. Self time is where the CPU was when sampled; inclusive "
            f"time counts every area on the stack. Raw stacks: `benchmarks/_work/{raw}`.",
            "",
            "| self time, by area | % | | inclusive (area anywhere on the stack) | % |",
            "|---|---:|---|---|---:|",
        ]
        for (a, pa), (b, pb) in zip(p["self_by_area"][:12], p["inclusive_by_area"][:12], strict=False):
            lines.append(f"| {a} | {pa:.1f} | | {b} | {pb:.1f} |")
        lines += ["", "| self time, top functions | % |", "|---|---:|"]
        for fn, pf in p["self_by_function"][:15]:
            lines.append(f"| `{_md_escape(fn)}` | {pf:.1f} |")
        lines.append("")
    if results.get("crawl") is not None or results.get("real") is not None:
        lines += ["## Caveats", "", *(f"- {n}" for n in CAVEATS), ""]
    if results.get("downloads") is not None:
        d = meta["downloads"]
        lines += [
            "## Downloads",
            "",
            f"nginx (sendfile, page cache warm) over HTTP/1.1 on loopback; one {d['big_mb']} MB file and "
            f"{d['small_count']} files of 1 MB; written to {d['out_dir']}. Median of {d['repeats']}; peak RSS is "
            "the max. Run by `benchmarks/download_bench.py`.",
            "",
            *_download_table(results["downloads"]),
            "",
        ]
    if results.get("memory") is not None:
        lines += [
            "## Frontier memory",
            "",
            "Synthetic URLs (1,000 hosts), no network; each case in a fresh interpreter; RSS growth while the "
            'structure is built, per URL ("marginal": growth over the second half, per URL added there). Run by '
            "`benchmarks/frontier_memory.py`.",
            "",
            *_memory_table(results["memory"]),
            "",
        ]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------------------------


def _render_chart(peers: Peers, json_path: Path, png: Path, log: Log) -> str | None:
    if not peers.has("matplotlib"):
        return "matplotlib is not installed in the peers venv"
    proc = subprocess.run([peers.python or "", str(BENCH_DIR / "chart.py"), str(json_path), str(png)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        return proc.stderr.strip()[-300:]
    log(f"chart: {png}")
    return None


def _write_report(results: dict[str, Any], results_md: Path, chart_png: Path, json_path: Path, peers: Peers,
                  log: Log) -> None:  # fmt: skip
    problem = _render_chart(peers, json_path, chart_png, log)
    if problem:
        results["meta"]["problems"].append(f"chart not drawn: {problem}")
    md = render_markdown(results)
    if not problem:
        md += f"\n![results]({os.path.relpath(chart_png, results_md.parent)})\n"
    # Blocks other benchmarks keep in this file (the Redis scale model, between its markers) are carried over.
    from benchmarks.scale_model import carry_over

    md = carry_over(results_md.read_text() if results_md.exists() else "", md)
    results_md.write_text(md)
    log(f"\nwrote {results_md}\n")
    print(md)


def _add_baseline(python: str) -> None:
    """Tools baseline-h1 and baseline-h2: the crawler of another checkout (its venv's `python`)."""
    probe = subprocess.run([python, "-c", "import crawler, os; print(os.path.dirname(os.path.dirname(crawler.__file__)))"],
                           capture_output=True, text=True, timeout=60, cwd="/")  # fmt: skip
    root = probe.stdout.strip()
    sha = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    label = f"crawler (baseline {sha or root})"
    for key, protocol, http2 in (("baseline-h1", "h1", False), ("baseline-h2", "h2", True)):
        CRAWL_TOOLS[key] = CrawlTool(key, label, protocol, "crawler", None, _ours(http2, python=python), root=Path(root))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="2,000 pages, 1 repeat, 100 MB + 50 x 1 MB, memory at 1M; writes under benchmarks/_work/",
    )
    ap.add_argument("--pages", type=int, help="site size (default 10,000; --quick 2,000)")
    ap.add_argument("--repeats", type=int, help="runs per tool (default 3; --quick 1)")
    ap.add_argument(
        "--only",
        action="append",
        choices=["crawl", "real", "startup", "downloads", "memory", "profile"],
        help="run only these parts (repeatable)",
    )
    ap.add_argument("--tools", help="comma-separated crawl tools, from: " + ", ".join(CRAWL_TOOLS))
    ap.add_argument("--real-tools", help="tools for the real-page workload (default: " + ",".join(REAL_TOOLS) + ")")
    ap.add_argument("--mounts", type=int, help="copies of the Python docs in the real-page workload (default 20, "
                                               "~526 pages each; with --pages, as many as make that many pages)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per crawl run (default 1800)")
    ap.add_argument("--real-peer-repeats", type=int, default=1,
                    help="runs of Scrapy and Crawlee on the real pages (default 1: ~14 and ~10 minutes a run); "
                         "the other tools run --repeats times")  # fmt: skip
    ap.add_argument("--memory-all", action="store_true", help="also the frontiers at 10M URLs (+15-30 min)")
    ap.add_argument(
        "--render", type=Path, metavar="JSON", help="only rewrite the markdown and chart from a run's JSON"
    )
    ap.add_argument("--no-install", action="store_true", help="do not create or install the peers venv")
    ap.add_argument("--baseline", metavar="PYTHON",
                    help="also crawl with the crawler installed for this interpreter (another checkout's venv), as "
                         "tools baseline-h1 and baseline-h2, interleaved with ours: a before/after in one run")  # fmt: skip
    ap.add_argument("--results", type=Path, help="markdown output (default benchmarks/RESULTS.md)")
    ap.add_argument("--chart", type=Path, help="PNG output (default benchmarks/results.png)")
    args = ap.parse_args(argv)

    if args.render:
        results = json.loads(args.render.read_text())
        results["targets"] = targets(results)
        out_md = args.results or BENCH_DIR / "RESULTS.md"
        _write_report(results, out_md, args.chart or BENCH_DIR / "results.png", args.render,
                      ensure_peers(install=False, log=print), print)  # fmt: skip
        return 0
    started = time.monotonic()
    pages = args.pages or (2_000 if args.quick else 10_000)
    repeats = args.repeats or (1 if args.quick else 3)
    parts = set(args.only or ["crawl", "real", "startup", "downloads", "memory", "profile"])
    mounts = args.mounts or (max(1, round(args.pages / 526)) if args.pages else 4 if args.quick else 20)
    results_md = args.results or (WORK / "RESULTS-quick.md" if args.quick else BENCH_DIR / "RESULTS.md")
    chart_png = args.chart or (WORK / "results-quick.png" if args.quick else BENCH_DIR / "results.png")
    WORK.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    if args.baseline:
        _add_baseline(args.baseline)
    load_before = _loadavg()
    peers = ensure_peers(install=not args.no_install, log=log)
    tools = args.tools.split(",") if args.tools else list(DEFAULT_TOOLS)
    unknown = [t for t in tools if t not in CRAWL_TOOLS]
    if unknown:
        ap.error(f"unknown tools {unknown}; choose from {', '.join(CRAWL_TOOLS)}")
    has_processes = crawler_has_processes()
    if not args.tools and has_processes:
        tools.insert(1, "ours-h1-p2")
    real_tools = args.real_tools.split(",") if args.real_tools else [
        t for t in REAL_TOOLS if has_processes or t != "ours-h1-p2"]  # fmt: skip
    unknown = [t for t in real_tools if t not in CRAWL_TOOLS]
    if unknown:
        ap.error(f"unknown real-page tools {unknown}; choose from {', '.join(CRAWL_TOOLS)}")

    results: dict[str, Any] = {}
    meta: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                            "args": " ".join(argv if argv is not None else sys.argv[1:]),
                            "machine": machine_info(), "problems": list(peers.problems)}  # fmt: skip
    log(f"the site: {pages:,} pages under {WORK / f'site-{pages}'}")
    www = generate_site(WORK / f"site-{pages}", pages)
    nginx = Nginx(www, WORK / "nginx", log=log)
    meta["nginx"] = nginx.version_text
    if parts & {"crawl", "profile"}:
        with nginx:
            log(f"nginx: {nginx.http_url} (HTTP/1.1), {nginx.h2c_url} (h2c), {nginx.https_url} (h2 + TLS)")
            if "crawl" in parts:
                meta["crawl"] = {"pages": pages, "repeats": repeats}
                results["crawl"] = run_crawls(nginx, www, tools=tools, repeats=repeats, peers=peers, workdir=WORK,
                                              timeout=args.timeout, log=log)  # fmt: skip
            if "profile" in parts:
                results["profile"] = profile_ours(
                    nginx, peers, WORK, pages=pages, timeout=args.timeout, log=log
                )
    if parts & {"real"}:
        site = real_site(WORK, mounts, log=log)
        with Nginx(site.www, WORK / "nginx-real", log=log) as real_nginx:
            log(f"real pages: {len(site.paths):,} pages ({mounts} copies of the Python docs) at {real_nginx.http_url}")
            meta["real"] = {"pages": len(site.paths), "repeats": repeats, "mounts": mounts,
                            "peer_repeats": min(repeats, args.real_peer_repeats),
                            "median_kb": statistics.median(site.sizes[p] for p in site.paths) / 1000}  # fmt: skip
            results["real"] = run_crawls(real_nginx, site, tools=real_tools, repeats=repeats, peers=peers,
                                         workdir=WORK, timeout=args.timeout, log=log,
                                         peer_repeats=min(repeats, args.real_peer_repeats))  # fmt: skip
            if "profile" in parts:
                results["real_profile"] = profile_ours(real_nginx, peers, WORK, pages=len(site.paths),
                                                       timeout=args.timeout, log=log, site=site)  # fmt: skip
    if "startup" in parts:
        from benchmarks.startup import measure_startup

        log("start-up: exec to first request")
        results["startup"] = measure_startup(7 if repeats > 1 else 5, log=log)
    if "downloads" in parts:
        from benchmarks.download_bench import run as download_run

        big_mb, small_count = (100, 50) if args.quick else (500, 200)
        out_dir = "/dev/shm (tmpfs)" if Path("/dev/shm").is_dir() else "a temporary directory"
        meta["downloads"] = {
            "big_mb": big_mb,
            "small_count": small_count,
            "repeats": repeats,
            "out_dir": out_dir,
        }
        log(f"downloads: {big_mb} MB + {small_count} x 1 MB, {repeats} repeats")
        try:
            results["downloads"] = download_run(big_mb=big_mb, small_count=small_count, repeats=repeats,
                                                workdir=WORK / "files", log=lambda s: log("  " + s))  # fmt: skip
        except Exception as exc:  # a missing tool or server must not lose the crawl results
            meta["problems"].append(f"downloads failed: {exc}")
            results["downloads"] = []
    if "memory" in parts:
        log("frontier memory")
        cases = QUICK_MEMORY_CASES if args.quick else ALL_MEMORY_CASES if args.memory_all else MEMORY_CASES
        results["memory"] = run_memory(cases, log=log)
    results["targets"] = targets(results)
    meta["versions"] = versions(peers, meta["nginx"])
    meta["load_before"], meta["load_after"] = load_before, _loadavg()
    meta["duration_min"] = (time.monotonic() - started) / 60
    results["meta"] = meta
    json_path = results_md.with_suffix(".json") if args.results else WORK / (
        "results-quick.json" if args.quick else "results.json")  # fmt: skip
    json_path.write_text(json.dumps(results, indent=2, default=str))
    _write_report(results, results_md, chart_png, json_path, peers, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
