"""What every file of a download run shares: the settings, the client and writer threads, politeness
(host gate, retry policy), the name allocator, the bandwidth cap, the live transfer counters, and the
WARC archive (`--warc`).

`Downloader` builds one `RunContext`; each file job reads it. Nothing else of the driver is visible to a
file job.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import httpx

from crawler.downloader.byte_rate import ByteRate
from crawler.downloader.results import ActiveFile
from crawler.fetch.names import NameAllocator
from crawler.politeness.limiter import HostGate
from crawler.politeness.retry import RetryPolicy

if TYPE_CHECKING:
    from crawler.output.warc import WarcArchive  # loaded only for `--warc` (start-up time)

__all__ = ["COLLISIONS", "Collision", "LiveTransfers", "RunContext", "Settings"]

Collision = Literal["rename", "overwrite", "fail", "skip"]
COLLISIONS: tuple[Collision, ...] = ("rename", "overwrite", "fail", "skip")

# All write batches in memory at once (filling + being written) stay under about this, whatever -j and -x.
_BUFFER_BUDGET = 64 << 20
_MIN_BATCH = 256 << 10


@dataclass(frozen=True, slots=True)
class Settings:
    """A run's options, validated by `Downloader`."""

    segments: int = 1
    collision: Collision = "rename"
    resume: bool = True
    max_size: int | None = None
    min_segment_size: int = 4 << 20
    batch_size: int = 4 << 20
    flush_interval: float = 1.0
    headers: tuple[tuple[str, str], ...] = ()
    max_time: float | None = None  # seconds per entry, mirrors included
    speed_limit: int | None = None  # bytes/s below which, for `speed_time` seconds, a URL fails
    speed_time: float = 30.0
    # Redirects (`crawler.http.redirects`): hops per request, headers a cross-origin hop may keep, the
    # longest target followed, and the configured headers (lower case, never User-Agent) a hop drops.
    max_redirects: int = 10
    forward_headers: tuple[str, ...] = ()
    max_url_length: int = 8192
    user_headers: frozenset[str] = frozenset()


@dataclass(slots=True)
class LiveTransfers:
    """Counters the streams update and progress snapshots read."""

    bytes_received: int = 0
    streams: int = 0
    active: dict[int, ActiveFile] = field(default_factory=dict)
    batch_size: int = 4 << 20

    def batch_target(self) -> int:
        """Bytes per write batch: the configured size, shrunk when many streams share the buffer budget."""
        per_stream = _BUFFER_BUDGET // (2 * max(1, self.streams))
        return max(_MIN_BATCH, min(self.batch_size, per_stream))


@dataclass(frozen=True, slots=True)
class RunContext:
    settings: Settings
    client: httpx.AsyncClient
    executor: Executor
    gate: HostGate
    policy: RetryPolicy
    names: NameAllocator
    byte_rate: ByteRate | None
    live: LiveTransfers
    archive: WarcArchive | None = None
