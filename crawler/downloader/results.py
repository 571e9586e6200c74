"""What a download run reports: one `DownloadResult` per entry, and `DownloadProgress` snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.downloader.entries import DownloadEntry

__all__ = ["ActiveFile", "DownloadProgress", "DownloadResult"]


@dataclass(slots=True)
class DownloadResult:
    """`status` is `ok` (downloaded and, if a checksum was given, verified), `skipped` (already there) or
    `failed` (`error` says why; nothing was left under the final name)."""

    url: str
    path: Path | None
    bytes: int
    sha256: str | None
    status: str
    error: str | None = None
    http_status: int | None = None
    resumed_from: int = 0
    segments: int = 0
    elapsed: float = 0.0
    final_url: str | None = None  # the URL that answered, after `redirects` redirects (None: no answer)
    redirects: int = 0
    entry: DownloadEntry | None = field(default=None, repr=False, compare=False)
    index: int = field(default=-1, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "path": None if self.path is None else str(self.path), "bytes": self.bytes,
                "sha256": self.sha256, "status": self.status, "error": self.error, "http_status": self.http_status,
                "resumed_from": self.resumed_from, "segments": self.segments,
                "elapsed": round(self.elapsed, 3), "final_url": self.final_url,
                "redirects": self.redirects}  # fmt: skip


@dataclass(slots=True)
class ActiveFile:
    """A file being downloaded: bytes on hand (including a resumed prefix) out of `total` (None: unknown)."""

    name: str
    url: str
    done: int = 0
    total: int | None = None
    segments: int = 1


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """A snapshot for progress displays. `bytes_received` counts this run's network bytes; `speed` is
    smoothed bytes/s; `eta` covers the active files (None when some length is unknown)."""

    elapsed: float
    bytes_received: int
    speed: float
    eta: float | None
    files_done: int
    files_skipped: int
    files_failed: int
    files_total: int | None
    active: tuple[ActiveFile, ...]
    finished: bool = False
