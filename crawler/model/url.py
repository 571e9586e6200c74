"""URL canonicalisation and fingerprints: the identity the frontier dedups on.

Parsing is the WHATWG URL Standard's, through ada (`can_ada`, a C++ parser: ~0.5 µs per URL from Python, ~10x
`urllib.parse.urljoin`). So, as browsers see it: scheme and host lower-cased, IDNA hosts in punycode, IPv4 in
any spelling (`0x7f.1`) written as dotted decimal, dot segments (`/a/./b/../c`, `%2e%2E` too) removed, `\\` read
as `/`, the default port dropped, an empty path written `/`, spaces and non-ASCII percent-encoded.

On top of WHATWG, which keeps these apart, the canonical form merges spellings that name one resource:
- percent-encoding normalised in the path and query: escapes of unreserved characters (`%7E`, `%41`) decoded,
  every other escape's hex upper-cased (`%c3%a9` -> `%C3%A9`);
- the fragment dropped (`#`, `#top`): it never reaches the server;
- an empty query dropped (`/x?` -> `/x`): servers answer both alike, and pages link to both spellings;
- a trailing dot on the host dropped (`example.com.` -> `example.com`);
- query parameters sorted when asked (`sort_query`, the job's default unless `scope.keep_query_order`).

`canonicalize(canonicalize(u)) == canonicalize(u)` for every URL it accepts (a property test checks it).

Resolving links: `BaseURL(page_url).resolve(href)` makes an href absolute by string concatenation against the
base, cut once per page (origin, directory, base without query); the WHATWG parser in `canonicalize` then removes
dot segments, which is what resolving against a base does (a property test checks it against ada's own join).
`join_url(base, href)` does both for one link.

A fingerprint is the first 8 bytes of BLAKE2b over the canonical URL: compact (an int), stable across
processes and runs (so the sharded, SQLite and Redis frontiers agree on it).
"""

from __future__ import annotations

import re
from hashlib import blake2b

from can_ada import parse as _ada_parse

__all__ = ["BaseURL", "canonicalize", "clean_href", "fingerprint", "host_key", "join_url"]

# WHATWG strips leading and trailing C0 controls and spaces from a URL string (not NBSP, unlike str.strip()),
# and removes every ASCII tab and newline inside it, before reading it.
_C0_SPACE = "".join(map(chr, range(0x21)))
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_HTTP_SCHEMES = ("http", "https")
_RELATIVE_STARTS = frozenset("/\\?#")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# "%7e" -> "~", "%2f" -> "%2F": one entry per possible escape, so normalising one is a dict lookup.
_ESCAPES = {f"{c:02x}": (chr(c) if c in _UNRESERVED else f"%{c:02X}") for c in range(256)}
_ESCAPES.update({k.upper(): v for k, v in _ESCAPES.items()})


def _normalise_escape(m: re.Match[str]) -> str:
    hex_digits = m.group(1)
    return _ESCAPES.get(hex_digits) or _ESCAPES[hex_digits.lower()]


def canonicalize(url: str, *, sort_query: bool = False) -> str:
    """The canonical form of an absolute URL (see the module docstring). ValueError when it is not a URL."""
    try:
        href: str = _ada_parse(url).href
    except ValueError:
        raise ValueError(f"not a valid URL: {url[:200]!r}") from None
    hash_at = href.find("#")
    if hash_at >= 0:
        href = href[:hash_at]
    if href.endswith("?") and href.find("?") == len(href) - 1:  # an empty query, not a query of "?"
        href = href[:-1]
    scheme_end = href.find("://")
    if scheme_end < 0:  # not hierarchical (mailto:, javascript:): nothing more to normalise
        return href
    path_at = href.find("/", scheme_end + 3)
    if path_at < 0:
        return href
    authority = href[:path_at]
    rest = href[path_at:]
    if authority.endswith(".") or ".:" in authority:
        authority = _strip_host_dot(authority)
    if "%" in rest:
        rest = _ESCAPE_RE.sub(_normalise_escape, rest)
    if sort_query:
        query_at = rest.find("?")
        if query_at >= 0 and "&" in rest:
            rest = rest[: query_at + 1] + "&".join(sorted(rest[query_at + 1 :].split("&")))
    return authority + rest


