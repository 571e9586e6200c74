"""Downloader benchmark: `crawler download` next to curl and aria2c on the same files, same nginx, same run.

Cases: one 500 MB file, and 200 files of 1 MB, served by nginx (sendfile) on loopback from the page cache,
written to a scratch directory on disk. Each tool runs as a subprocess; MB/s is payload / wall time, peak
RSS comes from wait4's rusage of that very process. Runs are interleaved (tool after tool, `repeats`
times) with the output deleted and `sync` called before each, so every tool sees the same disk state.
Nothing is installed: missing tools are reported and skipped.

    python -m benchmarks.download_bench                 # the table, median of 3
    python -m benchmarks.download_bench --repeats 1 --big-mb 200 --small-count 50
    python -m benchmarks.download_bench --sweep         # also: write batch size vs MB/s and RSS
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.downloader.servers import NginxServer, find_nginx  # noqa: E402
from tests.peak_rss import measure  # noqa: E402

__all__ = ["run", "sweep_batch_sizes"]

MB = 1_000_000
ARIA2_COMMON = ["-q", "--file-allocation=none", "--allow-overwrite=true", "--auto-file-renaming=false",
                "--console-log-level=error", "--summary-interval=0", "--check-certificate=false"]  # fmt: skip


@dataclass
class _Tool:
    name: str
    case: str  # "big" or "many"
    argv: Callable[[str, Path, list[str], Path], list[str]]  # (big url, out dir, small urls, list file)
    needs: str  # executable that must exist
    inner: bool = False  # the process reports its own transfer time ("elapsed=S" on stderr)


# The library inside one process, timed around `crawler.download()` only: the engine without the ~0.3 s of
# interpreter start and package import, and the teardown, that every CLI run pays.
_LIBRARY = """import sys, time, asyncio, uvloop, crawler
urls = sys.argv[2:] if sys.argv[1] == "-" else [line.strip() for line in open(sys.argv[1]) if line.strip()]
async def main():
    started = time.perf_counter()
    results = await crawler.download(urls, OUT, jobs=16)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    print(f"elapsed={time.perf_counter() - started}", file=sys.stderr)
uvloop.run(main())
"""


def _library(urls_arg: list[str], out: Path) -> list[str]:
    return [sys.executable, "-c", _LIBRARY.replace("OUT", repr(str(out))), *urls_arg]


def _crawler(*extra: str) -> list[str]:
    return [sys.executable, "-m", "crawler", "download", "-q", *extra]


def _tools() -> list[_Tool]:
    return [
        _Tool("crawler -x1", "big", lambda u, o, s, f: _crawler(u, "-d", str(o)), sys.executable),
        _Tool("crawler -x4", "big", lambda u, o, s, f: _crawler(u, "-d", str(o), "-x", "4"), sys.executable),
        _Tool("crawler.download() -x1, in-process", "big", lambda u, o, s, f: _library(["-", u], o), sys.executable,
              inner=True),
        _Tool("curl", "big", lambda u, o, s, f: ["curl", "-s", "-o", str(o / "big.bin"), u], "curl"),
        _Tool("aria2c -x1", "big",
              lambda u, o, s, f: ["aria2c", *ARIA2_COMMON, "-x1", "-s1", "-d", str(o), "-o", "big.bin", u], "aria2c"),
        _Tool("aria2c -x8", "big",
              lambda u, o, s, f: ["aria2c", *ARIA2_COMMON, "-x8", "-s8", "-k1M", "-d", str(o), "-o", "big.bin", u],
              "aria2c"),
        _Tool("crawler -j16", "many", lambda u, o, s, f: _crawler("-i", str(f), "-d", str(o), "-j", "16"),
              sys.executable),
        _Tool("crawler.download() -j16, in-process", "many", lambda u, o, s, f: _library([str(f)], o), sys.executable,
              inner=True),
        _Tool("curl (sequential)", "many",
              lambda u, o, s, f: ["curl", "-s", "--remote-name-all", "--output-dir", str(o), *s], "curl"),
        _Tool("curl -Z 16", "many",
              lambda u, o, s, f: ["curl", "-s", "-Z", "--parallel-max", "16", "--remote-name-all", "--output-dir",
                                  str(o), *s], "curl"),
        _Tool("aria2c -j16", "many",
              lambda u, o, s, f: ["aria2c", *ARIA2_COMMON, "-j16", "-x1", "-i", str(f), "-d", str(o)], "aria2c"),
    ]  # fmt: skip


def _measure(argv: list[str], timeout: float = 600.0) -> tuple[float, int, int, str]:
    """(seconds, peak RSS bytes, exit code, stderr tail) of one process."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryFile() as err:
        measured = measure(argv, timeout=timeout, env=env, stderr=err, interval=0.002)
        if measured.code is None:
            raise TimeoutError(f"{argv[:2]!r} did not finish within {timeout}s")
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace")
    return measured.wall, measured.peak_rss, measured.code, tail


