"""Item writers: JSON lines, one JSON array, and CSV, chosen by the file's extension; `.gz` on top
compresses; `-` writes JSON lines to standard output.

Lines are buffered and written with one `os.write` of whole lines, so a crash or kill never leaves a torn
line in the file, and the file sees a few large writes rather than one per item. Compressed, each flush
is one whole gzip member (a file of concatenated members is a valid gzip file), so `offset` stays a
boundary that a resume can truncate to.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from crawler.config.specs import STDOUT, writer_format
from crawler.model.errors import OutputError
from crawler.model.failure import Failure
from crawler.model.page import Page

__all__ = ["CsvWriter", "FailureLog", "ItemWriter", "JsonArrayWriter", "JsonLinesWriter", "open_writer", "page_item"]

log = logging.getLogger("crawler.output")
_BUFFER_LINES = 2000


def is_gzip_path(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith(".gz")


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


_META_KEYS = frozenset(("url", "status", "depth", "fetched_at"))


class ItemWriter:
    """Base of the writers: a pipeline stage with `flush()` and `close()`.

    A page normally makes one record. A stage that finds several items on one page (a JSON list) puts
    them in `page.items`: one record each, carrying the page's url, status, depth and fetched_at."""

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = True, flush_every: float = 0.5,
                 on_closed: Callable[[], None] | None = None) -> None:  # fmt: skip
        # `-` is standard output: when its reader goes away (`| head`), lines are dropped from then on and
        # `on_closed()` is called once (the engine stops the crawl).
        self._on_closed = on_closed
        self.reader_gone = False
        # `-` is standard output: a stream, so nothing is truncated or repaired, and `offset` counts bytes sent.
        self.to_stdout = str(path) == STDOUT
        self.path = Path(path)
        self.compressed = is_gzip_path(self.path)
        self._shadowed: set[str] = set()
        if self.to_stdout:
            sys.stdout.flush()
            self._fd: int | None = os.dup(sys.stdout.fileno())
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if overwrite else 0)
            self._fd = os.open(self.path, flags, 0o644)
        self._pending: list[bytes] = []
        self._flush_every = flush_every
        self._last_flush = time.monotonic()
        self.written = 0
        if not overwrite and not self.to_stdout:
            self._repair_torn_tail()
        # Bytes of whole lines on disk: what a frontier checkpoint records and a resume truncates to.
        self.offset = 0 if self.to_stdout else os.fstat(self._fd).st_size

    def truncate(self, offset: int) -> None:
        """Cut the file back to `offset` (a checkpoint), dropping lines written after it."""
        assert self._fd is not None
        self._pending.clear()
        if self.to_stdout:
            # Lines already sent cannot be taken back: a resumed crawl repeats the pages after the checkpoint.
            log.warning("items go to standard output: a resumed crawl may repeat items sent before the stop")
            return
        if offset < self.offset:
            os.ftruncate(self._fd, offset)
            log.info("%s: dropped %d bytes written after the last checkpoint", self.path, self.offset - offset)
        self.offset = min(offset, self.offset)

    def _repair_torn_tail(self) -> None:
        """Appending after a hard kill: drop a last line without its newline (or, compressed, a last gzip
        member cut short) so no record is torn."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        if self.compressed:
            keep = _whole_gzip_members(self.path)
            if keep < size:
                os.ftruncate(self._fd, keep)
                log.warning("%s ended in a torn gzip member; truncated it to %d bytes", self.path, keep)
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
        items = page.items
        if items is None:
            self.write(page_item(page))
            return
        base = page_item(page)
        for extra in items:
            record = dict(base)
            for key, value in extra.items():
                if key in _META_KEYS:
                    if key not in self._shadowed:
                        self._shadowed.add(key)
                        log.warning("items have a field %r, shadowed by the page's own %r; rename it in "
                                    "extract.json (e.g. item_%s: %s)", key, key, key, key)  # fmt: skip
                    continue
                record[key] = value
            self.write(record)

    def flush(self) -> None:
        """Write the buffered lines with one `os.write` of whole lines. When the write fails (a full disk),
        the file is cut back to its last whole line, the lines stay buffered, and `OutputError` says why:
        nothing is lost and nothing is torn."""
        self._last_flush = time.monotonic()
        if not self._pending or self._fd is None:
            return
        data = b"".join(self._pending)
        if self.reader_gone:  # stdout's reader is gone: nothing more can be written, nothing is lost on disk
            self._pending.clear()
            return
        if self.compressed:
            data = gzip.compress(data, compresslevel=6, mtime=0)
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except BrokenPipeError as exc:
            if not self.to_stdout:
                self._cut_back()
                raise OutputError(f"cannot write items to {self.path}: {exc.strerror or exc}") from exc
            self._pending.clear()
            self.reader_gone = True
            log.warning("standard output was closed by its reader: no more items are written")
            if self._on_closed is not None:
                self._on_closed()
            return
        except OSError as exc:
            self._cut_back()
            raise OutputError(f"cannot write items to {self.path}: {exc.strerror or exc}") from exc
        self._pending.clear()
        self.offset += len(data)

    def _cut_back(self) -> None:
        """Drop a partly written flush: the file ends on the last whole line again."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self.offset)
        except OSError:  # pragma: no cover - truncating never needs space; log rather than mask the cause
            log.exception("%s: cannot cut a partial write back to %d bytes", self.path, self.offset)

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class JsonLinesWriter(ItemWriter):
    def encode(self, record: dict[str, Any]) -> bytes:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS, default=str)


