"""The fault cases: each builds its hostile site(s) on the shared fault server and says what a robust crawl
does against it (issue 10). A case returns a `Plan`: the job (merged onto `harness.base_job`), and an
`Expect`: exit code, errors by kind, pages, peak RSS, wall time, and what the server saw.

Each case asserts the documented behaviour (README "When things go wrong", "Hostile servers", "Error kinds"),
as strictly as it is determined: the exact kinds where one is, what the server saw. A case the engine fails
carries `pending="..."`, the engine's defect in one line; test_faults.py marks it `pending` (deselected by
default) until the engine is fixed. STATUS.md lists every case with its result.
"""

from __future__ import annotations

import copy
import datetime
import email.utils
import fnmatch
import gzip
import posixpath
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from crawler.demo.launcher import AsgiServer, free_port
from tests.faults.harness import MB, CrawlRun
from tests.faults.server import (
    Conn,
    FaultServer,
    H2Handler,
    RawRequest,
    Site,
    delayed,
    flood,
    h2_goaway,
    h2_page,
    h2_rst_stream,
    head,
    html,
    page_html,
    raw,
    redirect,
    respond_raw,
    sequence,
    silent,
    trickle,
)

__all__ = ["CASES", "Case", "Env", "Expect", "Plan"]

GB = 1000 * MB
BOMB = 400 * MB  # decoded size of every bomb: above the RSS bound if decoded whole, cheap to make


# --- the vocabulary -------------------------------------------------------------------------------------


@dataclass
class Expect:
    exit: int | tuple[int, ...] = 0
    errors: dict[str, int] | None = None  # exactly these errors by kind (stats.json "errors")
    kinds: tuple[str, ...] | None = None  # or: at least one error, every kind matching one of these patterns
    allowed: tuple[str, ...] | None = None  # or: any errors (none included) match one of these patterns
    pages: int | None = None
    skipped: tuple[str, ...] | None = None  # exactly these kinds in stats.json "skipped" (trap defences), each > 0
    rss_mb: int = 250
    wall: float | None = None  # the run ends within this many seconds
    check: Callable[[CrawlRun], None] | None = None  # what the server saw, the items


@dataclass
class Plan:
    job: dict[str, Any]
    expect: Expect
    timeout: float = 25.0  # the hard timeout: a run still going then has hung


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Env], Plan]
    pending: str | None = None
    section: str = ""  # the class of fault, a heading of README "Reliability"

    def __repr__(self) -> str:
        return self.id


CASES: list[Case] = []
_section = ""


def section(title: str) -> None:
    """The cases registered from here on belong to `title`."""
    global _section
    _section = title


def add_case(id: str, build: Callable[[Env], Plan], pending: str | None = None) -> None:
    CASES.append(Case(id, build, pending, _section))


def case(id: str, pending: str | None = None) -> Callable[[Callable[[Env], Plan]], Callable[[Env], Plan]]:
    def register(build: Callable[[Env], Plan]) -> Callable[[Env], Plan]:
        add_case(id, build, pending)
        return build

    return register


class Env:
    """What cases build on: the fault server, TLS material, and (lazily) the HTTP/2 servers. `for_case()`
    gives each case a view that records the sites it makes (`sites`: what its server saw)."""

    def __init__(self, server: FaultServer, root: Path) -> None:
        import trustme

        self.server = server
        self.root = root
        self.ca = trustme.CA(organization_name="crawler fault suite")
        self.ca_path = root / "fault-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self._h2: dict[int, AsgiServer] = {}
        self._lock = threading.Lock()
        self.sites: list[Site] = []
        self.uses_h2_server = False  # hypercorn's requests are not logged

    def for_case(self) -> Env:
        """A view sharing everything but the record of sites made through it."""
        view = copy.copy(self)
        view.sites = []
        view.uses_h2_server = False
        return view

    def site(self, routes: dict[str, Any], **kwargs: Any) -> Site:
        site = self.server.site(routes, **kwargs)
        self.sites.append(site)
        return site

    def tls_context(self, *names: str, ca: Any = None, expired: bool = False) -> ssl.SSLContext:
        """A server-side TLS context with a certificate for `names`, from `ca` (default: the suite's CA)."""
        issuer = ca or self.ca
        kwargs: dict[str, Any] = {}
        if expired:
            now = datetime.datetime.now(datetime.UTC)
            kwargs = {"not_before": now - datetime.timedelta(days=30), "not_after": now - datetime.timedelta(days=1)}
        cert = issuer.issue_cert(*(names or ("127.0.0.1",)), **kwargs)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context

    def h2(self, max_requests: int = 10_000) -> AsgiServer:
        """hypercorn serving `server.h2_app` over HTTP/2 + TLS; `max_requests` per connection, then GOAWAY."""
        self.uses_h2_server = True
        with self._lock:
            server = self._h2.get(max_requests)
            if server is None:
                bomb = self.root / "h2-bomb.gz"
                if not bomb.exists():
                    bomb.write_bytes(self.server.bomb("gzip", BOMB))
                server = self._h2[max_requests] = AsgiServer(
                    "tests.faults.server:h2_app", tls=True, keep_alive_max_requests=max_requests,
                    env={"FAULT_H2_BOMB": str(bomb)},
                ).start()
            return server

    def h2_site(self, routes: dict[str, H2Handler]) -> Site:
        """A frame-level HTTP/2 site (h2 library) over TLS with ALPN h2, trusted through `ca_path`."""
        context = self.tls_context("127.0.0.1")
        context.set_alpn_protocols(["h2"])
        return self.site({}, ssl_context=context, h2_routes=routes)

    def close(self) -> None:
        for server in self._h2.values():
            server.stop()


def plan(start: str | list[str], expect: Expect, timeout: float = 25.0, **job: Any) -> Plan:
    job.setdefault("start_urls", [start] if isinstance(start, str) else start)
    return Plan(job, expect, timeout)


def fails(kinds: str | tuple[str, ...], exit: int = 1, **kw: Any) -> Expect:
    """One URL that fails with one of `kinds` (patterns)."""
    return Expect(exit=exit, kinds=(kinds,) if isinstance(kinds, str) else kinds, pages=0, **kw)


def ok(pages: int = 1, **kw: Any) -> Expect:
    return Expect(exit=0, errors={}, pages=pages, **kw)


def tried_twice(site: Site, path: str = "/") -> Callable[[CrawlRun], None]:
    """The request was sent twice: the first try and the one retry of `harness.base_job` (retry.attempts 2)."""

    def check(run: CrawlRun) -> None:
        assert site.paths() == [path, path], f"SERVER: saw {site.paths()[:5]}, expected {path} twice (one retry)"

    return check


def requests_at_most(site: Site, prefix: str, n: int) -> Callable[[CrawlRun], None]:
    def check(run: CrawlRun) -> None:
        seen = site.paths(prefix)
        assert 1 <= len(seen) <= n, f"SERVER: {len(seen)} requests for {prefix}*, expected 1..{n}"

    return check


