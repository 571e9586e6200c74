"""The shared client's cookie jar (crawler/http/client.py): cookies persist across requests as in httpx,
responses without Set-Cookie skip the stdlib jar, and no private httpx attribute is set."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from crawler.config.job import HttpConfig
from crawler.http.client import CrawlerClient, build_client

pytestmark = pytest.mark.timeout(20)


async def _cookie_server() -> tuple[asyncio.Server, list[bytes]]:
    """/set answers Set-Cookie: a=1; every request's Cookie header is recorded."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            cookie = b""
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"cookie:"):
                    cookie = line.split(b":", 1)[1].strip()
            seen.append(cookie)
            extra = b"Set-Cookie: a=1; Path=/\r\n" if head.startswith(b"GET /set ") else b""
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + extra + b"\r\nok")
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


async def test_cookies_set_by_a_response_are_sent_back() -> None:
    server, seen = await _cookie_server()
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with build_client(HttpConfig(http2=False)) as c:
            assert isinstance(c, CrawlerClient)
            await c.get(f"{base}/plain")
            await c.get(f"{base}/set")
            await c.get(f"{base}/plain")
            assert c.cookies.get("a") == "1"
    finally:
        server.close()
    assert seen == [b"", b"", b"a=1"]


async def test_responses_without_set_cookie_never_reach_the_stdlib_jar(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = httpx.Cookies.extract_cookies

    def counting(self: httpx.Cookies, response: httpx.Response) -> None:
        calls.append(str(response.url))
        original(self, response)

    monkeypatch.setattr(httpx.Cookies, "extract_cookies", counting)
    server, _ = await _cookie_server()
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with build_client(HttpConfig(http2=False)) as c:
            for _ in range(5):
                await c.get(f"{base}/plain")
            await c.get(f"{base}/set")
    finally:
        server.close()
    assert calls == [f"{base}/set"]


async def test_constructor_and_assigned_cookies_are_sent_and_keep_the_fast_jar() -> None:
    server, seen = await _cookie_server()
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with CrawlerClient(cookies={"k": "v"}) as c:
            await c.get(f"{base}/plain")
            c.cookies = {"z": "9"}
            assert type(c.cookies).__name__ == "_Cookies"
            await c.get(f"{base}/plain")
    finally:
        server.close()
    assert seen == [b"k=v", b"z=9"]
