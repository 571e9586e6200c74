"""The in-memory frontier: per-host queues of packed requests visited round-robin (`HostQueues`), exact dedup
(`CompactSeenSet`). Memory stays bounded: past `memory_queue` queued requests (default 100,000), the rest wait
in a private temporary SQLite file (`SpillStore`) that disappears with the process. Nothing survives the
process; `state:` (SQLite) and `frontier: redis://` are the persistent backends (see `crawler.frontier.base`).

Cost per URL: the seen set's 10-15 bytes, plus 20-60 bytes for each request held in memory; a request on disk
costs no memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from crawler.config.job import DEFAULT_MEMORY_QUEUE
from crawler.frontier.base import FrontierBase
from crawler.frontier.queues import HostQueues
from crawler.frontier.records import Block
from crawler.model.request import Request
from crawler.model.seen import CompactSeenSet

if TYPE_CHECKING:
    from crawler.frontier.spill import SpillStore

__all__ = ["MemoryFrontier", "SeenSet"]

log = logging.getLogger("crawler.frontier")


class SeenSet(CompactSeenSet):
    """Exact set of 64-bit fingerprints in 10-15 bytes each (see `crawler.model.seen`)."""

    __slots__ = ()


class MemoryFrontier(FrontierBase):
    """In-process frontier: per-host packed queues visited round-robin, exact dedup, bounded memory.

    `memory_queue` is how many queued requests are held in memory; the rest spill to a temporary file.
    """

    def __init__(self, *, memory_queue: int = DEFAULT_MEMORY_QUEUE) -> None:
        self._seen = SeenSet()
        self._queues = HostQueues(memory_queue, self._refill)
        self._spill: SpillStore | None = None
        self._leased = 0
        self.spilled = 0  # requests that went through the temporary file

    async def push_many(self, requests: Iterable[Request]) -> int:
        added = 0
        seen_add = self._seen.add
        queue = self._queues.add
        spilled: list[Request] = []
        for req in requests:
            if not req.dont_filter and not seen_add(req.fingerprint):
                continue
            if not queue(req):
                spilled.append(req)
            added += 1
        if spilled:
            self._spill_store().write(spilled)
            self.spilled += len(spilled)
        return added

    def _spill_store(self) -> SpillStore:
        if self._spill is None:
            # Imported on first use: a crawl that stays under the bound never loads sqlite3.
            from crawler.frontier.spill import SpillStore

            self._spill = SpillStore()
            log.info("more than %d requests queued (memory_queue): the rest wait in a temporary file",
                     self._queues.capacity)  # fmt: skip
        return self._spill

    def _refill(self, host: str, count: int) -> list[Block]:
        return self._spill.read(host, count) if self._spill is not None else []

    async def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        out = self._queues.pop_ready(limit, budget)
        self._leased += len(out)
        return out

    async def ack(self, requests: Sequence[Request], checkpoint: dict[str, Any] | None = None) -> None:
        self._leased -= len(requests)

    async def checkpoint(self) -> dict[str, Any] | None:
        return None

    async def size(self) -> int:
        return len(self._queues) + self._leased

    async def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    @property
    def seen_count(self) -> int:
        return len(self._seen)

    @property
    def queued_in_memory(self) -> int:
        return self._queues.in_memory

    @property
    def queued_on_disk(self) -> int:
        return self._queues.on_disk