def _out_dir(out_dir: str | os.PathLike[str] | None) -> Path:
    if out_dir is not None:
        return Path(out_dir) / "crawler-dlbench-out"
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2_000 * MB:
        return Path(tempfile.mkdtemp(prefix="crawler-dlbench-out-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="crawler-dlbench-out-"))


def _fresh(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    os.sync()
    time.sleep(0.3)


def _make_files(root: Path, big_mb: int, small_count: int, small_mb: float) -> None:
    (root / "small").mkdir(parents=True, exist_ok=True)
    big = root / "big.bin"
    if not big.exists() or big.stat().st_size != big_mb * MB:
        with open(big, "wb") as f:
            for _ in range(big_mb):
                f.write(os.urandom(MB))
    size = int(small_mb * MB)
    for i in range(small_count):
        p = root / "small" / f"f{i:03d}.bin"
        if not p.exists() or p.stat().st_size != size:
            p.write_bytes(os.urandom(size))
    # Warm the page cache, so the server side costs the same for every tool.
    for p in [big, *(root / "small").iterdir()]:
        with open(p, "rb") as f:
            while f.read(8 * MB):
                pass


def run(*, big_mb: int = 500, small_count: int = 200, small_mb: float = 1.0, repeats: int = 3,
        tools: list[str] | None = None, workdir: str | os.PathLike[str] | None = None,
        out_dir: str | os.PathLike[str] | None = None,
        log: Callable[[str], None] | None = print) -> list[dict[str, Any]]:  # fmt: skip
    """Run the benchmark; one dict per tool: case, tool, mbps (median), seconds, peak_rss_mb (max), runs,
    payload_mb, ok (False with `error` when the tool failed or is not installed).

    Downloads land in `out_dir`, by default a directory on /dev/shm where there is one: this measures the
    downloaders, not the disk (which on shared VMs varies more between runs than the tools do)."""
    say = log or (lambda _msg: None)
    if find_nginx() is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="crawler-dlbench-"))
    www, out = base / "www", _out_dir(out_dir)
    say(f"downloads go to {out}")
    say(f"generating {big_mb} MB + {small_count} x {small_mb:g} MB under {www}")
    _make_files(www, big_mb, small_count, small_mb)
    selected = [t for t in _tools() if tools is None or t.name in tools]
    results: dict[str, dict[str, Any]] = {}
    try:
        with NginxServer(www) as nginx:
            big_url = nginx.url_for("big.bin")
            small_urls = [nginx.url_for(f"small/f{i:03d}.bin") for i in range(small_count)]
            list_file = base / "list.txt"
            list_file.write_text("\n".join(small_urls) + "\n")
            payload = {"big": big_mb * MB, "many": small_count * int(small_mb * MB)}
            for t in selected:
                case = f"1 x {big_mb} MB" if t.case == "big" else f"{small_count} x {small_mb:g} MB"
                results[t.name] = {"case": case, "tool": t.name, "runs": [], "rss": [], "ok": True, "error": None,
                                   "payload_mb": payload[t.case] / MB}  # fmt: skip
                if shutil.which(t.needs) is None and not os.path.exists(t.needs):
                    results[t.name].update(ok=False, error=f"{t.needs} not installed")
            for r in range(repeats):
                for t in selected:
                    res = results[t.name]
                    if not res["ok"]:
                        continue
                    _fresh(out)
                    seconds, rss, code, err = _measure(t.argv(big_url, out, small_urls, list_file))
                    if t.inner and code == 0:
                        seconds = float(err.rpartition("elapsed=")[2].split()[0])
                    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
                    if code != 0 or written != payload[t.case]:
                        res.update(
                            ok=False, error=f"exit {code}, wrote {written} bytes: {err.strip()[-300:]}"
                        )
                        say(f"  {t.name}: FAILED ({res['error']})")
                        continue
                    res["runs"].append(payload[t.case] / MB / seconds)
                    res["rss"].append(rss)
                    say(
                        f"  run {r + 1}/{repeats} {t.name:18s} {res['runs'][-1]:7.1f} MB/s  {rss / MB:6.1f} MB RSS"
                    )
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    table = []
    for res in results.values():
        runs = res.pop("runs")
        rss = res.pop("rss")
        res["mbps"] = round(statistics.median(runs), 1) if runs else None
        res["seconds"] = round(res["payload_mb"] / res["mbps"], 3) if res["mbps"] else None
        res["peak_rss_mb"] = round(max(rss) / MB, 1) if rss else None
        res["runs"] = [round(x, 1) for x in runs]
        table.append(res)
    return table


def sweep_batch_sizes(sizes: tuple[str, ...] = ("256KiB", "1MiB", "4MiB", "8MiB", "16MiB"), *, big_mb: int = 500,
                      repeats: int = 3, out_dir: str | os.PathLike[str] | None = None,
                      log: Callable[[str], None] | None = print) -> list[dict[str, Any]]:  # fmt: skip
    """MB/s and peak RSS of one big file per write batch size (library call in a subprocess)."""
    say = log or (lambda _msg: None)
    base = Path(tempfile.mkdtemp(prefix="crawler-dlsweep-"))
    www, out = base / "www", _out_dir(out_dir)
    _make_files(www, big_mb, 0, 1)
    rows: dict[str, list[tuple[float, int]]] = {s: [] for s in sizes}
    try:
        with NginxServer(www) as nginx:
            url = nginx.url_for("big.bin")
            for _ in range(repeats):
                for size in sizes:
                    _fresh(out)
                    code = ("import asyncio, uvloop, crawler\n"
                            f"r = uvloop.run(crawler.download([{url!r}], {str(out)!r}, batch_size={size!r}))\n"
                            "assert r[0].status == 'ok', r")  # fmt: skip
                    seconds, rss, rc, err = _measure([sys.executable, "-c", code])
                    if rc == 0:
                        rows[size].append((big_mb / seconds, rss))
                        say(f"  batch {size:>7s}: {big_mb / seconds:7.1f} MB/s  {rss / MB:6.1f} MB RSS")
                    else:
                        say(f"  batch {size}: failed: {err[-300:]}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    return [{"batch": s, "mbps": round(statistics.median([m for m, _ in v]), 1) if v else None,
             "peak_rss_mb": round(max(r for _, r in v) / MB, 1) if v else None} for s, v in rows.items()]  # fmt: skip


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | tool | MB/s (median) | runs | peak RSS MB |", "|---|---|---:|---|---:|"]
    for r in rows:
        if r["mbps"] is None:
            lines.append(f"| {r['case']} | {r['tool']} | n/a | {r['error']} | |")
        else:
            runs = ", ".join(f"{x:.0f}" for x in r["runs"])
            lines.append(f"| {r['case']} | {r['tool']} | {r['mbps']:.1f} | {runs} | {r['peak_rss_mb']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--big-mb", type=int, default=500)
    parser.add_argument("--small-count", type=int, default=200)
    parser.add_argument("--small-mb", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tool", action="append", dest="tools", help="only this tool (repeatable)")
    parser.add_argument("--workdir", help="keep the generated files here (reused by later runs)")
    parser.add_argument("--out-dir", help="download into this directory (default: /dev/shm when available)")
    parser.add_argument("--sweep", action="store_true", help="also measure write batch sizes")
    args = parser.parse_args(argv)
    rows = run(big_mb=args.big_mb, small_count=args.small_count, small_mb=args.small_mb, repeats=args.repeats,
               tools=args.tools, workdir=args.workdir, out_dir=args.out_dir)  # fmt: skip
    print()
    print(format_table(rows))
    if args.sweep:
        sweep = sweep_batch_sizes(big_mb=args.big_mb, repeats=args.repeats, out_dir=args.out_dir)
        print("\n| write batch | MB/s (median) | peak RSS MB |\n|---|---:|---:|")
        for s in sweep:
            print(f"| {s['batch']} | {s['mbps']} | {s['peak_rss_mb']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
