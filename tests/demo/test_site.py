"""The test site does what the other tests rely on: real HTTP/2 over TLS, a server-side request log,
edge-case endpoints that behave as documented, and a generated site whose every page is reachable."""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
import zlib
from collections import deque
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
import pytest

from crawler.demo.site import SiteServer, big_body, page_links

HREF_RE = re.compile(rb'<a href="([^"]*)"')
TITLE_RE = re.compile(rb"<title>(.*?)</title>")


def client_for(site: SiteServer, http2: bool = True) -> httpx.Client:
    return httpx.Client(base_url=site.url, http2=http2, verify=site.ssl_context(), trust_env=False)


# --- protocols ---------------------------------------------------------------------------------------------


def test_h2_site_negotiates_http2_over_tls(h2_site: SiteServer) -> None:
    assert h2_site.url.startswith("https://127.0.0.1:")
    with client_for(h2_site) as client:
        response = client.get("/page/1", params={"probe": "h2"})
    assert response.status_code == 200
    assert response.http_version == "HTTP/2"
    [entry] = [e for e in h2_site.log("/page/1") if e["query"] == "probe=h2"]
    assert entry["http_version"] == "2"
    assert entry["scheme"] == "https"


def test_h2_site_still_answers_http1_clients_over_tls(h2_site: SiteServer) -> None:
    with client_for(h2_site, http2=False) as client:
        response = client.get("/page/2", params={"probe": "h1-over-tls"})
    assert response.http_version == "HTTP/1.1"
    [entry] = [e for e in h2_site.log("/page/2") if e["query"] == "probe=h1-over-tls"]
    assert entry["http_version"] == "1.1"


def test_http1_site_is_cleartext_http1(http1_site: SiteServer) -> None:
    assert http1_site.url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=http1_site.url, http2=True) as client:  # h2 offered, h1 is what we get
        response = client.get("/page/3", params={"probe": "cleartext"})
    assert response.http_version == "HTTP/1.1"
    [entry] = [e for e in http1_site.log("/page/3") if e["query"] == "probe=cleartext"]
    assert (entry["http_version"], entry["scheme"]) == ("1.1", "http")


async def test_h2_requests_share_one_connection_measured_at_the_server(site_factory) -> None:
    site = site_factory(tls=True)
    async with httpx.AsyncClient(http2=True, verify=site.ssl_context()) as client:
        responses = await asyncio.gather(*(client.get(site.url_for("/slow/200")) for _ in range(8)))
    assert {r.http_version for r in responses} == {"HTTP/2"}
    log = site.log("/slow/")
    assert len(log) == 8
    assert len({e["client"] for e in log}) == 1  # one TCP connection, eight streams
    assert site.counters()["max_inflight"] == 8


# --- the request log ---------------------------------------------------------------------------------------


def test_log_records_method_path_query_headers_status_and_timing(site_factory) -> None:
    site = site_factory()
    with httpx.Client(base_url=site.url, headers={"user-agent": "site-test/1", "x-probe": "yes"}) as client:
        client.get("/page/4", params={"a": "1"})
        client.head("/page/5")
        client.get("/nowhere")
    log = site.log()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("GET", "/page/4", 200),
        ("HEAD", "/page/5", 200),
        ("GET", "/nowhere", 404),
    ]
    first = log[0]
    assert first["query"] == "a=1"
    assert first["headers"]["user-agent"] == "site-test/1"
    assert first["headers"]["x-probe"] == "yes"
    assert first["headers"]["host"] == site.host_key
    assert first["t"] <= first["t_end"] <= log[1]["t"] <= log[2]["t"]
    assert [e["seq"] for e in log] == [0, 1, 2]


def test_log_clear_and_prefix_filter(site_factory) -> None:
    site = site_factory()
    with httpx.Client(base_url=site.url) as client:
        client.get("/page/1")
        client.get("/status/418")
    assert site.paths("/status/") == ["/status/418"]
    assert site.log(clear=True) and site.log() == []
    assert site.counters()["requests"] == 0


async def test_log_measures_concurrency_at_the_server(site_factory) -> None:
    site = site_factory()
    async with httpx.AsyncClient(base_url=site.url) as client:
        await asyncio.gather(*(client.get("/slow/300") for _ in range(5)))
    log = site.log()
    assert site.counters()["max_inflight"] == 5
    # Every request started before any finished: they were in flight together.
    assert max(e["t"] for e in log) < min(e["t_end"] for e in log)
    assert all(e["t_end"] - e["t"] >= 0.29 for e in log)


# --- retries and failures ----------------------------------------------------------------------------------


