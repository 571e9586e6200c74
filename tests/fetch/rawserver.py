"""A byte-level HTTP/1.1 test server on a raw asyncio socket, in a background thread: each path answers a
canned response (status, headers, body written in chunks) or runs an async handler that writes whatever
bytes it likes. Every request is logged (method, path, headers). One connection per request
(`Connection: close`), so a test sees exactly what the crawler asked for.

Used by tests/fetch, tests/politeness and tests/pipelines; `crawler_run` runs the real console script in
a subprocess and returns its exit code, stats and peak RSS (`tests.peak_rss`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.peak_rss import measure

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Seen"], Awaitable[None]]
_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass(slots=True)
class Canned:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class RawServer:
    def __init__(self) -> None:
        self.routes: dict[str, Canned | Handler] = {}
        # Answers every path without a route (a generated site); None: 404.
        self.fallback: Callable[[str], Canned] | None = None
        self.log: list[Seen] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def canned(self, path: str, body: bytes = b"", status: int = 200, **headers: str) -> None:
        """Answer `path` with `body`; keyword headers use `_` for `-` (content_encoding=...)."""
        pairs = [(k.replace("_", "-").title(), v) for k, v in headers.items()]
        self.routes[path] = Canned(status, pairs, body)

    @staticmethod
    def html(body: str | bytes, status: int = 200) -> Canned:
        data = body.encode() if isinstance(body, str) else body
        return Canned(status, [("Content-Type", "text/html")], data)

    def handle(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def paths(self) -> list[str]:
        return [s.path for s in self.log]

    def __enter__(self) -> RawServer:
        self._thread = threading.Thread(target=self._run, name="rawserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("raw server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0, limit=_MAX_HEAD)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = [*lines[0].split(" "), "", ""][:3]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            seen = Seen(method, target, headers)
            self.log.append(seen)
            route = self.routes.get(target) or self.routes.get(target.split("?", 1)[0])
            if route is None and self.fallback is not None:
                route = self.fallback(target)
            if route is None:
                route = Canned(404, [("Content-Type", "text/plain")], b"not found")
            if isinstance(route, Canned):
                await self._write_canned(writer, route, method)
            else:
                await route(reader, writer, seen)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    @staticmethod
    async def _write_canned(writer: asyncio.StreamWriter, canned: Canned, method: str) -> None:
        reason = {200: "OK", 301: "Moved", 302: "Found", 404: "Not Found", 503: "Unavailable"}.get(canned.status, "X")
        head = [f"HTTP/1.1 {canned.status} {reason}", f"Content-Length: {len(canned.body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in canned.headers]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD":
            body = memoryview(canned.body)
            for i in range(0, len(body), _CHUNK):
                writer.write(body[i : i + _CHUNK])
                await writer.drain()
        await writer.drain()


@dataclass(slots=True)
class RunResult:
    code: int
    stats: dict[str, Any]
    peak_rss_mb: float
    seconds: float
    stderr: str

    @property
    def errors(self) -> dict[str, int]:
        return dict(self.stats.get("errors", {}))


def run_measured(cmd: list[str], *, timeout: float, cwd: Path | None = None) -> tuple[int, str, str, float, float]:
    """Run `cmd`: (exit code, stdout, stderr, peak RSS in MiB (`tests.peak_rss`), seconds)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        measured = measure(cmd, timeout=timeout, cwd=cwd, env={**os.environ, "COLUMNS": "200"}, stdout=out,
                           stderr=err)  # fmt: skip
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if measured.code is None:
        raise AssertionError(f"{cmd[1:3]} did not end within {timeout}s: {stderr[-2000:]}")
    return measured.code, stdout, stderr, measured.peak_rss / (1 << 20), measured.wall


def crawler_run(job: dict[str, Any], tmp_path: Path, *, timeout: float = 60, args: list[str] | None = None) -> RunResult:
    """Run `crawler run` on `job` in a subprocess (items and stats.json under tmp_path), measuring its peak
    RSS (`tests.peak_rss`)."""
    job = {"output": {"items": str(tmp_path / "items.jsonl"), "stats": str(tmp_path / "stats.json")},
           "http": {"http2": False}, **job}  # fmt: skip
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    exe = Path(sys.executable).with_name("crawler")
    code, _, stderr, peak, seconds = run_measured([str(exe), "run", str(path), "--progress", "off", *(args or [])],
                                                  timeout=timeout)  # fmt: skip
    stats_path = tmp_path / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    result = RunResult(code, stats, peak, seconds, stderr)
    # The figures a report quotes: visible with `pytest -s` (or -rP).
    print(f"crawler run: exit {result.code}, errors {result.errors}, peak RSS {result.peak_rss_mb:.0f} MB, "
          f"{seconds:.2f}s")
    return result
