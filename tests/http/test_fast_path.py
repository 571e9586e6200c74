"""The shared client's fast path (crawler/http/fast_path.py, `CrawlerClient.build_request` / `send`): the
same requests on the wire and the same responses as httpx's own way, and httpx's way wherever the fast
path cannot promise that (auth, cookies in the jar, event hooks, followed redirects, odd URLs)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.config.job import HttpConfig
from crawler.http.client import CrawlerClient, build_client
from crawler.http.fast_path import FAST_URLS, FastURL, HeaderMerge
from crawler.http.redirects import RedirectError
from crawler.http.transport.transport import make_transport

pytestmark = pytest.mark.timeout(30)


def test_the_self_check_passes_with_the_pinned_httpx() -> None:
    assert FAST_URLS


# -- URLs ---------------------------------------------------------------------------------------------------

_PIECES = ["/", "a", "Z", "0", ".", "..", "%", "%41", "%zz", "?", "#", "&", "=", ";", ":", "@", "|", "^", "`",
           "{", "}", "[", "]", "\\", "'", '"', "<", ">", " ", "~", "-", "_", "!", "$", "(", ")", "*", "+", ",",
           "é", "\t", "\x7f"]  # fmt: skip
_HOSTS = ["example.com", "127.0.0.1", "EXAMPLE.com", "999.1.1.1", "1.2.3", "a_b.example", "xn--bcher-kva.example",
          "[::1]", "user:pw@example.com", "exa mple.com", "-", "bücher.example"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(scheme=st.sampled_from(["http", "https", "HTTP", "ftp"]), host=st.sampled_from(_HOSTS),
       port=st.sampled_from(["", ":80", ":443", ":8080", ":0", ":99999", ":"]),
       path=st.lists(st.sampled_from(_PIECES), max_size=12))  # fmt: skip
def test_a_fast_url_is_exactly_httpx_s_parse_of_the_same_string(scheme: str, host: str, port: str,
                                                                 path: list[str]) -> None:  # fmt: skip
    url = f"{scheme}://{host}{port}/{''.join(path)}"
    fast = FastURL().parse(url)
    if fast is None:
        return  # httpx's parser takes it
    slow = httpx.URL(url)
    assert fast == slow
    assert (fast.scheme, fast.host, fast.port, fast.raw_path, fast.netloc, fast.userinfo, fast.fragment) == \
        (slow.scheme, slow.host, slow.port, slow.raw_path, slow.netloc, slow.userinfo, slow.fragment)  # fmt: skip
    assert str(fast) == str(slow)


@pytest.mark.parametrize("url", ["http://example.com/a/b?q=1", "https://127.0.0.1:8443/p/1.html",
                                 "http://example.com:80/x|y^z?a=`b`{c}"])  # fmt: skip
def test_ordinary_crawl_urls_take_the_fast_path(url: str) -> None:
    assert FastURL().parse(url) == httpx.URL(url)


@pytest.mark.parametrize("url", ["http://999.1.1.1/", "http://user:pw@example.com/", "http://example.com/a/../b",
                                 "http://example.com/a#frag", "http://[::1]/", "http://Example.com/",
                                 "http://example.com/a b", "http://bücher.example/"])  # fmt: skip
def test_urls_httpx_would_change_or_refuse_go_its_way(url: str) -> None:
    assert FastURL().parse(url) is None


# -- build_request ------------------------------------------------------------------------------------------


def _slow_build(client: httpx.AsyncClient, method: str, url: str, **kw: object) -> httpx.Request:
    return httpx.AsyncClient.build_request(client, method, url, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("headers", [None, {}, {"Accept-Encoding": "br"}, {"Referer": "http://a.example/"},
                                     {"accept-encoding": "x", "User-Agent": "other", "X-A": "1"},
                                     {"Host": "elsewhere.example"}, {"If-None-Match": b'"etag"'},
                                     [("Range", "bytes=0-"), ("X-Team", "mine")],
                                     [("X-A", "1"), ("x-a", "2"), ("Accept", "a/b")], []])  # fmt: skip
async def test_build_request_gives_httpx_s_request(headers: dict[str, object] | list[tuple[str, str]] | None) -> None:
    async with build_client(HttpConfig(http2=False, headers={"X-Team": "t", "Accept": "text/html"})) as c:
        for method in ("GET", "HEAD"):
            fast = c.build_request(method, "http://example.com:8080/a?b=c", headers=headers)
            slow = _slow_build(c, method, "http://example.com:8080/a?b=c", headers=headers)
            assert fast.headers.raw == slow.headers.raw
            assert (fast.method, fast.url, fast.extensions, fast.content) == \
                (slow.method, slow.url, slow.extensions, slow.content)  # fmt: skip


async def test_header_lists_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list of pairs (the downloader's, where a name may repeat) is merged here, not by httpx."""
    async with build_client(HttpConfig(http2=False, headers={"X-Team": "t"})) as c:
        expected = _slow_build(c, "GET", "http://example.com/f", headers=[("X-A", "1"), ("x-a", "2")]).headers.raw

        def refuse(*args: object, **kwargs: object) -> httpx.Request:
            raise AssertionError("httpx's build_request was used")

        monkeypatch.setattr(httpx.AsyncClient, "build_request", refuse)
        fast = c.build_request("GET", "http://example.com/f", headers=[("X-A", "1"), ("x-a", "2")])
        assert fast.headers.raw == expected
        assert fast.headers.get_list("x-a") == ["1", "2"]


