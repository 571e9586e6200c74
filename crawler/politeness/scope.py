"""Which URLs a crawl may visit: allowed domains, allow/deny regexes (compiled once), depth."""

from __future__ import annotations

import re

from crawler.config.job import Job, ScopeConfig
from crawler.model.url import canonicalize, host_key

__all__ = ["Scope"]


def _bare_host(host: str) -> str:
    """`host:port` -> `host` (IPv6 literals keep their brackets)."""
    if host.endswith("]") or ":" not in host:
        return host
    return host.rsplit(":", 1)[0]


class Scope:
    def __init__(self, config: ScopeConfig, start_urls: list[str]) -> None:
        domains = config.allowed_domains or [_bare_host(host_key(canonicalize(u))) for u in start_urls]
        self._domains = frozenset(domains)
        self._allow = re.compile("|".join(f"(?:{p})" for p in config.allow)) if config.allow else None
        self._deny = re.compile("|".join(f"(?:{p})" for p in config.deny)) if config.deny else None
        self.max_depth = config.max_depth
        # Host -> verdict cache: links repeat the same few hosts, so check each host string once.
        self._host_cache: dict[str, bool] = {}

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
