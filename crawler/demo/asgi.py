"""ASGI plumbing shared by every loopback app (the demo site and the test apps): the `respond` helpers,
query and header readers, and `RequestLogger`, the middleware that records what the server saw.

`RequestLogger` wraps any ASGI app in the server process (`crawler.demo.launcher` puts it around the app it
serves). It answers the lifespan protocol, keeps one entry per request in arrival order and serves:
  /__log?prefix=P&clear=1   {"requests": [...], "counters": {...}} (never logged itself)
  /__reset                  clears the log and calls the app's `reset()` when it has one
Every other `/__*` path reaches the app unlogged (the site's `/__health`, the edge app's `/__bump`).

An entry is a dict: seq, method, path, query (the raw query string), http_version, scheme, client
("ip:port" of the connection), headers (lower-case name -> value), t and t_end (server monotonic seconds),
status, inflight (requests in flight when this one arrived). An app may add keys to its entry
(`scope[ENTRY]`) or count events on the log (`scope[LOG].count("tokens_issued")`); counts are reset with
the log.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs

__all__ = [
    "ENTRY",
    "HTML",
    "JSON",
    "LOG",
    "TEXT",
    "App",
    "Headers",
    "Receive",
    "RequestLog",
    "RequestLogger",
    "Resettable",
    "Scope",
    "Send",
    "base_url",
    "header",
    "int_param",
    "query_list",
    "query_params",
    "read_body",
    "respond",
    "respond_json",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

HTML = b"text/html; charset=utf-8"
JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"

# Scope keys set by RequestLogger for the app it wraps.
LOG = "crawler.demo.log"
ENTRY = "crawler.demo.log_entry"


# --- responses and requests -----------------------------------------------------------------------------


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    content_type: bytes | None = HTML,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """One complete response with Content-Length (and Content-Type unless None)."""
    out: Headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        out.append((b"content-type", content_type))
    out.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def respond_json(
    send: Send, data: Any, status: int = 200, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await respond(send, status, json.dumps(data).encode(), JSON, headers)


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def query_params(scope: Scope) -> dict[str, str]:
    """The query parameters; the last value wins."""
    return {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


def query_list(scope: Scope, name: str) -> list[str]:
    return parse_qs(scope["query_string"].decode("latin-1")).get(name, [])


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (`name` in lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def base_url(scope: Scope) -> str:
    """scheme://host[:port] as the client addressed this server (its Host header)."""
    host = header(scope, b"host")
    if not host:
        server_host, server_port = scope["server"]
        host = f"{server_host}:{server_port}"
    return f"{scope['scheme']}://{host}"


def int_param(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


# --- the request log ------------------------------------------------------------------------------------


class RequestLog:
    """Everything the server saw, in arrival order, with in-flight and event counters."""

    __slots__ = ("counts", "entries", "inflight", "max_inflight", "seq")

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.inflight = 0
        self.max_inflight = 0
        self.seq = 0

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def snapshot(self, prefix: str | None) -> dict[str, Any]:
        entries = (
            self.entries if prefix is None else [e for e in self.entries if e["path"].startswith(prefix)]
        )
        counters = {
            "requests": len(self.entries),
            "inflight": self.inflight,
            "max_inflight": self.max_inflight,
            **self.counts,
        }
        return {"requests": entries, "counters": counters}

    def clear(self) -> None:
        self.entries = []
        self.counts.clear()
        self.max_inflight = self.inflight


@runtime_checkable
class Resettable(Protocol):
    """An app with state to forget on `/__reset` (hit counters, issued tokens, file versions)."""

    def reset(self) -> None: ...


class RequestLogger:
    """Wraps an ASGI app: logs every request (see the module docstring) and answers the lifespan."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.log = RequestLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/__"):
            await self._internal(scope, receive, send)
            return
        log = self.log
        entry: dict[str, Any] = {
            "seq": log.seq,
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode("latin-1"),
            "http_version": scope["http_version"],
            "scheme": scope["scheme"],
            "client": "{}:{}".format(*(scope.get("client") or ("?", 0))),
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            "t": time.monotonic(),
            "t_end": None,
            "status": None,
        }
        log.seq += 1
        log.entries.append(entry)
        log.inflight += 1
        log.max_inflight = max(log.max_inflight, log.inflight)
        entry["inflight"] = log.inflight
        head = scope["method"] == "HEAD"

        async def logged_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            elif message["type"] == "http.response.body":
                if head:
                    message = {**message, "body": b""}
                if not message.get("more_body", False):
                    entry["t_end"] = time.monotonic()
            await send(message)

        try:
            await self.app({**scope, LOG: log, ENTRY: entry}, receive, logged_send)
        finally:
            log.inflight -= 1

    async def _internal(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/__log":
            params = query_params(scope)
            body = json.dumps(self.log.snapshot(params.get("prefix"))).encode()
            if params.get("clear") == "1":
                self.log.clear()
            await respond(send, 200, body, JSON)
        elif path == "/__reset":
            self.log.clear()
            if isinstance(self.app, Resettable):
                self.app.reset()
            await respond(send, 200, b"ok", TEXT)
        else:
            await self.app({**scope, LOG: self.log}, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
