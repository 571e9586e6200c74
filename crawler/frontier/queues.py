"""The in-memory half of the memory and SQLite frontiers: per-host queues of packed requests, visited
round-robin, holding at most `capacity` requests; the rest wait on disk and come back through a refill hook.

- Per host, one `RecordQueue` per priority: the highest priority first, then push order.
- `pop_ready` walks the hosts with work round-robin and takes up to `budget(host)` from each, so its cost
  follows the number of ready hosts, not the queue length, and one huge host never starves the others.
- Spilling: a request goes to memory while fewer than `capacity` are there and its host has nothing on
  disk; otherwise it is counted as on disk (its owner wrote it there). Once a host spills, its later requests
  spill too, so memory always holds a host's oldest requests; when its memory queue runs dry, `refill(host,
  count)` returns about `count` of its on-disk requests (at least that many while there are), oldest first,
  as packed blocks. Priorities order the requests held in memory; the ones on disk come back in push order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from crawler.frontier.records import Block, RecordQueue
from crawler.model.request import Request

__all__ = ["HostQueues", "Refill"]
# Requests read back from disk per refill: enough to amortise a query, few enough to keep memory flat.
_REFILL_MAX = 1000
_REFILL_MIN = 64


class Refill(Protocol):
    def __call__(self, host: str, count: int) -> list[Block]: ...


def _no_refill(host: str, count: int) -> list[Block]:
    return []


class _Host:
    __slots__ = ("by_priority", "in_memory", "on_disk")

    def __init__(self) -> None:
        self.by_priority: dict[int, RecordQueue] = {}
        self.in_memory = 0
        self.on_disk = 0

    def take(self, host: str, want: int, out: list[Request]) -> int:
        """Append up to `want` requests from memory to `out`, highest priority first; returns how many."""
        taken = 0
        queues = self.by_priority
        while taken < want and self.in_memory:
            priority = max(queues) if len(queues) > 1 else next(iter(queues))
            q = queues[priority]
            n = min(want - taken, len(q))
            pop = q.pop
            for _ in range(n):
                out.append(pop(host, priority))
            taken += n
            self.in_memory -= n
            if not q:
                del queues[priority]
        return taken


class HostQueues:
    """Per-host packed queues with round-robin popping and a bounded number held in memory."""

    def __init__(self, capacity: int, refill: Refill = _no_refill) -> None:
        self.capacity = capacity
        self._refill = refill
        self._hosts: dict[str, _Host] = {}
        self._rotation: deque[str] = deque()  # hosts with work, in memory or on disk
        self.in_memory = 0
        self.on_disk = 0

    def __len__(self) -> int:
        return self.in_memory + self.on_disk

    def add(self, req: Request) -> bool:
        """Queue `req`: True when it is held in memory, False when it counts as on disk (the caller keeps it)."""
        host = req.host
        h = self._hosts.get(host)
        if h is None:
            h = self._hosts[host] = _Host()
            self._rotation.append(host)
        if h.on_disk or self.in_memory >= self.capacity:
            h.on_disk += 1
            self.on_disk += 1
            return False
        self._hold(h, req)
        return True

    def add_on_disk(self, host: str, count: int) -> None:
        """Count `count` requests of `host` as waiting on disk (a resumed state's queue)."""
        h = self._hosts.get(host)
        if h is None:
            h = self._hosts[host] = _Host()
            self._rotation.append(host)
        h.on_disk += count
        self.on_disk += count

    def _hold(self, h: _Host, req: Request) -> None:
        q = h.by_priority.get(req.priority)
        if q is None:
            q = h.by_priority[req.priority] = RecordQueue()
        q.append(req)
        h.in_memory += 1
        self.in_memory += 1

    def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        out: list[Request] = []
        rotation = self._rotation
        hosts = self._hosts
        for _ in range(len(rotation)):
            if len(out) >= limit:
                break
            host = rotation[0]
            rotation.rotate(-1)
            allowance = budget(host)
            if allowance <= 0:
                continue
            h = hosts[host]
            want = min(allowance, limit - len(out))
            while True:
                taken = h.take(host, want, out)
                self.in_memory -= taken
                want -= taken
                if want <= 0 or not h.on_disk or not self._load(host, h):
                    break
            if not h.in_memory and not h.on_disk:
                del hosts[host]
                rotation.pop()  # the host just rotated to the end
        return out

    def _load(self, host: str, h: _Host) -> int:
        """Bring the host's oldest on-disk requests into memory; returns how many came."""
        room = max(self.capacity - self.in_memory, 0)
        count = min(h.on_disk, _REFILL_MAX, max(room, _REFILL_MIN))
        n = 0
        queues = h.by_priority
        for priority, size, block in self._refill(host, count):
            q = queues.get(priority)
            if q is None:
                q = queues[priority] = RecordQueue()
            q.extend_packed(block, size)
            n += size
        h.in_memory += n
        self.in_memory += n
        if n < count:  # the store holds fewer than counted (edited by hand?): trust the store
            lost = h.on_disk - n
            h.on_disk = 0
            self.on_disk -= lost + n
            return n
        h.on_disk -= n
        self.on_disk -= n
        return n

    def hosts(self) -> int:
        return len(self._hosts)

    def nbytes(self) -> int:
        """Bytes of packed records held in memory (without per-host overhead)."""
        return sum(q.nbytes for h in self._hosts.values() for q in h.by_priority.values())
