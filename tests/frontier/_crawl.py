"""Running `crawler run` in subprocesses for the kill -9 and multi-process tests: job files, processes,
and reading back what the item files hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_job(path: Path, base_url: str, *, items: Path | None, **sections: Any) -> Path:
    """A job crawling the test site at `base_url` (cleartext HTTP/1.1) with `sections` merged in."""
    job: dict[str, Any] = {
        "name": "frontier-test",
        "start_urls": [base_url + "/"],
        "scope": {"allowed_domains": ["127.0.0.1"], "max_depth": 100, "robots_txt": False},
        "concurrency": {"workers": 16, "per_host": 16},
        "rate_limit": {"per_host": "unlimited"},
        "http": {"http2": False},
        "retry": {"attempts": 3, "backoff": {"initial": 0.05, "max": 0.2}},
        "extract": {"links": "a[href]", "fields": {"title": "title"}},
        "output": {"items": str(items) if items else None, "flush_every": 0.1},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(job.get(key), dict):
            job[key] = {**job[key], **value}
        else:
            job[key] = value
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


class CrawlProcess:
    """`python -m crawler run JOB` in a subprocess; its output goes to a log file next to the job."""

    def __init__(self, job: Path, *args: str, env: dict[str, str] | None = None, name: str = "crawl") -> None:
        self.job = job
        self.args = args
        self.env = env or {}
        self.log_path = job.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CrawlProcess:
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO_ROOT)}
        env.pop("COLUMNS", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crawler", "run", str(self.job), "--log-level", "INFO", *self.args],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def wait(self, timeout: float = 120) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"crawl did not finish in {timeout}s:\n{self.output()}") from None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.running:
            self.kill9()


def finish_all(procs: Iterable[CrawlProcess], timeout: float) -> None:
    """Each process must exit 0 within `timeout` (its log in the failure); any still running is killed on
    the way out, pass or fail."""
    procs = list(procs)
    try:
        for proc in procs:
            assert proc.wait(timeout) == 0, proc.output()
    finally:
        for proc in procs:
            proc.stop()


def count_lines(paths: Iterable[Path]) -> int:
    n = 0
    for p in paths:
        try:
            with open(p, "rb") as f:
                n += f.read().count(b"\n")
        except FileNotFoundError:
            pass
    return n


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str, procs: Iterable[CrawlProcess] = ()
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(p.output() for p in procs)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.005)


def item_urls(paths: Iterable[Path]) -> Counter[str]:
    """URLs of every item line across `paths`; every line must be whole JSON."""
    urls: Counter[str] = Counter()
    for p in paths:
        if not p.exists():
            continue
        for i, line in enumerate(p.read_bytes().splitlines(), 1):
            try:
                urls[orjson.loads(line)["url"]] += 1
            except orjson.JSONDecodeError:
                raise AssertionError(f"{p}:{i} is not a whole JSON line: {line[:200]!r}") from None
    return urls


def site_urls(base_url: str, pages: int) -> set[str]:
    """Every page of the test site: the home page and /page/0 .. /page/{pages-1}."""
    return {base_url + "/"} | {f"{base_url}/page/{i}" for i in range(pages)}


def assert_exactly_once(urls: Counter[str], expected: set[str]) -> None:
    twice = sorted(u for u, n in urls.items() if n > 1)
    missing = sorted(expected - set(urls))
    extra = sorted(set(urls) - expected)
    assert not twice, f"{len(twice)} pages written more than once, e.g. {twice[:5]}"
    assert not missing, f"{len(missing)} pages never written, e.g. {missing[:5]}"
    assert not extra, f"unexpected pages: {extra[:5]}"


def max_overlap(entries: list[dict[str, Any]]) -> int:
    """The most requests in flight at once at the server, from its log entries' start (`t`) and end (`t_end`)."""
    events = sorted([(e["t"], 1) for e in entries] + [(e["t_end"], -1) for e in entries])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most
