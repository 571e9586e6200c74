"""The one part-file writer, for downloads and for the crawl's `save:`: a `.part` file filled by positioned
batched writes from any segment, an incremental hash over the contiguous prefix, and the final
verify-and-rename, all on writer threads. `SegmentWriter` turns a stream of chunks into those batches.

Batches from the stream that owns the hashed prefix are hashed from memory right before they are
written; data that other segments wrote ahead is read back (from the page cache) once the prefix
reaches it. The sidecar (when there is one: downloads resume, saved pages do not) is saved after each
batch, so it never claims bytes that were not written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.fetch.names import set_origin
from crawler.fetch.sidecar import PartState, Segment, Sidecar
from crawler.model.checksum import Checksum

__all__ = ["Completion", "IncompletePart", "PartFile", "SegmentWriter", "hash_file", "plan_segments"]

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


class IncompletePart(Exception):
    """The part file does not hold what the resume state says (its size is off)."""


@dataclass(frozen=True, slots=True)
class Completion:
    """How a finished part ended: renamed to its final path (`error` None), or deleted because its
    digest did not match the expected checksum (`error` says so)."""

    digests: dict[str, str]
    size: int
    error: str | None


class PartFile:
    """A `.part` file with its resume state. Every file operation, from opening to the final rename,
    runs on the writer threads (`executor`); the event loop only hands over batches and awaits.

    Completing the last segment finishes the file on the same thread: digests, size check, checksum
    check, the origin URL recorded (`user.xdg.origin.url`, where supported), then the rename into place
    (or the deletion of a part that failed its checksum). `executor` None means the loop's default.
    """

    def __init__(self, path: Path, final: Path, state: PartState, sidecar: Sidecar | None, algos: Iterable[str],
                 executor: Executor | None, *, fresh: bool, checksum: Checksum | None = None,
                 origin: str | None = None) -> None:  # fmt: skip
        self.path = path
        self.final = final
        self.state = state
        self.sidecar = sidecar
        self.checksum = checksum
        self.origin = origin
        self.completion: Completion | None = None
        algos = [*algos, *([checksum.algo] if checksum else [])]
        self._algos = tuple(dict.fromkeys(algos))
        self._executor = executor
        self._fresh = fresh
        self._fd: int | None = None
        self._closed = False
        self._lock = threading.Lock()  # hash state and segment progress
        self._open_cond = threading.Condition()  # the fd and the writers using it
        self._finish_lock = threading.Lock()
        self._writers = 0
        self._hashers: dict[str, Any] = {}
        self._hashed = 0
        self._reset_hash()

    def _reset_hash(self) -> None:
        self._hashers = {a: hashlib.new(a) for a in self._algos}
        self._hashed = 0

    # --- run in writer threads ---------------------------------------------------------------------

    def _open_fd(self) -> int:
        """The fd, opened on first use (caller holds `_open_cond`). A fresh part is truncated and its
        sidecar rewritten at once, so a stale record never describes the new bytes."""
        if self._fd is None:
            if self._closed:
                raise ValueError("part file is closed")
            flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW | (os.O_TRUNC if self._fresh else 0)
            self._fd = os.open(self.path, flags, 0o644)
            self._fresh = False
            self._save_state()
        return self._fd

    def _save_state(self) -> None:
        if self.sidecar is not None:
            self.sidecar.save(self.state)

    def write_batch(self, seg: Segment, chunks: Sequence[bytes | memoryview], nbytes: int) -> None:
        """Write `chunks` at the segment's position, advance it, hash what extends the prefix, save the
        sidecar; finish the file if this completed it. Batches of one segment must not overlap."""
        with self._open_cond:
            fd = self._open_fd()
            self._writers += 1
        try:
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
            self._save_state()
        finally:
            with self._open_cond:
                self._writers -= 1
                self._open_cond.notify_all()
        if self.state.complete:
            self._complete()

    def _catch_up(self, fd: int) -> None:
        """Hash `[hashed, contiguous_end)` from the file. Caller holds the lock."""
        end = self.state.contiguous_end()
        while self._hashed < end:
            block = os.pread(fd, min(_READ_BLOCK, end - self._hashed), self._hashed)
            if not block:
                raise IncompletePart(f"{self.path} is shorter than its sidecar says")
            for h in self._hashers.values():
                h.update(block)
            self._hashed += len(block)

    def _complete(self) -> Completion:
        with self._finish_lock:
            if self.completion is not None:
                return self.completion
            with self._open_cond:
                fd = self._open_fd()  # an empty file was never written: created here
                while self._writers:
                    self._open_cond.wait()
            with self._lock:
                self._catch_up(fd)
                digests = {a: h.hexdigest() for a, h in self._hashers.items()}
            size = os.fstat(fd).st_size
            if self.origin is not None:
                set_origin(fd, self.origin)
            self._close()
            if self.state.length is not None and size != self.state.length:
                raise IncompletePart(f"part file has {size} bytes, expected {self.state.length}")
            error = None
            checksum = self.checksum
            if checksum is not None and digests[checksum.algo] != checksum.hexdigest:
                error = (
                    f"checksum mismatch: expected {checksum}, got {checksum.algo}={digests[checksum.algo]}"
                )
                self.path.unlink(missing_ok=True)  # a wrong file never gets the final name
            else:
                os.replace(self.path, self.final)  # onto a directory: IsADirectoryError, the entry fails
            if self.sidecar is not None:
                self.sidecar.path.unlink(missing_ok=True)
            self.completion = Completion(digests, size, error)
            return self.completion

    def _truncate(self, state: PartState) -> None:
        with self._open_cond:
            fd = self._open_fd()
        with self._lock:
            os.ftruncate(fd, 0)
            self._reset_hash()
            self.state = state
        self._save_state()

    def _close(self) -> None:
        with self._open_cond:
            while self._writers:
                self._open_cond.wait()
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if self.sidecar is not None:
            self.sidecar.close()

    # --- awaited from the event loop --------------------------------------------------------------------

    def submit(self, seg: Segment, chunks: Sequence[bytes | memoryview], nbytes: int) -> asyncio.Future[None]:
        """`write_batch` on a writer thread."""
        return asyncio.get_running_loop().run_in_executor(
            self._executor, self.write_batch, seg, chunks, nbytes
        )

    async def complete(self) -> Completion:
        """Finish a complete file (digests, verify, rename), unless its last write already did."""
        if self.completion is not None:
            return self.completion
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._complete)

    async def restart(self, state: PartState) -> None:
        """Empty the file for a fresh start (the server's copy changed or ignores ranges)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._truncate, state)

    def close(self) -> None:
        """Close once no writer thread uses the fd (normally none: every write is awaited first)."""
        self._close()

    def end_at(self, seg: Segment) -> None:
        """A stream of unknown length ended: the end of the body is the end of `seg` and of the file."""
        seg.end = seg.pos
        self.state.length = seg.pos
        self._save_state()

    def discard(self) -> None:
        """Close and delete the part and its sidecar (useless: the entry failed for good)."""
        self._close()
        self.path.unlink(missing_ok=True)
        if self.sidecar is not None:
            self.sidecar.path.unlink(missing_ok=True)


class SegmentWriter:
    """Fills one segment of a `PartFile` from a stream of chunks: `add()` gathers them, and when it says
    a batch is due (about `target()` bytes, or the oldest chunk waited `interval` seconds on a slow
    link), `flush()` hands the batch to a writer thread while the next one fills. One batch in flight at
    most, so a stream holds two batches of memory; a kill -9 loses at most those bytes.

    `close()` always finishes what arrived, even when cancelled (the thread cannot be), so a resume never
    refetches received bytes; after a failed write nothing further is written (no hole is left)."""

    __slots__ = ("_chunks", "_flush_at", "_loop", "_part", "_pending", "_seg", "_target", "_target_of",
                 "_writing", "interval")  # fmt: skip

    def __init__(self, part: PartFile, seg: Segment, *, target: Callable[[], int], interval: float) -> None:
        self._part = part
        self._seg = seg
        self._target_of = target
        self._target = target()
        self.interval = interval
        self._loop = asyncio.get_running_loop()
        self._chunks: list[bytes] = []
        self._pending = 0
        self._flush_at = 0.0
        self._writing: asyncio.Future[None] | None = None

    def add(self, chunk: bytes) -> bool:
        """Take `chunk`; True when a batch is due (then await `flush()`)."""
        if not self._chunks:
            self._flush_at = self._loop.time() + self.interval
        self._chunks.append(chunk)
        self._pending += len(chunk)
        return self._pending >= self._target or self._loop.time() >= self._flush_at

    async def flush(self) -> None:
        """Wait for the batch in flight, then hand over the gathered one."""
        if self._writing is not None:
            await self._writing
            self._writing = None
        if self._pending:
            chunks, nbytes = self._chunks, self._pending
            self._chunks, self._pending = [], 0
            self._writing = self._part.submit(self._seg, chunks, nbytes)
            self._target = self._target_of()

    async def close(self) -> None:
        """Finish writing everything that arrived (uncancellable; see the class docstring)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            try:
                await _uncancellable(writing)
            except BaseException:
                self._chunks, self._pending = [], 0  # never write past a batch that failed
                raise
        if self._pending:
            chunks, nbytes = self._chunks, self._pending
            self._chunks, self._pending = [], 0
            await _uncancellable(self._part.submit(self._seg, chunks, nbytes))


async def _uncancellable(fut: asyncio.Future[None]) -> None:
    """Wait for a write already handed to a thread, even if cancelled meanwhile (the thread cannot be)."""
    try:
        await asyncio.shield(fut)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait([fut])
        raise
