"""Which URLs a crawl may visit: allowed domains, allow/deny regexes (compiled once), depth; and the trap
defences that keep a crawl out of endless URL spaces (as BUbiNG and Heritrix ship them):

| kind | setting (`scope.`) | refuses |
|---|---|---|
| `url_too_long` | `max_url_length` (2,048) | a URL longer than this |
| `repeated_segments` | `max_repeated_segments` (3) | a path in which one segment occurs more often (`/a/b/a/b/a/b/a/b`) |
| `too_many_params` | `max_query_params` (32) | a query with more parameters |
| `host_budget` | `max_pages_per_host` (off) | a page of a host that already had this many fetched |
| `sitemap_depth` | `max_sitemap_depth` (5) | a sitemap nested deeper in sitemap indexes (`N.xml` -> `N+1.xml` ...) |

`trap()` checks a URL before it is queued, `admit()` counts a page of a host right before it is fetched.
Each kind is logged once per host, the first time it triggers; the engine counts every refusal in
`stats.skipped` under its kind. A refusal is not an error: it does not count toward `max_error_rate`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from crawler.config.job import Job, ScopeConfig
from crawler.model.errors import SKIPPED_KINDS
from crawler.model.url import canonicalize, host_key

__all__ = ["TRAP_KINDS", "Scope"]

log = logging.getLogger("crawler.scope")

TRAP_KINDS = SKIPPED_KINDS
_SETTING = {"url_too_long": "max_url_length", "repeated_segments": "max_repeated_segments",
            "too_many_params": "max_query_params", "host_budget": "max_pages_per_host",
            "sitemap_depth": "max_sitemap_depth"}  # fmt: skip
_NOTED_LIMIT = 100_000  # (host, kind) pairs remembered for logging once; past this, nothing more is logged


def _bare_host(host: str) -> str:
    """`host:port` -> `host` (IPv6 literals keep their brackets)."""
    if host.endswith("]") or ":" not in host:
        return host
    return host.rsplit(":", 1)[0]


class Scope:
    def __init__(self, config: ScopeConfig, start_urls: list[str]) -> None:
        domains = config.allowed_domains or [_bare_host(host_key(canonicalize(u))) for u in start_urls]
        self.config = config
        self._domains = frozenset(domains)
        self._allow = re.compile("|".join(f"(?:{p})" for p in config.allow)) if config.allow else None
        self._deny = re.compile("|".join(f"(?:{p})" for p in config.deny)) if config.deny else None
        self.max_depth = config.max_depth
        # Host -> verdict cache: links repeat the same few hosts, so check each host string once.
        self._host_cache: dict[str, bool] = {}
        self._pages: dict[str, int] = {}  # pages admitted per host, for max_pages_per_host
        self._noted: set[tuple[str, str]] = set()

    @classmethod
    def of_job(cls, job: Job) -> Scope:
        """The job's scope; without `allowed_domains`, the hosts of its start URLs (or sitemaps)."""
        return cls(job.scope, job.start_urls or job.start_sitemaps)

    def host_allowed(self, host: str) -> bool:
        verdict = self._host_cache.get(host)
        if verdict is None:
            name = _bare_host(host)
            verdict = any(name == d or name.endswith("." + d) for d in self._domains) if self._domains else True
            if len(self._host_cache) < 100_000:
                self._host_cache[host] = verdict
        return verdict

    def allows(self, url: str, host: str, depth: int) -> bool:
        """`url` is canonical and `host` its host key."""
        if self.max_depth is not None and depth > self.max_depth:
            return False
        if not self.host_allowed(host):
            return False
        if self._deny is not None and self._deny.search(url):
            return False
        return not (self._allow is not None and not self._allow.search(url))

    # -- trap defences -----------------------------------------------------------------------------

    def trap(self, url: str, host: str, meta: dict[str, Any] | None = None) -> str | None:
        """The trap kind that refuses queueing `url` (canonical; `host` its host key), or None."""
        cfg = self.config
        kind: str | None = None
        if cfg.max_url_length is not None and len(url) > cfg.max_url_length:
            kind = "url_too_long"
        elif cfg.max_query_params is not None and (q := url.find("?")) >= 0 and _params(url, q) > cfg.max_query_params:
            kind = "too_many_params"
        elif cfg.max_repeated_segments is not None and _repeats(url, cfg.max_repeated_segments):
            kind = "repeated_segments"
        elif cfg.max_pages_per_host is not None and self._pages.get(host, 0) >= cfg.max_pages_per_host:
            kind = "host_budget"
        elif (meta and cfg.max_sitemap_depth is not None
              and int(meta.get("sitemap_depth", 0)) > cfg.max_sitemap_depth):  # fmt: skip
            kind = "sitemap_depth"
        if kind is not None:
            self._note(host, kind, url)
        return kind

    def admit(self, host: str) -> bool:
        """Count a page of `host` about to be fetched; False (and logged once) once its budget is spent."""
        budget = self.config.max_pages_per_host
        if budget is None:
            return True
        done = self._pages.get(host, 0)
        if done >= budget:
            self._note(host, "host_budget", "")
            return False
        self._pages[host] = done + 1
        return True

    def _note(self, host: str, kind: str, url: str) -> None:
        key = (host, kind)
        if key in self._noted or len(self._noted) >= _NOTED_LIMIT:
            return
        self._noted.add(key)
        setting = _SETTING[kind]
        example = f" (e.g. {url[:200]}{'...' if len(url) > 200 else ''})" if url else ""
        log.warning("trap defence %s on %s: scope.%s = %s%s; further refusals on this host are counted in the "
                    "stats, not logged", kind, host, setting, getattr(self.config, setting), example)  # fmt: skip


def _params(url: str, query_at: int) -> int:
    return url.count("&", query_at) + 1


def _repeats(url: str, most: int) -> bool:
    """Whether one path segment of `url` occurs more than `most` times."""
    start = url.find("/", url.find("://") + 3)
    if start < 0:
        return False
    end = url.find("?", start)
    path = url[start:] if end < 0 else url[start:end]
    if path.count("/") <= most:
        return False
    segments = [s for s in path.split("/") if s]
    if len(set(segments)) == len(segments):
        return False
    counts: dict[str, int] = {}
    for s in segments:
        n = counts[s] = counts.get(s, 0) + 1
        if n > most:
            return True
    return False
