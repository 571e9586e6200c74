"""What to download: `DownloadEntry` (a URL and its per-file options) and the input-file parser.

The input file is a plain list of URLs or aria2's input-file format: a URL line (TAB-separated mirrors of
the same file allowed) followed by indented `key=value` option lines. It is parsed lazily, one entry at a
time, so a list of millions of links is never held in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit

from crawler.model.checksum import Checksum
from crawler.model.errors import InputError
from crawler.model.url import canonicalize

__all__ = [
    "MAX_URL_LENGTH",
    "Checksum",
    "DownloadEntry",
    "InputError",
    "check_url",
    "parse_header",
    "parse_input",
    "read_lines",
]

MAX_URL_LENGTH = 8192  # what common servers accept in a request line (nginx's default header buffer)
MAX_LINE_LENGTH = 65_536  # an input line, options (headers) included
# C0 and C1 controls and DEL: never valid in a URL (RFC 3986) or a header value (RFC 9110), NUL least of all.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_OR_TAB = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _control_error(what: str, text: str, pattern: re.Pattern[str]) -> InputError | None:
    m = pattern.search(text)
    if m is None:
        return None
    return InputError(
        f"{what} contains the control character U+{ord(m.group()):04X} at column {m.start() + 1}"
    )


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` as curl's -H takes it."""
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name or any(c in name for c in " \t\r\n") or any(c in value for c in "\r\n"):
        raise InputError(f"header {text!r} must look like 'Name: value'")
    error = _control_error(f"header {name!r}", value, _CONTROL)
    if error is not None:
        raise error
    return name, value.strip()


def check_url(url: str) -> str:
    """`url`, stripped, if it is an absolute http(s) URL a request can be built from; else `InputError`:
    control characters (NUL included), more than `MAX_URL_LENGTH` characters, no host, a port outside
    1..65535. Checked when the input is read, so a bad line is reported before anything downloads."""
    url = url.strip(" \t\r\n")
    if len(url) > MAX_URL_LENGTH:
        raise InputError(f"URL is {len(url):,} characters long, over the limit of {MAX_URL_LENGTH:,}")
    error = _control_error("URL", url, _CONTROL_OR_TAB)
    if error is not None:
        raise error
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InputError(f"{url!r} is not an absolute http(s) URL")
    if not parts.hostname:
        raise InputError(f"{url!r} names no host")
    if port == 0:
        raise InputError(f"invalid URL {url!r}: port 0 is not a port a server listens on")
    try:
        canonicalize(url)  # the WHATWG parser the downloader keys hosts with must accept it too
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return url


def read_lines(stream: Iterable[str] | IO[str], source: str = "<input>") -> Iterator[str]:
    """The lines of an input file, each at most `MAX_LINE_LENGTH` characters (a longer one is an
    `InputError` naming it, before it is held in memory whole)."""
    readline = getattr(stream, "readline", None)
    if readline is None:
        for number, line in enumerate(stream, 1):
            if len(line) > MAX_LINE_LENGTH:
                raise InputError(f"line is longer than {MAX_LINE_LENGTH:,} characters", source, number)
            yield line
        return
    number = 0
    while line := readline(MAX_LINE_LENGTH + 1):
        number += 1
        if len(line) > MAX_LINE_LENGTH:
            raise InputError(f"line is longer than {MAX_LINE_LENGTH:,} characters", source, number)
        yield line


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
        object.__setattr__(self, "url", check_url(self.url))
        object.__setattr__(self, "mirrors", tuple(check_url(m) for m in self.mirrors))
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
                check_url(u)
            except InputError as exc:
                raise InputError(str(exc), source, number) from None
    if urls is not None:
        yield entry()