def never_requested(site: Site, prefix: str = "/") -> Callable[[CrawlRun], None]:
    def check(run: CrawlRun) -> None:
        seen = site.paths(prefix)
        assert not seen, f"SERVER: requested {seen[:3]} ({len(seen)} requests) but must not be"

    return check


def requested_exactly(site: Site, paths: list[str]) -> Callable[[CrawlRun], None]:
    """The server saw exactly these paths, in this order."""

    def check(run: CrawlRun) -> None:
        assert site.paths() == paths, f"SERVER: saw {site.paths()[:5]} ({len(site.paths())} requests), expected {paths}"

    return check


def only_robots_requested(site: Site) -> Callable[[CrawlRun], None]:
    def check(run: CrawlRun) -> None:
        pages = [p for p in site.paths() if p != "/robots.txt"]
        assert not pages, f"SERVER: fetched {pages[:3]} although robots.txt could not be read"

    return check


def all_checks(*checks: Callable[[CrawlRun], None]) -> Callable[[CrawlRun], None]:
    def check(run: CrawlRun) -> None:
        for c in checks:
            c(run)

    return check


def matches(kind: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(kind, p) for p in patterns)


CHUNKED = ("Transfer-Encoding", "chunked")
CT_HTML = ("Content-Type", "text/html")
# Cases that wait for a deadline use short ones, so the suite stays fast; the defaults end them the same
# way, later. Cases that expect an answer keep harness.base_job's 2 s, safe on a busy machine.
SHORT = {"timeout": {"connect": 1, "read": 1}}  # merged into http:
ROBOTS_FAST = {"timeout": 1, "unavailable_wait": 3}  # robots: (defaults 30 s each)


# --- connections: resets, lying lengths, slow and silent servers ---------------------------------------
section('Connections: resets, lying lengths, slow and silent servers')


@case("reset-before-response")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(b"", then="reset")})
    return plan(site.url_for("/"), fails("read_error", check=tried_twice(site)))


@case("close-without-response")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(b"", then="close")})
    return plan(site.url_for("/"), fails("protocol_error", check=tried_twice(site)))  # no status line: not HTTP


@case("reset-mid-body")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(head(200, [("Content-Length", "100000"), CT_HTML]) + b"x" * 1000, then="reset")})
    return plan(site.url_for("/"), fails("read_error", check=tried_twice(site)))


@case("content-length-longer-than-body-then-close")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(head(200, [("Content-Length", "100000"), CT_HTML]) + b"x" * 1000)})
    return plan(site.url_for("/"), fails("protocol_error", check=tried_twice(site)))  # the body ended early


@case("content-length-longer-than-body-then-silence")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(head(200, [("Content-Length", "100000"), CT_HTML]) + b"x" * 1000, then="hold")})
    return plan(site.url_for("/"), fails("read_timeout", wall=15, check=requests_at_most(site, "/", 2)), http=SHORT)


@case("content-length-shorter-than-body")
def _(env: Env) -> Plan:
    body = page_html("short", ["/never-seen"])
    site = env.site({"/": raw(head(200, [("Content-Length", "60"), CT_HTML]) + body + b"HTTP/1.1 200 OK\r\n\r\n")})
    return plan(site.url_for("/"), ok(check=never_requested(site, "/never-seen")))


@case("conflicting-content-lengths")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(head(200, [("Content-Length", "10"), ("Content-Length", "20"), CT_HTML]) + b"x" * 20)})
    return plan(site.url_for("/"), fails("protocol_error"))


@case("negative-content-length")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(head(200, [("Content-Length", "-1"), CT_HTML]) + b"x" * 20)})
    return plan(site.url_for("/"), fails("protocol_error"))


@case("non-numeric-content-length")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(head(200, [("Content-Length", "12abc"), CT_HTML]) + b"x" * 20)})
    return plan(site.url_for("/"), fails("protocol_error"))


@case("chunked-and-content-length")
def _(env: Env) -> Plan:
    body = page_html("te-and-cl")
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    site = env.site({"/": raw(head(200, [CHUNKED, ("Content-Length", "5"), CT_HTML]) + chunked)})
    # RFC 9112 6.3 lets a client reject the message (the request-smuggling shape): the transport does.
    return plan(site.url_for("/"), fails("protocol_error"))


@case("bad-chunk-size")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(head(200, [CHUNKED, CT_HTML]) + b"zz\r\nhello\r\n0\r\n\r\n")})
    return plan(site.url_for("/"), fails("protocol_error"))


@case("huge-chunk-size-then-silence")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(head(200, [CHUNKED, CT_HTML]) + b"ffffffffffff\r\n" + b"x" * 1000, then="hold")})
    return plan(site.url_for("/"), fails("read_timeout", wall=15, check=tried_twice(site)), http=SHORT)


@case("endless-chunked-body-fast")
def _(env: Env) -> Plan:
    unit = b"8000\r\n" + b"x" * 0x8000 + b"\r\n"
    site = env.site({"/": flood(head(200, [CHUNKED, CT_HTML]), unit)})
    return plan(site.url_for("/"), fails("body_too_large", wall=15))


@case("endless-close-delimited-body-fast")
def _(env: Env) -> Plan:
    site = env.site({"/": flood(head(200, [CT_HTML]), b"x" * 65536)})
    return plan(site.url_for("/"), fails("body_too_large", wall=15))


@case("endless-chunked-body-slow")
def _(env: Env) -> Plan:
    unit = b"400\r\n" + b"x" * 1024 + b"\r\n"
    site = env.site({"/": trickle(head(200, [CHUNKED, CT_HTML]), unit, 0.5)})
    return plan(site.url_for("/"), fails("total_timeout", wall=15, check=requests_at_most(site, "/", 2)),
                http={"timeout": {"total": 1.5}})  # fmt: skip


@case("trickled-body")
def _(env: Env) -> Plan:
    site = env.site({"/": trickle(head(200, [("Content-Length", "100000"), CT_HTML]), b"x", 0.5)})
    return plan(site.url_for("/"), fails("total_timeout", wall=15, check=requests_at_most(site, "/", 2)),
                http={"timeout": {"total": 1.5}})  # fmt: skip


@case("trickled-head")
def _(env: Env) -> Plan:
    site = env.site({"/": trickle(b"HTTP/1.1 200 OK\r\n", b"X-Slow: 1\r\n", 0.5)})
    # The read timeout bounds the whole head (2 s here), the total deadline the whole request: either ends it.
    return plan(site.url_for("/"), fails(("read_timeout", "total_timeout"), wall=15, check=requests_at_most(site, "/", 2)),
                http={"timeout": {"total": 1.5}})  # fmt: skip


@case("slow-first-byte")
def _(env: Env) -> Plan:
    site = env.site({"/": delayed(5, html())})
    return plan(site.url_for("/"), fails("read_timeout", wall=15, check=requests_at_most(site, "/", 2)), http=SHORT)


