"""Edge-case server for the downloader tests: a small ASGI app (served by the one launcher,
crawler/demo/launcher.py, see `servers.EdgeServer`) serving deterministic generated files with switchable
misbehaviour.

Endpoints (all take `size`, `seed` and `key`; content is `file_bytes(seed, version, size)`, where the
version of `key` starts at 0 and `/__bump?key=K` increments it, changing bytes, ETag and Last-Modified):
  /file/NAME    ranges (single), If-Range, strong ETag and Last-Modified. Switches:
                  norange=1 (no ranges, no Accept-Ranges), ignore_if_range=1 (206 even when If-Range
                  does not match), noetag=1, nolength=1 (chunked, no Content-Length),
                  rate=BYTES_PER_S (throttled), cd=VALUE (Content-Disposition, verbatim)
  /cut/NAME     like /file, but the first `cuts` (default 1) requests of `key` stop after `cut_at` bytes
                and drop the connection
  /flaky/NAME   the first `fail` (default 1) requests of `key` answer `code` (503) with Retry-After
                `retry_after` (if given), then like /file
  /status/CODE  that status, a short body
  /redirect/... `code` (302) with `Location: to` (verbatim), an empty body
  /loop/...     302 to itself (the same target, query included): a redirect loop
  /echo/...     200 with the request target as sent (raw path and query) as the body: one content per URL
  /__bump       bump the version of `key`; /__reset (the launcher's) forgets versions, hit counts, shapes
                and the log
  /__shape      for `key`: requests whose range starts at or past `hold_from` never get an answer, and
                those past `slow_from` are sent at `slow_rate` bytes/s (no parameters: back to normal).
                Out of band, so the URL (and the sidecar that records it) stays the same.
The launcher's request log records every request; `EdgeServer.log()` reads it. The app adds `sent` to a
file request's entry: the body bytes sent so far.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import random
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote

from crawler.demo.asgi import ENTRY, Receive, Scope, Send

__all__ = ["app", "file_bytes", "file_sha256"]

_BLOCK = 65_521  # prime: segment and chunk boundaries never line up with the pattern
_CHUNK = 256 * 1024
_EPOCH = 1_700_000_000


@lru_cache(maxsize=64)
def _block(seed: str, version: int) -> bytes:
    return random.Random(f"{seed}:{version}").randbytes(_BLOCK)


def iter_bytes(seed: str, version: int, start: int, end: int, chunk: int = _CHUNK) -> Iterator[bytes]:
    """Bytes `[start, end)` of the file, in chunks."""
    block = _block(seed, version)
    doubled = block + block
    pos = start
    while pos < end:
        n = min(chunk, end - pos)
        out = bytearray()
        while len(out) < n:
            off = (pos + len(out)) % _BLOCK
            take = min(n - len(out), _BLOCK)
            out += doubled[off : off + take]
        yield bytes(out)
        pos += n


def file_bytes(seed: str, version: int, size: int) -> bytes:
    return b"".join(iter_bytes(seed, version, 0, size))


def file_sha256(seed: str, version: int, size: int) -> str:
    h = hashlib.sha256()
    for c in iter_bytes(seed, version, 0, size):
        h.update(c)
    return h.hexdigest()


class EdgeApp:
    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self.shapes: dict[str, dict[str, int]] = {}

    def reset(self) -> None:
        """Forget versions, hit counts and shapes (the launcher's `/__reset`, which also clears the log)."""
        self.versions.clear()
        self.hits.clear()
        self.shapes.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        entry: dict[str, Any] = scope.get(ENTRY, {})  # the launcher's log entry (absent for /__ paths)
        entry["sent"] = 0

        async def respond(
            status: int, hdrs: list[tuple[str, str]], body: bytes = b"", more: bool = False
        ) -> None:
            await send({"type": "http.response.start", "status": status,
                        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs]})  # fmt: skip
            await send({"type": "http.response.body", "body": body, "more_body": more})

        if path == "/__bump":
            key = query.get("key", "")
            self.versions[key] = self.versions.get(key, 0) + 1
            await respond(200, [("content-length", "2")], b"ok")
            return
        if path == "/__shape":
            shape = {k: int(v) for k, v in query.items() if k in ("hold_from", "slow_from", "slow_rate")}
            self.shapes[query.get("key", "")] = shape
            await respond(200, [("content-length", "2")], b"ok")
            return
        if path == "/__health":
            await respond(200, [("content-length", "2")], b"ok")
            return
        if path.startswith("/echo/"):
            target = scope.get("raw_path") or path.encode()
            if scope.get("query_string"):
                target += b"?" + scope["query_string"]
            await respond(200, [("content-type", "application/octet-stream"),
                                ("content-length", str(len(target)))], target)  # fmt: skip
            return
        if path.startswith("/redirect/"):
            await respond(int(query.get("code", "302")), [("location", query.get("to", "")),
                                                          ("content-length", "0")])  # fmt: skip
            return
        if path.startswith("/loop/"):
            target = (scope.get("raw_path") or path.encode()) + b"?" + scope.get("query_string", b"")
            await respond(302, [("location", target.decode("latin-1")), ("content-length", "0")])
            return
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            hdrs = [("content-type", "text/plain"), ("content-length", "6")]
            if "retry_after" in query:
                hdrs.append(("retry-after", query["retry_after"]))
            await respond(code, hdrs, b"status")
            return
        kind = path.split("/")[1]
        if kind not in ("file", "cut", "flaky"):
            await respond(404, [("content-length", "9")], b"not found")
            return
        key = query.get("key", path)
        hit = self.hits[key] = self.hits.get(key, 0) + 1
        if kind == "flaky" and hit <= int(query.get("fail", "1")):
            hdrs = [("content-length", "5")]
            if "retry_after" in query:
                hdrs.append(("retry-after", query["retry_after"]))
            await respond(int(query.get("code", "503")), hdrs, b"flaky")
            return
        await self.serve_file(query, headers, key, hit, kind, respond, send, entry)

    async def serve_file(self, query: dict[str, str], headers: dict[str, str], key: str, hit: int, kind: str,
                         respond: Any, send: Send, entry: dict[str, Any]) -> None:  # fmt: skip
        size = int(query.get("size", "100000"))
        seed = query.get("seed", "seed")
        version = self.versions.get(key, 0)
        etag = f'"{seed}-{size}-v{version}"'
        last_modified = email.utils.formatdate(_EPOCH + version * 3600, usegmt=True)
        hdrs = [("content-type", "application/octet-stream"), ("last-modified", last_modified)]
        if not query.get("noetag"):
            hdrs.append(("etag", etag))
        if "cd" in query:
            hdrs.append(("content-disposition", unquote(query["cd"])))
        ranges_ok = not query.get("norange")
        if ranges_ok:
            hdrs.append(("accept-ranges", "bytes"))
        start, end, status = 0, size, 200
        rng = headers.get("range")
        if ranges_ok and rng and rng.startswith("bytes="):
            if_range = headers.get("if-range")
            matches = (
                if_range is None or if_range in (etag, last_modified) or bool(query.get("ignore_if_range"))
            )
            if matches:
                first, _, last = rng[6:].partition("-")
                if first.isdigit():
                    start = int(first)
                    end = min(size, int(last) + 1) if last.isdigit() else size
                    if start >= size or start >= end:
                        await respond(416, [("content-range", f"bytes */{size}"), ("content-length", "0")])
                        return
                    status = 206
                    hdrs.append(("content-range", f"bytes {start}-{end - 1}/{size}"))
        if not query.get("nolength"):
            hdrs.append(("content-length", str(end - start)))
        shape = self.shapes.get(key, {})
        if start >= shape.get("hold_from", 1 << 62):
            await asyncio.sleep(120)  # never answers within a test; the client gives up or is killed
        rate = float(query.get("rate", "0"))
        if start >= shape.get("slow_from", 1 << 62):
            rate = float(shape.get("slow_rate", 100_000))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs]})  # fmt: skip
        cut_at = (
            int(query.get("cut_at", "-1")) if kind == "cut" and hit <= int(query.get("cuts", "1")) else -1
        )
        sent = 0
        started = time.monotonic()
        chunk = 16 * 1024 if rate else _CHUNK
        for piece in iter_bytes(seed, version, start, end, chunk):
            if cut_at >= 0 and start + sent + len(piece) > cut_at:
                piece = piece[: max(0, cut_at - start - sent)]
                if piece:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                await asyncio.sleep(0.05)
                raise ConnectionAbortedError("cut on purpose")  # hypercorn drops the connection
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            sent += len(piece)
            entry["sent"] = sent
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


app = EdgeApp()