def test_retry_after_delta_seconds_then_recovers(http1_site: SiteServer) -> None:
    url = "/retry-after/delta?status=503&after=3&times=2"
    with httpx.Client(base_url=http1_site.url) as client:
        first, second, third = (client.get(url) for _ in range(3))
    assert (first.status_code, first.headers["retry-after"]) == (503, "3")
    assert (second.status_code, second.headers["retry-after"]) == (503, "3")
    assert third.status_code == 200 and "retry-after" not in third.headers
    assert b"<title>Recovered delta</title>" in third.content


def test_retry_after_defaults_to_one_429(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        first, second = client.get("/retry-after/defaults"), client.get("/retry-after/defaults")
    assert (first.status_code, first.headers["retry-after"]) == (429, "2")
    assert second.status_code == 200


def test_retry_after_http_date(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        response = client.get("/retry-after/date?after=5&date=1")
    assert response.status_code == 429
    when = email.utils.parsedate_to_datetime(response.headers["retry-after"]).timestamp()
    assert response.headers["retry-after"].endswith(" GMT")
    assert 3 <= when - time.time() <= 6


def test_retry_after_keys_count_separately(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        assert client.get("/retry-after/key-a").status_code == 429
        assert client.get("/retry-after/key-b").status_code == 429
        assert client.get("/retry-after/key-a").status_code == 200


def test_flaky_fails_the_given_number_of_times(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        codes = [client.get("/flaky/three?fail=3").status_code for _ in range(5)]
        default_codes = [client.get("/flaky/default-two").status_code for _ in range(3)]
        bad_gateway = client.get("/flaky/bgw?fail=1&status=502").status_code
    assert codes == [500, 500, 500, 200, 200]
    assert default_codes == [500, 500, 200]
    assert bad_gateway == 502


@pytest.mark.parametrize("code", [200, 204, 301, 404, 410, 418, 500, 503])
def test_status_endpoint_returns_the_code(http1_site: SiteServer, code: int) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        assert client.get(f"/status/{code}").status_code == code


def test_reset_forgets_hit_counts(site_factory) -> None:
    site = site_factory()
    with httpx.Client(base_url=site.url) as client:
        assert client.get("/flaky/r?fail=1").status_code == 500
        assert client.get("/flaky/r?fail=1").status_code == 200
        site.reset()
        assert client.get("/flaky/r?fail=1").status_code == 500


# --- bodies ------------------------------------------------------------------------------------------------


def test_gzip_bomb_is_small_on_the_wire_and_expands_large(http1_site: SiteServer) -> None:
    wire = expanded = 0
    inflater = zlib.decompressobj(31)
    with httpx.Client(base_url=http1_site.url, timeout=30) as client:
        with client.stream("GET", "/gzip-bomb") as response:
            assert response.headers["content-encoding"] == "gzip"
            for raw in response.iter_raw():
                wire += len(raw)
                data = inflater.decompress(raw, 1 << 20)
                while data:
                    expanded += len(data)
                    data = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
    assert wire < 1_000_000
    assert expanded == 200_000_000


def test_gzip_page_decodes(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        response = client.get("/gzip-page")
    assert response.headers["content-encoding"] == "gzip"
    assert b"<title>Gzip page</title>" in response.content


@pytest.mark.parametrize("chunked", [False, True])
def test_big_streams_exactly_the_requested_bytes(h2_site: SiteServer, chunked: bool) -> None:
    size = 3_000_017
    with client_for(h2_site) as client:
        response = client.get(f"/big/{size}", params={"chunked": "1"} if chunked else {})
    assert response.content == big_body(size)
    assert ("content-length" in response.headers) is not chunked


def test_big_body_is_a_continuous_cycle() -> None:
    assert big_body(300)[:3] == b"\x00\x01\x02" and big_body(300)[256] == 0
    assert big_body(10, offset=250) == bytes([250, 251, 252, 253, 254, 255, 0, 1, 2, 3])


def test_truncated_body_fails_on_http1(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/truncated?length=50000&send=500")
        assert client.get("/page/0").status_code == 200  # the client recovers on a new connection


def test_truncated_body_fails_on_http2(h2_site: SiteServer) -> None:
    # httpcore lets h2's own exception escape here (not an httpx error): crawlers must catch both.
    import h2.exceptions

    with client_for(h2_site, http2=True) as client:
        with pytest.raises((httpx.HTTPError, h2.exceptions.ProtocolError)):
            client.get("/truncated?length=50000&send=500")


def test_slow_delays_the_answer_or_the_body(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        started = time.monotonic()
        assert client.get("/slow/250").status_code == 200
        assert time.monotonic() - started >= 0.25
        with pytest.raises(httpx.ReadTimeout):
            client.get("/slow/1000?where=body", timeout=httpx.Timeout(5, read=0.3))


def test_files_have_types_magic_and_disposition(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        pdf = client.get("/file/report.pdf?size=5000&disposition=1")
        csv = client.get("/file/table.csv")
        index = client.get("/files?count=3")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and len(pdf.content) == 5000
    assert pdf.headers["content-disposition"] == 'attachment; filename="report.pdf"'
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert HREF_RE.findall(index.content) == [
        b"/file/doc-0.pdf",
        b"/file/doc-1.csv",
        b"/file/doc-2.png",
        b"/page/0",
    ]


# --- URLs: redirects, <base>, charsets ---------------------------------------------------------------------


def test_redirect_chain_ends_at_the_target(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url, follow_redirects=True) as client:
        response = client.get("/redirect/3?to=/page/7&status=301")
        absolute = client.get("/redirect/1?absolute=1", follow_redirects=False)
    assert [r.status_code for r in response.history] == [301, 301, 301]
    assert [r.url.path for r in response.history] == ["/redirect/3", "/redirect/2", "/redirect/1"]
    assert response.url.path == "/page/7" and b"<title>Page 7</title>" in response.content
    assert absolute.headers["location"] == f"{http1_site.url}/page/0"


def test_base_href_page(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        body = client.get("/base-href").content
    assert b'<base href="/page/">' in body
    assert HREF_RE.findall(body) == [b"3", b"4#frag", b"/page/5"]


@pytest.mark.parametrize(
    ("encoding", "where", "header_charset", "meta"),
    [
        ("iso-8859-1", "header", True, False),
        ("shift_jis", "meta", False, True),
        ("windows-1252", "both", True, True),
        ("utf-8", "none", False, False),
    ],
)
def test_charset_pages(
    http1_site: SiteServer, encoding: str, where: str, header_charset: bool, meta: bool
) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        response = client.get(f"/charset/{encoding}?where={where}")
    assert ("charset=" in response.headers["content-type"]) is header_charset
    assert (f'<meta charset="{encoding}">'.encode() in response.content) is meta
    title = TITLE_RE.search(response.content)
    assert title is not None
    title.group(1).decode(encoding)  # the body really is in that encoding
    if encoding != "utf-8":
        with pytest.raises(UnicodeDecodeError):
            title.group(1).decode("utf-8")


# --- auth --------------------------------------------------------------------------------------------------


def test_oauth_client_credentials_then_bearer(site_factory) -> None:
    site = site_factory(tls=True)
    with client_for(site) as client:
        assert client.get("/protected").status_code == 401
        bad = client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=("demo-client", "x")
        )
        assert bad.status_code == 401
        token = client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=("demo-client", "demo-secret")
        ).json()
        assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
        ok = client.get("/protected/page", headers={"authorization": f"Bearer {token['access_token']}"})
        wrong = client.get("/protected", headers={"authorization": "Bearer nope"})
    assert ok.status_code == 200 and b"Protected page" in ok.content
    assert wrong.status_code == 401 and "invalid_token" in wrong.headers["www-authenticate"]
    assert site.counters()["tokens_issued"] == 1
    assert len(site.log("/oauth/token")) == 2  # token fetches are visible in the log too


def test_oauth_token_expires(site_factory) -> None:
    site = site_factory(env={"SITE_CLIENT_ID": "me", "SITE_CLIENT_SECRET": "s3cret"})
    with httpx.Client(base_url=site.url) as client:
        token = client.post(
            "/oauth/token?expires_in=0.3",
            data={"grant_type": "client_credentials", "client_id": "me", "client_secret": "s3cret"},
        ).json()["access_token"]
        headers = {"authorization": f"Bearer {token}"}
        assert client.get("/protected", headers=headers).status_code == 200
        time.sleep(0.4)
        assert client.get("/protected", headers=headers).status_code == 401


def test_basic_auth(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        assert client.get("/basic-auth", auth=("user", "pass")).status_code == 200
        assert client.get("/basic-auth", auth=("user", "wrong")).status_code == 401
        assert client.get("/basic-auth?user=a&password=b", auth=("a", "b")).status_code == 200


# --- robots and variants -----------------------------------------------------------------------------------


def test_robots_default_allows_everything(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        robots = client.get("/robots.txt")
    assert robots.headers["content-type"].startswith("text/plain")
    assert "Disallow:\n" in robots.text
    assert f"Sitemap: {http1_site.url}/sitemap.xml" in robots.text


@pytest.mark.parametrize(
    ("variant", "status", "expected"),
    [
        ("private", 200, "Disallow: /private/"),
        ("delay:2", 200, "Crawl-delay: 2"),
        ("deny", 200, "Disallow: /\n"),
        ("missing", 404, ""),
        ("error", 500, ""),
    ],
)
def test_robots_variants(site_factory, variant: str, status: int, expected: str) -> None:
    site = site_factory(robots=variant)
    with httpx.Client(base_url=site.url) as client:
        robots = client.get("/robots.txt")
        private = client.get("/private/secret")
    assert robots.status_code == status
    assert expected in robots.text
    assert private.status_code == 200  # robots.txt is advice: the server still serves it


def test_page_count_is_configurable(site_factory) -> None:
    site = site_factory(pages=30)
    with httpx.Client(base_url=site.url) as client:
        assert client.get("/page/29").status_code == 200
        assert client.get("/page/30").status_code == 404
        assert client.get("/__health").json()["pages"] == 30


def test_several_servers_run_at_once_on_distinct_hosts(site_factory) -> None:
    other_ip = site_factory(host="127.0.0.2", tls=True)
    other_port = site_factory(tls=True)
    keys = {other_ip.host_key, other_port.host_key}
    assert len(keys) == 2 and other_ip.url.startswith("https://127.0.0.2:")
    for site in (other_ip, other_port):
        with client_for(site) as client:
            assert client.get("/page/0").http_version == "HTTP/2"
        assert site.paths() == ["/page/0"]


def test_a_busy_fixed_port_falls_back_to_a_free_one(http1_site: SiteServer, site_factory) -> None:
    site = site_factory(port=http1_site.port)
    assert site.port != http1_site.port
    with pytest.raises(RuntimeError, match="exited"):
        site_factory(port=http1_site.port, fallback_port=False)


def test_stop_frees_the_port() -> None:
    site = SiteServer().start()
    port = site.port
    site.stop()
    assert not site.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/__health")


# --- the generated site ------------------------------------------------------------------------------------


def crawl_site(site: SiteServer) -> dict[str, bytes]:
    """Breadth-first over every same-site http(s) link from `/`; path -> body."""
    seen: dict[str, bytes] = {}
    queue = deque([site.url_for("/")])
    queued = {site.url_for("/")}
    with client_for(site) as client:
        while queue:
            url = queue.popleft()
            response = client.get(url)
            assert response.status_code == 200, url
            seen[urlsplit(url).path] = response.content
            for href in HREF_RE.findall(response.content):
                target, _ = urldefrag(urljoin(url, href.decode()))
                if target.startswith(site.url + "/") and target not in queued:
                    queued.add(target)
                    queue.append(target)
    return seen


def test_every_page_is_reachable_from_home(h2_site: SiteServer) -> None:
    seen = crawl_site(h2_site)
    assert set(seen) == {"/"} | {f"/page/{n}" for n in range(h2_site.pages)}


def test_pages_look_like_real_pages(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        bodies = {n: client.get(f"/page/{n}").content for n in range(0, http1_site.pages, 7)}
    for n, body in bodies.items():
        assert 2_000 <= len(body) <= 8_192, (n, len(body))
        assert f"<title>Page {n}</title>".encode() in body and f"<h1>Page {n}</h1>".encode() in body
        hrefs = HREF_RE.findall(body)
        page_hrefs = [h for h in hrefs if b"page" in h or h.isdigit()]
        assert 10 <= len(page_hrefs) <= 14
        assert len(set(page_hrefs)) == len(page_hrefs) - 1  # exactly one verbatim duplicate
        assert {b"#top", b"mailto:webmaster@example.invalid", b"javascript:void(0)"} <= set(hrefs)
    spellings = b"".join(bodies.values())
    assert f'href="{http1_site.url}/page/'.encode() in spellings  # absolute
    assert b'href="../page/' in spellings and b"#section-" in spellings  # relative, fragment


def test_rendered_links_match_page_links(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        body = client.get("/page/17").content
    url = http1_site.url_for("/page/17")
    resolved = [
        int(urlsplit(urljoin(url, h.decode())).path.rsplit("/", 1)[1])
        for h in HREF_RE.findall(body)
        if not h.startswith((b"#", b"mailto:", b"javascript:"))
    ]
    assert resolved == page_links(17, http1_site.pages)


def test_absolute_links_follow_the_host_the_client_used(site_factory) -> None:
    site = site_factory(host="127.0.0.1")
    localhost = f"http://localhost:{site.port}"
    with httpx.Client() as client:
        body = client.get(f"{localhost}/page/2").content
    assert f'href="{localhost}/page/'.encode() in body


def test_api_items_paginate(http1_site: SiteServer) -> None:
    with httpx.Client(base_url=http1_site.url) as client:
        first = client.get("/api/items?per_page=150").json()
        second = client.get(first["next"]).json()
    assert [i["id"] for i in first["items"]] == list(range(150))
    assert [i["id"] for i in second["items"]] == list(range(150, 200)) and second["next"] is None
