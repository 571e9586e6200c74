"""Showing a running crawl: a rich live panel on a terminal, a plain log line every few seconds otherwise
(CI, pipes, files), and the final summary both print.

It only reads: the crawler's `stats`, `in_flight`, `retries_waiting` and the frontier's `size()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import deque
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal

from crawler.output.report import format_bytes, format_duration
from crawler.output.stats import Stats

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from crawler import Crawler

__all__ = ["CrawlProgress", "ProgressMode", "choose_mode"]

log = logging.getLogger("crawler.progress")

ProgressMode = Literal["live", "plain", "off"]
_RATE_WINDOW = 5.0  # seconds of samples behind the "now" rates
_LIVE_REFRESH = 0.5


def choose_mode(requested: str = "auto", stream: IO[str] | None = None) -> ProgressMode:
    """`auto` means live on a terminal (and TERM is not `dumb`), plain log lines otherwise."""
    if requested in ("live", "plain", "off"):
        return requested  # type: ignore[return-value]
    stream = stream or sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return "live" if tty and os.environ.get("TERM", "") != "dumb" else "plain"


class _Snapshot:
    __slots__ = (
        "bytes",
        "errors",
        "in_flight",
        "items",
        "pages",
        "queued",
        "retries",
        "retries_waiting",
        "t",
    )

    def __init__(self, stats: Stats, queued: int, in_flight: int, retries_waiting: int) -> None:
        self.t = time.monotonic()
        self.pages = stats.pages
        self.items = stats.items
        self.bytes = stats.bytes
        self.retries = stats.retries
        self.errors = stats.error_count
        self.queued = queued
        self.in_flight = in_flight
        self.retries_waiting = retries_waiting


class CrawlProgress:
    """`async with CrawlProgress(crawler, mode="live"): await crawler.run()`.

    `interval` is the seconds between plain log lines (the job's `log_every`); the live panel refreshes
    twice a second. Rates are over the last few seconds, so a stall shows at once."""

    def __init__(self, crawler: Crawler, *, mode: ProgressMode = "plain", interval: float = 5.0,
                 console: Console | None = None) -> None:  # fmt: skip
        self.crawler = crawler
        self.mode = mode
        self.interval = interval
        self._console = console
        self._samples: deque[_Snapshot] = deque()
        self._task: asyncio.Task[None] | None = None
        self._live: Any = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    async def __aenter__(self) -> CrawlProgress:
        if self.mode == "live":
            from rich.live import Live

            self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=True)
            self._live.start()
        if self.mode != "off":
            self._task = asyncio.create_task(self._run(), name="crawler-progress")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._live is not None:
            self._live.stop()
            self._live = None

    async def _run(self) -> None:
        period = _LIVE_REFRESH if self.mode == "live" else self.interval
        while True:
            await asyncio.sleep(period)
            await self.sample()
            if self._live is not None:
                self._live.update(self.render())
            else:
                log.info("%s", self.line())

    async def sample(self) -> _Snapshot:
        crawler = self.crawler
        queued = 0
        with contextlib.suppress(Exception):  # the frontier may be closing under us
            queued = max(0, await crawler.frontier.size() - crawler.in_flight)
        snap = _Snapshot(crawler.stats, queued, crawler.in_flight, crawler.retries_waiting)
        self._samples.append(snap)
        while len(self._samples) > 2 and snap.t - self._samples[0].t > _RATE_WINDOW:
            self._samples.popleft()
        return snap

    def rates(self) -> tuple[float, float]:
        """(pages/s, bytes/s) over the last few seconds (overall rates until there are two samples)."""
        if len(self._samples) >= 2:
            first, last = self._samples[0], self._samples[-1]
            dt = last.t - first.t
            if dt > 0:
                return (last.pages - first.pages) / dt, (last.bytes - first.bytes) / dt
        stats = self.crawler.stats
        elapsed = stats.elapsed or 1.0
        return stats.pages / elapsed, stats.bytes / elapsed

    def line(self) -> str:
        """One plain progress line (for logs)."""
        stats = self.crawler.stats
        snap = self._samples[-1] if self._samples else None
        pages_s, bytes_s = self.rates()
        parts = [
            f"pages {stats.pages:,} ({pages_s:.1f}/s)",
            f"queued {snap.queued if snap else 0:,}",
            f"in-flight {self.crawler.in_flight}",
            f"items {stats.items:,}",
            f"{format_bytes(stats.bytes)} ({format_bytes(bytes_s)}/s)",
            f"retries {stats.retries:,}",
            f"errors {stats.error_count:,}",
        ]
        if stats.errors:
            parts.append("[" + " ".join(f"{k}={v}" for k, v in stats.errors.most_common(4)) + "]")
        return "  ".join(parts)

    def render(self) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        crawler = self.crawler
        stats = crawler.stats
        snap = self._samples[-1] if self._samples else None
        pages_s, bytes_s = self.rates()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", justify="right")
        grid.add_column()
        grid.add_row("crawl", Text(f"{crawler.job.name}   elapsed {format_duration(stats.elapsed)}"))
        grid.add_row("pages", Text(f"{stats.pages:,} done   {snap.queued if snap else 0:,} queued   "
                                   f"{crawler.in_flight} in flight   {pages_s:,.1f} pages/s"))  # fmt: skip
        grid.add_row(
            "data", Text(f"{stats.items:,} items   {format_bytes(stats.bytes)}   {format_bytes(bytes_s)}/s")
        )
        grid.add_row("retries", Text(f"{stats.retries:,}   ({crawler.retries_waiting} waiting)"))
        errors = Text(f"{stats.error_count:,}")
        if stats.errors:
            errors.append(
                "   " + "   ".join(f"{k} {v:,}" for k, v in stats.errors.most_common(5)), style="red"
            )
        grid.add_row("errors", errors)
        if stats.hosts:
            grid.add_row("top hosts", Text("   ".join(f"{h} {n:,}" for h, n in stats.hosts.most_common(5))))
        return grid
