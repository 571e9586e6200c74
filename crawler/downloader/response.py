"""What the downloader reads from a response's headers: status, lengths, the range carried, validators."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from crawler.downloader.outcomes import Failure
from crawler.fetch.sidecar import PartState

__all__ = ["ResponseInfo", "read_response"]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    status: int
    length: int | None  # bytes this response carries
    total: int | None  # length of the whole file, when known
    range_start: int  # offset of the first byte carried
    etag: str | None
    last_modified: str | None
    accept_ranges: bool
    disposition: str | None

    @property
    def ranges_ok(self) -> bool:
        return self.status == 206 or self.accept_ranges

    def same_file(self, state: PartState) -> bool:
        """Does this response carry the version of the file the part came from (length and validator)?"""
        if state.length is not None and self.total is not None and self.total != state.length:
            return False
        if self.etag and state.etag:
            return self.etag == state.etag
        if self.last_modified and state.last_modified:
            return self.last_modified == state.last_modified
        return state.validator is None or (self.etag is None and self.last_modified is None)


def read_response(resp: httpx.Response) -> ResponseInfo | Failure:
    """The response's `ResponseInfo`, or a `Failure` for a 206 without a usable Content-Range."""
    h = resp.headers
    # Bodies are stored as sent (aiter_raw), so Content-Length counts exactly the bytes we write.
    cl = h.get("content-length")
    length = int(cl) if cl and cl.strip().isdigit() else None
    start, total = 0, length
    if resp.status_code == 206:
        m = _CONTENT_RANGE.match(h.get("content-range", ""))
        if not m:
            return Failure(f"206 response without a usable Content-Range ({h.get('content-range')!r})", 206)
        start, last = int(m.group(1)), int(m.group(2))
        total = None if m.group(3) == "*" else int(m.group(3))
        length = last - start + 1
    return ResponseInfo(resp.status_code, length, total, start, h.get("etag"), h.get("last-modified"),
                        h.get("accept-ranges", "").strip().lower() == "bytes", h.get("content-disposition"))  # fmt: skip
