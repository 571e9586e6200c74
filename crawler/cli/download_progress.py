"""Showing a download run: a rich live display on a terminal (overall bytes, speed, ETA, files done/failed,
the active files), and a plain line every few seconds otherwise (CI, pipes, log files); both are fed
`DownloadProgress` snapshots by the downloader."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import IO, TYPE_CHECKING

from crawler.downloader.results import DownloadProgress
from crawler.output.report import format_bytes, format_duration

if TYPE_CHECKING:  # rich loads only for the live display: plain lines (not a terminal) never need it
    from rich.console import RenderableType
    from rich.live import Live

__all__ = ["PlainProgress", "ProgressDisplay", "progress_line", "render"]

_SHOWN_ACTIVE = 8


def render(p: DownloadProgress) -> RenderableType:
    """One overall line (bar over the active files' known sizes, bytes, speed, ETA, file counts), then the
    largest active files."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    total_known = sum(a.total for a in p.active if a.total is not None)
    done_active = sum(a.done for a in p.active if a.total is not None)
    files = f"{p.files_done} done"
    if p.files_skipped:
        files += f", {p.files_skipped} skipped"
    if p.files_failed:
        files += f", {p.files_failed} failed"
    if p.files_total is not None:
        files += f" of {p.files_total}"
    head = Table.grid(padding=(0, 1))
    head.add_column(width=30)
    head.add_column(no_wrap=True)
    if p.files_total:  # a known list: the bar counts files; otherwise the active files' bytes
        finished = p.files_done + p.files_skipped + p.files_failed
        bar = ProgressBar(total=p.files_total, completed=finished, width=30)
    else:
        bar = ProgressBar(total=total_known or None, completed=min(done_active, total_known), width=30)
    head.add_row(bar, Text.assemble((format_bytes(p.bytes_received), "bold"),
                                    f"  {format_bytes(p.speed)}/s  ETA {format_duration(p.eta)}  ",
                                    (files, "cyan"), f"  {len(p.active)} active"))  # fmt: skip
    table = Table.grid(padding=(0, 1))
    table.add_column(width=30)
    table.add_column(no_wrap=True, max_width=48, overflow="ellipsis")
    table.add_column(no_wrap=True, justify="right")
    for a in sorted(p.active, key=lambda a: -a.done)[:_SHOWN_ACTIVE]:
        size = f"{format_bytes(a.done)} / {format_bytes(a.total)}" if a.total else format_bytes(a.done)
        if a.segments > 1:
            size += f"  x{a.segments}"
        table.add_row(ProgressBar(total=a.total or None, completed=a.done, width=30), a.name or a.url, size)
    parts: list[RenderableType] = [head, table]
    more = len(p.active) - _SHOWN_ACTIVE
    if more > 0:
        parts.append(Text(f"... and {more} more", style="dim"))
    return Group(*parts)


def _eta(p: DownloadProgress) -> float | None:
    """The active files' remaining bytes at the current speed; with files still to start, the time per
    finished file so far times the files left (whichever is longer)."""
    finished = p.files_done + p.files_skipped + p.files_failed
    if p.files_total is None or finished + len(p.active) >= p.files_total:
        return p.eta
    if not finished:
        return None
    by_files = p.elapsed / finished * (p.files_total - finished)
    return by_files if p.eta is None else max(by_files, p.eta)


def progress_line(p: DownloadProgress) -> str:
    """`files 3/10 (1 skipped, 1 failed)  45.2 MB  12.3 MB/s  ETA 0:05  2 active`, for logs."""
    finished = p.files_done + p.files_skipped + p.files_failed
    files = f"files {finished}/{p.files_total if p.files_total is not None else '?'}"
    extra = [f"{n} {what}" for n, what in ((p.files_skipped, "skipped"), (p.files_failed, "failed")) if n]
    if extra:
        files += f" ({', '.join(extra)})"
    return (f"{files}  {format_bytes(p.bytes_received)}  {format_bytes(p.speed)}/s  "
            f"ETA {format_duration(_eta(p))}  {len(p.active)} active")  # fmt: skip


class PlainProgress:
    """Writes `progress_line` for each snapshot it is given (the downloader calls it every interval)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr

    def __enter__(self) -> PlainProgress:
        return self

    def __call__(self, progress: DownloadProgress) -> None:
        if not progress.finished:  # the run's summary line follows
            print(progress_line(progress), file=self.stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        return None


class ProgressDisplay:
    """A live view on stderr, refreshed from snapshots; a no-op when stderr is not a terminal."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr)
        self.enabled = self.console.is_terminal
        self._live: Live | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            from rich.live import Live
            from rich.text import Text

            self._live = Live(Text(""), console=self.console, refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __call__(self, progress: DownloadProgress) -> None:
        if self._live is not None:
            self._live.update(render(progress))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
