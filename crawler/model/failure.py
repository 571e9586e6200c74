"""A request that did not become a page: what `crawl(include_failures=True)` yields and `on_error` hooks get."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crawler.model.request import Request

__all__ = ["Failure"]


@dataclass(slots=True)
class Failure:
    """One failed request, after its retries.

    `kind` is the error kind the stats count it under (`http_404`, `connect_error`, `read_timeout`,
    `body_too_large`, ...: `crawler.model.errors`); `status` is the HTTP status when the server answered;
    `referer` is the page that linked here (None for a start URL); `attempts` counts the tries made."""

    url: str
    kind: str
    status: int | None = None
    referer: str | None = None
    depth: int = 0
    attempts: int = 1
    message: str = ""
    failed_at: str = field(default_factory=lambda: _now())
    request: Request | None = field(default=None, repr=False)

    @classmethod
    def of(cls, request: Request, kind: str, *, status: int | None = None, message: str = "") -> Failure:
        if status is None and kind.startswith("http_") and kind[5:].isdigit():
            status = int(kind[5:])
        return cls(url=request.url, kind=kind, status=status, referer=request.referer, depth=request.depth,
                   attempts=request.retries + 1, message=message, request=request)  # fmt: skip

    def as_record(self) -> dict[str, Any]:
        """The JSON-able form written by `output.failures`."""
        return {"url": self.url, "kind": self.kind, "status": self.status, "referer": self.referer,
                "depth": self.depth, "attempts": self.attempts, "message": self.message,
                "failed_at": self.failed_at}  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
