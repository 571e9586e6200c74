"""File names on disk, for downloads and for the crawl's `save:`: `out=`, else Content-Disposition (RFC 6266,
`filename*` per RFC 5987/8187), else the URL path, else `index.html`. Every name goes through
`safe_filename`, and every path is checked to stay under the destination directory.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

__all__ = [
    "DEFAULT_NAME",
    "UnsafePath",
    "filename_from_content_disposition",
    "filename_from_url",
    "inside",
    "numbered",
    "safe_filename",
    "safe_relative_path",
    "safe_subpath",
]

DEFAULT_NAME = "index.html"

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


# `; name = value` where value is a quoted-string (with backslash escapes) or a token (lenient: up to `;`).
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


class UnsafePath(ValueError):
    """A path that would leave the destination directory."""


def _basename(name: str) -> str:
    # A name is one segment: keep what follows the last separator of either flavour (as browsers do).
    return re.split(r"[/\\]", name)[-1]


def _decode_ext_value(value: str) -> str | None:
    """RFC 8187 ext-value: `charset'language'pct-encoded`."""
    charset, q1, rest = value.partition("'")
    _lang, q2, encoded = rest.partition("'")
    if not (q1 and q2):
        return None
    charset = charset.strip().lower() or "utf-8"
    if charset not in ("utf-8", "utf8", "iso-8859-1", "latin-1", "latin1", "us-ascii"):
        charset = "utf-8"
    try:
        return unquote(encoded.strip(), encoding=charset, errors="replace")
    except LookupError:
        return unquote(encoded.strip(), errors="replace")


def filename_from_content_disposition(value: str | None) -> str | None:
    """The raw file name a Content-Disposition header asks for (not yet sanitised), or None.
    `filename*` wins over `filename`, as RFC 6266 section 4.3 says."""
    if not value:
        return None
    plain: str | None = None
    extended: str | None = None
    for m in _PARAM.finditer(value if value.lstrip().startswith(";") else ";" + value.partition(";")[2]):
        key = m.group(1).lower()
        raw = m.group(2).strip()
        if key == "filename*":
            decoded = _decode_ext_value(raw.strip('"'))
            if decoded:
                extended = decoded
        elif key == "filename":
            if raw.startswith('"'):
                raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:])
            if raw:
                plain = raw
    return extended or plain


def filename_from_url(url: str) -> str | None:
    """The last path segment of `url`, percent-decoded (UTF-8), or None for a directory URL."""
    path = urlsplit(url).path
    if not path or path.endswith("/"):
        return None
    last = unquote(path.rpartition("/")[2], errors="replace")
    return last or None


def choose_name(out: str | None, content_disposition: str | None, url: str) -> str:
    """The sanitised file name: `out`, else Content-Disposition, else the URL, else `index.html`."""
    for candidate in (out, filename_from_content_disposition(content_disposition), filename_from_url(url)):
        if candidate:
            name = safe_filename(_basename(candidate), default="")
            if name:
                return name
    return DEFAULT_NAME


def safe_subpath(path: str) -> PurePosixPath:
    """A user-given relative path (`dir=`, `out=` with directories) as sanitised segments: absolute paths,
    drive letters, `.` and `..` lose their meaning instead of escaping the destination."""
    segments = [s for s in re.split(r"[/\\]", path) if s.strip() not in ("", ".", "..")]
    return PurePosixPath(*[safe_filename(s, default="_") for s in segments])


def inside(root: Path, *parts: str | os.PathLike[str]) -> Path:
    """`root/parts...`, resolved (symlinks followed); raises `UnsafePath` if it is not under `root`."""
    root = root.resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and not path.is_relative_to(root):
        raise UnsafePath(f"refusing to write outside {root}: {path}")
    return path


def numbered(name: str, n: int) -> str:
    """`name.N.ext` for `--rename` (`report.pdf` -> `report.1.pdf`, `README` -> `README.1`)."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name}.{n}"
    return f"{stem}.{n}.{ext}"
