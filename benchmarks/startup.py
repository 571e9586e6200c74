"""Start-up: from exec of the console command to its first request reaching a server, for `crawler run` and
`crawler download` (the issue 12 goal: <= 150 ms).

A raw asyncio server on loopback (in this process, on its own thread) timestamps the first byte of each
connection with the same monotonic clock that was read right before the command was spawned, and answers a tiny
page. The command runs to completion; each case runs `--repeats` times, interleaved, and the table shows the best
and the median (on a busy machine the best is the figure to trust: other work only ever adds to it). A bare
`python -c pass` row is the floor no Python program can go under.

    python -m benchmarks.startup [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
__all__ = ["FirstByteServer", "measure_startup"]

_BODY = b"<!doctype html><html><head><title>start-up</title></head><body>ok</body></html>"
_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
             % len(_BODY)) + _BODY  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (clock-tick resolution, usually 10 ms); NaN when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FirstByteServer:
    """Loopback HTTP server that records `time.monotonic()` at the first byte of every connection."""

    def __init__(self) -> None:
        self.hits: list[float] = []
        self.cpu_at_hit: list[float] = []  # CPU seconds `pid` had used when its first byte arrived
        self.pid = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="first-byte-server", daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await asyncio.wait_for(reader.read(1), 10)
            if first:
                self.hits.append(time.monotonic())
                self.cpu_at_hit.append(_cpu_seconds(self.pid))
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                writer.write(_RESPONSE)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> FirstByteServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the start-up server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _cases(url: str, work: Path) -> dict[str, list[str]]:
    job = work / "job.yaml"
    job.write_text(json.dumps({"name": "startup", "start_urls": [url + "/"], "scope": {"robots_txt": False},
                               "extract": {"fields": {"title": "title"}},
                               "output": {"items": str(work / "items.jsonl")}}))  # fmt: skip
    exe = sys.executable
    return {
        "python -c pass (the floor)": [exe, "-c", "pass"],
        "crawler run JOB": [exe, "-m", "crawler", "run", str(job), "--progress", "off"],
        "crawler download URL": [exe, "-m", "crawler", "download", url + "/file.html", "-d", str(work / "dl"),
                                 "--overwrite", "-q"],
    }  # fmt: skip


def measure_startup(repeats: int = 7, *, log: Any = print) -> list[dict[str, Any]]:
    """One row per case: best and median milliseconds from spawn to the first request (for the floor: to
    exit), and the CPU milliseconds the child had used by then (what a busy machine does not inflate)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    # An installed package has its bytecode (pip compiles it); a checkout run with PYTHONDONTWRITEBYTECODE
    # never writes any, and every run would then time the compiler (~200 ms), not the start-up.
    for package in ("crawler", "pipelines"):
        compileall.compile_dir(REPO_ROOT / package, quiet=2)
    with tempfile.TemporaryDirectory() as tmp, FirstByteServer() as server:
        work = Path(tmp)
        cases = _cases(server.url, work)
        times: dict[str, list[float]] = {k: [] for k in cases}
        cpus: dict[str, list[float]] = {k: [] for k in cases}
        errors: dict[str, str] = {}
        for _ in range(repeats):
            for name, argv in cases.items():
                before = len(server.hits)
                started = time.monotonic()
                proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
                server.pid = proc.pid
                _, status, usage = os.wait4(proc.pid, 0)
                ended = time.monotonic()
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                if proc.stderr:
                    proc.stderr.close()
                if os.waitstatus_to_exitcode(status) != 0:
                    errors[name] = stderr.strip()[-300:] or f"exit status {status}"
                    continue
                first = server.hits[before] if len(server.hits) > before else None
                if argv[1:] != ["-c", "pass"] and first is None:
                    errors[name] = "no request reached the server"
                    continue
                times[name].append(1000 * ((first or ended) - started))
                whole = usage.ru_utime + usage.ru_stime
                cpus[name].append(1000 * (server.cpu_at_hit[before] if first is not None else whole))
    rows = []
    for name in cases:
        vals = times[name]
        row: dict[str, Any] = {"case": name, "runs": len(vals), "error": errors.get(name) if not vals else None}
        if vals:
            row.update(best_ms=min(vals), median_ms=statistics.median(vals), cpu_ms=statistics.median(cpus[name]),
                       best_cpu_ms=min(cpus[name]))  # fmt: skip
            log(f"  start-up {name:28s} best {row['best_ms']:6.0f} ms  median {row['median_ms']:6.0f} ms  "
                f"CPU to first request: median {row['cpu_ms']:4.0f} ms, best {row['best_cpu_ms']:4.0f} ms")  # fmt: skip
        else:
            log(f"  start-up {name:28s} failed: {row['error']}")
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    print(json.dumps(measure_startup(args.repeats), indent=2))


if __name__ == "__main__":
    main()
