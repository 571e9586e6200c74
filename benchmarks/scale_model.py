"""The Redis frontier's cost per page, measured, for both designs, and what it means for 100 machines.

Crawls one static site (nginx, one worker, loopback; its pages spread over `--hosts` hosts, 127.0.0.1 ...)
with 1, 2 and 4 `crawler run` processes sharing one Redis frontier, with shared politeness (the default) and
with host-partitioned workers (`?partitions=N`), then with 2 processes on a real 3-master Redis Cluster (both
designs), and once per process count with the in-memory frontier for comparison. Around each Redis run it
resets and reads Redis's own counters (`INFO commandstats`, `INFO stats`, `INFO cpu`, on every master), so
every figure is per page fetched:

    script calls  round trips that change state (push, pop/pull, ack, commit, renew: one Lua script each)
    commands      every command Redis executed, those run inside the Lua scripts included
    Lua ms        time Redis spent in the scripts (commandstats usec of EVALSHA/EVAL)
    Redis CPU ms  the Redis processes' user + system CPU (all masters)
    bytes         network bytes into and out of Redis
    crawler CPU   the crawler processes' own CPU per page (wait4), and pages per CPU-second against memory
    per master    on the cluster: each master's share of the commands, and max/min

From those it projects a crawl of 100 machines at 1,000 pages/s each (100,000 pages/s) for each design:
commands and bytes per second, what one master can run at the stated CPU budget (its measured cost per
command), and so how many masters the crawl needs. It prints a markdown table and writes it into
benchmarks/RESULTS.md between `<!-- scale-model -->` markers (replacing an earlier one; `make bench` keeps it).

    python -m benchmarks.scale_model                      # 5,000 pages on 64 hosts
    python -m benchmarks.scale_model --pages 2000 --procs 1 2 --no-cluster --no-write
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "RESULTS.md"
MARK_START, MARK_END = "<!-- scale-model -->", "<!-- /scale-model -->"
TARGET_PAGES_PER_SECOND = 100 * 1_000
# What one Redis master can give: Redis runs commands and Lua on one thread, so one core, of which we plan to
# use 70% to keep headroom for bursts, persistence (AOF fsync) and replication.
MASTER_CPU_BUDGET = 0.7
TOTAL_WORKERS = 64
PARTITIONS = 64
# Not the crawl's work: the cluster client's topology reads and our own counter resets and reads.
_HOUSEKEEPING = {"cmdstat_cluster", "cmdstat_info", "cmdstat_config", "cmdstat_ping", "cmdstat_command"}


def carry_over(previous: str, new: str) -> str:
    """`new` (a RESULTS.md written from scratch) with the scale-model block of `previous` appended, when `new`
    has none: so rewriting the file never drops the last scale-model run."""
    if MARK_START in new or MARK_START not in previous or MARK_END not in previous:
        return new
    block = MARK_START + previous.split(MARK_START, 1)[1].split(MARK_END, 1)[0] + MARK_END + "\n"
    return new.rstrip("\n") + "\n\n" + block


def _info(clients: list[Any]) -> list[dict[str, Any]]:
    out = []
    for client in clients:
        info: dict[str, Any] = {}
        for section in ("commandstats", "stats", "cpu"):
            info.update(client.info(section))
        out.append(info)
    return out


def _counters(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    calls = usec = lua_calls = lua_usec = 0.0
    for key, value in after.items():
        if not key.startswith("cmdstat_") or not isinstance(value, dict) or key in _HOUSEKEEPING:
            continue
        calls += value["calls"]
        usec += value["usec"]
        if key in ("cmdstat_evalsha", "cmdstat_eval"):
            lua_calls += value["calls"]
            lua_usec += value["usec"]
    cpu = (after["used_cpu_user"] + after["used_cpu_sys"]) - (before["used_cpu_user"] + before["used_cpu_sys"])
    return {
        "commands": calls,
        "lua_calls": lua_calls,
        "lua_usec": lua_usec,
        "redis_cpu": cpu,
        "net_in": after["total_net_input_bytes"] - before["total_net_input_bytes"],
        "net_out": after["total_net_output_bytes"] - before["total_net_output_bytes"],
    }


def run(site: Any, workdir: Path, processes: int, backend: dict[str, Any] | None) -> dict[str, Any]:
    """One crawl of the whole site by `processes` processes on a Redis frontier (`backend`: its URL, its
    masters' clients, its label), or (when None) on the memory frontier: one process, or `--processes N` (its
    fingerprint-sharded frontier, the same core count)."""
    from tests.frontier._crawl import count_lines, write_job

    run_dir = workdir / uuid.uuid4().hex[:8]
    run_dir.mkdir()
    name = f"scale-{run_dir.name}"
    workers = [f"w{i}" for i in range(processes if backend is not None else 1)]
    sharded = ["--processes", str(processes)] if backend is None and processes > 1 else []
    extra: dict[str, Any] = {"concurrency": {"workers": max(1, TOTAL_WORKERS // processes), "per_host": TOTAL_WORKERS},
                             "output": {"flush_every": 0.5}, "scope": {"allowed_domains": site.hosts}}  # fmt: skip
    if backend is not None:
        extra.update(frontier=backend["url"], name=name)
        for client in backend["clients"]:
            client.config_resetstat()
        before = _info(backend["clients"])
    files = [run_dir / f"items-{w}.jsonl" for w in workers]
    procs = []
    started = time.perf_counter()
    for w, items in zip(workers, files, strict=True):
        job = write_job(run_dir / f"job-{w}.yaml", site.url, items=items, **extra)
        env = {**os.environ, "CRAWLER_WORKER": w, "PYTHONPATH": str(REPO_ROOT)}
        log = open(run_dir / f"{w}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-m", "crawler", "run", str(job), "--log-level", "WARNING",
                                       "--progress", "off", *sharded], cwd=REPO_ROOT, stdout=log,
                                      stderr=subprocess.STDOUT, env=env))  # fmt: skip
        log.close()
    cpu = 0.0
    for p in procs:
        # wait4: the process's own CPU and that of the children it waited for (--processes N included).
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
    wall = time.perf_counter() - started
    for p, w in zip(procs, workers, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"{w} failed:\n{(run_dir / f'{w}.log').read_text()[-3000:]}")
    pages = count_lines(files)
    row: dict[str, Any] = {"frontier": "memory" if backend is None else backend["label"], "processes": processes,
                           "pages": pages, "pages_per_second": pages / wall, "crawler_cpu_ms": cpu / pages * 1000}  # fmt: skip
    if backend is not None:
        per_master = [_counters(b, a) for b, a in zip(before, _info(backend["clients"]), strict=True)]
        # The stats reset and reads themselves are commands too: a handful, not per page.
        row.update({k: sum(m[k] for m in per_master) / pages for k in per_master[0]})
        row["per_master"] = [m["commands"] / pages for m in per_master]
    shutil.rmtree(run_dir, ignore_errors=True)
    return row


def _projection(row: dict[str, Any]) -> dict[str, float]:
    """What 100,000 pages/s of this row's design needs: commands/s, MB/s, Redis cores, commands one master
    runs at the CPU budget (from the row's measured CPU per command), masters."""
    commands = row["commands"] * TARGET_PAGES_PER_SECOND
    cores = row["redis_cpu"] * TARGET_PAGES_PER_SECOND
    per_master = MASTER_CPU_BUDGET * row["commands"] / row["redis_cpu"] if row["redis_cpu"] else math.inf
    return {"commands": commands, "mb": (row["net_in"] + row["net_out"]) * TARGET_PAGES_PER_SECOND / 1e6,
            "cores": cores, "master_budget": per_master, "masters": math.ceil(commands / per_master)}  # fmt: skip


def render(rows: list[dict[str, Any]], pages: int, hosts: int) -> str:
    memory = {r["processes"]: r for r in rows if r["frontier"] == "memory"}
    base = memory.get(1)
    lines = [
        MARK_START,
        "## Redis frontier: cost per page, both designs, and the 100-machine model",
        "",
        f"`python -m benchmarks.scale_model` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: the "
        f"{pages + 1:,}-page static site spread over {hosts} hosts, from nginx (one worker, loopback), "
        f"{TOTAL_WORKERS} workers in all; one Redis (no persistence) or a 3-master Redis Cluster (no replicas) on "
        f"the same machine. Partitioned: `?partitions={PARTITIONS}`. Per page fetched. Load average (1 min) "
        f"{os.getloadavg()[0]:.1f} at the end, on 2 cores: a busy machine inflates wall and CPU times alike.",
        "",
        "| frontier | processes | pages/s | crawler CPU ms/page | pages per CPU-s vs memory (1 process) | "
        "vs memory, same processes | script calls | commands | Lua ms | Redis CPU ms | bytes in | bytes out | "
        "commands per master (max/min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{base['crawler_cpu_ms'] / r['crawler_cpu_ms']:.0%}" if base else "-"
        if r["frontier"] == "memory":
            label = "memory" if r["processes"] == 1 else "memory `--processes`"
            lines.append(f"| {label} | {r['processes']} | {r['pages_per_second']:,.0f} | {r['crawler_cpu_ms']:.3f} | "
                         f"{ratio} | 100% | - | - | - | - | - | - | - |")  # fmt: skip
            continue
        twin = memory.get(r["processes"])
        same = f"{twin['crawler_cpu_ms'] / r['crawler_cpu_ms']:.0%}" if twin else "-"
        masters = r["per_master"]
        spread = (" / ".join(f"{m:.1f}" for m in masters) + f" ({max(masters) / min(masters):.2f})"
                  if len(masters) > 1 and min(masters) > 0 else "-")  # fmt: skip
        lines.append(f"| {r['frontier']} | {r['processes']} | {r['pages_per_second']:,.0f} | {r['crawler_cpu_ms']:.3f} | "
                     f"{ratio} | {same} | {r['lua_calls']:.2f} | {r['commands']:.1f} | {r['lua_usec'] / 1000:.3f} | "
                     f"{r['redis_cpu'] * 1000:.3f} | {r['net_in']:,.0f} | {r['net_out']:,.0f} | {spread} |")  # fmt: skip
    lines += [
        "",
        "Script calls are the round trips that change state; commands counts everything Redis ran, inside the "
        "scripts too, plus the few plain reads (the crawl's size while idle, the checkpoint at start). On the "
        "cluster a commit is journaled (the checkpoint with its ids in the worker's slot, then one ack per shard "
        "it touches), and pushes, pops and acks go to each shard they touch.",
    ]
    designs = {}
    for r in rows:
        if r["frontier"] != "memory":
            # The most expensive row of each design (the most processes: the most coordination per page).
            if r["frontier"] not in designs or r["commands"] > designs[r["frontier"]]["commands"]:
                designs[r["frontier"]] = r
    if designs:
        lines += [
            "",
            f"**100 machines at 1,000 pages/s each ({TARGET_PAGES_PER_SECOND:,} pages/s)**, from each design's most "
            f"expensive row above. A master's command budget is what it runs at {MASTER_CPU_BUDGET:.0%} of a core "
            "at the row's measured Redis CPU per command:",
            "",
            "| design (row) | commands/s | MB/s | Redis cores | commands/s per master at budget | masters | "
            "pages/s per master |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label, r in designs.items():
            p = _projection(r)
            lines.append(f"| {label} ({r['processes']} processes) | {p['commands']:,.0f} | {p['mb']:,.0f} | "
                         f"{p['cores']:,.1f} | {p['master_budget']:,.0f} | **{p['masters']}** | "
                         f"{TARGET_PAGES_PER_SECOND / p['masters']:,.0f} |")  # fmt: skip
        lines += [
            "",
            "One crawl spreads over every master of a cluster (its shards: one per master by default), so the "
            "masters column is the size of the cluster, not a count of separate crawls. Published anchors: 1.005 "
            "billion pages in 25.5 h on 12 nodes (~10,900 pages/s, Python + Redis + selectolax, 2025); Common "
            "Crawl on Nutch ~40,000 pages/s (2013). 100,000 pages/s is 2.5x the latter.",
        ]
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_results(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def main() -> None:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.frontier._backends import start_redis, start_redis_cluster
    from tests.frontier.crawl_bench import StaticSite, nginx_available

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=5_000)
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-cluster", action="store_true", help="leave out the Redis Cluster rows")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    args = parser.parse_args()
    if not nginx_available():
        raise SystemExit("nginx is needed (Debian: apt-get install nginx-light)")
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is needed (Debian: apt-get install redis-server)")
    workdir = Path(tempfile.mkdtemp(prefix="scale-model-"))
    redis = start_redis()
    cluster = None if args.no_cluster else start_redis_cluster(3)
    single = {"url": redis.url, "clients": [redis.client()]}
    rows = []
    try:
        with StaticSite(args.pages, workdir, hosts=args.hosts) as site:
            for n in args.procs:
                # Interleaved: whatever the machine's other load does, it does to every frontier alike.
                rows.append(run(site, workdir, n, None))
                print(rows[-1], file=sys.stderr, flush=True)
                rows.append(run(site, workdir, n, {**single, "label": "redis"}))
                print(rows[-1], file=sys.stderr, flush=True)
                if n > 1:
                    rows.append(run(site, workdir, n, {**single, "url": f"{redis.url}?partitions={PARTITIONS}",
                                                       "label": "redis partitioned"}))  # fmt: skip
                    print(rows[-1], file=sys.stderr, flush=True)
            if cluster is not None:
                masters = {"url": cluster.url, "clients": cluster.clients()}
                rows.append(run(site, workdir, 2, {**masters, "label": "cluster"}))
                print(rows[-1], file=sys.stderr, flush=True)
                rows.append(run(site, workdir, 2, {**masters, "url": f"{cluster.url}?partitions={PARTITIONS}",
                                                   "label": "cluster partitioned"}))  # fmt: skip
                print(rows[-1], file=sys.stderr, flush=True)
    finally:
        redis.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    section = render(rows, args.pages, args.hosts)
    print(section)
    if not args.no_write:
        write_results(section)
        print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
