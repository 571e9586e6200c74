"""Crawl counters: what a summary, `stats.json` and a progress display read."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from crawler.output.report import failure_lines, format_bytes

__all__ = ["Stats"]

_EXAMPLES_PER_KIND = 5


@dataclass
class Stats:
    pages: int = 0
    items: int = 0
    bytes: int = 0
    requests: int = 0
    retries: int = 0
    redirects: int = 0  # 3xx answers followed (each target is a request of its own)
    dropped: int = 0
    robots_denied: int = 0
    offsite: int = 0
    links_capped: int = 0  # pages with more links than extract.max_links
    # 304 answers to a recrawl's conditional requests: unchanged pages, no item written.
    not_modified: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, list[str]] = field(default_factory=dict)
    # URLs not fetched by a trap defence (url_too_long, host_budget, ...), by kind: not errors.
    skipped: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    http_versions: Counter[str] = field(default_factory=Counter)
    # Requests per second each throttling host ended at (the adaptive rate learnt from its 429/503s).
    rates: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    stalled: bool = False

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def pages_per_second(self) -> float:
        e = self.elapsed
        return self.pages / e if e > 0 else 0.0

    @property
    def outcomes(self) -> int:
        """URLs that reached a final outcome: requests, minus those retried and those that redirected (a
        redirect's outcome is its target's)."""
        return self.requests - self.retries - self.redirects

    @property
    def error_rate(self) -> float:
        """Failed URLs / URLs with a final outcome (what `max_error_rate` is compared with)."""
        outcomes = self.outcomes
        return self.error_count / outcomes if outcomes > 0 else (1.0 if self.error_count else 0.0)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def error(self, kind: str, url: str) -> None:
        self.errors[kind] += 1
        examples = self.error_examples.setdefault(kind, [])
        if len(examples) < _EXAMPLES_PER_KIND:
            examples.append(url)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "items": self.items,
            "bytes": self.bytes,
            "requests": self.requests,
            "retries": self.retries,
            "redirects": self.redirects,
            "dropped": self.dropped,
            "robots_denied": self.robots_denied,
            "offsite": self.offsite,
            "links_capped": self.links_capped,
            "not_modified": self.not_modified,
            "elapsed": round(self.elapsed, 3),
            "pages_per_second": round(self.pages_per_second, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "error_examples": self.error_examples,
            "skipped": dict(self.skipped),
            "hosts": dict(self.hosts.most_common()),
            "http_versions": dict(self.http_versions),
            "rates": self.rates,
            "interrupted": self.interrupted,
            "stalled": self.stalled,
        }

    def merge(self, other: dict[str, Any]) -> None:
        """Add the counters of another process's `as_dict()` (multi-process crawls)."""
        for name in ("pages", "items", "bytes", "requests", "retries", "redirects", "dropped", "robots_denied",
                     "offsite", "links_capped", "not_modified"):
            setattr(self, name, getattr(self, name) + int(other.get(name, 0)))
        self.statuses.update({int(k): v for k, v in other.get("statuses", {}).items()})
        self.errors.update(other.get("errors", {}))
        self.skipped.update(other.get("skipped", {}))
        self.hosts.update(other.get("hosts", {}))
        self.http_versions.update(other.get("http_versions", {}))
        for host, rate in other.get("rates", {}).items():  # each process learnt its share of the host's rate
            self.rates[host] = round(self.rates.get(host, 0.0) + float(rate), 2)
        for kind, urls in other.get("error_examples", {}).items():
            examples = self.error_examples.setdefault(kind, [])
            examples.extend(urls[: _EXAMPLES_PER_KIND - len(examples)])
        self.interrupted = self.interrupted or bool(other.get("interrupted"))
        self.stalled = self.stalled or bool(other.get("stalled"))

    def summary(self, *, hosts: int = 10, examples: int = 3) -> str:
        """The end-of-crawl summary: totals, rates, statuses, retries, errors by kind with example URLs, and
        pages per host."""
        elapsed = self.elapsed
        lines = [
            f"pages {self.pages:,}  items {self.items:,}  {format_bytes(self.bytes)}  elapsed {elapsed:.2f}s  "
            f"{self.pages_per_second:.1f} pages/s  {format_bytes(self.bytes / elapsed if elapsed > 0 else 0)}/s",
            f"requests {self.requests:,}  retries {self.retries:,}  redirects {self.redirects:,}  "
            f"errors {self.error_count:,}  "
            f"robots-denied {self.robots_denied:,}  offsite {self.offsite:,}  dropped {self.dropped:,}",
        ]
        if self.not_modified:
            lines[1] += f"  not-modified {self.not_modified:,}"
        if self.statuses:
            lines.append("statuses  " + "  ".join(f"{k}: {v:,}" for k, v in sorted(self.statuses.items())))
        if self.http_versions:
            lines.append("http  " + "  ".join(f"{k}: {v:,}" for k, v in self.http_versions.most_common()))
        if self.skipped:
            lines.append("skipped (trap defences)  " + "  ".join(f"{k}: {v:,}" for k, v in self.skipped.most_common()))
        if self.errors:
            by_kind = [(kind, n, self.error_examples.get(kind, [])) for kind, n in self.errors.most_common()]
            lines += failure_lines("errors by kind:", by_kind, examples)
        if self.hosts:
            top = self.hosts.most_common(hosts)
            lines.append("pages per host:")
            lines += [f"  {host}: {n:,}" for host, n in top]
            if len(self.hosts) > hosts:
                lines.append(f"  ... and {len(self.hosts) - hosts:,} more hosts")
        if self.rates:
            lines.append("learnt rates  " + "  ".join(f"{h}: {r:g}/s" for h, r in sorted(self.rates.items())[:hosts]))
        if self.stalled:
            lines.append("stalled: no request finished for stall_timeout seconds; stopped")
        if self.interrupted:
            lines.append("interrupted: stopped before the frontier was empty")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
