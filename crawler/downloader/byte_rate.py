"""`--limit-rate`: one bandwidth cap shared by every stream of a run."""

from __future__ import annotations

import asyncio
import time

__all__ = ["ByteRate"]


class ByteRate:
    """A virtual schedule: each chunk books `n / rate` seconds after the previous booking; a stream
    sleeps when it runs more than a small burst ahead of it."""

    _BURST = 0.05  # seconds of transfer allowed ahead of the schedule

    def __init__(self, bytes_per_second: float) -> None:
        if not bytes_per_second > 0:
            raise ValueError("the rate must be positive")
        self.rate = bytes_per_second
        self._next = 0.0

    async def consume(self, n: int) -> None:
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + n / self.rate
        delay = self._next - now - self._BURST
        if delay > 0:
            await asyncio.sleep(delay)