@case("silent-server")
def _(env: Env) -> Plan:
    site = env.site({"/": silent()})
    return plan(site.url_for("/"), fails("read_timeout", wall=15, check=requests_at_most(site, "/", 2)), http=SHORT)


@case("header-flood")
def _(env: Env) -> Plan:
    site = env.site({"/": flood(b"HTTP/1.1 200 OK\r\n", b"X-Flood: " + b"a" * 50 + b"\r\n")})
    return plan(site.url_for("/"), fails("header_too_large", wall=15, rss_mb=150, check=requests_at_most(site, "/", 2)))


@case("huge-header-line")
def _(env: Env) -> Plan:
    site = env.site({"/": flood(b"HTTP/1.1 200 OK\r\nX-Big: ", b"a" * 65536)})
    return plan(site.url_for("/"), fails("header_too_large", wall=15, rss_mb=150, check=requests_at_most(site, "/", 2)))


@case("ten-thousand-headers")
def _(env: Env) -> Plan:
    headers = [(f"X-H{i}", "v") for i in range(10_000)]
    body = page_html("many headers")
    site = env.site({"/": raw(head(200, [*headers, ("Content-Length", str(len(body))), CT_HTML]) + body)})
    return plan(site.url_for("/"), fails("header_too_large", check=requests_at_most(site, "/", 2)))  # max_headers 200


@case("garbage-status-line")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n")})
    return plan(site.url_for("/"), fails("protocol_error"))


@case("http09-response")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(b"<html><title>no status line</title></html>\n")})
    return plan(site.url_for("/"), fails("protocol_error"))


@case("close-delimited-body")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(head(200, [CT_HTML]) + page_html("close-delimited"))})
    return plan(site.url_for("/"), ok())


@case("interim-100-continue-flood")
def _(env: Env) -> Plan:
    site = env.site({"/": flood(b"", b"HTTP/1.1 100 Continue\r\n\r\n")})
    # 1xx heads count towards http.max_header_bytes like the final head.
    return plan(site.url_for("/"), fails("header_too_large", wall=15))


@case("reset-on-a-reused-connection")
def _(env: Env) -> Plan:
    site = env.site({"/": html(links=["/b"]), "/b": sequence(raw(b"", then="reset"), html())})
    return plan(site.url_for("/"), ok(pages=2))


# --- compression bombs ----------------------------------------------------------------------------------
section('Compression bombs')


def _bomb_site(env: Env, kind: str, encoding: str | None, content_type: str = "text/html", path: str = "/") -> Site:
    body = env.server.bomb(kind, BOMB)
    headers = [("Content-Encoding", encoding)] if encoding else []
    return env.site({path: respond_raw(200, body, headers, content_type)})


@case("gzip-bomb")
def _(env: Env) -> Plan:
    site = _bomb_site(env, "gzip", "gzip")
    return plan(site.url_for("/"), fails("body_too_large"))


@case("x-gzip-bomb")
def _(env: Env) -> Plan:
    site = _bomb_site(env, "gzip", "x-gzip")
    return plan(site.url_for("/"), fails("body_too_large"))


@case("deflate-zlib-bomb")
def _(env: Env) -> Plan:
    site = _bomb_site(env, "zlib", "deflate")
    return plan(site.url_for("/"), fails("body_too_large"))


@case("deflate-raw-bomb")
def _(env: Env) -> Plan:
    site = _bomb_site(env, "deflate", "deflate")
    return plan(site.url_for("/"), fails("body_too_large"))


@case("double-gzip-bomb")
def _(env: Env) -> Plan:
    site = _bomb_site(env, "gzip2", "gzip, gzip")
    return plan(site.url_for("/"), fails("body_too_large", rss_mb=150))  # README: "under ~110 MB"


@case("corrupt-gzip")
def _(env: Env) -> Plan:
    site = env.site({"/": respond_raw(200, b"this is not gzip data at all" * 10, [("Content-Encoding", "gzip")])})
    return plan(site.url_for("/"), fails("decoding_error"))


