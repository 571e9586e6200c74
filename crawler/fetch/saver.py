"""The crawl's `save:`: response bodies streamed to files under one directory, through the same part-file
writer as downloads (`PartFile`: batched positioned writes on a thread, `<name>.part` renamed into place
only when complete) and the same name allocator.

Each URL maps to its own path (`url_path`: sanitising never merges two URLs). The allocator then keeps
that path for the URL for the whole crawl, resolves file-versus-directory clashes (`/dir` and
`/dir/child`, `/tail` and `/tail/`) and case-folding filesystems. A file already on disk is replaced only
when it records the same origin URL (an earlier crawl's copy); anyone else's file gets `name.1.ext`.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from crawler.fetch.disk import PartFile, SegmentWriter
from crawler.fetch.names import NameAllocator, Reservation, UnsafePath, origin_of, url_path
from crawler.fetch.sidecar import PART_SUFFIX, PartState, Segment

if TYPE_CHECKING:
    import httpx

__all__ = ["FileSaver"]

_WRITE_BATCH = 1 << 20  # bytes per positioned write
_FLUSH_INTERVAL = 1.0  # seconds a partly filled batch may wait on a slow link


class FileSaver:
    """Claims responses by URL regex or content type and streams them to `directory`."""

    def __init__(self, directory: str | os.PathLike[str], match: list[str] | None = None,
                 content_types: list[str] | None = None) -> None:  # fmt: skip
        self.directory = Path(directory).resolve()
        self._match = re.compile("|".join(f"(?:{p})" for p in match)) if match else None
        self._types = tuple(t.lower() for t in content_types or [])
        self._names = NameAllocator(self.directory, companions=(PART_SUFFIX,))

    @property
    def active(self) -> bool:
        return self._match is not None or bool(self._types)

    def matches(self, url: str, content_type: str) -> bool:
        if self._match is not None and self._match.search(url):
            return True
        ct = content_type.partition(";")[0].strip().lower()
        return bool(self._types) and ct.startswith(self._types)

    def target(self, url: str) -> Reservation:
        """The path `url` is saved under, reserved for it for the rest of the crawl."""
        names = self._names
        for candidate in names.candidates(url_path(url)):
            reservation = names.reserve(candidate, url)
            if reservation is None:
                continue
            if not os.path.lexists(reservation.path) or origin_of(reservation.path) == url:
                return reservation  # free, or this URL's copy from an earlier crawl
            names.release(reservation)  # someone else's file, a directory, or unknown origin: keep it
        raise UnsafePath(f"no free name for {url_path(url)} under {self.directory}")

    async def save(
        self, response: httpx.Response, chunks: AsyncIterator[bytes], url: str
    ) -> tuple[Path, int]:
        """Stream `chunks` to `<path>.part`, then rename into place. Returns (final path, bytes)."""
        reservation = self.target(url)
        self._names.make_parent(reservation)
        seg = Segment(0, None)
        part = PartFile(reservation.companion(PART_SUFFIX), reservation.path, PartState(url, segments=[seg]),
                        None, (), None, fresh=True, origin=url)  # fmt: skip
        try:
            writer = SegmentWriter(part, seg, target=lambda: _WRITE_BATCH, interval=_FLUSH_INTERVAL)
            try:
                async for chunk in chunks:
                    if writer.add(chunk):
                        await writer.flush()
            finally:
                await writer.close()
            part.end_at(seg)
            done = await part.complete()
        except BaseException:
            part.discard()
            raise
        return reservation.path, done.size
