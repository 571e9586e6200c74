"""Every number a person reads, formatted in one place: byte counts, durations, the end-of-crawl summary,
the end-of-download summary, and the list of failures both print."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from crawler.output.stats import Stats

__all__ = ["crawl_summary", "download_summary", "failure_lines", "format_bytes", "format_duration"]


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


def crawl_summary(stats: Stats, *, hosts: int = 10, examples: int = 3) -> str:
    """The end-of-crawl summary: totals, rates, statuses, retries, errors by kind with example URLs, and
    pages per host."""
    elapsed = stats.elapsed
    lines = [
        f"pages {stats.pages:,}  items {stats.items:,}  {format_bytes(stats.bytes)}  elapsed {elapsed:.2f}s  "
        f"{stats.pages_per_second:.1f} pages/s  {format_bytes(stats.bytes / elapsed if elapsed > 0 else 0)}/s",
        f"requests {stats.requests:,}  retries {stats.retries:,}  errors {stats.error_count:,}  "
        f"robots-denied {stats.robots_denied:,}  offsite {stats.offsite:,}  dropped {stats.dropped:,}",
    ]
    if stats.statuses:
        lines.append("statuses  " + "  ".join(f"{k}: {v:,}" for k, v in sorted(stats.statuses.items())))
    if stats.http_versions:
        lines.append("http  " + "  ".join(f"{k}: {v:,}" for k, v in stats.http_versions.most_common()))
    if stats.errors:
        by_kind = [(kind, n, stats.error_examples.get(kind, [])) for kind, n in stats.errors.most_common()]
        lines += failure_lines("errors by kind:", by_kind, examples)
    if stats.hosts:
        top = stats.hosts.most_common(hosts)
        lines.append("pages per host:")
        lines += [f"  {host}: {n:,}" for host, n in top]
        if len(stats.hosts) > hosts:
            lines.append(f"  ... and {len(stats.hosts) - hosts:,} more hosts")
    if stats.interrupted:
        lines.append("interrupted: stopped before the frontier was empty")
    return "\n".join(lines)


def download_summary(done: int, skipped: int, failed: int, received: int, elapsed: float, *,
                     interrupted: bool = False) -> str:  # fmt: skip
    """The end-of-download line: files by outcome, bytes and the average rate."""
    speed = received / elapsed if elapsed > 0 else 0.0
    line = (f"{done} downloaded, {skipped} skipped, {failed} failed; "
            f"{format_bytes(received)} in {elapsed:.1f}s ({format_bytes(speed)}/s)")  # fmt: skip
    return "interrupted: partial files kept for resuming; " + line if interrupted else line