class JsonArrayWriter(ItemWriter):
    """One JSON array (`.json`), one record per line: `[` before the first record, `,` before each next one,
    `]` when the writer closes. `offset` never counts the closing bracket, so a checkpoint is a place to
    continue from; reopening to append (or resume) removes the bracket first. The file is a valid array
    once the crawl has ended: for a file that is valid at every moment, use `.jsonl`."""

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = True, flush_every: float = 0.5) -> None:
        super().__init__(path, overwrite=overwrite, flush_every=flush_every)
        self._first = self.offset == 0

    def _closer(self, empty: bool) -> bytes:
        closer = b"[]\n" if empty else b"\n]\n"
        # mtime=0 makes the compressed closer the same bytes every time: reopening can recognise it.
        return gzip.compress(closer, compresslevel=6, mtime=0) if self.compressed else closer

    def _repair_torn_tail(self) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        with open(self.path, "rb") as f:
            f.seek(max(0, size - 64))
            tail = f.read()
        for empty in (True, False):
            closer = self._closer(empty)
            if tail.endswith(closer):
                os.ftruncate(self._fd, size - len(closer))
                return
        super()._repair_torn_tail()

    def truncate(self, offset: int) -> None:
        super().truncate(offset)
        self._first = self.offset == 0

    def encode(self, record: dict[str, Any]) -> bytes:
        prefix = b"[\n" if self._first else b",\n"
        self._first = False
        return prefix + orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=str)

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            closer = self._closer(self._first)
            view = memoryview(closer)
            while view:
                view = view[os.write(self._fd, view) :]
        super().close()


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


def _whole_gzip_members(path: Path) -> int:
    """Bytes of `path` that are whole gzip members: where a member cut short (a kill mid-write) begins."""
    end = pos = 0
    decoder: Any = None
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            data = chunk
            while data:
                if decoder is None:
                    decoder = zlib.decompressobj(31)
                try:
                    decoder.decompress(data, 1 << 20)  # the output is not needed, only the boundaries
                except zlib.error:
                    return end
                rest = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
                if not decoder.eof and not rest:
                    while decoder.decompress(b"", 1 << 20) and not decoder.eof:  # drain buffered output
                        pass
                pos += len(data) - len(rest)
                if decoder.eof:
                    end = pos
                    decoder = None
                data = rest
    return end


def open_writer(path: str | os.PathLike[str], *, columns: list[str] | None = None, overwrite: bool = True,
                flush_every: float = 0.5, on_closed: Callable[[], None] | None = None) -> ItemWriter:  # fmt: skip
    """The writer for `path`'s format; `on_closed` is called when standard output (`-`) loses its reader."""
    fmt = writer_format(path)
    if fmt == "csv":
        return CsvWriter(path, columns=columns, overwrite=overwrite, flush_every=flush_every)
    if fmt == "json":
        return JsonArrayWriter(path, overwrite=overwrite, flush_every=flush_every)
    return JsonLinesWriter(path, overwrite=overwrite, flush_every=flush_every, on_closed=on_closed)


class FailureLog:
    """`output.failures`: an `on_error` hook writing one JSON line per failed request (url, kind, status,
    referer, depth, attempts, message, failed_at), flushed with the items. Its lines are not part of the
    resume checkpoint: after a kill and resume, a failure may be listed twice or (if never flushed) not at all."""

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = True, flush_every: float = 0.5) -> None:
        self._writer = JsonLinesWriter(path, overwrite=overwrite, flush_every=flush_every)

    def __call__(self, failure: Failure) -> None:
        self._writer.write(failure.as_record())

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
