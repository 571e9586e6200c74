"""What to download: `DownloadEntry` (a URL and its per-file options) and the input-file parser.

The input file is a plain list of URLs or aria2's input-file format: a URL line (TAB-separated mirrors of
the same file allowed) followed by indented `key=value` option lines. It is parsed lazily, one entry at a
time, so a list of millions of links is never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from crawler.model.checksum import Checksum
from crawler.model.errors import InputError
from crawler.model.url import canonicalize

__all__ = ["Checksum", "DownloadEntry", "InputError", "parse_header", "parse_input"]

def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` as curl's -H takes it."""
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name or any(c in name for c in " \t\r\n") or any(c in value for c in "\r\n"):
        raise InputError(f"header {text!r} must look like 'Name: value'")
    return name, value.strip()


def _check_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InputError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InputError(f"{url!r} is not an absolute http(s) URL")
    try:
        canonicalize(url)  # the WHATWG parser the downloader keys hosts with must accept it too
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return url


@dataclass(frozen=True, slots=True)
class DownloadEntry:
    """One file to download. `out` is the file name (may hold subdirectories, sanitised), `dir` a
    subdirectory of the destination; both stay inside it whatever they contain."""

    url: str
    out: str | None = None
    dir: str | None = None
    checksum: Checksum | None = None
    headers: tuple[tuple[str, str], ...] = ()
    mirrors: tuple[str, ...] = ()
    segments: int | None = None
    line: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _check_url(self.url))
        object.__setattr__(self, "mirrors", tuple(_check_url(m) for m in self.mirrors))
        if isinstance(self.checksum, str):
            object.__setattr__(self, "checksum", Checksum.parse(self.checksum))
        if isinstance(self.headers, Mapping):
            object.__setattr__(self, "headers", tuple(self.headers.items()))
        else:
            object.__setattr__(self, "headers", tuple(tuple(h) for h in self.headers))
        if self.segments is not None and not 1 <= self.segments <= 64:
            raise InputError(f"segments must be 1..64, got {self.segments}")
        if self.out is not None and not self.out.strip():
            raise InputError("out= must not be empty")

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.mirrors)


def _apply_option(options: dict[str, Any], key: str, value: str) -> None:
    if key == "out":
        options["out"] = value
    elif key == "dir":
        options["dir"] = value
    elif key == "checksum":
        options["checksum"] = Checksum.parse(value)
    elif key == "header":
        options.setdefault("headers", []).append(parse_header(value))
    elif key == "referer":
        options.setdefault("headers", []).append(("Referer", value))
    elif key == "user-agent":
        options.setdefault("headers", []).append(("User-Agent", value))
    elif key == "split":
        if not value.isdigit() or not 1 <= int(value) <= 64:
            raise InputError(f"split must be 1..64, got {value!r}")
        options["segments"] = int(value)
    else:
        raise InputError(
            f"unknown option {key!r} (known: out, dir, checksum, header, referer, user-agent, split)"
        )


def parse_input(lines: Iterable[str], source: str = "<input>") -> Iterator[DownloadEntry]:
    """Entries from a URL list or an aria2 input file, lazily. Raises `InputError` naming the line."""
    urls: list[str] | None = None
    options: dict[str, Any] = {}
    start = 0

    def entry() -> DownloadEntry:
        assert urls is not None
        try:
            return DownloadEntry(urls[0], mirrors=tuple(urls[1:]), line=start,
                                 headers=tuple(options.pop("headers", ())), **options)  # fmt: skip
        except InputError as exc:
            raise InputError(str(exc), source, start) from None

    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            if urls is None:
                raise InputError("option line before any URL", source, number)
            key, eq, value = stripped.partition("=")
            if not eq:
                raise InputError(f"option line {stripped!r} must look like 'key=value'", source, number)
            try:
                _apply_option(options, key.strip().lower(), value.strip())
            except InputError as exc:
                raise InputError(str(exc), source, number) from None
            continue
        if urls is not None:
            yield entry()
        urls, options, start = [u for u in stripped.split("\t") if u.strip()], {}, number
        for u in urls:
            try:
                _check_url(u)
            except InputError as exc:
                raise InputError(str(exc), source, number) from None
    if urls is not None:
        yield entry()
