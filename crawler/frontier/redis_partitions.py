"""Host-partitioned workers (the BUbiNG / Nutch / StormCrawler design), an option of the Redis frontier
(`frontier: redis://...?partitions=N`): the crawl's hosts fall into N partitions, and each live worker owns a
consistent-hash share of them (rendezvous hashing over the live workers, so a worker joining or leaving moves
only its own share). A worker pulls requests only from its partitions, in batches, into a local per-host queue,
and its own limiter holds every politeness limit (rate, in-flight cap, Retry-After, the adaptive rate): no
other worker ever fetches from those hosts. Redis carries the link routing (a push lands in the partition of
the link's host, whoever owns it), the seen set, leases and acks.

A partition is pulled by one worker at a time: the holder of its lock (`plock:<p>`, renewed by each pull).
When the workers change, the one losing a partition gives back what it had pulled and not started, and
hands the lock over once its requests there are finished; the new owner pulls from then on. A dead worker's
locks expire with its membership (15 s), its leases as usual.

Which design when: shared politeness (the default) balances load by itself (any worker takes any ready host)
and holds exact limits across any number of workers, at the price of the politeness bookkeeping in every
pop. Partitioned workers cost Redis fewer commands per page (benchmarks/scale_model.py measures both) and
need no round trip to decide politeness, but a worker is only as busy as its partitions: a crawl dominated by
a few big hosts loads a few workers, and a handover briefly lets two workers reach the same host.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable

from crawler.model.request import Request

__all__ = ["LocalQueues", "owned_partitions"]


def _score(worker: str, partition: int) -> bytes:
    return hashlib.blake2b(f"{partition}/{worker}".encode(), digest_size=8).digest()


def owned_partitions(worker: str, members: Iterable[str], partitions: int) -> set[int]:
    """The partitions `worker` owns among the live `members` (rendezvous hashing: each partition goes to the
    member with the highest hash of (partition, member))."""
    live = sorted(set(members) | {worker})
    if len(live) == 1:
        return set(range(partitions))
    return {p for p in range(partitions) if max(live, key=lambda w: _score(w, p)) == worker}


class LocalQueues:
    """The requests a worker has pulled and not started: per host, served round-robin within the engine's
    budget (its limiter), so a host that must wait never holds back the others."""

    __slots__ = ("_hosts", "_order", "_size")

    def __init__(self) -> None:
        self._hosts: dict[str, deque[Request]] = {}
        self._order: deque[str] = deque()  # hosts with requests, in turn order
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, req: Request) -> None:
        q = self._hosts.get(req.host)
        if q is None:
            q = self._hosts[req.host] = deque()
            self._order.append(req.host)
        q.append(req)
        self._size += 1

    def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        """Up to `limit` requests, at most `budget(host)` from each host, every host in turn."""
        out: list[Request] = []
        order = self._order
        for _ in range(len(order)):
            if len(out) >= limit:
                break
            host = order[0]
            order.rotate(-1)
            allowance = min(budget(host), limit - len(out))
            if allowance <= 0:
                continue
            q = self._hosts[host]
            for _ in range(min(allowance, len(q))):
                out.append(q.popleft())
            if not q:
                del self._hosts[host]
                order.remove(host)
        self._size -= len(out)
        return out

    def take(self, keep: Callable[[str], bool]) -> list[Request]:
        """Remove and return the requests of every host for which `keep(host)` is False."""
        out: list[Request] = []
        for host in [h for h in self._order if not keep(h)]:
            out.extend(self._hosts.pop(host))
            self._order.remove(host)
        self._size -= len(out)
        return out
