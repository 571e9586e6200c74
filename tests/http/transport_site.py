"""A tiny ASGI app for the transport tests (tests/http/test_transport.py), served by the one launcher
(`AsgiServer("tests.http.transport_site:app", ...)`, crawler/demo/launcher.py).

Endpoints (GET unless said):
  /bytes/N            N bytes with Content-Length (a HEAD gets the same head, no body)
  /chunked/N          N bytes in 4 pieces, no Content-Length (chunked over HTTP/1.1)
  /stream/N?chunk=C   N bytes in pieces of C, chunked
  /client-port        the client's port: one value per TCP connection
  /status/CODE        an empty response with that status (304 carries an ETag)
  /gzip               a gzip-encoded text body (Content-Encoding: gzip)
  /redirect/N         302 to /redirect/N-1, and /redirect/0 to /bytes/5
  /slow-head?delay=S  sleeps S seconds before the response head
  /slow-body?delay=S  sends the head and 10 bytes, sleeps S seconds, then 10 more
  /echo (POST, PUT)   the request body's length and Transfer-Encoding, as JSON
  /short/N            announces Content-Length N, sends N/2 bytes and ends (a truncated body)
  /repeated-headers   DUPLICATED_HEADERS: Set-Cookie and Link twice each, a latin-1 byte in a value

The launcher's keep_alive_timeout and keep_alive_max_requests set hypercorn's idle keep-alive timeout and
the requests it serves per connection before closing it (GOAWAY in h2).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from urllib.parse import parse_qs

from crawler.demo.asgi import Receive, Scope, Send, respond

GZIP_TEXT = "hello from the transport test site\n" * 50
DUPLICATED_HEADERS: list[tuple[bytes, bytes]] = [
    (b"set-cookie", b"a=1; Path=/"),
    (b"link", b"</one>; rel=preload"),
    (b"content-type", b"text/plain"),
    (b"set-cookie", b"b=2; Path=/"),
    (b"link", b"</two>; rel=preload"),
    (b"x-name", b"caf\xe9"),
]


async def _respond(
    send: Send, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    # A HEAD gets the same head and no body: the launcher's request log drops the body of HEAD responses.
    await respond(send, status, body, None, headers or [])


async def _stream(send: Send, pieces: list[bytes], delay: float = 0.0) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    for i, piece in enumerate(pieces):
        if delay and i:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    parts = path.strip("/").split("/")
    if parts[0] == "bytes":
        await _respond(send, 200, b"x" * int(parts[1]))
    elif parts[0] == "chunked":
        n = int(parts[1])
        q = n // 4
        await _stream(send, [b"a" * q, b"b" * q, b"c" * q, b"d" * (n - 3 * q)])
    elif parts[0] == "stream":
        n, chunk = int(parts[1]), int(query.get("chunk", "65536"))
        block = b"z" * chunk
        pieces = [block] * (n // chunk) + ([b"z" * (n % chunk)] if n % chunk else [])
        await _stream(send, pieces)
    elif parts[0] == "client-port":
        await _respond(send, 200, str(scope["client"][1]).encode())
    elif parts[0] == "status":
        code = int(parts[1])
        headers = [(b"etag", b'"v1"')] if code == 304 else []
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
    elif parts[0] == "gzip":
        body = gzip.compress(GZIP_TEXT.encode())
        await _respond(send, 200, body, [(b"content-encoding", b"gzip"), (b"content-type", b"text/plain")])
    elif parts[0] == "redirect":
        n = int(parts[1])
        location = f"/redirect/{n - 1}" if n > 0 else "/bytes/5"
        await _respond(send, 302, b"", [(b"location", location.encode())])
    elif parts[0] == "slow-head":
        await asyncio.sleep(float(query.get("delay", "1")))
        await _respond(send, 200, b"late")
    elif parts[0] == "slow-body":
        await _stream(send, [b"0123456789", b"abcdefghij"], delay=float(query.get("delay", "1")))
    elif parts[0] == "short":
        n = int(parts[1])
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(n).encode())]}
        )
        await send({"type": "http.response.body", "body": b"s" * (n // 2), "more_body": False})
    elif parts[0] == "repeated-headers":
        await _respond(send, 200, b"ok", DUPLICATED_HEADERS)
    elif parts[0] == "echo":
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        te = dict(scope["headers"]).get(b"transfer-encoding", b"").decode()
        await _respond(send, 200, json.dumps({"size": size, "transfer_encoding": te}).encode())
    else:
        await _respond(send, 404, b"not found")
