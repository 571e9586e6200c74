"""The in-memory frontier: per-host priority queues visited round-robin, exact dedup. Nothing survives
the process; `state:` (SQLite) and `frontier: redis://` are the persistent backends (see `crawler.frontier.base`)."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from crawler.frontier.base import FrontierBase
from crawler.model.request import Request
from crawler.model.seen import CompactSeenSet

__all__ = ["MemoryFrontier", "SeenSet"]


class SeenSet(CompactSeenSet):
    """Exact set of 64-bit fingerprints in 10-15 bytes each (see `crawler.model.seen`)."""

    __slots__ = ()


class MemoryFrontier(FrontierBase):
    """In-process frontier: per-host priority queues visited round-robin, exact dedup.

    Per-host queues keep `pop_ready` proportional to the number of ready hosts, not the queue length,
    and round-robin keeps one huge host from starving the others.
    """

    def __init__(self) -> None:
        self._seen = SeenSet()
        self._queues: dict[str, list[tuple[int, int, Request]]] = {}
        self._rotation: deque[str] = deque()  # hosts with queued work
        self._counter = itertools.count()
        self._queued = 0
        self._leased = 0

    async def push_many(self, requests: Iterable[Request]) -> int:
        added = 0
        seen_add = self._seen.add
        queues = self._queues
        counter = self._counter
        for req in requests:
            if not req.dont_filter and not seen_add(req.fingerprint):
                continue
            q = queues.get(req.host)
            if q is None:
                q = queues[req.host] = []
                self._rotation.append(req.host)
            # Retried requests (retries > 0) must not lose their place behind fresh links.
            heapq.heappush(q, (-req.priority, next(counter), req))
            added += 1
        self._queued += added
        return added

    async def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        out: list[Request] = []
        rotation = self._rotation
        queues = self._queues
        for _ in range(len(rotation)):
            if len(out) >= limit:
                break
            host = rotation[0]
            rotation.rotate(-1)
            allowance = budget(host)
            if allowance <= 0:
                continue
            q = queues[host]
            take = min(allowance, limit - len(out), len(q))
            for _ in range(take):
                out.append(heapq.heappop(q)[2])
            if not q:
                del queues[host]
                # The host just rotated to the end: remove it from there.
                rotation.pop()
        self._queued -= len(out)
        self._leased += len(out)
        return out

    async def ack(self, requests: Sequence[Request], checkpoint: dict[str, Any] | None = None) -> None:
        self._leased -= len(requests)

    async def checkpoint(self) -> dict[str, Any] | None:
        return None

    async def size(self) -> int:
        return self._queued + self._leased

    @property
    def seen_count(self) -> int:
        return len(self._seen)

