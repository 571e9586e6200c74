"""Saving response bodies to files: safe names under one directory, streamed in large batched writes,
written as `<name>.part` and renamed into place only when complete."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import aiofiles

if TYPE_CHECKING:
    import httpx

    from crawler import Page

__all__ = ["FileSaver", "safe_filename", "safe_relative_path"]

_WRITE_BATCH = 1 << 20  # bytes gathered before one write: per-chunk writes through a thread pool are slow
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
# Separators, characters Windows refuses, C0/C1 controls, and invisible format characters (bidi overrides
# such as U+202E turn `gpj.exe` into what reads as `exe.jpg`).
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff<>:"|?*\\/]')
_MAX_NAME = 200


def safe_filename(name: str, default: str = "index.html") -> str:
    """One path segment that is safe on any filesystem: no separators, no `..`, no control characters,
    no device names, bounded length."""
    name = unicodedata.normalize("NFC", name)
    name = _BAD_CHARS.sub("_", name).strip(" .")
    if not name or set(name) <= {"."}:
        return default
    stem, dot, ext = name.partition(".")
    if stem.lower() in _WINDOWS_DEVICES:
        name = f"_{name}"
    if len(name.encode("utf-8")) > _MAX_NAME:
        base, dot, ext = name.rpartition(".")
        if not dot or len(ext) > 16:
            base, ext = name, ""
        keep = _MAX_NAME - len(ext.encode()) - 1
        base = base.encode("utf-8")[:keep].decode("utf-8", "ignore")
        name = f"{base}.{ext}" if ext else base
    return name


def safe_relative_path(url: str) -> PurePosixPath:
    """`host/dir/name` for a URL, each segment sanitised; `index.html` for directory URLs."""
    parts = urlsplit(url)
    host = safe_filename(parts.netloc.replace(":", "_"), default="host")
    segments = [safe_filename(unquote(s), default="_") for s in parts.path.split("/") if s not in ("", ".", "..")]
    if not segments or parts.path.endswith("/"):
        segments.append("index.html")
    if parts.query:
        segments[-1] = safe_filename(f"{segments[-1]}_{parts.query}")
    return PurePosixPath(host, *segments)


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

    def __call__(self, page: Page) -> None:
        page.item.pop("_saved_bytes", None)
