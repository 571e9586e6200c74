"""The crawl's `save:`: response bodies streamed to files under one directory, through the same part-file
writer as downloads (`PartFile`: batched positioned writes on a thread, `<name>.part` renamed into place
only when complete) and the same name allocator.

Each URL maps to its own path (`url_path`: sanitising never merges two URLs). The allocator then keeps
that path for the URL for the whole crawl, resolves file-versus-directory clashes (`/dir` and
`/dir/child`, `/tail` and `/tail/`) and case-folding filesystems. A file already on disk is replaced when
it records the same origin URL (an earlier crawl's copy); anyone else's file is the `on_collision`
policy's (`save.on_collision`, the allocator's rules of `crawler download --on-collision`): `rename`
(`name.1.ext`, the default), `overwrite`, or `fail`. A directory on disk is never replaced.

What goes wrong ends as a documented outcome, never `internal_error`: a path that would leave the save
directory (a symlink pointing out, no usable name) fails the URL as `unsafe_path`, a name `fail` refuses
as `file_exists` (`FetchError`); a file that cannot be written (a full disk, a read-only filesystem) is an
`OutputError`, which stops the crawl as a full items file does (the partial file is deleted).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from crawler.fetch.disk import PartFile, SegmentWriter
from crawler.fetch.names import NameAllocator, Reservation, UnsafePath, origin_of, url_path
from crawler.fetch.sidecar import PART_SUFFIX, PartState, Segment
from crawler.model.errors import FetchError, OutputError

if TYPE_CHECKING:
    import httpx

__all__ = ["FileSaver", "SaveCollision"]

SaveCollision = Literal["rename", "overwrite", "fail"]

_WRITE_BATCH = 1 << 20  # bytes per positioned write
_FLUSH_INTERVAL = 1.0  # seconds a partly filled batch may wait on a slow link


class FileSaver:
    """Claims responses by URL regex or content type and streams them to `directory`."""

    def __init__(self, directory: str | os.PathLike[str], match: list[str] | None = None,
                 content_types: list[str] | None = None, on_collision: SaveCollision = "rename") -> None:  # fmt: skip
        self.directory = Path(directory).resolve()
        self._match = re.compile("|".join(f"(?:{p})" for p in match)) if match else None
        self._types = tuple(t.lower() for t in content_types or [])
        self._names = NameAllocator(self.directory, companions=(PART_SUFFIX,))
        self.on_collision = on_collision

    @property
    def active(self) -> bool:
        return self._match is not None or bool(self._types)

    def matches(self, url: str, content_type: str) -> bool:
        if self._match is not None and self._match.search(url):
            return True
        ct = content_type.partition(";")[0].strip().lower()
        return bool(self._types) and ct.startswith(self._types)

    def target(self, url: str) -> Reservation:
        """The path `url` is saved under, reserved for it for the rest of the crawl. Raises `UnsafePath`,
        or `FetchError` (`file_exists`) where `on_collision: fail` refuses the name."""
        names, policy = self._names, self.on_collision
        for candidate in names.candidates(url_path(url)):
            reservation = names.reserve(candidate, url)
            if reservation is None:  # another URL of this crawl holds it (case folding, a directory)
                if policy == "fail":
                    raise FetchError(f"{candidate} is taken by another URL of this crawl (save.on_collision: fail)",
                                     kind="file_exists")  # fmt: skip
                continue
            try:
                on_disk = os.lstat(reservation.path)
            except FileNotFoundError:
                return reservation  # free
            if not stat.S_ISDIR(on_disk.st_mode):
                if origin_of(reservation.path) == url or policy == "overwrite":
                    return reservation  # this URL's copy from an earlier crawl, or replaced on purpose
                if policy == "fail":
                    names.release(reservation)
                    raise FetchError(f"{reservation.path} exists and is not this URL's file "
                                     "(save.on_collision: fail)", kind="file_exists")  # fmt: skip
            names.release(reservation)  # someone else's file, or a directory: keep it, try the next name
        raise UnsafePath(f"no free name for {url_path(url)} under {self.directory}")

    async def save(
        self, response: httpx.Response, chunks: AsyncIterator[bytes], url: str
    ) -> tuple[Path, int]:
        """Stream `chunks` to `<path>.part`, then rename into place. Returns (final path, bytes)."""
        try:
            reservation = self.target(url)
            self._names.make_parent(reservation)
        except UnsafePath as exc:
            raise FetchError(f"not saved: {exc}", kind="unsafe_path") from None
        except OSError as exc:
            raise OutputError(f"cannot save files under {self.directory}: {exc.strerror or exc}") from exc
        seg = Segment(0, None)
        try:
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
        except OSError as exc:  # the disk, not this URL: the crawl stops as for a full items file
            raise OutputError(f"cannot save {url} to {reservation.path}: {exc.strerror or exc}") from exc
        return reservation.path, done.size
