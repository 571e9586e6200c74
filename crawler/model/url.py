"""URL canonicalisation and fingerprints: the identity the frontier dedups on.

Canonical form: lowercase scheme and host, default port dropped, fragment dropped, percent-encoding
normalised (unreserved characters decoded, escapes upper-cased), empty path -> "/", query order kept
unless sorting is asked for. A fingerprint is the first 8 bytes of BLAKE2b over the canonical URL:
compact (an int), stable across processes (so SQLite and Redis backends can share it).
"""

from __future__ import annotations

import re
from hashlib import blake2b
from urllib.parse import urlsplit

__all__ = ["canonicalize", "fingerprint", "host_key"]

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _normalise_escape(m: re.Match[str]) -> str:
    code = int(m.group(1), 16)
    if code in _UNRESERVED:
        return chr(code)
    return "%" + m.group(1).upper()


def _normalise_escapes(part: str) -> str:
    return _ESCAPE_RE.sub(_normalise_escape, part) if "%" in part else part


def canonicalize(url: str, *, sort_query: bool = False) -> str:
    """Return the canonical form of an absolute URL (see the module docstring)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc_prefix = userinfo + "@"
    else:
        hostport, netloc_prefix = netloc, ""
    hostport = hostport.lower()
    if hostport.endswith("]") or ":" not in hostport:
        host, port = hostport, ""
    else:
        host, _, port = hostport.rpartition(":")
    if port == _DEFAULT_PORTS.get(scheme) or port == "":
        netloc = netloc_prefix + host
    else:
        netloc = f"{netloc_prefix}{host}:{port}"
    if host.endswith("."):
        netloc = netloc.replace(host, host.rstrip("."), 1)
    path = _normalise_escapes(parts.path) or "/"
    query = parts.query
    if query:
        query = _normalise_escapes(query)
        if sort_query:
            query = "&".join(sorted(query.split("&")))
        return f"{scheme}://{netloc}{path}?{query}"
    return f"{scheme}://{netloc}{path}"


def fingerprint(canonical_url: str) -> int:
    """A 64-bit fingerprint of an already canonical URL."""
    return int.from_bytes(blake2b(canonical_url.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def host_key(canonical_url: str) -> str:
    """The politeness key of a canonical URL: `host[:port]`, as per-host limits are configured."""
    start = canonical_url.find("://") + 3
    end = canonical_url.find("/", start)
    netloc = canonical_url[start:] if end < 0 else canonical_url[start:end]
    return netloc.rpartition("@")[2]
