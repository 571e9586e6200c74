"""A fetched page as the pipeline stages and library users see it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from crawler.model.errors import FetchError
from crawler.model.request import Request
from crawler.model.url import fingerprint, host_key, join_url

if TYPE_CHECKING:
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

__all__ = ["Page", "Redirected"]

_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_UNPARSED: Any = object()
# Bytes given to charset-normalizer: enough text for a confident guess; the detection time stays ~ms.
_DETECT_BYTES = 256 * 1024
_WESTERN = "cp1252"


def _guess_legacy_encoding(body: bytes) -> str:
    """The encoding of an unlabelled page that is not UTF-8, detected by charset-normalizer.

    On a short Western page the detector often cannot tell windows-1252 from its Central European and Baltic
    cousins (`Déjà` reads as `Déją` in windows-1257 with less "chaos"). Browsers read unlabelled pages as
    windows-1252, the web's commonest legacy encoding, so it is kept whenever the detected encoding also
    reads the sample as Latin script and windows-1252 reads it nearly as well; a Cyrillic, Greek or CJK
    reading, or a sample windows-1252 cannot decode, goes to the detected encoding."""
    from charset_normalizer import from_bytes

    sample = body
    if len(sample) > _DETECT_BYTES:
        # Cut at a newline or '>': bytes that are never the second byte of a multi-byte character.
        cut = max(sample.rfind(b"\n", 0, _DETECT_BYTES), sample.rfind(b">", 0, _DETECT_BYTES))
        sample = sample[: cut + 1] if cut > 0 else sample[:_DETECT_BYTES]
    matches = list(from_bytes(sample))
    if not matches:
        return "windows-1252"
    best = matches[0]
    western = next((m for m in matches if m.encoding == _WESTERN), None)
    if western is not None and western.chaos <= best.chaos + _WESTERN_TOLERANCE and _latin(str(best)):
        return "windows-1252"
    return str(best.encoding)


_WESTERN_TOLERANCE = 0.2  # of charset-normalizer's chaos (0..1): 0.06-0.11 seen for short French pages in windows-1252


def _latin(text: str) -> bool:
    """Whether every non-ASCII letter of `text` is a Latin letter."""
    import unicodedata

    return all(unicodedata.name(c, "").startswith("LATIN") for c in set(text) if c > "\x7f" and c.isalpha())


@dataclass(frozen=True, slots=True)
class Redirected:
    """A redirect the crawl follows by queueing its target (a new request through the frontier: scope,
    robots.txt and the seen set apply to every hop). `cross_origin`: the chain has left its first origin, so
    the target's request goes without credentials; `auth`: whether the client's auth may run for it."""

    url: str
    status: int
    cross_origin: bool
    auth: bool


class Page:
    """One fetched response, after streaming. Stages read it, edit `item`, and `follow()` new URLs."""

    __slots__ = ("_encoding", "_html", "_json", "_text", "body", "depth", "elapsed", "headers", "http_version", "item",
                 "items", "links_capped", "path", "redirect", "request", "requests", "saved_bytes", "status",
                 "url")  # fmt: skip

    def __init__(self, request: Request, url: str, status: int, http_version: str, headers: httpx.Headers,
                 body: bytes, path: Path | None = None, elapsed: float = 0.0) -> None:  # fmt: skip
        self.request = request
        self.url = url
        self.status = status
        self.http_version = http_version
        self.headers = headers
        self.body = body
        self.path = path  # where the body was saved, for responses matched by `save.match`
        self.saved_bytes = 0  # bytes written to `path`
        # A 3xx answer the crawl follows: where to, and what the target's request may carry.
        self.redirect: Redirected | None = None
        self.elapsed = elapsed
        self.depth = request.depth
        self.item: dict[str, Any] = {}
        # Several records found on one page (a JSON list): one written record each, instead of `item`.
        self.items: list[dict[str, Any]] | None = None
        # New work found on this page (links, pagination); the engine pushes it after the stages.
        self.requests: list[Request] = []
        # Links past `extract.max_links` that the link stage left out (counted in the stats).
        self.links_capped = 0
        self._text: str | None = None
        self._encoding: str | None = None
        self._html: HTMLParser | None = None
        self._json: Any = _UNPARSED

    @property
    def content_type(self) -> str:
        value: str = self.headers.get("content-type", "")
        return value.partition(";")[0].strip().lower()

    @property
    def is_html(self) -> bool:
        ct = self.content_type
        if ct:
            return ct in _HTML_TYPES
        return self.body[:512].lstrip().lower().startswith((b"<!doctype html", b"<html"))

    @property
    def encoding(self) -> str:
        """BOM, else the Content-Type charset, else `<meta charset>`, else UTF-8 when the body decodes as
        UTF-8, else what charset-normalizer detects (windows-1252, the HTML standard's fallback, when it finds
        nothing, or when its choice also reads the page as Latin script and windows-1252 reads it nearly as well)."""
        if self._encoding is None:
            self._encoding = self._sniff_encoding()
        return self._encoding

    def _sniff_encoding(self) -> str:
        body = self.body
        if body.startswith(b"\xef\xbb\xbf"):
            return "utf-8-sig"
        if body.startswith((b"\xff\xfe", b"\xfe\xff")):
            return "utf-16"
        ct = self.headers.get("content-type", "")
        if "charset=" in ct:
            return ct.split("charset=", 1)[1].split(";", 1)[0].strip().strip("\"'") or "utf-8"
        m = _META_CHARSET_RE.search(self.body[:4096])
        if m:
            return m.group(1).decode("ascii", "replace")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return _guess_legacy_encoding(body)
        return "utf-8"

    @property
    def text(self) -> str:
        if self._text is None:
            try:
                self._text = self.body.decode(self.encoding, errors="replace")
            except LookupError:
                self._text = self.body.decode("utf-8", errors="replace")
        return self._text

    @property
    def html(self) -> HTMLParser:
        """The selectolax tree of the body, parsed once and shared by all stages."""
        if self._html is None:
            from selectolax.lexbor import LexborHTMLParser as HTMLParser

            _check_parse_cost(self.body)
            self._html = HTMLParser(self.body) if self.encoding.lower() in ("utf-8", "utf8") else HTMLParser(self.text)
        return self._html

    def json(self) -> Any:
        """The body parsed as JSON, parsed once and shared by all stages; ValueError when it is not JSON."""
        if self._json is _UNPARSED:
            import orjson

            try:
                self._json = orjson.loads(self.body)
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                self._json = exc
        if isinstance(self._json, ValueError):
            raise self._json
        return self._json

    def drop_parsed(self) -> None:
        """Free the parsed tree and the decoded text (about a megabyte for an ordinary HTML page); `html` and
        `text` build them again if read later. The engine calls it after the stages, before waiting on the
        frontier: many pages waiting on a round trip (a shared frontier's push) must not hold their trees."""
        self._html = None
        self._text = None

    @property
    def record_count(self) -> int:
        """Records this page writes: one, or one per element of `items`."""
        return 1 if self.items is None else len(self.items)

    def follow(self, url: str, *, priority: int = 0, meta: dict[str, Any] | None = None) -> None:
        """Queue `url` (relative to this page, resolved as a browser would) as a new request one level deeper;
        a URL that is not a valid http(s) URL is ignored."""
        absolute = join_url(self.url, url)
        if absolute is not None:
            self.requests.append(Request(url=absolute, depth=self.depth + 1, priority=priority, referer=self.url,
                                         meta=meta, host=host_key(absolute), fingerprint=fingerprint(absolute)))

    def __repr__(self) -> str:
        return f"<Page {self.status} {self.url}>"


# The HTML parser's time grows with the square of the element nesting (each end tag searches the stack of
# open elements): 20,000 nested <div>s take a second, 100,000 half a minute. Browsers cap the tree depth
# (Chromium at 512). A page is scanned only when it has many end tags; real pages nest a few dozen deep.
_SCAN_END_TAGS = 20_000
MAX_HTML_DEPTH = 2_000
# The parser's tree costs ~0.4 KB per element whatever the stages take from it (a 25 MB page of a million
# links: ~430 MB), so the element count bounds a page's memory where http.max_body cannot. Large real pages
# hold tens of thousands (the Python docs' one-page contents: ~49,000 elements in 2.5 MB).
MAX_HTML_TAGS = 200_000
_TAG = re.compile(rb"<(/?)([A-Za-z][A-Za-z0-9-]*)[^>]*?(/?)>")
_VOID = frozenset(b"area base br col embed hr img input link meta param source track wbr".split())


def _check_parse_cost(body: bytes) -> None:
    """Refuse a document the parser would spend minutes (nested deeper than MAX_HTML_DEPTH) or hundreds of MB
    (more than MAX_HTML_TAGS start tags) on, before it is parsed."""
    if len(body) < 2 * _SCAN_END_TAGS:
        return  # too short for either check to fire (an end tag is 2 bytes at least): spares a pass over it
    end_tags = body.count(b"</")
    # Counted only on a body long enough to hold that many tags (`<a>` is 3 bytes): one more pass over it.
    if len(body) > 3 * MAX_HTML_TAGS and body.count(b"<") - end_tags > MAX_HTML_TAGS:
        raise FetchError(f"HTML with more than {MAX_HTML_TAGS:,} tags: not parsed", kind="html_too_large")
    if end_tags < _SCAN_END_TAGS or not _may_nest_deeper(body, MAX_HTML_DEPTH):
        return
    depth = deepest = 0
    for m in _TAG.finditer(body):
        if m.group(1):
            depth = max(0, depth - 1)
        elif not m.group(3) and m.group(2).lower() not in _VOID:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_HTML_DEPTH:
                    raise FetchError(f"HTML nested more than {MAX_HTML_DEPTH} elements deep: not parsed",
                                     kind="html_too_deep")


_BOUND_CHUNK = 2048


def _may_nest_deeper(body: bytes, limit: int) -> bool:
    """False when `body` surely nests at most `limit` elements deep, from two byte counts per 2 KB chunk.

    The depth before a chunk is at most the opens minus the closes of the chunks before it (every `<` that does
    not start `</` counted as an open: void elements, comments and a tag cut by a chunk's edge only raise the
    bound), and within a chunk it grows by at most that chunk's opens. Real pages stay far under the limit, so
    the exact scan (a Python regex loop over every tag: ~20% of a crawl's CPU on the Python docs) runs only
    for documents that may really be that deep."""
    running = 0
    count = body.count
    for start in range(0, len(body), _BOUND_CHUNK):
        end = start + _BOUND_CHUNK
        closes = count(b"</", start, end)
        opens = count(b"<", start, end) - closes
        if running + opens > limit:
            return True
        running = max(0, running + opens - closes)
    return False

