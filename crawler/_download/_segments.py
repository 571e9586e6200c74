"""The `.part` file of one download: segment planning, positioned batched writes from any segment, and
an incremental hash over the contiguous prefix, all done in writer threads off the event loop.

Batches from the stream that owns the hashed prefix are hashed from memory right before they are
written; data that other segments wrote ahead is read back (from the page cache) once the prefix
reaches it. The sidecar is saved after each batch, so it never claims bytes that were not written.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from crawler._download._resume import PartState, Segment, Sidecar

__all__ = ["PartFile", "hash_file", "plan_segments"]

# A part file that is a symlink (planted, or left by something else) is refused, never followed.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
_READ_BLOCK = 4 << 20
# Read back and hash what other segments wrote once this much is contiguous past the hashed prefix.
_CATCH_UP = 16 << 20


def plan_segments(length: int, count: int, min_size: int) -> list[Segment]:
    """Split `[0, length)` into at most `count` segments of at least `min_size` bytes each."""
    if length <= 0:
        return [Segment(0, 0)]
    count = max(1, min(count, length // max(1, min_size)))
    size = -(-length // count)
    return [Segment(start, min(start + size, length)) for start in range(0, length, size)]


def _pwrite_all(fd: int, chunks: Sequence[bytes | memoryview], offset: int) -> None:
    if len(chunks) > _IOV_MAX:
        chunks = [b"".join(chunks)]
    views = [memoryview(c) for c in chunks]
    while views:
        written = os.pwritev(fd, views, offset) if len(views) > 1 else os.pwrite(fd, views[0], offset)
        offset += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


def hash_file(path: Path, algos: Iterable[str]) -> dict[str, str]:
    """Digests of a whole file (blocking: run it in a thread)."""
    hashers = {a: hashlib.new(a) for a in algos}
    with open(path, "rb", buffering=0) as f:
        while block := f.read(_READ_BLOCK):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


class PartFile:
    """An open `.part` file with its resume state. Writes run on `executor`; the event loop only awaits."""

    def __init__(self, path: Path, state: PartState, sidecar: Sidecar, algos: Iterable[str],
                 executor: Executor, *, fresh: bool) -> None:  # fmt: skip
        self.path = path
        self.state = state
        self.sidecar = sidecar
        self._algos = tuple(dict.fromkeys(algos))
        self._executor = executor
        flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW | (os.O_TRUNC if fresh else 0)
        self._fd: int | None = os.open(path, flags, 0o644)
        self._lock = threading.Lock()  # hash state and segment progress
        self._open_cond = threading.Condition()  # the fd and the writers using it
        self._writers = 0
        self._hashers: dict[str, Any] = {}
        self._hashed = 0
        self._final: dict[str, str] | None = None
        self._reset_hash()

    def _reset_hash(self) -> None:
        self._hashers = {a: hashlib.new(a) for a in self._algos}
        self._hashed = 0
        self._final = None

    # --- run in writer threads ---------------------------------------------------------------------

    def write_batch(self, seg: Segment, chunks: Sequence[bytes | memoryview], nbytes: int) -> None:
        """Write `chunks` at the segment's position, advance it, hash what extends the prefix, save the
        sidecar. Called on a writer thread; batches of one segment must not overlap."""
        with self._open_cond:
            fd = self._fd
            if fd is None:
                raise ValueError("part file is closed")
            self._writers += 1
        try:
            self._write_locked(fd, seg, chunks, nbytes)
        finally:
            with self._open_cond:
                self._writers -= 1
                self._open_cond.notify_all()

    def _write_locked(self, fd: int, seg: Segment, chunks: Sequence[bytes | memoryview], nbytes: int) -> None:
        offset = seg.pos
        _pwrite_all(fd, chunks, offset)
        with self._lock:
            if offset == self._hashed:
                for h in self._hashers.values():
                    for c in chunks:
                        h.update(c)
                self._hashed += nbytes
            seg.done += nbytes
            if self.state.contiguous_end() - self._hashed >= _CATCH_UP:
                self._catch_up(fd)
        self.sidecar.save(self.state)
        if self.state.complete and self._final is None:
            self._final = self._digests()  # in this thread: saves the event loop a hand-off per file

    def _catch_up(self, fd: int) -> None:
        """Hash `[hashed, contiguous_end)` from the file. Caller holds the lock."""
        end = self.state.contiguous_end()
        while self._hashed < end:
            block = os.pread(fd, min(_READ_BLOCK, end - self._hashed), self._hashed)
            if not block:
                raise OSError(f"{self.path} is shorter than its sidecar says")
            for h in self._hashers.values():
                h.update(block)
            self._hashed += len(block)

    def _digests(self) -> dict[str, str]:
        if self._final is not None:
            return self._final
        fd = self._fd
        if fd is None:
            raise ValueError("part file is closed")
        with self._lock:
            self._catch_up(fd)
            return {a: h.hexdigest() for a, h in self._hashers.items()}

    def _truncate(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.ftruncate(self._fd, 0)
            self._reset_hash()

    # --- awaited from the event loop --------------------------------------------------------------------

    async def digests(self) -> dict[str, str]:
        """Digests of the whole file (the prefix must be complete); hashes whatever is not hashed yet."""
        if self._final is not None:
            return self._final
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._digests)

    async def restart(self, state: PartState) -> None:
        """Empty the file for a fresh start (the server's copy changed or ignores ranges)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._truncate)
        self.state = state
        self.sidecar.save(state)

    @property
    def hashed(self) -> int:
        return self._hashed

    def size(self) -> int:
        return -1 if self._fd is None else os.fstat(self._fd).st_size

    def close(self) -> None:
        """Close once no writer thread uses the fd (normally none: every write is awaited first)."""
        with self._open_cond:
            while self._writers:
                self._open_cond.wait()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        self.sidecar.close()