@case("truncated-gzip")
def _(env: Env) -> Plan:
    data = gzip.compress(page_html("truncated", ["/x"]) * 50)
    site = env.site({"/": respond_raw(200, data[: len(data) // 2], [("Content-Encoding", "gzip")])})
    return plan(site.url_for("/"), fails("decoding_error"))


@case("unknown-content-encoding")
def _(env: Env) -> Plan:
    site = env.site({"/": respond_raw(200, page_html("unknown encoding"), [("Content-Encoding", "x-unknown")])})
    return plan(site.url_for("/"), fails("decoding_error"))


@case("gzip-bomb-robots-txt")
def _(env: Env) -> Plan:
    site = env.site({"/robots.txt": respond_raw(200, env.server.bomb("gzip", BOMB), [("Content-Encoding", "gzip")],
                                                "text/plain"), "/": html()})  # fmt: skip
    # The first 500 KiB are the rules (zeros: none), the rest is ignored (RFC 9309 2.5): the page is allowed.
    return plan(site.url_for("/"), ok(rss_mb=150, check=requested_exactly(site, ["/robots.txt", "/"])), scope={"robots_txt": True})


@case("double-gzip-bomb-robots-txt")
def _(env: Env) -> Plan:
    site = env.site({"/robots.txt": respond_raw(200, env.server.bomb("gzip2", BOMB), [("Content-Encoding", "gzip, gzip")],
                                                "text/plain"), "/": html()})  # fmt: skip
    return plan(site.url_for("/"), ok(rss_mb=150, check=requested_exactly(site, ["/robots.txt", "/"])), scope={"robots_txt": True})


@case("gzip-bomb-sitemap-as-application-gzip")
def _(env: Env) -> Plan:
    site = env.site({"/sitemap.xml.gz": respond_raw(200, env.server.bomb("gzip-file", BOMB), (), "application/gzip"),
                     "/": html()})  # fmt: skip
    # A sitemap is decoded up to 50 MB, whatever its Content-Type: the 400 MB file ends there.
    return plan([], Expect(exit=1, errors={"body_too_large": 1}, pages=0, rss_mb=200,
                           check=requested_exactly(site, ["/sitemap.xml.gz"])),
                start_sitemaps=[site.url_for("/sitemap.xml.gz")], http={"max_body": "50MB"})  # fmt: skip


@case("gzip-bomb-sitemap-content-encoding")
def _(env: Env) -> Plan:
    site = env.site({"/sitemap.xml": respond_raw(200, env.server.bomb("gzip", BOMB), [("Content-Encoding", "gzip")],
                                                 "application/xml")})  # fmt: skip
    return plan([], Expect(exit=1, errors={"body_too_large": 1}, pages=0, rss_mb=150),
                start_sitemaps=[site.url_for("/sitemap.xml")])  # fmt: skip


# --- redirects ------------------------------------------------------------------------------------------
section('Redirects')


def _chain(request: RawRequest) -> str:
    n = int(request.path.rsplit("/", 1)[1])
    return f"/r/{n - 1}" if n > 0 else "/end"


@case("redirect-chain-of-five")
def _(env: Env) -> Plan:
    site = env.site({"/r/": redirect(_chain), "/end": html()})

    def check(run: CrawlRun) -> None:
        assert len(site.paths("/r/")) == 5 and site.paths("/end") == ["/end"], f"SERVER: saw {site.paths()}"

    return plan(site.url_for("/r/4"), ok(check=check))


@case("redirect-chain-too-long")
def _(env: Env) -> Plan:
    site = env.site({"/r/": redirect(_chain), "/end": html()})
    return plan(site.url_for("/r/40"), fails("too_many_redirects", check=all_checks(
        requests_at_most(site, "/r/", 22), never_requested(site, "/end"))))  # fmt: skip


@case("redirect-loop")
def _(env: Env) -> Plan:
    site = env.site({"/a": redirect("/b"), "/b": redirect("/a")})
    return plan(site.url_for("/a"), fails("too_many_redirects", check=requests_at_most(site, "/", 22)))


@case("redirect-to-itself")
def _(env: Env) -> Plan:
    site = env.site({"/a": redirect("/a")})
    return plan(site.url_for("/a"), fails("too_many_redirects", check=requests_at_most(site, "/", 22)))


@case("redirect-off-scope-host")
def _(env: Env) -> Plan:
    other = env.site({"/": html("elsewhere")}, host="127.0.0.2")
    site = env.site({"/": redirect(other.url_for("/landing"))})
    return plan(site.url_for("/"), fails("redirect_out_of_scope", check=never_requested(other)))


@case("redirect-to-denied-path")
def _(env: Env) -> Plan:
    site = env.site({"/": redirect("/private/x"), "/private/": html("private")})
    return plan(site.url_for("/"), fails("redirect_out_of_scope", check=never_requested(site, "/private/")),
                scope={"deny": ["/private/"]})  # fmt: skip


@case("redirect-to-robots-disallowed")
def _(env: Env) -> Plan:
    site = env.site({"/robots.txt": respond_raw(200, b"User-agent: *\nDisallow: /private/\n", content_type="text/plain"),
                     "/": redirect("/private/x"), "/private/": html("private")})  # fmt: skip

    def check(run: CrawlRun) -> None:
        requested_exactly(site, ["/robots.txt", "/"])(run)
        assert run.stats.get("robots_denied") == 1, f"ROBOTS: robots_denied {run.stats.get('robots_denied')}, expected 1"

    # A URL robots.txt denies is skipped (stats.robots_denied), not failed: the crawl ends clean.
    return plan(site.url_for("/"), Expect(exit=0, errors={}, pages=0, check=check), scope={"robots_txt": True})


@case("redirect-to-javascript-url")
def _(env: Env) -> Plan:
    site = env.site({"/": redirect("javascript:alert(1)")})
    return plan(site.url_for("/"), fails("redirect_bad_target", check=requested_exactly(site, ["/"])))


@case("redirect-to-data-url")
def _(env: Env) -> Plan:
    site = env.site({"/": redirect("data:text/html,<a href=/x>x</a>")})
    return plan(site.url_for("/"), fails("redirect_bad_target", check=requested_exactly(site, ["/"])))


@case("redirect-to-ftp-url")
def _(env: Env) -> Plan:
    site = env.site({"/": redirect("ftp://127.0.0.1/file")})
    return plan(site.url_for("/"), fails("redirect_bad_target", check=requested_exactly(site, ["/"])))


@case("redirect-without-location")
def _(env: Env) -> Plan:
    site = env.site({"/": raw(head(302, [("Content-Length", "0")]), then="keep")})
    # A redirect without Location is a final answer (RFC 9110 15.4): a page with status 302, not an error.
    return plan(site.url_for("/"), ok(check=requested_exactly(site, ["/"])))


@case("redirect-to-malformed-url")
def _(env: Env) -> Plan:
    site = env.site({"/": redirect("http://[::1")})
    return plan(site.url_for("/"), fails("redirect_bad_target", check=requested_exactly(site, ["/"])))


@case("redirect-to-overlong-url")
def _(env: Env) -> Plan:
    # A 100 KB Location makes the head itself too large (http.max_header_bytes 64 KB): the head is refused
    # before the target is looked at.
    site = env.site({"/": redirect("/" + "a" * 100_000), "/a": html()})
    return plan(site.url_for("/"), fails("header_too_large", check=requested_exactly(site, ["/"])))


@case("redirect-to-a-3000-character-url")
def _(env: Env) -> Plan:
    site = env.site({"/": redirect("/" + "a" * 3000), "/a": html()})
    return plan(site.url_for("/"), fails("redirect_bad_target", check=requested_exactly(site, ["/"])))


@case("five-redirects-to-one-target")
def _(env: Env) -> Plan:
    site = env.site({"/": html(links=[f"/r{i}" for i in range(5)]), "/r": redirect("/target"), "/target": html()})

    def check(run: CrawlRun) -> None:
        assert site.paths("/target") == ["/target"], f"SERVER: /target fetched {len(site.paths('/target'))} times"
        targets = [i for i in run.items if i.get("url", "").endswith("/target")]
        assert len(targets) <= 1, f"ITEMS: {len(targets)} items for /target"

    return plan(site.url_for("/"), Expect(exit=0, errors={}, pages=2, check=check))


# --- traps ----------------------------------------------------------------------------------------------
section('Traps and hostile pages')


def _calendar(request: RawRequest) -> list[str]:
    parts = request.path.strip("/").split("/")
    year, month = (int(parts[1]), int(parts[2])) if len(parts) == 3 else (2024, 1)
    nxt = (year + month // 12, month % 12 + 1)
    return [f"/cal/{nxt[0]}/{nxt[1]}", f"/cal/{year + 1}/{month}", f"/cal/{year - 1}/{month}"]


@case("endless-calendar-with-max-pages")
def _(env: Env) -> Plan:
    site = env.site({"/cal": html(links=_calendar)})

    def check(run: CrawlRun) -> None:
        assert len(site.paths("/cal")) <= 40, f"SERVER: {len(site.paths('/cal'))} pages fetched, max_pages 40"

    return plan(site.url_for("/cal"), Expect(exit=0, errors={}, pages=40, check=check),
                scope={"max_pages": 40, "max_depth": None})  # fmt: skip


@case("endless-calendar-per-host-budget")
def _(env: Env) -> Plan:
    site = env.site({"/cal": html(links=_calendar)})

    def check(run: CrawlRun) -> None:
        assert len(site.paths("/cal")) == 25, f"SERVER: {len(site.paths('/cal'))} pages from one host, budget 25"

    return plan(site.url_for("/cal"), Expect(exit=0, errors={}, pages=25, skipped=("host_budget",), check=check),
                scope={"max_pages_per_host": 25, "max_depth": None})  # fmt: skip


@case("repeated-path-segments")
def _(env: Env) -> Plan:
    site = env.site({"/x/": html(links=["x/"])})

    def check(run: CrawlRun) -> None:
        seen = site.paths("/x/")  # scope.max_repeated_segments 3: /x/, /x/x/, /x/x/x/
        assert len(seen) == 3, f"SERVER: followed the trap {len(seen)} levels deep (/x/x/x/...), expected 3"

    return plan(site.url_for("/x/"), Expect(exit=0, errors={}, pages=3, skipped=("repeated_segments",), check=check),
                scope={"max_pages": 300, "max_depth": None})  # fmt: skip


@case("growing-query-string")
def _(env: Env) -> Plan:
    def links(request: RawRequest) -> list[str]:
        value = request.query.get("q", "ab")
        return [f"/q?q={value * 2}"]

    site = env.site({"/q": html(links=links)})

    def check(run: CrawlRun) -> None:
        longest = max((len(t) for t in site.targets()), default=0)
        assert longest <= 2048, f"SERVER: requested a {longest}-character URL (max URL length 2,048)"

    return plan(site.url_for("/q?q=ab"), Expect(exit=0, errors={}, skipped=("url_too_long",), check=check),
                scope={"max_pages": 40, "max_depth": None})  # fmt: skip


@case("query-parameter-explosion")
def _(env: Env) -> Plan:
    def links(request: RawRequest) -> list[str]:
        n = len(request.query)
        query = request.target.partition("?")[2]
        return [f"/p?{query}&k{n}=1"]

    site = env.site({"/p": html(links=links)})

    def check(run: CrawlRun) -> None:
        most = max((t.count("&") + 1 for t in site.targets()), default=0)
        assert most == 32, f"SERVER: requested URLs with up to {most} query parameters, expected 32 (max_query_params)"

    return plan(site.url_for("/p?k0=1"), Expect(exit=0, errors={}, pages=32, skipped=("too_many_params",), check=check),
                scope={"max_pages": 150, "max_depth": None})  # fmt: skip


def _many_links_page(n: int) -> bytes:
    return b"<html><body>" + b"".join(b'<a href="/l/%d">.</a>' % i for i in range(n)) + b"</body></html>"


_PAGES: dict[int, bytes] = {}


def _cached_links_page(n: int) -> bytes:
    if n not in _PAGES:
        _PAGES[n] = _many_links_page(n)
    return _PAGES[n]


@case("page-with-a-million-links")
def _(env: Env) -> Plan:
    # 25 MB, within http.max_body (50 MB by default): its parsed tree alone would be ~430 MB, so a page of more
    # than 200,000 tags is fetched but not parsed (html_too_large), and none of its links is followed.
    site = env.site({"/": respond_raw(200, _cached_links_page(1_000_000)), "/l/": html()})
    return plan(site.url_for("/"), Expect(exit=1, errors={"html_too_large": 1}, pages=1, wall=15,
                                          check=requested_exactly(site, ["/"])),
                scope={"max_pages": 10}, http={"max_body": "50MB"})  # fmt: skip


def _links_plan(env: Env, n: int) -> Plan:
    """A page of `n` links, under the tag limit: parsed, extract.max_links (10,000) of its links queued, and
    scope.max_pages 10 fetched: the page and 9 links."""
    site = env.site({"/": respond_raw(200, _cached_links_page(n)), "/l/": html()})

    def check(run: CrawlRun) -> None:
        assert len(site.paths("/l/")) == 9, f"SERVER: {len(site.paths('/l/'))} links fetched, expected 9 (max_pages 10)"
        assert run.stats.get("links_capped") == 1, f"LINKS: links_capped {run.stats.get('links_capped')}, expected 1 page"

    return plan(site.url_for("/"), Expect(exit=0, errors={}, pages=10, check=check), scope={"max_pages": 10},
                http={"max_body": "50MB"})  # fmt: skip


@case("page-with-100k-links")
def _(env: Env) -> Plan:
    return _links_plan(env, 100_000)


@case("page-with-190k-links")
def _(env: Env) -> Plan:
    return _links_plan(env, 190_000)  # just under the tag limit (200,000): the largest tree a page may build


@case("link-with-a-100kb-href")
def _(env: Env) -> Plan:
    site = env.site({"/": html(links=["/ok", "/" + "b" * 100_000]), "/ok": html(), "/b": html()})

    def check(run: CrawlRun) -> None:
        longest = max((len(t) for t in site.targets()), default=0)
        assert longest <= 2048, f"SERVER: requested a {longest}-character URL (max URL length 2,048)"
        assert site.paths("/ok") == ["/ok"], f"SERVER: the normal link was not fetched: {site.paths()[:5]}"

    return plan(site.url_for("/"), Expect(exit=0, errors={}, pages=2, skipped=("url_too_long",), check=check))


def _spellings(base: str, name: str) -> list[str]:
    return [f"/{name}", f"/./{name}", f"/z/../{name}", f"./{name}", name, f"/{name}#one", f"/{name}#two",
            f"{base}/{name}", f"{base.upper().replace('HTTP://', 'HTTP://')}/{name}", f"{base}/./{name}",
            f"/q/./../{name}", f"/{name}/../{name}", f"{base}/z/../{name}#f", f"//{base.split('://')[1]}/{name}"]  # fmt: skip


@case("fifty-spellings-of-two-urls")
def _(env: Env) -> Plan:
    site = env.site({"/": html(), "/a": html(), "/b": html()})
    site.route("/", html(links=lambda r: [*_spellings(site.url, "a") * 2, *_spellings(site.url, "b") * 2][:50]))

    def check(run: CrawlRun) -> None:
        for name in ("a", "b"):
            n = sum(1 for t in site.targets() if posixpath.normpath(unquote(urlsplit(t).path)) == f"/{name}")
            assert n == 1, f"SERVER: /{name} fetched {n} times through its spellings"

    return plan(site.url_for("/"), Expect(exit=0, errors={}, pages=3, check=check))


@case("deeply-nested-html")
def _(env: Env) -> Plan:
    # lexbor's time grows with the square of the nesting (100k nested <div>: ~30 s): a page nested more than
    # 2,000 deep is fetched but not parsed (html_too_deep), so its link is never followed.
    site = env.site({"/": respond_raw(200, b"<html><body>" + b"<div>" * 100_000 + b'<a href="/x">x</a>' + b"</div>" * 100_000),
                     "/x": html()})  # fmt: skip
    return plan(site.url_for("/"), Expect(exit=1, errors={"html_too_deep": 1}, pages=1, wall=10,
                                          check=requested_exactly(site, ["/"])))  # fmt: skip


@case("binary-garbage-as-html")
def _(env: Env) -> Plan:
    garbage = random.Random(7).randbytes(200_000)
    site = env.site({"/": respond_raw(200, garbage)})
    return plan(site.url_for("/"), ok())


@case("hostile-hrefs")
def _(env: Env) -> Plan:
    hrefs = ["http://[::1", "http://exa mple.com/", "javascript:alert(1)", "data:text/html,x", "mailto:a@b",
             "http://127.0.0.1:99999/", "http://%zz/", "\x00\x01", "http://a\r\nb/", "//", "http:", "?" * 5000,
             "/ok"]  # fmt: skip
    site = env.site({"/": html(links=hrefs), "/ok": html()})

    def check(run: CrawlRun) -> None:
        assert "/ok" in site.paths(), f"SERVER: /ok not fetched: {site.paths()}"

    # Unparseable and non-http links are skipped; the 5,000-character one is a trap (url_too_long).
    return plan(site.url_for("/"), Expect(exit=0, errors={}, skipped=("url_too_long",), check=check))


# --- robots.txt -----------------------------------------------------------------------------------------
section('robots.txt')


def _robots(body: bytes | str) -> Any:
    return respond_raw(200, body.encode() if isinstance(body, str) else body, content_type="text/plain")


ROBOTS = {"scope": {"robots_txt": True}}


def _robots_unavailable(site: Site) -> Expect:
    """RFC 9309 2.3.1.4: the host is disallowed while robots.txt is retried (1 s, 2 s, ...); after
    robots.unavailable_wait its URL fails as robots_unavailable, the page never fetched."""
    retried = requests_at_most(site, "/robots.txt", 4)

    def check(run: CrawlRun) -> None:
        only_robots_requested(site)(run)
        retried(run)
        assert len(site.paths("/robots.txt")) >= 2, f"SERVER: robots.txt tried {len(site.paths('/robots.txt'))} time(s)"

    return Expect(exit=1, errors={"robots_unavailable": 1}, pages=0, wall=15, check=check)


@case("robots-txt-trickled")
def _(env: Env) -> Plan:
    site = env.site({"/robots.txt": trickle(head(200, [("Content-Length", "100000")]), b"#", 0.5), "/": html()})
    return plan(site.url_for("/"), _robots_unavailable(site), robots=ROBOTS_FAST, **ROBOTS)


@case("robots-txt-5xx-means-disallow")
def _(env: Env) -> Plan:
    site = env.site({"/robots.txt": respond_raw(503, b"busy", content_type="text/plain"), "/": html()})
    return plan(site.url_for("/"), _robots_unavailable(site), robots=ROBOTS_FAST, **ROBOTS)


@case("robots-txt-unreachable-means-disallow")
def _(env: Env) -> Plan:
    site = env.site({"/robots.txt": raw(b"", then="reset"), "/": html()})
    return plan(site.url_for("/"), _robots_unavailable(site), robots=ROBOTS_FAST, **ROBOTS)


@case("robots-txt-404-means-allow")
def _(env: Env) -> Plan:
    site = env.site({"/": html(links=["/a"]), "/a": html()})
    return plan(site.url_for("/"), ok(pages=2), **ROBOTS)


@case("robots-txt-huge")
def _(env: Env) -> Plan:
    body = "User-agent: *\n" + "".join(f"Disallow: /nowhere/{i}\n" for i in range(400_000))
    site = env.site({"/robots.txt": _robots(body), "/": html()})
    return plan(site.url_for("/"), ok(), **ROBOTS)


@case("robots-txt-silent")
def _(env: Env) -> Plan:
    site = env.site({"/robots.txt": silent(), "/": html()})
    return plan(site.url_for("/"), _robots_unavailable(site), robots=ROBOTS_FAST, **ROBOTS)


@case("robots-txt-redirect-loop")
def _(env: Env) -> Plan:
    site = env.site({"/robots.txt": redirect("/robots.txt"), "/": html()})
    # Up to 5 redirects are followed; more count as "unavailable" (RFC 9309 2.3.1.3): everything allowed.
    return plan(site.url_for("/"), ok(wall=10, check=requests_at_most(site, "/robots.txt", 6)), **ROBOTS)


def _delay_site(env: Env, delay: str) -> Site:
    return env.site({"/robots.txt": _robots(f"User-agent: *\nCrawl-delay: {delay}\n"), "/": html(links=["/a", "/b"]),
                     "/a": html(), "/b": html()})  # fmt: skip


def _crawl_delay_too_long(site: Site) -> Expect:
    """A Crawl-delay above robots.max_crawl_delay skips the host: its URL fails at once, nothing else is fetched."""
    return Expect(exit=1, errors={"crawl_delay_too_long": 1}, pages=0, wall=10, check=only_robots_requested(site))


@case("crawl-delay-86400")
def _(env: Env) -> Plan:
    site = _delay_site(env, "86400")
    return plan(site.url_for("/"), _crawl_delay_too_long(site), **ROBOTS)  # default max_crawl_delay: 60 s


@case("crawl-delay-1e308")
def _(env: Env) -> Plan:
    site = _delay_site(env, "1e308")
    return plan(site.url_for("/"), _crawl_delay_too_long(site), **ROBOTS)


@case("crawl-delay-garbage")
def _(env: Env) -> Plan:
    site = _delay_site(env, "soon")
    return plan(site.url_for("/"), ok(pages=3, wall=20), **ROBOTS)


@case("crawl-delay-negative")
def _(env: Env) -> Plan:
    site = _delay_site(env, "-5")
    return plan(site.url_for("/"), ok(pages=3, wall=20), **ROBOTS)


@case("crawl-delay-nan")
def _(env: Env) -> Plan:
    site = _delay_site(env, "nan")
    return plan(site.url_for("/"), ok(pages=3, wall=20), **ROBOTS)


# --- sitemaps -------------------------------------------------------------------------------------------
section('Sitemaps')


def _index(locs: list[str]) -> bytes:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return (f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}'
            "</sitemapindex>").encode()  # fmt: skip


def _urlset(locs: list[str]) -> bytes:
    entries = "".join(f"<url><loc>{loc}</loc></url>" for loc in locs)
    return (f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}'
            "</urlset>").encode()  # fmt: skip


@case("sitemap-index-chain-endless")
def _(env: Env) -> Plan:
    holder: dict[str, Site] = {}

    def body(request: RawRequest) -> bytes:
        n = int(request.path.rsplit("/", 1)[1].split(".")[0])
        return _index([holder["site"].url_for(f"/sm/{n + 1}.xml")])

    site = holder["site"] = env.site({"/sm/": respond_raw(200, body, content_type="application/xml")})

    def check(run: CrawlRun) -> None:
        n = len(site.paths("/sm/"))  # scope.max_sitemap_depth 5: the start sitemap and 5 nested indexes
        assert n == 6, f"SERVER: {n} nested sitemap indexes fetched, expected 6"

    return plan([], Expect(exit=0, errors={}, skipped=("sitemap_depth",), wall=10, check=check),
                start_sitemaps=[site.url_for("/sm/0.xml")], scope={"max_depth": 5})  # fmt: skip


@case("sitemap-index-lists-itself")
def _(env: Env) -> Plan:
    holder: dict[str, Site] = {}
    site = holder["site"] = env.site({"/page": html()})
    site.route("/sm.xml", respond_raw(200, lambda r: _index([site.url_for("/sm.xml"), site.url_for("/leaf.xml")]),
                                      content_type="application/xml"))  # fmt: skip
    site.route("/leaf.xml", respond_raw(200, lambda r: _urlset([site.url_for("/page")]), content_type="application/xml"))

    def check(run: CrawlRun) -> None:
        assert len(site.paths("/sm.xml")) == 1, f"SERVER: the self-listing index was fetched {len(site.paths('/sm.xml'))} times"
        assert site.paths("/page") == ["/page"], f"SERVER: saw {site.paths()}"

    def items(run: CrawlRun) -> None:
        check(run)
        assert len(run.items) == 1, f"ITEMS: {len(run.items)} items, expected the one page"

    return plan([], Expect(exit=0, errors={}, check=items), start_sitemaps=[site.url_for("/sm.xml")])


@case("sitemap-billion-laughs")
def _(env: Env) -> Plan:
    lol = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
           + ']><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&lol9;</loc></url></urlset>')  # fmt: skip
    site = env.site({"/sitemap.xml": respond_raw(200, lol.encode(), content_type="application/xml")})
    # Entities are not expanded: the sitemap yields no URL (the one request is the sitemap itself).
    return plan([], Expect(exit=0, errors={}, pages=1, wall=10, check=requested_exactly(site, ["/sitemap.xml"])),
                start_sitemaps=[site.url_for("/sitemap.xml")])  # fmt: skip


@case("sitemap-malformed-xml")
def _(env: Env) -> Plan:
    site = env.site({"/sitemap.xml": respond_raw(200, b"<urlset><url><loc>/a</loc><url><<<>>>&&&", content_type="application/xml"),
                     "/a": html()})  # fmt: skip
    return plan([], Expect(exit=0, errors={}, wall=10), start_sitemaps=[site.url_for("/sitemap.xml")])


@case("sitemap-with-100k-urls")
def _(env: Env) -> Plan:
    holder: dict[str, bytes] = {}
    site = env.site({"/p/": html()})
    holder["body"] = _urlset([site.url_for(f"/p/{i}") for i in range(100_000)])
    site.route("/sitemap.xml", respond_raw(200, holder["body"], content_type="application/xml"))
    def check(run: CrawlRun) -> None:  # scope.max_pages counts the pages, not the sitemap
        assert len(site.paths("/p/")) == 10, f"SERVER: {len(site.paths('/p/'))} of the sitemap's URLs fetched, max_pages 10"
        assert len(run.items) == 10, f"ITEMS: {len(run.items)}, expected 10"

    return plan([], Expect(exit=0, errors={}, check=check), timeout=40,
                start_sitemaps=[site.url_for("/sitemap.xml")], scope={"max_pages": 10}, http={"max_body": "40MB"})  # fmt: skip


# --- rate limits: Retry-After and X-RateLimit of every shape --------------------------------------------
section('Rate limits: Retry-After and X-RateLimit of every shape')


def _gap(site: Site, path: str) -> float:
    times = [e["t"] for e in site.log if e["path"] == path]
    return times[1] - times[0] if len(times) >= 2 else -1.0


def _retry_after(value: str | Callable[[], str], status: int = 429) -> Any:
    async def handler(request: RawRequest, conn: Conn) -> bool:
        v = value() if callable(value) else value
        return await respond_raw(status, b"slow down", [("Retry-After", v)], "text/plain")(request, conn)

    return handler


@case("retry-after-1s-then-ok")
def _(env: Env) -> Plan:
    site = env.site({"/": sequence(_retry_after("1"), html())})

    def check(run: CrawlRun) -> None:
        assert 0.9 <= _gap(site, "/") <= 5, f"SERVER: retried after {_gap(site, '/'):.2f}s, Retry-After was 1 s"

    return plan(site.url_for("/"), ok(check=check))


@case("retry-after-http-date")
def _(env: Env) -> Plan:
    site = env.site({"/": sequence(_retry_after(lambda: email.utils.formatdate(time.time() + 2, usegmt=True), 503), html())})

    def check(run: CrawlRun) -> None:
        assert 0.9 <= _gap(site, "/") <= 5, f"SERVER: retried after {_gap(site, '/'):.2f}s, Retry-After date +2 s"

    return plan(site.url_for("/"), ok(check=check))


@case("retry-after-date-in-the-past")
def _(env: Env) -> Plan:
    site = env.site({"/": sequence(_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), html())})
    return plan(site.url_for("/"), ok(wall=15))


def _retry_after_case(value: str) -> Callable[[Env], Plan]:
    def build(env: Env) -> Plan:
        site = env.site({"/": _retry_after(value)})
        return plan(site.url_for("/"), Expect(exit=1, errors={"http_429": 1}, pages=0, wall=15,
                                              check=requests_at_most(site, "/", 2)))  # fmt: skip

    return build


for _value, _id in (("86400", "retry-after-a-day"), ("inf", "retry-after-inf"), ("1e308", "retry-after-1e308"),
                    ("nan", "retry-after-nan"), ("-5", "retry-after-negative"), ("soon", "retry-after-garbage"),
                    ("1", "retry-after-429-forever")):  # fmt: skip
    add_case(_id, _retry_after_case(_value))


def _quota_site(env: Env, remaining: str, reset: str) -> Site:
    headers = [("X-RateLimit-Remaining", remaining), ("X-RateLimit-Reset", reset)]
    return env.site({"/": html(links=["/a", "/b"], headers=headers), "/a": html(headers=headers),
                     "/b": html(headers=headers)})  # fmt: skip


def _quota_case(remaining: str, reset: str) -> Callable[[Env], Plan]:
    def build(env: Env) -> Plan:
        site = _quota_site(env, remaining, reset)
        return plan(site.url_for("/"), ok(pages=3, wall=20))

    return build


for _rem, _reset, _id, _pending in (
    ("0", "1", "ratelimit-remaining-0-reset-1s", None),
    ("inf", "1", "ratelimit-remaining-inf", None),
    ("nan", "1", "ratelimit-remaining-nan", None),
    ("-1", "1", "ratelimit-remaining-negative", None),
    ("0", "1e308", "ratelimit-reset-1e308", None),
    ("0", str(int(time.time()) + 10 * 365 * 86400), "ratelimit-reset-epoch-in-10-years", None),
    ("0", "soon", "ratelimit-reset-garbage", None),
):
    add_case(_id, _quota_case(_rem, _reset), _pending)


@case("max-pages-with-429-retries-pending")
def _(env: Env) -> Plan:
    site = env.site({"/": html(links=[f"/p/{i}" for i in range(40)]),
                     "/p/": sequence(_retry_after("1"), html())})  # fmt: skip
    return plan(site.url_for("/"), Expect(exit=0, errors={}, pages=10, wall=20), scope={"max_pages": 10},
                retry={"attempts": 4, "max_retry_after": 2})  # fmt: skip


@case("max-pages-with-resets-pending")
def _(env: Env) -> Plan:
    site = env.site({"/": html(links=[f"/p/{i}" for i in range(40)]),
                     "/p/": sequence(raw(head(200, [("Content-Length", "9000"), CT_HTML]) + b"x" * 100, then="reset"),
                                     html())})  # fmt: skip
    return plan(site.url_for("/"), Expect(exit=0, errors={}, pages=10, wall=20), scope={"max_pages": 10},
                retry={"attempts": 4})  # fmt: skip


# --- TLS ------------------------------------------------------------------------------------------------
section('TLS')


def _tls_plan(env: Env, context: ssl.SSLContext, **kw: Any) -> Plan:
    site = env.site({"/": html()}, ssl_context=context)
    # A certificate that fails verification fails the connection (connect_error), not retried into a storm.
    return plan(site.url_for("/"), fails("connect_error", wall=15), http={"verify": str(env.ca_path)}, **kw)


@case("tls-hostname-mismatch")
def _(env: Env) -> Plan:
    return _tls_plan(env, env.tls_context("wrong.example"))


@case("tls-untrusted-ca")
def _(env: Env) -> Plan:
    import trustme

    return _tls_plan(env, env.tls_context("127.0.0.1", ca=trustme.CA()))


@case("tls-expired-certificate")
def _(env: Env) -> Plan:
    return _tls_plan(env, env.tls_context("127.0.0.1", expired=True))


@case("tls-valid-certificate")
def _(env: Env) -> Plan:
    site = env.site({"/": html()}, ssl_context=env.tls_context("127.0.0.1"))
    return plan(site.url_for("/"), ok(), http={"verify": str(env.ca_path)})


@case("https-url-to-a-silent-plain-server")
def _(env: Env) -> Plan:
    site = env.site({"/": html()})  # plain HTTP: waits for a request head that a TLS ClientHello never completes
    return plan(site.url_for("/").replace("http://", "https://"),
                fails("connect_timeout", wall=15),  # the TLS handshake is part of connecting
                http={"verify": str(env.ca_path), **SHORT})  # fmt: skip


@case("http-url-to-a-tls-server")
def _(env: Env) -> Plan:
    site = env.site({"/": html()}, ssl_context=env.tls_context("127.0.0.1"))
    return plan(site.url_for("/").replace("https://", "http://"), fails("protocol_error", wall=15))


# --- dead hosts, DNS, auth endpoints --------------------------------------------------------------------
section('Dead hosts, DNS, auth endpoints')


@case("connection-refused")
def _(env: Env) -> Plan:
    return plan(f"http://127.0.0.1:{free_port()}/", fails("connect_error", wall=15))


@case("connect-timeout")
def _(env: Env) -> Plan:
    site = env.site({}, accept=False)
    return plan(site.url_for("/"), fails("connect_timeout", wall=15), http=SHORT)


@case("dns-failure")
def _(env: Env) -> Plan:
    return plan("http://no-such-host.invalid/", fails("connect_error", wall=15))


@case("one-dead-host-among-live-ones")
def _(env: Env) -> Plan:
    site = env.site({"/": html()})
    expect = Expect(exit=0, errors={"connect_error": 1}, pages=1, wall=15)
    return plan([site.url_for("/"), f"http://127.0.0.1:{free_port()}/"], expect)


@case("oauth2-token-endpoint-silent")
def _(env: Env) -> Plan:
    token = env.site({"/token": silent()})
    site = env.site({"/": html()})
    auth = {"oauth2": {"token_url": token.url_for("/token"), "client_id": "a", "client_secret": "b"}}
    # The token request carries the deadlines of the request it authorises: it times out, and the page with it.
    check = all_checks(requests_at_most(token, "/token", 2), never_requested(site))
    return plan(site.url_for("/"), Expect(exit=1, errors={"read_timeout": 1}, pages=0, wall=15, check=check),
                http={"auth": auth, **SHORT})  # fmt: skip


# --- HTTP/2 (hypercorn): RST_STREAM, GOAWAY, stalls, bombs ----------------------------------------------
section('HTTP/2: RST_STREAM, GOAWAY, stalls, bombs')


def _h2_plan(env: Env, path: str, expect: Expect, max_requests: int = 10_000, **job: Any) -> Plan:
    server = env.h2(max_requests)
    http = {"http2": True, "verify": server.ca_path, **job.pop("http", {})}
    return plan(server.url_for(path), expect, http=http, **job)


@case("h2-rst-stream-mid-body")
def _(env: Env) -> Plan:
    site = env.h2_site({"/": h2_page(["/rst"]), "/rst": h2_rst_stream()})
    return plan(site.url_for("/"), Expect(exit=0, errors={"protocol_error": 1}, pages=1, wall=15,
                                          check=requests_at_most(site, "/rst", 2)),
                http={"http2": True, "verify": str(env.ca_path)})  # fmt: skip


@case("h2-rst-stream-before-any-data")
def _(env: Env) -> Plan:
    site = env.h2_site({"/": h2_page(["/rst"]), "/rst": h2_rst_stream(after=0, error_code=7)})  # REFUSED_STREAM
    return plan(site.url_for("/"), Expect(exit=0, errors={"protocol_error": 1}, pages=1, wall=15,
                                          check=requests_at_most(site, "/rst", 2)),
                http={"http2": True, "verify": str(env.ca_path)})  # fmt: skip


@case("h2-goaway-mid-body")
def _(env: Env) -> Plan:
    site = env.h2_site({"/": h2_goaway()})
    return plan(site.url_for("/"), fails("protocol_error", wall=15, check=requests_at_most(site, "/", 2)),
                http={"http2": True, "verify": str(env.ca_path)})  # fmt: skip


@case("h2-goaway-every-two-requests")
def _(env: Env) -> Plan:
    def check(run: CrawlRun) -> None:
        versions = run.stats.get("http_versions", {})
        assert set(versions) == {"HTTP/2"}, f"SERVER: HTTP versions {versions}"

    return _h2_plan(env, "/page/0?n=20", ok(pages=20, check=check), max_requests=2)


@case("h2-stalled-body")
def _(env: Env) -> Plan:
    return _h2_plan(env, "/stall", fails("read_timeout", wall=15), http=SHORT)


@case("h2-gzip-bomb")
def _(env: Env) -> Plan:
    return _h2_plan(env, "/bomb", fails("body_too_large"))


@case("h2-endless-body")
def _(env: Env) -> Plan:
    return _h2_plan(env, "/endless", fails("body_too_large", wall=15))


def _ensure_unique_ids() -> None:
    ids = [c.id for c in CASES]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"duplicate fault case ids: {duplicates}"


_ensure_unique_ids()
