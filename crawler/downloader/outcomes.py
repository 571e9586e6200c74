"""The explicit outcomes a file download passes between its steps, instead of exceptions.

A step returns its value, or one of these: `Failure` (this entry failed for a reason retrying will not
fix) or `Restart` (start the file again from zero, or resume it from `resume`).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from crawler.fetch.sidecar import PartState

__all__ = ["Failure", "Restart", "describe"]


@dataclass(frozen=True, slots=True)
class Failure:
    """The entry failed: `message` says why. `discard`: the part is useless (drop it, do not resume)."""

    message: str
    http_status: int | None = None
    discard: bool = False


@dataclass(frozen=True, slots=True)
class Restart:
    """Start the file again under the same name: from zero, or resuming `resume` when set."""

    reason: str
    resume: PartState | None = None


def describe(exc: BaseException) -> str:
    """A one-line reason for a transport or disk error."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout ({type(exc).__name__})"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {text}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or text}" + (f": {exc.filename}" if exc.filename else "")
    return text
