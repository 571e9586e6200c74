"""WARC output (`output.warc`): a request and a response record (WARC/1.1) for every fetched page, written
with FastWARC, one gzip member per record, rotated to a new file at `output.warc_max_size`.

Each file starts with a `warcinfo` record. `write_file` archives a response whose body is a file on disk (a
download of `crawler download --warc`, a page `save:` streamed to disk): the body is streamed from the file
twice (once for the digests, once into the record), never held in memory. A response record holds the HTTP status line, the response
headers and the body; a request record, linked to it by `WARC-Concurrent-To`, the request as sent (method,
target, Host, the client's headers, Referer and per-request headers). Both carry `WARC-Target-URI`,
`WARC-Date`, `WARC-Block-Digest`; the response also `WARC-Payload-Digest` (SHA-1, base32, of the body).

The body is stored as the crawler decoded it: a `Content-Encoding` (gzip, br, ...) is removed from the
stored headers and `Content-Length` is the stored body's length, so every reader sees a consistent record.
HTTP/2 responses are written with an HTTP/1.1 status line (what WARC readers parse) and the protocol in
`WARC-Protocol`. Writing happens on one background thread in call order (zlib releases the GIL), so the
event loop only waits when the archive falls behind.

Measured with `python -m benchmarks.warc_write` (pages of 50 KB, request + response records, gzip per record;
two runs on a busy 2-core machine, load ~8): FastWARC 193-312 pages/s at compression level 6, 282-547 at
level 1 (files ~40% larger); warcio, whose writer always compresses at level 9, 121-273 at about level 6's
size. FastWARC it is: as fast or faster at the same size, and its level can be turned down.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
import socket
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crawler.model.page import Page

__all__ = ["WarcArchive", "warc_file_names"]

log = logging.getLogger("crawler.output")

_DROPPED_HEADERS = frozenset(("content-encoding", "transfer-encoding", "content-length"))
# A file's record is the whole file: the range a 206 carried does not describe it.
_FILE_DROPPED_HEADERS = _DROPPED_HEADERS | {"content-range"}
_CHUNK = 1 << 20
_NUMBERED = re.compile(r"-(\d{5})\.warc(\.gz)?$")


def warc_file_names(path: str | os.PathLike[str], index: int, rotating: bool) -> Path:
    """The file for archive number `index`: `path` itself without rotation, else `NAME-00000.warc.gz`."""
    p = Path(path)
    if not rotating:
        return p
    name = p.name
    for suffix in (".warc.gz", ".warc"):
        if name.endswith(suffix):
            return p.with_name(f"{name[: -len(suffix)]}-{index:05d}{suffix}")
    return p.with_name(f"{name}-{index:05d}.warc.gz")


class WarcArchive:
    """Writes pages to WARC files. `await archive.write(page)` from the crawl; `close()` at the end.

    `request_headers` are the headers every request carried (the client's defaults: User-Agent, Accept,
    Accept-Encoding); `max_size` rotates to a new numbered file once a file reaches it (None: one file);
    `overwrite` starts afresh, else the archive continues after the last existing file."""

    def __init__(self, path: str | os.PathLike[str], *, request_headers: Mapping[str, str] | None = None,
                 max_size: int | None = None, overwrite: bool = True, compression_level: int = 6,
                 max_record_body: int | None = None, software: str = "crawler") -> None:  # fmt: skip
        self.path = Path(path)
        self.gzip = self.path.name.endswith(".gz")
        self.max_size = max_size
        self.compression_level = compression_level
        self.max_record_body = max_record_body
        self.software = software
        self._request_headers = dict(request_headers or {})
        self._rotating = max_size is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._index = 0 if overwrite else self._last_index()
        self._file: Any = None
        self._overwrite = overwrite
        self.records = 0
        self.files: list[Path] = []
        # One thread: records are written in the order pages arrive, never interleaved.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crawler-warc")

    def _last_index(self) -> int:
        if not self._rotating:
            return 0
        found = [int(m.group(1)) for f in self.path.parent.iterdir() if (m := _NUMBERED.search(f.name))
                 and f.name.startswith(self.path.name.split(".warc")[0] + "-")]  # fmt: skip
        return max(found, default=0)

    async def write(self, page: Page) -> None:
        """Archive `page` (request and response records) on the writer thread."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.write_sync, page)

    async def write_file(self, url: str, path: Path, *, status: int = 200, http_version: str = "HTTP/1.1",
                         headers: Iterable[tuple[str, str]] = (), request_url: str | None = None,
                         request_headers: Iterable[tuple[str, str]] = ()) -> None:  # fmt: skip
        """Archive a response from `url` whose body is the file at `path`, streamed from disk: `status` and
        `headers` (less codings, lengths and Content-Range; Content-Length is the file's), and the GET of
        `request_url` (default `url`) with `request_headers` (Host added) as its request record."""
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self.write_file_sync, url, path, status, http_version, list(headers),
            request_url or url, list(request_headers),
        )  # fmt: skip

    def write_file_sync(self, url: str, path: Path, status: int, http_version: str,
                        headers: list[tuple[str, str]], request_url: str,
                        request_headers: list[tuple[str, str]]) -> None:  # fmt: skip
        from fastwarc.warc import WarcRecordType

        out = self._current()
        response_id = _record_id()
        with open(path, "rb") as body:
            size = os.fstat(body.fileno()).st_size
            head = _http_head(status, [(k, v) for k, v in headers if k.lower() not in _FILE_DROPPED_HEADERS], size)
            extra = {"WARC-Protocol": http_version.lower()} if http_version != "HTTP/1.1" else {}
            self._file_record(out, response_id, url, head, body, size, extra)
        request = _http_request("GET", request_url, request_headers)
        self._record(out, WarcRecordType.request, _record_id(), url, datetime.now(UTC), request,
                     "application/http; msgtype=request", None, {"WARC-Concurrent-To": response_id})  # fmt: skip
        self.records += 1

    def _file_record(self, out: Any, record_id: str, url: str, head: bytes, body: Any, size: int,
                     extra: dict[str, str]) -> None:  # fmt: skip
        """A response record whose block is `head` then `size` bytes of the open file `body`, streamed."""
        from fastwarc.stream_io import GzipWriter
        from fastwarc.warc import WarcRecord, WarcRecordType

        block_hash, payload_hash = hashlib.sha1(head), hashlib.sha1()
        for chunk in _read_exactly(body, size):
            block_hash.update(chunk)
            payload_hash.update(chunk)
        record = WarcRecord()
        record.init_headers(WarcRecordType.response, record_id.removeprefix("<urn:").removesuffix(">").encode())
        headers = record.headers
        headers["WARC-Date"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        headers["WARC-Target-URI"] = url
        headers["Content-Type"] = "application/http; msgtype=response"
        for key, value in extra.items():
            headers[key] = value
        headers["WARC-Payload-Digest"] = "sha1:" + base64.b32encode(payload_hash.digest()).decode()
        headers["WARC-Block-Digest"] = "sha1:" + base64.b32encode(block_hash.digest()).decode()
        headers["Content-Length"] = str(len(head) + size)
        member = GzipWriter(out, compression_level=self.compression_level) if self.gzip else out
        headers.write(member)  # the version line, the fields and the blank line
        member.write(head)
        body.seek(0)
        for chunk in _read_exactly(body, size):
            member.write(chunk)
        member.write(b"\r\n\r\n")
        if self.gzip:
            member.finish()  # one gzip member per record, as for pages

    def write_sync(self, page: Page) -> None:
        from fastwarc.warc import WarcRecordType

        if page.path is not None:
            if self._too_large(page):
                return
            self.write_file_sync(page.url, page.path, page.status, page.http_version, list(page.headers.multi_items()),
                                 page.request.url, self._request_headers_of(page))  # fmt: skip
            return
        body = page.body
        out = self._current()
        now = datetime.now(UTC)
        response_id = _record_id()
        response = _http_response(page, body)
        digest = hashlib.sha1(body).digest()  # FastWARC writes it as `sha1:<base32>`
        extra = {"WARC-Protocol": page.http_version.lower()} if page.http_version != "HTTP/1.1" else {}
        self._record(out, WarcRecordType.response, response_id, page.url, now, response,
                     "application/http; msgtype=response", digest, extra)  # fmt: skip
        self._record(out, WarcRecordType.request, _record_id(), page.url, now, self._http_request(page),
                     "application/http; msgtype=request", None, {"WARC-Concurrent-To": response_id})  # fmt: skip
        self.records += 1

    def _too_large(self, page: Page) -> bool:
        """A response `save:` streamed to disk is archived from the file, up to max_record_body."""
        assert page.path is not None
        size = page.path.stat().st_size
        if self.max_record_body is not None and size > self.max_record_body:
            log.warning("%s: %d bytes saved to %s are past the WARC record limit; not archived", page.url, size,
                        page.path)  # fmt: skip
            return True
        return False

    def _request_headers_of(self, page: Page) -> list[tuple[str, str]]:
        req = page.request
        headers = dict(self._request_headers)
        if req.referer:
            headers["Referer"] = req.referer
        extra = req.meta.get("headers") if req.meta else None
        if isinstance(extra, dict):
            headers.update(extra)
        return list(headers.items())

    def _http_request(self, page: Page) -> bytes:
        return _http_request(page.request.method, page.request.url, self._request_headers_of(page))

    def _current(self) -> Any:
        if self._file is not None and self.max_size is not None and self._file.tell() >= self.max_size:
            self._file.close()
            self._file = None
            self._index += 1
            self._overwrite = True  # every file after the first is new
        if self._file is None:
            path = warc_file_names(self.path, self._index, self._rotating)
            self._file = open(path, "wb" if self._overwrite else "ab")  # closed by close() or rotation
            self.files.append(path)
            if self._file.tell() == 0:
                self._warcinfo(self._file, path.name)
        return self._file

    def _warcinfo(self, out: Any, name: str) -> None:
        from fastwarc.warc import WarcRecordType

        info = (f"software: {self.software}\r\nformat: WARC File Format 1.1\r\n"
                f"hostname: {socket.gethostname()}\r\n").encode()  # fmt: skip
        self._record(out, WarcRecordType.warcinfo, _record_id(), None, datetime.now(UTC), info,
                     "application/warc-fields", None, {"WARC-Filename": name})  # fmt: skip

    def _record(self, out: Any, kind: Any, record_id: str, url: str | None, when: datetime, block: bytes,
                content_type: str, payload_digest: bytes | None, extra: dict[str, str]) -> None:  # fmt: skip
        from fastwarc.stream_io import GzipWriter
        from fastwarc.warc import WarcRecord

        record = WarcRecord()
        # FastWARC wraps the URN itself: `<urn:uuid:...>` from `uuid:...`.
        record.init_headers(kind, record_id.removeprefix("<urn:").removesuffix(">").encode(),
                            content_length=len(block))  # fmt: skip
        headers = record.headers
        headers["WARC-Date"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if url is not None:
            headers["WARC-Target-URI"] = url
        headers["Content-Type"] = content_type
        for key, value in extra.items():
            headers[key] = value
        record.set_bytes_content(block)
        if self.gzip:
            # One gzip member per record: readers can seek to any record, and a torn tail loses one record.
            member = GzipWriter(out, compression_level=self.compression_level)
            record.write(member, checksum_data=True, payload_digest=payload_digest)
            member.finish()
        else:
            record.write(out, checksum_data=True, payload_digest=payload_digest)

    def flush(self) -> None:
        if self._file is not None:
            self._executor.submit(self._file.flush).result()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._file is not None:
            self._file.close()
            self._file = None


def _record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


def _http_head(status: int, headers: Iterable[tuple[str, str]], length: int) -> bytes:
    """An HTTP/1.1 status line, `headers` and `Content-Length: length`, through the blank line."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}".rstrip(), *(f"{k}: {v}" for k, v in headers)]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def _http_response(page: Page, body: bytes) -> bytes:
    headers = [(k, v) for k, v in page.headers.multi_items() if k.lower() not in _DROPPED_HEADERS]
    return _http_head(page.status, headers, len(body)) + body


def _http_request(method: str, url: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The request block: the request line (origin-form target), Host, then `headers` (a Host among them
    is dropped: the URL's is the one sent)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def _read_exactly(f: Any, size: int) -> Iterable[bytes]:
    """`size` bytes of `f` in chunks; OSError if the file holds fewer (it changed under the archive)."""
    left = size
    while left:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            raise OSError(f"{getattr(f, 'name', 'file')} shrank while it was archived")
        left -= len(chunk)
        yield chunk