async def test_build_request_follows_edits_of_the_client_headers() -> None:
    async with build_client(HttpConfig(http2=False)) as c:
        c.build_request("GET", "http://example.com/")
        c.headers["X-Later"] = "1"
        fast = c.build_request("GET", "http://example.com/", headers={"Accept-Encoding": "gzip"})
        assert fast.headers.raw == _slow_build(c, "GET", "http://example.com/",
                                               headers={"Accept-Encoding": "gzip"}).headers.raw  # fmt: skip
        assert fast.headers["x-later"] == "1"
        c.headers = {"User-Agent": "new"}  # type: ignore[assignment]
        assert c.build_request("GET", "http://example.com/").headers.raw == \
            _slow_build(c, "GET", "http://example.com/").headers.raw  # fmt: skip


async def test_cookies_in_the_jar_or_client_params_take_httpx_s_build() -> None:
    async with build_client(HttpConfig(http2=False)) as c:
        c.cookies.set("k", "v", domain="example.com")
        assert c.build_request("GET", "http://example.com/").headers["cookie"] == "k=v"
    async with CrawlerClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)), params={"p": "1"}) as c:
        assert c.build_request("GET", "http://example.com/a").url == httpx.URL("http://example.com/a?p=1")


def test_header_merge_rebuilds_for_new_names() -> None:
    merge = HeaderMerge()
    base = httpx.Headers({"User-Agent": "u", "Accept-Encoding": "gzip"})
    one = merge.merge(base, {"Accept-Encoding": "br"}, b"h")
    two = merge.merge(base, {"Referer": "r"}, b"h")
    assert one is not None and two is not None
    assert one.raw == [(b"Host", b"h"), (b"User-Agent", b"u"), (b"Accept-Encoding", b"br")]
    assert two.raw == [(b"Host", b"h"), (b"User-Agent", b"u"), (b"Accept-Encoding", b"gzip"), (b"Referer", b"r")]


# -- send, on the wire ------------------------------------------------------------------------------------------