def _strip_host_dot(authority: str) -> str:
    """`http://example.com.:8080` -> `http://example.com:8080` (a fully qualified name is the same host)."""
    userinfo_at = authority.rfind("@") + 1 or authority.find("://") + 3
    head, hostport = authority[:userinfo_at], authority[userinfo_at:]
    if hostport.startswith("["):
        return authority
    host, colon, port = hostport.partition(":")
    return head + host.rstrip(".") + colon + port


def clean_href(href: str) -> str:
    """What the WHATWG parser reads of an href: outer C0 controls and spaces stripped, tabs and newlines gone."""
    href = href.strip(_C0_SPACE)
    if "\n" in href or "\t" in href or "\r" in href:
        href = href.translate(_TAB_NEWLINE)
    return href


class BaseURL:
    """An absolute http(s) base URL cut into what resolving an href needs, once per page."""

    __slots__ = ("directory", "origin", "scheme", "url", "without_query")

    def __init__(self, url: str) -> None:
        """`url` is canonical (`canonicalize`): it has a path, and no fragment."""
        self.url = url
        self.scheme = url[: url.find(":")].lower()
        authority_end = url.find("/", url.find("://") + 3)
        self.origin = url[:authority_end]
        query_at = url.find("?", authority_end)
        self.without_query = url if query_at < 0 else url[:query_at]
        self.directory = self.without_query[: self.without_query.rfind("/") + 1]

    def resolve(self, href: str) -> str | None:
        """`href` (passed through `clean_href`, not empty) made absolute, not yet canonical; "" for a link to
        this page itself (`#top`), None for a scheme other than http(s)."""
        first = href[0]
        if first in _RELATIVE_STARTS:
            return self._relative(href)
        m = _SCHEME_RE.match(href)
        if m is None:
            return self.directory + href
        scheme = href[: m.end() - 1].lower()
        if scheme not in _HTTP_SCHEMES:
            return None
        rest = href[m.end() :]
        if scheme == self.scheme and rest[:2] != "//":
            # `http:page.html` from an http page is relative (WHATWG's special relative or authority state).
            return self._relative(rest) if rest else self.url
        return href  # absolute; `https:host/x` from an http page is read as https://host/x

    def _relative(self, href: str) -> str:
        first = href[0]
        if first == "/" or first == "\\":
            if href[1:2] in ("/", "\\"):
                return self.scheme + ":" + href  # scheme-relative: //host/path
            return self.origin + href
        if first == "?":
            return self.without_query + href
        if first == "#":
            return ""
        return self.directory + href


def join_url(base: str, href: str, *, sort_query: bool = False) -> str | None:
    """`href` resolved against the absolute http(s) URL `base` and canonicalised; None when the result is not a
    valid http(s) URL. A link to the page itself (empty, `#top`) is the base."""
    href = clean_href(href)
    try:
        base = canonicalize(base)
        absolute = BaseURL(base).resolve(href) if href else base
        if absolute is None:
            return None
        absolute = absolute or base
        canon = canonicalize(absolute, sort_query=sort_query)
    except ValueError:
        return None
    return canon if canon.startswith(("http://", "https://")) else None


def fingerprint(canonical_url: str) -> int:
    """A 64-bit fingerprint of an already canonical URL."""
    return int.from_bytes(blake2b(canonical_url.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def host_key(canonical_url: str) -> str:
    """The politeness key of a canonical URL: `host[:port]`, as per-host limits are configured."""
    start = canonical_url.find("://") + 3
    end = canonical_url.find("/", start)
    netloc = canonical_url[start:] if end < 0 else canonical_url[start:end]
    return netloc.rpartition("@")[2]
