"""Bounded response heads (issue 10): at most `http.max_header_bytes` (64 KB) and `http.max_headers` (200)
for HTTP/1.1 and HTTP/2, else the request fails as `header_too_large`, whatever the server keeps sending.

The flood cases run the real `crawler run` in a subprocess against raw asyncio servers and bound its peak
RSS (`tests.peak_rss`); the HTTP/2 cases drive the transport against the scripted h2 server.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import h2.connection
import hpack
import httpx
import pytest

from crawler.config.job import HttpConfig
from crawler.http.client import build_client
from crawler.http.transport.errors import HeaderTooLarge
from crawler.http.transport.transport import make_transport
from crawler.model.errors import error_kind
from tests.cli.conftest import crawler_command
from tests.http.h2_faults import H2FaultServer, frame
from tests.peak_rss import measure

pytestmark = pytest.mark.timeout(60)

_FLOOD_CAP = 512 * 1024 * 1024  # the flood servers stop on their own after this much (never reached)
_PEAK_RSS_LIMIT_MB = 200


class _Flood:
    """A raw HTTP/1.1 server answering every request with `start` and then `line(n)` forever."""

    def __init__(self, line: Callable[[int], bytes], start: bytes = b"HTTP/1.1 200 OK\r\n") -> None:
        self.line = line
        self.start = start
        self.sent = 0
        self.connections = 0
        self.port = 0

    async def __aenter__(self) -> _Flood:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.start)
            n = 0
            while self.sent < _FLOOD_CAP:
                chunk = b"".join(self.line(n + i) for i in range(64))
                n += 64
                writer.write(chunk)
                self.sent += len(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _run_crawl(tmp_path: Path, url: str, extra_http: str = "") -> tuple[int, dict[str, object], int]:
    """`crawler run` on one URL: (exit code, stats.json, peak RSS in KB from `tests.peak_rss`). The sampler
    waits in a thread: the servers run on this event loop."""
    job = tmp_path / "job.yaml"
    job.write_text(f"start_urls: ['{url}']\nhttp: {{http2: false, trust_env: false{extra_http}}}\n"
                   "scope: {robots_txt: false}\nretry: {backoff: {initial: 0.05, max: 0.1}}\n"
                   "output: {stats: stats.json}\n")  # fmt: skip
    with (tmp_path / "stderr").open("w+b") as err:
        measured = await asyncio.to_thread(measure, [*crawler_command(), "run", "job.yaml"], timeout=45,
                                           cwd=tmp_path, stderr=err, interval=0.02)  # fmt: skip
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if measured.code is None:
        pytest.fail("the crawl did not end within 45 s")
    assert "Traceback" not in stderr, stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    return measured.code, stats, measured.peak_rss // 1024


_EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    ("name", "line", "start"),
    [
        ("many short header lines", lambda n: b"X-Flood-%d: %s\r\n" % (n, b"v" * 40), b"HTTP/1.1 200 OK\r\n"),
        ("one endless header line", lambda n: b"X-Endless: " if n == 0 else b"v" * 100, b"HTTP/1.1 200 OK\r\n"),
        ("endless status line", lambda n: b"x" * 100, b"HTTP/1.1 200 "),
        ("endless 103 Early Hints heads", lambda n: b"\r\n" + _EARLY_HINTS, _EARLY_HINTS),
    ],
)
async def test_a_header_flood_ends_the_request_as_header_too_large_with_bounded_memory(
    tmp_path: Path, name: str, line: Callable[[int], bytes], start: bytes
) -> None:
    async with _Flood(line, start) as flood:
        code, stats, peak_kb = await _run_crawl(tmp_path, f"http://127.0.0.1:{flood.port}/")
    assert stats["errors"] == {"header_too_large": 1}, (name, stats)
    assert code == 1, name
    assert flood.connections == 1  # not retried: a retry would meet the same flood
    assert peak_kb < _PEAK_RSS_LIMIT_MB * 1024, f"{name}: peak RSS {peak_kb // 1024} MB"
    assert flood.sent < 32 * 1024 * 1024  # the client hung up early, not after a read timeout


async def test_the_caps_are_configurable(tmp_path: Path) -> None:
    async with _Flood(lambda n: b"X-Flood-%d: %s\r\n" % (n, b"v" * 40)) as flood:
        # 250 lines of ~55 bytes: over 200 fields but under 64 KB... allowed once max_headers is raised, and
        # then the flood goes on until the byte cap (here 16 KB) stops it.
        code, stats, _ = await _run_crawl(tmp_path, f"http://127.0.0.1:{flood.port}/",
                                          ", max_headers: 5000, max_header_bytes: 16KB")  # fmt: skip
    assert stats["errors"] == {"header_too_large": 1}
    assert code == 1


async def _head_server(lines: int, width: int) -> tuple[asyncio.Server, int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            head = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * width) for i in range(lines))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + head + b"\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("lines", "width", "fails"),
    [
        (198, 10, False),  # 199 fields with Content-Length: allowed
        (200, 10, True),  # 201 fields
        (55, 1100, False),  # ~61 KB in one packet-sized write: under the byte cap
        (70, 1100, True),  # ~78 KB: over it, even when the whole head arrives in one read
    ],
)
async def test_http1_head_limits_are_exact_enough(lines: int, width: int, fails: bool) -> None:
    server, port = await _head_server(lines, width)
    try:
        async with httpx.AsyncClient(transport=make_transport(http2=False, verify=False,
                                                              limits=httpx.Limits())) as c:  # fmt: skip
            if fails:
                with pytest.raises(HeaderTooLarge) as info:
                    await c.get(f"http://127.0.0.1:{port}/")
                assert error_kind(info.value) == "header_too_large"
            else:
                r = await c.get(f"http://127.0.0.1:{port}/")
                assert r.content == b"ok" and len(r.headers) == lines + 1
    finally:
        server.close()


def _h2_head(fields: list[tuple[bytes, bytes]]) -> Callable[..., Awaitable[None]]:
    """A scenario sending one header block (split into CONTINUATION frames of 16 KB) then a short body."""

    async def scenario(server: H2FaultServer, conn: h2.connection.H2Connection, writer: asyncio.StreamWriter,
                       stream_id: int) -> None:  # fmt: skip
        block = hpack.Encoder().encode([(b":status", b"200"), *fields], huffman=False)
        pieces = [block[i : i + 16_384] for i in range(0, len(block), 16_384)]
        for i, piece in enumerate(pieces):
            kind, flags = (0x1, 0) if i == 0 else (0x9, 0)
            if i == len(pieces) - 1:
                flags |= 0x4  # END_HEADERS
            writer.write(frame(kind, flags, stream_id, piece))
        writer.write(frame(0x0, 0x1, stream_id, b"ok"))

    return scenario


@pytest.mark.parametrize(
    ("fields", "fails"),
    [
        ([(b"x-big", b"v" * 60_000)], False),
        ([(b"x-big", b"v" * 70_000)], True),  # over MAX_HEADER_LIST_SIZE: HPACK stops decoding
        ([(b"x-h%d" % i, b"v") for i in range(200)], False),
        ([(b"x-h%d" % i, b"v") for i in range(201)], True),
    ],
)
async def test_http2_head_limits(fields: list[tuple[bytes, bytes]], fails: bool) -> None:
    async with H2FaultServer(_h2_head(fields)) as server:
        config = HttpConfig(http2_prior_knowledge=True, trust_env=False, verify=False)
        async with build_client(config) as c:
            if fails:
                with pytest.raises(HeaderTooLarge) as info:
                    await c.get(server.url())
                assert error_kind(info.value) == "header_too_large"
            else:
                r = await c.get(server.url())
                assert (r.http_version, r.content) == ("HTTP/2", b"ok")


def test_error_kind_honours_a_kind_attribute_on_any_exception() -> None:
    class Odd(Exception):
        kind = "odd_kind"

    assert error_kind(Odd()) == "odd_kind"
    assert error_kind(HeaderTooLarge("x")) == "header_too_large"
    assert error_kind(httpx.ReadTimeout("x")) == "read_timeout"