class _Server:
    """A raw HTTP/1.1 server that records each request head and answers by path."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            self.heads.append(head)
            path = head.split(b" ", 2)[1]
            if path.startswith(b"/redirect"):
                writer.write(b"HTTP/1.1 302 Found\r\nLocation: /target\r\nContent-Length: 0\r\n\r\n")
            elif path.startswith(b"/bad-location"):
                writer.write(b"HTTP/1.1 302 Found\r\nLocation: javascript:alert(1)\r\nContent-Length: 0\r\n\r\n")
            elif path.startswith(b"/set"):
                writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: s=1; Path=/\r\nContent-Length: 2\r\n\r\nok")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
            await writer.drain()
        writer.close()

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    s = _Server()
    s.server = await asyncio.start_server(s._handle, "127.0.0.1", 0)
    yield s
    s.server.close()


def _client() -> CrawlerClient:
    c = build_client(HttpConfig(http2=False, headers={"X-Team": "t"}))
    assert isinstance(c, CrawlerClient)
    return c


async def test_the_fast_path_sends_the_bytes_httpx_sends(server: _Server) -> None:
    async with _client() as c:
        headers = {"Accept-Encoding": "gzip", "Referer": f"{server.base}/from"}
        slow = await httpx.AsyncClient.send(c, _slow_build(c, "GET", f"{server.base}/p?q=1", headers=headers))
        fast = await c.send(c.build_request("GET", f"{server.base}/p?q=1", headers=headers))
        assert server.heads[0] == server.heads[1]
        for resp in (slow, fast):
            assert (resp.status_code, resp.content, resp.http_version, resp.url) == \
                (200, b"hello", "HTTP/1.1", httpx.URL(f"{server.base}/p?q=1"))  # fmt: skip
            assert resp.request.headers["referer"] == f"{server.base}/from"
            assert resp.headers["content-type"] == "text/plain"


async def test_the_shared_client_takes_the_fast_path_with_its_response_hook(server: _Server,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The client build_client makes has a response hook (refuse_unparseable_location); the fast path runs it
    itself rather than handing every request to httpx's auth/redirect loop."""
    async with _client() as c:
        assert c.event_hooks["response"]
        await c.get(f"{server.base}/warm")  # the first send of a client is httpx's

        async def refuse(*args: object, **kwargs: object) -> httpx.Response:
            raise AssertionError("httpx's send loop was used")

        monkeypatch.setattr(httpx.AsyncClient, "_send_handling_auth", refuse)
        resp = await c.send(c.build_request("GET", f"{server.base}/fast"))
        assert (resp.status_code, resp.content) == (200, b"hello")
        resp = await c.send(c.build_request("GET", f"{server.base}/redirect"))
        assert resp.next_request is not None and resp.next_request.url == httpx.URL(f"{server.base}/target")
        with pytest.raises(RedirectError):  # the hook ran
            await c.send(c.build_request("GET", f"{server.base}/bad-location"))


async def test_a_streamed_fast_response_reads_and_closes(server: _Server) -> None:
    async with _client() as c:
        await c.get(f"{server.base}/warm")  # the first send of a client is httpx's
        resp = await c.send(c.build_request("GET", f"{server.base}/s"), stream=True)
        assert not resp.is_stream_consumed
        assert b"".join([chunk async for chunk in resp.aiter_raw()]) == b"hello"
        await resp.aclose()
        assert resp.is_closed


async def test_a_redirect_has_httpx_s_next_request_and_a_bad_location_fails_alike(server: _Server) -> None:
    async with _client() as c:
        await c.get(f"{server.base}/warm")
        resp = await c.send(c.build_request("GET", f"{server.base}/redirect"))
        assert resp.status_code == 302
        assert resp.next_request is not None and resp.next_request.url == httpx.URL(f"{server.base}/target")
        errors = []
        for send in (c.send, lambda r: httpx.AsyncClient.send(c, r)):
            # The client's response hook refuses the target (next_hop's rule) on either path.
            with pytest.raises(RedirectError) as info:
                await send(c.build_request("GET", f"{server.base}/bad-location"))
            errors.append((type(info.value), str(info.value)))
        assert errors[0] == errors[1]


async def test_cookies_set_on_the_fast_path_are_kept_and_then_sent(server: _Server) -> None:
    async with _client() as c:
        await c.get(f"{server.base}/warm")
        await c.get(f"{server.base}/set")
        assert c.cookies.get("s") == "1"
        await c.get(f"{server.base}/after")
        assert b"Cookie: s=1" in server.heads[-1]


async def test_a_transport_error_carries_its_request(server: _Server) -> None:
    async with _client() as c:
        await c.get(f"{server.base}/warm")
        request = c.build_request("GET", "http://127.0.0.1:1/")
        with pytest.raises(httpx.ConnectError) as info:
            await c.send(request)
        assert info.value.request is request


