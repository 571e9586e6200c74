"""Resume state of a partial download: `NAME.part` holds the bytes, `NAME.part.json` (the sidecar) says
which URL and validator they came from and how far each segment got.

The sidecar is rewritten in place with one positioned write after every batch of data is written, so a
kill -9 at any moment leaves a record that claims only bytes already handed to the kernel. A record
that does not parse (torn by a power cut) is treated as absent: the download starts over, never trusts it.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PART_SUFFIX", "SIDECAR_SUFFIX", "PartState", "Segment", "Sidecar", "part_paths"]

PART_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"
_VERSION = 1
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def part_paths(final: Path) -> tuple[Path, Path]:
    """(`NAME.part`, `NAME.part.json`) next to the final path."""
    return final.with_name(final.name + PART_SUFFIX), final.with_name(final.name + SIDECAR_SUFFIX)


@dataclass(slots=True)
class Segment:
    """Bytes `[start, end)` of the file; `done` of them, from `start`, are on disk. `end` is None while
    the length is unknown (a single stream without Content-Length)."""

    start: int
    end: int | None
    done: int = 0

    @property
    def pos(self) -> int:
        return self.start + self.done

    @property
    def remaining(self) -> int | None:
        return None if self.end is None else self.end - self.pos

    @property
    def complete(self) -> bool:
        return self.end is not None and self.pos >= self.end


@dataclass(slots=True)
class PartState:
    """What a part holds and where it came from: the URL, the server's validators and length, the
    expected checksum of its entry (`sha-256=HEX`, when the entry gave one), and each segment's progress.
    A part is resumed only by the entry it is bound to (see `bound_to`)."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    length: int | None = None
    segments: list[Segment] = field(default_factory=list)
    checksum: str | None = None

    def bound_to(self, url: str, checksum: str | None) -> bool:
        """Is this the part of a download of `url` expecting `checksum`? A part recorded without one
        serves an entry that now gives one (the result is verified anyway), never the reverse."""
        return self.url == url and (self.checksum is None or self.checksum == checksum)

    @property
    def validator(self) -> str | None:
        """The If-Range value: a strong ETag, else Last-Modified (weak ETags are not allowed there)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    @property
    def written(self) -> int:
        return sum(s.done for s in self.segments)

    @property
    def complete(self) -> bool:
        return bool(self.segments) and all(s.complete for s in self.segments)

    def contiguous_end(self) -> int:
        """End of the prefix `[0, n)` that is entirely on disk."""
        pos = 0
        for seg in self.segments:
            if seg.start > pos:
                break
            pos = seg.pos
            if not seg.complete:
                break
        return pos

    def to_json(self) -> bytes:
        return json.dumps({"v": _VERSION, "url": self.url, "etag": self.etag, "last_modified": self.last_modified,
                           "length": self.length, "segments": [[s.start, s.end, s.done] for s in self.segments],
                           "checksum": self.checksum}, separators=(",", ":")).encode()  # fmt: skip

    @classmethod
    def from_json(cls, data: bytes) -> PartState | None:
        try:
            raw: dict[str, Any] = json.loads(data)
            if raw.get("v") != _VERSION or not isinstance(raw.get("url"), str):
                return None
            segments = [Segment(int(s), None if e is None else int(e), int(d)) for s, e, d in raw["segments"]]
            length = raw.get("length")
            checksum = raw.get("checksum")
            if checksum is not None and not isinstance(checksum, str):
                return None
            state = cls(raw["url"], raw.get("etag"), raw.get("last_modified"),
                        None if length is None else int(length), segments, checksum)  # fmt: skip
        except (ValueError, TypeError, KeyError):
            return None
        # A record must describe a sane tiling of the file, or it is not trusted.
        pos = 0
        for seg in segments:
            if (
                seg.start != pos
                or seg.done < 0
                or (seg.end is not None and not seg.start <= seg.pos <= seg.end)
            ):
                return None
            if seg.end is None:
                if seg is not segments[-1] or state.length is not None:
                    return None
                break
            pos = seg.end
        if segments and state.length is not None and pos != state.length:
            return None
        return state


class Sidecar:
    """The sidecar file of one part. `save` is thread-safe and called from the writer threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 0
        self._lock = threading.Lock()

    @staticmethod
    def load(path: Path) -> PartState | None:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return PartState.from_json(data)

    def save(self, state: PartState) -> None:
        with self._lock:
            data = state.to_json()
            if self._fd is None:
                self._fd = os.open(self.path, _FLAGS, 0o644)
                self._size = 0
            # Pad with spaces to the previous size: one write replaces the whole record, no truncate needed.
            if len(data) < self._size:
                data += b" " * (self._size - len(data))
            os.pwrite(self._fd, data, 0)
            self._size = len(data)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
