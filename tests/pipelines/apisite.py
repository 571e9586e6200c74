"""A small site for the crawl-feature tests: sitemaps (index, gzip, text, bomb), paginated JSON APIs in
every style (Link header, next field, page number, cursor), an HTML listing, and a rate-limit quota.

`ApiServer` serves it through the one launcher (crawler/demo/launcher.py), whose request log records every
request.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

from crawler.demo.asgi import Scope, Send, base_url, query_params
from crawler.demo.asgi import respond as _asgi_respond
from crawler.demo.launcher import AsgiServer

ITEMS = 14  # items in every paginated collection
PER_PAGE = 4  # so pages 1-3 are full, page 4 has 2 items, page 5 is empty
PAGES = 6  # /p/0 .. /p/5


def item(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "name": f"Item {n}",
        "url": f"/p/{n % PAGES}",
        "tags": [{"name": f"t{n}"}, {"name": "all"}],
    }


def _page_of(query: dict[str, str], key: str = "page") -> int:
    try:
        return max(1, int(query.get(key, "1")))
    except ValueError:
        return 1


def _slice(page: int) -> list[dict[str, Any]]:
    first = (page - 1) * PER_PAGE
    return [item(n) for n in range(first, min(first + PER_PAGE, ITEMS))]


def _gzip_zeros(size: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    parts = [comp.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join(parts) + comp.flush()


class ApiApp:
    def __init__(self) -> None:
        self._bomb: bytes | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] == "http":
            await self.route(scope["path"], query_params(scope), base_url(scope), send)

    async def route(self, path: str, query: dict[str, str], base: str, send: Send) -> None:
        if path == "/robots.txt":
            await _respond(send, 200, f"User-agent: *\nDisallow:\nSitemap: {base}/sitemaps/index.xml\n".encode(),
                           "text/plain")  # fmt: skip
        elif path.startswith("/p/"):
            n = path.rsplit("/", 1)[1]
            html = f"<!doctype html><html><head><title>P{n}</title></head><body><h1>P{n}</h1></body></html>"
            await _respond(send, 200, html.encode(), "text/html; charset=utf-8")
        elif path.startswith("/sitemaps/"):
            await self.sitemap(path.removeprefix("/sitemaps/"), base, send)
        elif path == "/link/items":
            page = _page_of(query)
            headers = [(b"link", f'<{base}/link/items?page={page + 1}>; rel="next", <{base}/link/items?page=1>; '
                                 f'rel="first"'.encode())] if page * PER_PAGE < ITEMS else []  # fmt: skip
            await _respond(send, 200, json.dumps(_slice(page)).encode(), "application/json", headers)
        elif path == "/next/items":
            page = _page_of(query)
            nxt = f"/next/items?page={page + 1}" if page * PER_PAGE < ITEMS else None
            body = {"data": {"results": _slice(page)}, "links": {"next": nxt}}
            await _respond(send, 200, json.dumps(body).encode(), "application/json")
        elif path == "/num/items":
            # Never says "last page": the only way to stop is the empty page.
            body = {"data": _slice(_page_of(query)), "total": None}
            await _respond(send, 200, json.dumps(body).encode(), "application/vnd.api+json")
        elif path == "/cursor/items":
            cursor = query.get("after", "c0")
            page = int(cursor[1:]) + 1 if cursor[1:].isdigit() else 1
            more = page * PER_PAGE < ITEMS
            body = {"items": _slice(page), "meta": {"next_cursor": f"c{page}" if more else None}}
            await _respond(send, 200, json.dumps(body).encode(), "application/json")
        elif path == "/html/list":
            page = _page_of(query)
            rows = "".join(f'<li class="item">{it["name"]}</li>' for it in _slice(page))
            nxt = (
                f'<a rel="next" href="/html/list?page={page + 1}">next</a>' if page * PER_PAGE < ITEMS else ""
            )
            html = f"<!doctype html><html><body><ul>{rows}</ul>{nxt}</body></html>"
            await _respond(send, 200, html.encode(), "text/html; charset=utf-8")
        elif path == "/quota/items":
            # A quota of 2 requests per `reset` seconds, announced before it runs out.
            page = _page_of(query)
            remaining = max(0, 2 - page % 3)
            headers = [(b"x-ratelimit-remaining", str(remaining).encode()),
                       (b"x-ratelimit-reset", query.get("reset", "1").encode())]  # fmt: skip
            nxt = f"/quota/items?page={page + 1}&reset={query.get('reset', '1')}" if page < 4 else None
            await _respond(send, 200, json.dumps({"items": _slice(page), "next": nxt}).encode(),
                           "application/json", headers)  # fmt: skip
        else:
            await _respond(send, 404, b"not found", "text/plain")

    async def sitemap(self, name: str, base: str, send: Send) -> None:
        if name == "index.xml":
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                    '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
                    f"  <sitemap><loc>{base}/sitemaps/a.xml</loc><lastmod>2024-01-01</lastmod></sitemap>\n"
                    f"  <sitemap><loc>{base}/sitemaps/b.xml.gz</loc></sitemap>\n"
                    f"  <sitemap><loc>{base}/sitemaps/c.txt</loc></sitemap>\n"
                    "</sitemapindex>\n")  # fmt: skip
            await _respond(send, 200, body.encode(), "application/xml")
        elif name == "a.xml":
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                    '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
                    'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">\n'
                    f"  <url><loc>{base}/p/0</loc><image:image><image:loc>{base}/img/0.png</image:loc>"
                    "</image:image></url>\n"
                    f"  <url><loc> {base}/p/1?a=1&amp;b=2 </loc></url>\n"
                    f"  <url><loc><![CDATA[{base}/p/2]]></loc></url>\n"
                    "</urlset>\n")  # fmt: skip
            await _respond(send, 200, body.encode(), "application/xml")
        elif name == "b.xml.gz":
            body = (f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{base}/p/3</loc></url>'
                    f"<url><loc>{base}/p/4</loc></url></urlset>")  # fmt: skip
            # A gzipped file, not a gzip Content-Encoding: the crawler sees the compressed bytes.
            await _respond(send, 200, gzip.compress(body.encode()), "application/x-gzip")
        elif name == "c.txt":
            await _respond(send, 200, f"{base}/p/5\n\nnot a url\n".encode(), "text/plain")
        elif name == "bomb.xml.gz":
            if self._bomb is None:
                self._bomb = await asyncio.to_thread(_gzip_zeros, 200 * 1024 * 1024)
            await _respond(send, 200, self._bomb, "application/x-gzip")
        else:
            await _respond(send, 404, b"not found", "text/plain")


async def _respond(send: Send, status: int, body: bytes, content_type: str,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:  # fmt: skip
    await _asgi_respond(send, status, body, content_type.encode(), headers or [])


app = ApiApp()


class ApiServer(AsgiServer):
    """The app above under the launcher on 127.0.0.1: `with ApiServer() as api: api.url`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("tests.pipelines.apisite:app", **kwargs)

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def paths(self, prefix: str | None = None) -> list[str]:
        """Paths with their query strings, oldest first."""
        return [e["path"] + (f"?{e['query']}" if e["query"] else "") for e in self.log(prefix)]