async def test_a_closed_client_refuses_to_send_as_httpx_does(server: _Server) -> None:
    c = _client()
    async with c:
        await c.get(f"{server.base}/warm")
    with pytest.raises(RuntimeError, match="client has been closed"):
        await c.send(c.build_request("GET", f"{server.base}/x"))


async def test_the_request_log_line_is_written_when_httpx_logs_at_info(server: _Server,
                                                                        caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    async with _client() as c:
        await c.get(f"{server.base}/warm")
        with caplog.at_level(logging.INFO, logger="httpx"):
            await c.get(f"{server.base}/logged")
    assert f'HTTP Request: GET {server.base}/logged "HTTP/1.1 200 OK"' in caplog.text


async def test_auth_hooks_and_followed_redirects_go_httpx_s_way(server: _Server) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(str(request.url))

    def transport() -> httpx.AsyncBaseTransport:
        return make_transport(http2=False, verify=False, limits=httpx.Limits())

    async with CrawlerClient(transport=transport(), auth=("u", "p")) as c:
        await c.get(f"{server.base}/warm")
        await c.get(f"{server.base}/auth")
        assert b"Authorization: Basic dTpw" in server.heads[-1]
        await c.get(f"{server.base}/no-auth", auth=None)
        assert b"Authorization" not in server.heads[-1]
    async with CrawlerClient(transport=transport(), event_hooks={"request": [hook]}) as c:
        await c.get(f"{server.base}/warm")
        await c.get(f"{server.base}/hooked")
    assert seen == [f"{server.base}/warm", f"{server.base}/hooked"]

    async def response_hook(response: httpx.Response) -> None:
        seen.append(f"{response.status_code} {response.url}")

    async with CrawlerClient(transport=transport(), event_hooks={"response": [response_hook]}) as c:
        await c.get(f"{server.base}/warm")
        await c.get(f"{server.base}/answered")
    assert seen[-2:] == [f"200 {server.base}/warm", f"200 {server.base}/answered"]
    async with CrawlerClient(transport=transport(), follow_redirects=True) as c:
        await c.get(f"{server.base}/warm")
        resp = await c.get(f"{server.base}/redirect")
        assert resp.status_code == 200 and resp.url == httpx.URL(f"{server.base}/target")
    async with CrawlerClient(transport=transport()) as c:
        await c.get(f"{server.base}/warm")
        await c.get(f"http://u:p@{server.base.removeprefix('http://')}/userinfo")
        assert b"Authorization: Basic dTpw" in server.heads[-1]


# Spaces, percent-escapes valid or not, non-ASCII paths and queries, dot segments, a fragment, characters httpx
# quotes in a path but not in a query.
_ODD_PATHS = ["/a b", "/%7Efoo/%zz?q=a b", "/é?x=ü", "/a/./b/../c", "/p?q=%41#frag", "/x;y@z|`{}?k={v}`",
              "/%E2%82%AC?%e2%82%ac"]  # fmt: skip


async def test_odd_urls_reach_the_wire_as_httpx_sends_them(server: _Server) -> None:
    async with _client() as c:
        await c.get(f"{server.base}/warm")
        for path in _ODD_PATHS:
            slow = await httpx.AsyncClient.send(c, _slow_build(c, "GET", f"{server.base}{path}"))
            fast = await c.send(c.build_request("GET", f"{server.base}{path}"))
            assert server.heads[-1] == server.heads[-2], path
            assert (fast.url, fast.status_code) == (slow.url, slow.status_code), path


async def test_idna_hosts_are_sent_as_httpx_encodes_them() -> None:
    sent: list[tuple[bytes, bytes, list[tuple[bytes, bytes]]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.raw_host, request.url.raw_path, request.headers.raw))
        return httpx.Response(200)

    async with CrawlerClient(transport=httpx.MockTransport(answer)) as c:
        for url in ("http://bücher.example/a", "http://BÜCHER.example:8080/é", "http://xn--bcher-kva.example/",
                    "https://faß.example/?q=ß"):  # fmt: skip
            await httpx.AsyncClient.send(c, _slow_build(c, "GET", url))
            await c.send(c.build_request("GET", url))
            assert sent[-1] == sent[-2], url
    assert sent[0][0] == b"xn--bcher-kva.example"
