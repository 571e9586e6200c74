"""Every number a person reads, formatted in one place: byte counts, durations, the list of failures that
crawls and downloads both print, and the end-of-download summary (the crawl's is `Stats.summary()`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["download_summary", "failure_lines", "format_bytes", "format_duration"]


def format_bytes(n: float) -> str:
    """`1.5 MB`: decimal units, as curl and aria2 print them."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(seconds: float | None) -> str:
    """`m:ss` under an hour, `h:mm:ss` above; `--:--` when unknown (an ETA without a length)."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "--:--"
    s = int(seconds + 0.5)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


def failure_lines(title: str, failures: Iterable[tuple[str, int, Sequence[str]]],
                  examples: int | None = 3) -> list[str]:  # fmt: skip
    """`title`, then one line per failure kind (`kind: count`) with the URLs under it: up to `examples` of
    them (`e.g. URL`), or every one when `examples` is None."""
    lines = [title]
    for kind, count, samples in failures:
        lines.append(f"  {kind}: {count:,}")
        if examples is None:
            lines += [f"      {sample}" for sample in samples]
        else:
            lines += [f"      e.g. {sample}" for sample in samples[:examples]]
    return lines


def download_summary(done: int, skipped: int, failed: int, received: int, elapsed: float, *,
                     interrupted: bool = False) -> str:  # fmt: skip
    """The end-of-download line: files by outcome, bytes and the average rate."""
    speed = received / elapsed if elapsed > 0 else 0.0
    line = (f"{done} downloaded, {skipped} skipped, {failed} failed; "
            f"{format_bytes(received)} in {elapsed:.1f}s ({format_bytes(speed)}/s)")  # fmt: skip
    return "interrupted: partial files kept for resuming; " + line if interrupted else line
