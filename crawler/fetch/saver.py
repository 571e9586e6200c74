"""Saving response bodies to files: safe names under one directory, streamed in large batched writes,
written as `<name>.part` and renamed into place only when complete."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from crawler.fetch.names import safe_relative_path

if TYPE_CHECKING:
    import httpx

__all__ = ["FileSaver"]

_WRITE_BATCH = 1 << 20  # bytes gathered before one write: per-chunk writes through a thread pool are slow
class FileSaver:
    """Claims responses by URL regex or content type and streams them to `directory`."""

    def __init__(self, directory: str | os.PathLike[str], match: list[str] | None = None,
                 content_types: list[str] | None = None) -> None:  # fmt: skip
        self.directory = Path(directory).resolve()
        self._match = re.compile("|".join(f"(?:{p})" for p in match)) if match else None
        self._types = tuple(t.lower() for t in content_types or [])

    @property
    def active(self) -> bool:
        return self._match is not None or bool(self._types)

    def matches(self, url: str, content_type: str) -> bool:
        if self._match is not None and self._match.search(url):
            return True
        ct = content_type.partition(";")[0].strip().lower()
        return bool(self._types) and ct.startswith(self._types)

    def target(self, url: str) -> Path:
        path = (self.directory / safe_relative_path(url)).resolve()
        if not path.is_relative_to(self.directory):  # defence in depth: sanitising already prevents this
            raise ValueError(f"refusing to write outside {self.directory}: {path}")
        return path

    async def save(self, response: httpx.Response, chunks: AsyncIterator[bytes], url: str) -> tuple[Path, int]:
        """Stream `chunks` to `<target>.part`, then rename into place. Returns (path, bytes)."""
        final = self.target(url)
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + ".part")
        size = 0
        try:
            import aiofiles  # only jobs that save files pay for its import

            async with aiofiles.open(part, "wb") as f:
                batch: list[bytes] = []
                pending = 0
                async for chunk in chunks:
                    batch.append(chunk)
                    pending += len(chunk)
                    if pending >= _WRITE_BATCH:
                        await f.write(b"".join(batch))
                        size += pending
                        batch.clear()
                        pending = 0
                if batch:
                    await f.write(b"".join(batch))
                    size += pending
            os.replace(part, final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return final, size
