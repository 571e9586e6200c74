"""Running the real `crawler run` against a fault: in a subprocess under a hard timeout, its peak RSS
measured by the one sampler (`tests.peak_rss`: the process tree's VmHWM from /proc, every 20 ms), and
reading back the exit code, stats.json, the items and the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peak_rss import measure

__all__ = ["CrawlRun", "base_job", "run_crawl", "server_summary"]

REPO_ROOT = Path(__file__).resolve().parents[2]
MB = 1_000_000


def base_job(workdir: Path) -> dict[str, Any]:
    """Short deadlines and quick retries: a fault case ends in seconds when the engine does the right thing."""
    return {
        "name": "fault",
        "scope": {"robots_txt": False, "max_depth": 5},
        "concurrency": {"workers": 4, "per_host": 4},
        "rate_limit": {"per_host": "unlimited"},
        "http": {
            "http2": False,
            "timeout": {"connect": 2, "read": 2, "write": 2, "pool": 5},
            "max_body": "5MB",
            "max_redirects": 10,
        },
        "retry": {"attempts": 2, "backoff": {"initial": 0.05, "max": 0.2, "jitter": 0}, "max_retry_after": 2},
        "output": {"items": str(workdir / "items.jsonl"), "stats": str(workdir / "stats.json"), "flush_every": 0.2},
    }


@dataclass
class CrawlRun:
    """What one `crawler run` did."""

    returncode: int | None  # None: killed at the hard timeout (it hung)
    wall: float
    peak_rss: int  # bytes
    stats: dict[str, Any]
    items: list[dict[str, Any]]
    stdout: str
    stderr: str
    timeout: float
    log: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # server-side requests, per site name
    server: str = ""  # what the server saw, in a few words (`server_summary`)

    @property
    def hung(self) -> bool:
        return self.returncode is None

    @property
    def errors(self) -> dict[str, int]:
        return dict(self.stats.get("errors", {}))

    def tail(self, n: int = 3000) -> str:
        return f"--- stderr (last {n} chars) ---\n{self.stderr[-n:]}"


def run_crawl(job: dict[str, Any], workdir: Path, *, timeout: float = 25.0, args: tuple[str, ...] = ()) -> CrawlRun:
    """`python -m crawler run job.yaml --progress off` in `workdir`, killed (with its tree) after `timeout`."""
    workdir.mkdir(parents=True, exist_ok=True)
    job_path = workdir / "job.yaml"
    job_path.write_text(json.dumps(job, indent=1))  # JSON is YAML
    out_path, err_path = workdir / "stdout", workdir / "stderr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("NO_COLOR", None)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        measured = measure([sys.executable, "-m", "crawler", "run", str(job_path), "--progress", "off", *args],
                           timeout=timeout, cwd=workdir, env=env, stdout=out, stderr=err, interval=0.02)  # fmt: skip
    stats_path = workdir / "stats.json"
    stats: dict[str, Any] = {}
    if stats_path.exists():
        with contextlib.suppress(ValueError):
            stats = json.loads(stats_path.read_text())
    items: list[dict[str, Any]] = []
    items_path = workdir / "items.jsonl"
    if items_path.exists():
        for line in items_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                items.append(json.loads(line))
    return CrawlRun(measured.code, measured.wall, measured.peak_rss, stats, items, out_path.read_text(errors="replace"),
                    err_path.read_text(errors="replace"), timeout)  # fmt: skip


def _shown(path: str) -> str:
    return path if len(path) <= 24 else f"{path[:12]}...({len(path):,} chars)"


def server_summary(log: dict[str, list[dict[str, Any]]], *, hypercorn: bool = False, paths: int = 3) -> str:
    """What the fault server saw, in a few words: each path requested with its count (`/robots.txt x3, /`),
    or the first `paths` of them and the total (`40 requests: /cal, /cal/2024/2, /cal/2025/1 (+37 paths)`).
    Requests to the shared hypercorn server are not logged."""
    entries = [entry for site in log.values() for entry in site]
    if not entries:
        return "hypercorn: not logged" if hypercorn else ("no request" if log else "no server")
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["path"]] = counts.get(entry["path"], 0) + 1
    shown = ", ".join(_shown(p) + (f" x{n}" if n > 1 else "") for p, n in list(counts.items())[:paths])
    if len(counts) <= paths:
        return shown
    return f"{len(entries)} requests: {shown} (+{len(counts) - paths} paths)"
