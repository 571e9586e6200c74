"""Item writers: JSON lines and CSV, chosen by the file's extension.

Lines are buffered and written with one `os.write` of whole lines, so a crash or kill never leaves a torn
line in the file, and the file sees a few large writes rather than one per item.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from crawler import Page

__all__ = ["CsvWriter", "ItemWriter", "JsonLinesWriter", "open_writer", "page_item", "writer_format"]

log = logging.getLogger("crawler.output")
_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".jl": "jsonl", ".csv": "csv"}
_BUFFER_LINES = 2000


def writer_format(path: str | os.PathLike[str]) -> str:
    """`jsonl` or `csv` from the extension; ValueError naming the allowed ones otherwise."""
    suffix = Path(path).suffix.lower()
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        raise ValueError(f"unknown items format {suffix or '(none)'!r} for {str(path)!r}: "
                         f"use one of {', '.join(sorted(_FORMATS))}")  # fmt: skip
    return fmt


def page_item(page: Page) -> dict[str, Any]:
    """The record written for a page: url, status, depth, fetched_at, then the extracted fields."""
    record: dict[str, Any] = {
        "url": page.url,
        "status": page.status,
        "depth": page.depth,
        "fetched_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if page.path is not None:
        record["file"] = str(page.path)
    for key, value in page.item.items():
        if not key.startswith("_"):
            record[key] = value
    return record


class ItemWriter:
    """Base of the writers: a pipeline stage with `flush()` and `close()`."""

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = True, flush_every: float = 0.5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if overwrite else 0)
        self._fd: int | None = os.open(self.path, flags, 0o644)
        self._pending: list[bytes] = []
        self._flush_every = flush_every
        self._last_flush = time.monotonic()
        self.written = 0
        if not overwrite:
            self._repair_torn_tail()
        # Bytes of whole lines on disk: what a frontier checkpoint records and a resume truncates to.
        self.offset = os.fstat(self._fd).st_size

    def truncate(self, offset: int) -> None:
        """Cut the file back to `offset` (a checkpoint), dropping lines written after it."""
        assert self._fd is not None
        self._pending.clear()
        if offset < self.offset:
            os.ftruncate(self._fd, offset)
            log.info("%s: dropped %d bytes written after the last checkpoint", self.path, self.offset - offset)
        self.offset = min(offset, self.offset)

    def _repair_torn_tail(self) -> None:
        """Appending after a hard kill: drop a last line without its newline so no record is torn."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(max(0, size - 65536))
            tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else 0
        os.ftruncate(self._fd, keep)
        log.warning("%s ended in a torn line; truncated it to %d bytes", self.path, keep)

    def encode(self, record: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def write(self, record: dict[str, Any]) -> None:
        self._pending.append(self.encode(record))
        self.written += 1
        if len(self._pending) >= _BUFFER_LINES or time.monotonic() - self._last_flush >= self._flush_every:
            self.flush()

    def write_many(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            self.write(r)

    def __call__(self, page: Page) -> None:
        self.write(page_item(page))

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending or self._fd is None:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.offset += len(data)

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class JsonLinesWriter(ItemWriter):
    def encode(self, record: dict[str, Any]) -> bytes:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS, default=str)


class CsvWriter(ItemWriter):
    """CSV with a header of the known columns; values that are lists or dicts are written as JSON."""

    def __init__(self, path: str | os.PathLike[str], *, columns: list[str] | None = None, overwrite: bool = True,
                 flush_every: float = 0.5) -> None:  # fmt: skip
        super().__init__(path, overwrite=overwrite, flush_every=flush_every)
        self.columns = ["url", "status", "depth", "fetched_at", *(columns or [])]
        self._warned: set[str] = set()
        assert self._fd is not None
        if os.fstat(self._fd).st_size == 0:
            self._pending.append(self._row(self.columns))

    @staticmethod
    def _row(values: list[Any]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue().encode("utf-8")

    def encode(self, record: dict[str, Any]) -> bytes:
        for key in record:
            if key not in self.columns and key not in self._warned and key != "file":
                self._warned.add(key)
                log.warning("CSV %s has no column %r; its values are not written (use JSONL for free-form items)",
                            self.path, key)  # fmt: skip
        values = []
        for col in self.columns:
            v = record.get(col)
            if isinstance(v, list | dict):
                v = orjson.dumps(v).decode()
            values.append("" if v is None else v)
        return self._row(values)


def open_writer(path: str | os.PathLike[str], *, columns: list[str] | None = None, overwrite: bool = True,
                flush_every: float = 0.5) -> ItemWriter:  # fmt: skip
    fmt = writer_format(path)
    if fmt == "csv":
        return CsvWriter(path, columns=columns, overwrite=overwrite, flush_every=flush_every)
    return JsonLinesWriter(path, overwrite=overwrite, flush_every=flush_every)
