"""The frontier of one engine process in a multi-process crawl (`concurrency.processes: N`): its shard.

The frontier is sharded by fingerprint: a URL belongs to process `fingerprint % N`, which alone queues
and dedups it, so dedup stays exact with no shared state. Links a process finds for another shard go up
a pipe to the parent (`crawler/engine/processes.py`), which routes them down to their owner. The parent also
decides when the crawl is over: when every process is idle and has received every batch routed to it.

The wire format between the processes lives here too: a 5-byte header (length, kind) and a payload. The
first message down is the process's job (JOB): the job, secrets included, travels only through the pipe.

The pipe also tells a process that its parent is gone: its end of file, outside the normal end, calls
`on_parent_lost` (the engine's child process exits at once; see `crawler/engine/shard.py`).
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from crawler.config.job import DEFAULT_MEMORY_QUEUE
from crawler.frontier.base import FrontierBase
from crawler.frontier.memory import MemoryFrontier
from crawler.model.request import Request

__all__ = ["ShardedFrontier", "read_job", "read_message", "write_message"]

_HEADER = struct.Struct("!IB")
# Message kinds. Up (process -> parent): ROUTE, STATUS, FINAL. Down (parent -> process): JOB, PUSH, DONE.
ROUTE, STATUS, FINAL, JOB, PUSH, DONE = b"R"[0], b"S"[0], b"F"[0], b"J"[0], b"P"[0], b"D"[0]
_STATUS_EVERY = 0.05


def write_message(writer: asyncio.StreamWriter, kind: int, payload: bytes = b"") -> None:
    writer.write(_HEADER.pack(len(payload), kind) + payload)


async def read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    size, kind = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return kind, await reader.readexactly(size) if size else b""


async def open_pipes(up_fd: int, down_fd: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(down_fd, "rb", 0))
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, os.fdopen(up_fd, "wb", 0))
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer


async def read_job(reader: asyncio.StreamReader) -> bytes:
    """The first message from the parent: this process's job as JSON."""
    kind, payload = await read_message(reader)
    if kind != JOB:
        raise RuntimeError(f"expected the job from the parent process, got message kind {kind!r}")
    return payload


def _row(r: Request) -> list[Any]:
    row = [r.url, r.depth, r.priority, r.referer, r.fingerprint, r.host, r.meta]
    if r.method != "GET" or r.retries or r.dont_filter:  # rare: a request a user queued so, or a re-fetch
        row += [r.method, r.retries, r.dont_filter]
    return row


def _encode(requests: Sequence[Request]) -> bytes:
    return orjson.dumps([_row(r) for r in requests])


def _decode(payload: bytes) -> list[Request]:
    out = []
    for row in orjson.loads(payload):
        u, d, p, ref, fp, h, m = row[:7]
        req = Request(url=u, depth=d, priority=p, referer=ref, fingerprint=fp, host=h, meta=m)
        if len(row) > 7:
            req.method, req.retries, req.dont_filter = row[7], row[8], row[9]
        out.append(req)
    return out


class ShardedFrontier(FrontierBase):
    """A `MemoryFrontier` holding this process's shard, routing the rest through the parent."""

    def __init__(self, shard: int, count: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 on_parent_lost: Callable[[], None], memory_queue: int = DEFAULT_MEMORY_QUEUE) -> None:  # fmt: skip
        self.shard = shard
        self._on_parent_lost = on_parent_lost
        self.count = count
        self._local = MemoryFrontier(memory_queue=memory_queue)
        self._reader = reader
        self._writer = writer
        self._received = 0
        self._started = False  # no idle report counts before this process pushed its start URLs
        self._done = False
        self._wake: Callable[[], None] = lambda: None
        self._tasks: list[asyncio.Task[None]] = []

    def bind(self, wake: Callable[[], None], rate_of: Callable[[str], float | None]) -> None:
        """Called by the engine: how to wake its dispatcher when routed work arrives."""
        self._wake = wake
        self._tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._report())]

    async def _receive(self) -> None:
        while True:
            try:
                kind, payload = await read_message(self._reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                # The parent closes its end only after every process exited: this is the parent dying.
                self._done = True
                self._on_parent_lost()
                self._wake()
                return
            if kind == PUSH:
                await self._local.push_many(_decode(payload))
                self._received += 1
            elif kind == DONE:
                self._done = True
            self._wake()

    async def _report(self) -> None:
        while not self._done:
            idle = self._started and await self._local.size() == 0
            write_message(self._writer, STATUS, orjson.dumps({"idle": idle, "received": self._received}))
            await asyncio.sleep(_STATUS_EVERY)

    async def push_many(self, requests: Iterable[Request]) -> int:
        self._started = True
        mine: list[Request] = []
        others: dict[int, list[Request]] = {}
        count, shard = self.count, self.shard
        for req in requests:
            owner = req.fingerprint % count
            if owner == shard:
                mine.append(req)
            else:
                others.setdefault(owner, []).append(req)
        for owner, batch in others.items():
            write_message(self._writer, ROUTE, bytes([owner]) + _encode(batch))
        return await self._local.push_many(mine) if mine else 0

    async def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        return await self._local.pop_ready(limit, budget)

    async def ack(self, requests: Sequence[Request], checkpoint: dict[str, Any] | None = None) -> None:
        await self._local.ack(requests)

    async def size(self) -> int:
        # Locally empty is not the end: another process may still send work. Only the parent knows.
        size = await self._local.size()
        return size if self._done else size + 1

    async def checkpoint(self) -> dict[str, Any] | None:
        return None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self._local.close()
