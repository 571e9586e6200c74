"""The request record that flows through the frontier: what to fetch, how deep, how urgent, from where."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crawler.model.url import canonicalize, fingerprint, host_key

__all__ = ["IDEMPOTENT_METHODS", "Request"]

# RFC 9110 §9.2.2: a request with one of these methods may be sent again (a retry, a reconnect) without a new effect.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclass(slots=True, eq=False)
class Request:
    """One unit of work. `url` is canonical once the request has entered a frontier.

    `fingerprint` and `host` are filled by `Request.make` (or the frontier) so that dedup and
    per-host scheduling never re-parse the URL.
    """

    url: str
    depth: int = 0
    priority: int = 0
    referer: str | None = None
    retries: int = 0
    method: str = "GET"
    host: str = ""
    fingerprint: int = 0
    meta: dict[str, Any] | None = None
    # Backend-specific handle (a row id, a lease token); opaque to the engine.
    token: Any = field(default=None, repr=False)
    dont_filter: bool = False

    @classmethod
    def make(cls, url: str, *, depth: int = 0, priority: int = 0, referer: str | None = None,
             method: str = "GET", meta: dict[str, Any] | None = None, sort_query: bool = False,
             dont_filter: bool = False) -> Request:  # fmt: skip
        """A request for `url`, canonicalised (`crawler.model.url`); ValueError when it is not a valid URL."""
        canon = canonicalize(url, sort_query=sort_query)
        return cls(url=canon, depth=depth, priority=priority, referer=referer, method=method,
                   host=host_key(canon), fingerprint=fingerprint(canon), meta=meta,
                   dont_filter=dont_filter)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form for persistent backends (the token stays behind)."""
        d: dict[str, Any] = {"url": self.url, "depth": self.depth}
        if self.priority:
            d["priority"] = self.priority
        if self.referer:
            d["referer"] = self.referer
        if self.retries:
            d["retries"] = self.retries
        if self.method != "GET":
            d["method"] = self.method
        if self.meta:
            d["meta"] = self.meta
        if self.dont_filter:
            d["dont_filter"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Request:
        url = d["url"]
        return cls(url=url, depth=d.get("depth", 0), priority=d.get("priority", 0), referer=d.get("referer"),
                   retries=d.get("retries", 0), method=d.get("method", "GET"), host=host_key(url),
                   fingerprint=fingerprint(url), meta=d.get("meta"), dont_filter=d.get("dont_filter", False))  # fmt: skip
