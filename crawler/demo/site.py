"""The demo and test site: an ASGI app serving a generated crawlable site plus edge-case endpoints, and
`SiteServer`, which serves it on loopback through the launcher (whose request log lets tests assert what the
*server* saw: paths, HTTP versions, timing). `crawler demo` crawls it; the test suite runs against it.

Settings are read once from the environment when the server process starts (see `SiteSettings`), so each
server subprocess is one variant of the site. The pure helpers `page_links` and `big_body` let tests
compute the expected link graph and payloads without fetching them.

Endpoints (query parameters and defaults):
  /                         home: links to /page/0../page/9 (page 0 reaches every page)
  /page/{n}                 n in [0, SITE_PAGES): 2-8 KB, 11-13 links (mixed spellings, one duplicate)
  /robots.txt               SITE_ROBOTS: allow | private | deny | delay:<s> | missing (404) | error (500)
  /sitemap.xml              every /page/{n}
  /links?href=A&href=B      a page linking exactly to the given hrefs
  /private/{any}            a page (for robots tests: disallowed by the `private` and `delay:` variants)
  /status/{code}
  /retry-after/{key}?status=429&after=2&times=1&date=0   Retry-After seconds, or HTTP-date with date=1
  /flaky/{key}?fail=2&status=500
  /gzip-bomb?mb=200         gzip body expanding to mb*10^6 zero bytes;  /gzip-page: a small gzip page
  /slow/{ms}?where=head     delay before the response; where=body sends headers, then stalls the body
  /big/{bytes}?chunked=0&type=application/octet-stream   the big_body() byte cycle
  /truncated?length=100000&send=1000    h1: connection drops mid-body; h2: stream ends short
  /file/{name}.{ext}?size=&disposition=0    content type from the extension; /files?count=6 links them
  /redirect/{n}?to=/page/0&status=302&absolute=0
  /base-href?absolute=0     <base href="/page/"> with relative links
  /charset/{encoding}?where=header      where: header | meta | both | none
  /oauth/token (POST, client credentials, ?expires_in=)   /protected[/{any}] (Bearer)
  /basic-auth?user=user&password=pass   /headers (echo)   /api/items?page=1&per_page=20
  /__health (never logged; the launcher adds /__log and /__reset, see crawler.demo.asgi)
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import hashlib
import mimetypes
import os
import random
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from crawler.demo.asgi import (
    HTML,
    LOG,
    TEXT,
    Headers,
    Receive,
    Scope,
    Send,
    base_url,
    header,
    int_param,
    query_list,
    query_params,
    read_body,
    respond,
    respond_json,
)
from crawler.demo.launcher import AsgiServer

__all__ = [
    "DEMO_JOB",
    "SiteServer",
    "SiteSettings",
    "app",
    "big_body",
    "make_app",
    "page_links",
    "robots_txt",
]

# The demo job `crawler demo` runs (configs/demo.yaml links to it).
DEMO_JOB = Path(__file__).with_name("demo.yaml")

# Robots variants selectable with SITE_ROBOTS; "delay:N" is handled in robots_txt().
_ROBOTS_VARIANTS = {
    "allow": "User-agent: *\nDisallow:\n",
    "private": "User-agent: *\nDisallow: /private/\n",
    "deny": "User-agent: *\nDisallow: /\n",
}


@dataclass(frozen=True)
class SiteSettings:
    """One variant of the site. Built from SITE_* environment variables by `from_env`."""

    pages: int = 200
    robots: str = "allow"  # allow | private | deny | delay:<seconds> | missing | error
    client_id: str = "demo-client"
    client_secret: str = "demo-secret"
    token_ttl: float = 3600.0

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> SiteSettings:
        return cls(
            pages=int(env.get("SITE_PAGES", cls.pages)),
            robots=env.get("SITE_ROBOTS", cls.robots),
            client_id=env.get("SITE_CLIENT_ID", cls.client_id),
            client_secret=env.get("SITE_CLIENT_SECRET", cls.client_secret),
            token_ttl=float(env.get("SITE_TOKEN_TTL", cls.token_ttl)),
        )


# --- pure content helpers (also imported by tests) ------------------------------------------------------


def page_links(n: int, pages: int) -> list[int]:
    """The page numbers /page/{n} links to, in document order, duplicates included.

    Children 2n+1 and 2n+2 make every page reachable from page 0 (a binary tree), the neighbours and a
    seeded sample make the graph dense, and the first link is repeated once as a duplicate.
    """
    if pages <= 1:
        return [0] if pages == 1 else []
    rng = random.Random(n * 7919 + pages)
    targets = [k for k in (2 * n + 1, 2 * n + 2) if k < pages]
    children = len(targets)
    targets += [(n + 1) % pages, (n - 1) % pages]
    # Leaf pages (no children) get two more sampled links, so every page carries 11-13 links.
    targets += rng.sample(range(pages), min(pages, rng.randint(6, 8) + 2 - children))
    targets.append(targets[0])
    return targets


def home_links(pages: int) -> list[int]:
    """The page numbers `/` links to: the first ten pages (page 0 reaches the rest)."""
    return list(range(min(pages, 10)))


def big_body(size: int, offset: int = 0) -> bytes:
    """Bytes offset..offset+size of the deterministic /big and /file payload: 0x00..0xff repeated."""
    start = offset % 256
    reps = (start + size) // 256 + 1
    return (_CYCLE * reps)[start : start + size]


_CYCLE = bytes(range(256))


def robots_txt(variant: str, base: str) -> str | None:
    """The robots.txt body for a variant; None for `missing`/`error` (served as 404/500)."""
    if variant in ("missing", "error"):
        return None
    if variant.startswith("delay:"):
        body = f"User-agent: *\nCrawl-delay: {variant.split(':', 1)[1]}\nDisallow: /private/\n"
    else:
        body = _ROBOTS_VARIANTS[variant]
    return body + f"\nSitemap: {base}/sitemap.xml\n"


_WORDS = (
    "crawl fetch frontier token bucket stream parse extract stage worker host limit retry backoff "
    "header body socket window frame stream priority queue robots sitemap anchor title heading item"
).split()

# Non-HTTP and same-document links every generated page carries: a crawler must not fetch them.
_IGNORABLE_LINKS = (
    '<a href="#top">Back to top</a>\n'
    '<a href="mailto:webmaster@example.invalid">Mail us</a>\n'
    '<a href="javascript:void(0)">Do nothing</a>\n'
)


def _filler(rng: random.Random, size: int) -> str:
    paragraphs = []
    total = 0
    while total < size:
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 90)))
        paragraphs.append(f"<p>{text}.</p>")
        total += len(text) + 8
    return "\n".join(paragraphs)


def _link_href(n: int, k: int, i: int, base: str) -> str:
    # Vary the spelling of a link so the crawler's URL normalisation is exercised on every page.
    style = (n + i) % 5
    if style == 0:
        return f"/page/{k}"
    if style == 1:
        return f"{k}"  # relative to /page/{n}
    if style == 2:
        return f"{base}/page/{k}"
    if style == 3:
        return f"/page/{k}#section-{i}"
    return f"../page/{k}"


def render_page(n: int, pages: int, base: str) -> bytes:
    rng = random.Random(n)
    targets = page_links(n, pages)
    hrefs = [_link_href(n, k, i, base) for i, k in enumerate(targets)]
    hrefs[-1] = hrefs[0]  # the duplicate link is spelled exactly like the first one
    links = "\n".join(f'<li><a href="{h}">Page {k}</a></li>' for h, k in zip(hrefs, targets, strict=True))
    price = f"{(n * 37) % 1000}.{n % 100:02d}"
    tags = "".join(f"<li>{rng.choice(_WORDS)}</li>" for _ in range(3))
    target_size = 1000 + (n * 7919) % 5300  # 2-8 KB per page once the markup is added
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>Page {n}</title>\n"
        f'<meta name="description" content="Description of page {n}">\n'
        f'</head><body id="top">\n<h1>Page {n}</h1>\n'
        f'<div class="product" data-id="{n}"><span class="name">Product {n}</span>'
        f'<span class="price">{price}</span><span class="sku">SKU-{n:06d}</span></div>\n'
        f'<ul class="tags">{tags}</ul>\n'
        f"<nav><ul>\n{links}\n</ul></nav>\n{_IGNORABLE_LINKS}"
        f"<article>\n{_filler(rng, target_size)}\n</article>\n</body></html>\n"
    ).encode()


def render_home(pages: int) -> bytes:
    links = "\n".join(f'<li><a href="/page/{k}">Page {k}</a></li>' for k in home_links(pages))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n<title>Home</title>\n'
        '</head><body id="top">\n<h1>Home</h1>\n'
        f'<div class="product" data-id="home"><span class="name">Home</span></div>\n'
        f"<nav><ul>\n{links}\n</ul></nav>\n{_IGNORABLE_LINKS}</body></html>\n"
    ).encode()


def simple_page(title: str, body: str = "", links: list[str] | None = None) -> bytes:
    anchors = "\n".join(f'<li><a href="{h}">{h}</a></li>' for h in links or [])
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">\n'
        f"<title>{title}</title></head><body>\n<h1>{title}</h1>\n{body}\n<ul>\n{anchors}\n</ul>\n</body></html>\n"
    ).encode()


def _gzip_zeros(size: int) -> bytes:
    """Gzip `size` zero bytes without ever holding them all: ~1000:1, so 200 MB packs to ~200 KB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31 = gzip container
    chunk = bytes(1 << 20)
    parts = []
    left = size
    while left > 0:
        parts.append(compressor.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(compressor.flush())
    return b"".join(parts)


# Sample text per charset, in characters each encoding can hold.
_CHARSET_TEXT = {
    "utf-8": "Café naïve résumé — 日本語 ✓",
    "iso-8859-1": "Café naïve résumé",
    "windows-1252": "Café naïve résumé — “quoted”",
    "shift_jis": "日本語のページ",
    "euc-jp": "日本語のページ",
    "koi8-r": "Привет, мир",
}

# A little real magic at the front of each file type, so sniffers and savers see plausible bodies.
_FILE_MAGIC = {
    ".pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    ".png": b"\x89PNG\r\n\x1a\n",
    ".jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    ".zip": b"PK\x03\x04",
    ".gz": b"\x1f\x8b\x08\x00",
}


class SiteApp:
    """The ASGI callable. One instance per server process; all state lives here."""

    def __init__(self, settings: SiteSettings) -> None:
        self.settings = settings
        self.hits: dict[str, int] = {}  # per-key counters for /retry-after and /flaky
        self.tokens: dict[str, float] = {}  # access token -> monotonic expiry
        self._pages: dict[tuple[str, int], bytes] = {}
        self._gzip_bombs: dict[int, bytes] = {}
        self._routes: dict[str, Callable[[Scope, Receive, Send, list[str]], Awaitable[None]]] = {
            "": self.home,
            "page": self.page,
            "robots.txt": self.robots,
            "sitemap.xml": self.sitemap,
            "status": self.status,
            "retry-after": self.retry_after,
            "flaky": self.flaky,
            "gzip-bomb": self.gzip_bomb,
            "gzip-page": self.gzip_page,
            "slow": self.slow,
            "big": self.big,
            "truncated": self.truncated,
            "file": self.file,
            "files": self.files,
            "redirect": self.redirect,
            "base-href": self.base_href,
            "charset": self.charset,
            "links": self.links,
            "private": self.private,
            "oauth": self.oauth,
            "protected": self.protected,
            "basic-auth": self.basic_auth,
            "headers": self.echo_headers,
            "api": self.api,
        }

    def reset(self) -> None:
        """Forget /retry-after and /flaky hit counts and issued tokens (`/__reset`)."""
        self.hits.clear()
        self.tokens.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/__health":
            await respond_json(
                send, {"ok": True, "pages": self.settings.pages, "robots": self.settings.robots}
            )
            return
        segments = path.strip("/").split("/")
        handler = self._routes.get(segments[0]) if not path.startswith("/__") else None
        if handler is None:
            await respond(send, 404, simple_page("Not found"))
        else:
            await handler(scope, receive, send, segments[1:])

    # --- the crawlable site ----------------------------------------------------------------------------

    async def home(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        key = ("", -1)
        body = self._pages.get(key)
        if body is None:
            body = self._pages[key] = render_home(self.settings.pages)
        await respond(send, 200, body)

    async def page(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        n = int_param(rest[0], -1) if len(rest) == 1 else -1
        if not 0 <= n < self.settings.pages:
            await respond(send, 404, simple_page("Not found"))
            return
        base = base_url(scope)
        body = self._pages.get((base, n))
        if body is None:
            body = self._pages[(base, n)] = render_page(n, self.settings.pages, base)
        await respond(send, 200, body)

    async def robots(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        variant = self.settings.robots
        body = robots_txt(variant, base_url(scope))
        if body is None:
            await respond(send, 500 if variant == "error" else 404, b"", TEXT)
        else:
            await respond(send, 200, body.encode(), TEXT)

    async def sitemap(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        base = base_url(scope)
        urls = "".join(f"<url><loc>{base}/page/{n}</loc></url>" for n in range(self.settings.pages))
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>\n'
        ).encode()
        await respond(send, 200, body, b"application/xml")

    async def links(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        # An arbitrary link graph for one test: /links?href=/a&href=/b
        await respond(send, 200, simple_page("Links", links=query_list(scope, "href")))

    async def private(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        name = "/".join(rest) or "index"
        await respond(send, 200, simple_page(f"Private {name}"))

    # --- status codes, retries, failures ---------------------------------------------------------------

    async def status(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        code = int_param(rest[0] if rest else None, 200)
        if not 200 <= code <= 599:
            code = 400
        if code in (204, 304):
            await send({"type": "http.response.start", "status": code, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await respond(send, code, simple_page(f"Status {code}"))

    def _hit(self, kind: str, key: str) -> int:
        """How many times this key was hit before, counting this hit."""
        hits = self.hits.get(f"{kind}/{key}", 0) + 1
        self.hits[f"{kind}/{key}"] = hits
        return hits

    async def retry_after(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        key = "/".join(rest) or "default"
        query = query_params(scope)
        times = int_param(query.get("times"), 1)
        if self._hit("retry-after", key) <= times:
            after = float(query.get("after", "2"))
            if query.get("date") == "1":
                value = email.utils.formatdate(time.time() + after, usegmt=True)
            else:
                value = f"{after:g}"
            code = int_param(query.get("status"), 429)
            await respond(
                send, code, simple_page(f"Status {code}"), headers=[(b"retry-after", value.encode())]
            )
        else:
            await respond(send, 200, simple_page(f"Recovered {key}"))

    async def flaky(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        key = "/".join(rest) or "default"
        query = query_params(scope)
        if self._hit("flaky", key) <= int_param(query.get("fail"), 2):
            code = int_param(query.get("status"), 500)
            await respond(send, code, simple_page(f"Status {code}"))
        else:
            await respond(send, 200, simple_page(f"Recovered {key}"))

    # --- bodies: compression, size, speed, truncation, files ------------------------------------------

    async def gzip_bomb(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        size = int_param(query_params(scope).get("mb"), 200) * 1_000_000
        blob = self._gzip_bombs.get(size)
        if blob is None:
            # Compressing 200 MB takes ~0.5 s once; off the loop so other requests keep flowing.
            blob = self._gzip_bombs[size] = await asyncio.to_thread(_gzip_zeros, size)
        await respond(send, 200, blob, HTML, headers=[(b"content-encoding", b"gzip")])

    async def gzip_page(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        body = gzip.compress(simple_page("Gzip page", links=["/page/0"]))
        await respond(
            send, 200, body, HTML, headers=[(b"content-encoding", b"gzip"), (b"vary", b"accept-encoding")]
        )

    async def slow(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        delay = int_param(rest[0] if rest else None, 1000) / 1000
        body = simple_page(f"Slow {rest[0] if rest else 1000}")
        if query_params(scope).get("where") == "body":
            # Headers now, body later: exercises read timeouts rather than time-to-first-byte.
            head = [(b"content-length", str(len(body)).encode()), (b"content-type", HTML)]
            await send({"type": "http.response.start", "status": 200, "headers": head})
            await send({"type": "http.response.body", "body": body[:10], "more_body": True})
            await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": body[10:]})
        else:
            await asyncio.sleep(delay)
            await respond(send, 200, body)

    async def big(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        size = max(0, int_param(rest[0] if rest else None, 1_000_000))
        query = query_params(scope)
        content_type = query.get("type", "application/octet-stream").encode()
        await self._stream_bytes(send, size, content_type, chunked=query.get("chunked") == "1")

    async def _stream_bytes(
        self,
        send: Send,
        size: int,
        content_type: bytes,
        chunked: bool = False,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        head: Headers = [(b"content-type", content_type), *headers]
        if not chunked:
            head.append((b"content-length", str(size).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": head})
        chunk = big_body(1 << 16)  # 64 KiB, a multiple of 256 so every chunk continues the cycle
        sent = 0
        while size - sent > len(chunk):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
        await send({"type": "http.response.body", "body": chunk[: size - sent]})

    async def truncated(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        query = query_params(scope)
        declared = int_param(query.get("length"), 100_000)
        sent = min(int_param(query.get("send"), 1000), declared)
        head = [(b"content-length", str(declared).encode()), (b"content-type", b"application/octet-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        if scope["http_version"] == "2":
            # Over h2 ending the stream short of Content-Length is the truncation the client detects;
            # an unfinished h2 stream would merely hang until the client's read timeout.
            await send({"type": "http.response.body", "body": big_body(sent)})
        else:
            # Returning with the body unfinished makes hypercorn close the HTTP/1.1 connection.
            await send({"type": "http.response.body", "body": big_body(sent), "more_body": True})

    async def file(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        name = "/".join(rest)
        query = query_params(scope)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type == "application/json":
            content_type += "; charset=utf-8"
        size = int_param(query.get("size"), 10_000 + len(name) * 1000)
        ext = os.path.splitext(name)[1].lower()
        magic = _FILE_MAGIC.get(ext, b"")
        headers: Headers = []
        if query.get("disposition") == "1":
            headers.append(
                (b"content-disposition", f'attachment; filename="{os.path.basename(name)}"'.encode())
            )
        body = (magic + big_body(size))[:size]
        headers.append((b"etag", f'"{hashlib.sha256(body).hexdigest()[:16]}"'.encode()))
        await respond(send, 200, body, content_type.encode(), headers)

    async def files(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        count = int_param(query_params(scope).get("count"), 6)
        exts = [".pdf", ".csv", ".png", ".zip", ".json", ".txt"]
        hrefs = [f"/file/doc-{i}{exts[i % len(exts)]}" for i in range(count)] + ["/page/0"]
        await respond(send, 200, simple_page("Files", links=hrefs))

    # --- URL handling: redirects, <base>, charsets ----------------------------------------------------

    async def redirect(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        hops = int_param(rest[0] if rest else None, 1)
        query = query_params(scope)
        qs = scope["query_string"].decode("latin-1")
        target = (
            f"/redirect/{hops - 1}" + (f"?{qs}" if qs else "") if hops > 1 else query.get("to", "/page/0")
        )
        if query.get("absolute") == "1" and target.startswith("/"):
            target = base_url(scope) + target
        code = int_param(query.get("status"), 302)
        await respond(send, code, b"", None, headers=[(b"location", target.encode())])

    async def base_href(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        base = "/page/"
        if query_params(scope).get("absolute") == "1":
            base = base_url(scope) + base
        body = (
            f'<!doctype html>\n<html><head><base href="{base}"><title>Base href</title></head><body>\n'
            '<h1>Base href</h1>\n<a href="3">Page 3</a>\n<a href="4#frag">Page 4</a>\n'
            '<a href="/page/5">Page 5</a>\n</body></html>\n'
        ).encode()
        await respond(send, 200, body)

    async def charset(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        encoding = (rest[0] if rest else "utf-8").lower()
        text = _CHARSET_TEXT.get(encoding)
        if text is None:
            await respond(send, 404, simple_page("Unknown charset"))
            return
        where = query_params(scope).get("where", "header")  # header | meta | both | none
        meta = f'<meta charset="{encoding}">' if where in ("meta", "both") else ""
        body = (
            f"<!doctype html>\n<html><head>{meta}<title>{text}</title></head>"
            f"<body><h1>{text}</h1><p>{text}</p></body></html>\n"
        ).encode(encoding)
        content_type = f"text/html; charset={encoding}" if where in ("header", "both") else "text/html"
        await respond(send, 200, body, content_type.encode())

    # --- auth ------------------------------------------------------------------------------------------

    async def oauth(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        if rest != ["token"]:
            await respond(send, 404, simple_page("Not found"))
            return
        if scope["method"] != "POST":
            await respond_json(send, {"error": "invalid_request"}, 405, [(b"allow", b"POST")])
            return
        form = {k: v[-1] for k, v in parse_qs((await read_body(receive)).decode()).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = _basic_credentials(header(scope, b"authorization"))
        if basic is not None:
            client_id, client_secret = basic
        settings = self.settings
        if (client_id, client_secret) != (settings.client_id, settings.client_secret):
            await respond_json(
                send, {"error": "invalid_client"}, 401, [(b"www-authenticate", b'Basic realm="token"')]
            )
            return
        if form.get("grant_type") != "client_credentials":
            await respond_json(send, {"error": "unsupported_grant_type"}, 400)
            return
        ttl = float(query_params(scope).get("expires_in", settings.token_ttl))
        token = secrets.token_urlsafe(16)
        self.tokens[token] = time.monotonic() + ttl
        if LOG in scope:
            scope[LOG].count("tokens_issued")
        reply = {"access_token": token, "token_type": "Bearer", "expires_in": ttl}
        if "scope" in form:
            reply["scope"] = form["scope"]
        await respond_json(send, reply, headers=[(b"cache-control", b"no-store")])

    async def protected(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        authorization = header(scope, b"authorization") or ""
        scheme, _, token = authorization.partition(" ")
        expiry = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or expiry < time.monotonic():
            error = b'Bearer error="invalid_token"' if expiry is not None or token else b"Bearer"
            await respond(send, 401, simple_page("Unauthorized"), headers=[(b"www-authenticate", error)])
            return
        await respond(send, 200, simple_page(f"Protected {'/'.join(rest) or 'index'}"))

    async def basic_auth(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        query = query_params(scope)
        expected = (query.get("user", "user"), query.get("password", "pass"))
        if _basic_credentials(header(scope, b"authorization")) != expected:
            await respond(
                send, 401, simple_page("Unauthorized"), headers=[(b"www-authenticate", b'Basic realm="site"')]
            )
            return
        await respond(send, 200, simple_page("Basic auth ok"))

    # --- introspection and JSON -------------------------------------------------------------------------

    async def echo_headers(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        await respond_json(send, {"headers": headers, "http_version": scope["http_version"]})

    async def api(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        # /api/items?page=k&per_page=m: a paginated JSON collection over the site's pages.
        if rest != ["items"]:
            await respond_json(send, {"error": "not found"}, 404)
            return
        query = query_params(scope)
        page, per_page = max(1, int_param(query.get("page"), 1)), max(1, int_param(query.get("per_page"), 20))
        first = (page - 1) * per_page
        numbers = range(first, min(first + per_page, self.settings.pages))
        items = [{"id": n, "name": f"Product {n}", "url": f"/page/{n}"} for n in numbers]
        more = first + per_page < self.settings.pages
        await respond_json(
            send,
            {
                "items": items,
                "page": page,
                "next": f"/api/items?page={page + 1}&per_page={per_page}" if more else None,
            },
        )


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return None
    return user, password


def make_app(settings: SiteSettings | None = None) -> SiteApp:
    return SiteApp(settings or SiteSettings.from_env())


# What the launcher serves (`crawler.demo.site:app`): settings come from the server process's environment.
app = make_app()


class SiteServer(AsgiServer):
    """The site in a hypercorn subprocess (see AsgiServer for addresses, lifecycle and the request log).
    `pages` and `robots` choose the variant; `env` may set any other SITE_* setting."""

    def __init__(
        self, *, pages: int = 200, robots: str = "allow", env: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(
            "crawler.demo.site:app",
            env={"SITE_PAGES": str(pages), "SITE_ROBOTS": robots, **(env or {})},
            **kwargs,
        )
        self.pages = pages
        self.robots = robots

    def start(self) -> SiteServer:
        super().start()
        return self

    def __enter__(self) -> SiteServer:
        return self.start()

    def __repr__(self) -> str:
        where = self.url if self.port is not None else "not started"
        return f"SiteServer({where}, pages={self.pages}, robots={self.robots!r})"
