"""A loopback HTTP/1.1 server that serves at most `limit` requests a second in total, whoever sends them, and
answers 429 (no Retry-After: the client has to learn the rate) to the rest; it logs every request with its
arrival time, status and `X-Worker` header, so a test can measure what all processes together sent."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Hit", "RateLimitedServer"]


@dataclass(frozen=True)
class Hit:
    t: float  # monotonic arrival time
    status: int
    worker: str
    path: str


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a client closing its keep-alive connection is not news


class RateLimitedServer:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.hits: list[Hit] = []
        self._served: deque[float] = deque()  # arrival times of the 200s of the last second
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                now = time.monotonic()
                with server._lock:
                    served = server._served
                    while served and served[0] <= now - 1.0:
                        served.popleft()
                    status = 200 if len(served) < server.limit else 429
                    if status == 200:
                        served.append(now)
                    server.hits.append(Hit(now, status, self.headers.get("X-Worker", "?"), self.path))
                body = b"<html><head><title>ok</title></head><body>ok</body></html>" if status == 200 else b"slow down"
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rate-limited-server", daemon=True)

    def __enter__(self) -> RateLimitedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
