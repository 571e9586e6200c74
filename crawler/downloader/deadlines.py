"""How long one entry may take: a total deadline (`--max-time`, on by default) and curl's low-speed
limit (`--speed-limit BYTES --speed-time SECONDS`).

Both are `asyncio.Timeout`s around the entry, so whatever it is waiting for (a slot on the host, a
backoff, a trickling body) ends when they expire. `SpeedFloor` keeps moving its timeout forward while
enough bytes arrive, and only while a body is streaming: waiting out a Retry-After is not slowness.
"""

from __future__ import annotations

import asyncio

__all__ = ["DEFAULT_MAX_TIME", "SpeedFloor"]

# A bound on any one entry, so no server can keep a run going forever; generous enough for a 1 TB file
# at 12 MB/s. `--max-time 0` (or max_time=None) turns it off.
DEFAULT_MAX_TIME = 24 * 3600.0


class SpeedFloor:
    """Expires `timeout` when, while at least one body of the entry streams, fewer than
    `bytes_per_second * window` bytes arrive within `window` seconds (the windows restart each time
    that many have arrived: curl's rule, checked per window rather than per second)."""

    __slots__ = ("_got", "_loop", "_need", "_streams", "_timeout", "bytes_per_second", "window")

    def __init__(self, timeout: asyncio.Timeout, bytes_per_second: int, window: float) -> None:
        self._timeout = timeout
        self.bytes_per_second = bytes_per_second
        self.window = window
        self._need = max(1, int(bytes_per_second * window))
        self._got = 0
        self._streams = 0
        self._loop = asyncio.get_running_loop()

    def stream_started(self) -> None:
        self._streams += 1
        if self._streams == 1:
            self._restart()

    def stream_ended(self) -> None:
        self._streams -= 1
        if self._streams == 0 and not self._timeout.expired():  # (streams end while it fires, too)
            self._timeout.reschedule(None)

    def add(self, n: int) -> None:
        self._got += n
        if self._got >= self._need:
            self._restart()

    def _restart(self) -> None:
        self._got = 0
        if not self._timeout.expired():
            self._timeout.reschedule(self._loop.time() + self.window)
