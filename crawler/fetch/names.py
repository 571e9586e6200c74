"""File names on disk, for downloads and for the crawl's `save:`, and the one allocator that hands them out.

- A download's name: `out=`, else Content-Disposition (RFC 6266, `filename*` per RFC 5987/8187), else the
  URL path, else `index.html` (`choose_name`). A saved page's path: `url_path`, distinct per URL.
- Every name goes through `safe_filename`, and every path is checked to stay under its root.
- `NameAllocator` reserves names for a whole run (companions and case folding included), so two owners
  never share a file; `origin_of` tells whether a file on disk came from a given URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "DEFAULT_NAME",
    "ORIGIN_XATTR",
    "NameAllocator",
    "Reservation",
    "UnsafePath",
    "choose_name",
    "filename_from_content_disposition",
    "filename_from_url",
    "inside",
    "numbered",
    "origin_of",
    "probe_case_insensitive",
    "safe_filename",
    "safe_subpath",
    "set_origin",
    "url_path",
]

DEFAULT_NAME = "index.html"

_WINDOWS_DEVICES = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
}
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


# --- one URL, one path (the crawl's `save:`) ------------------------------------------------------------

_EXT = re.compile(r"(\.[A-Za-z0-9]{1,16})$")
# A name that looks like the output of `_hashed` (`stem~0123456789.ext`): only `_hashed` may produce one.
_HASH_MARK = re.compile(r"~[0-9a-f]{10}(\.[A-Za-z0-9]{1,16})?$")
# What `quote` leaves alone in a path segment (RFC 3986 pchar), besides ALPHA, DIGIT and `-._~`.
_PCHAR_SAFE = "!$&'()*+,;=:@"
_HOST_CHARS = re.compile(r"^[a-z0-9.-]+$")
DIRECTORY_INDEX = "index.html"


def _hashed(name: str, raw: str) -> str:
    """`name` with a short digest of the raw text it came from, before its extension."""
    digest = hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=5).hexdigest()
    m = _EXT.search(name)
    stem, ext = (name[: m.start()], m.group(1)) if m and m.start() > 0 else (name, "")
    return f"{stem}~{digest}{ext}"


def _path_segment(raw: str) -> str:
    """A file name for one raw (percent-encoded) URL path segment. It is the decoded segment itself when
    that is faithful: safe as is, written in the one canonical encoding, and not shaped like a hashed
    name; otherwise the sanitised name plus a digest of the raw segment. So two distinct segments never
    share a name, whatever sanitising merged (`/a:b`, `/a%3Ab` and `/a%00b` are three files)."""
    decoded = unquote(raw, errors="surrogateescape")
    name = safe_filename(decoded.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), default="_")
    if (
        name == decoded
        and quote(decoded, safe=_PCHAR_SAFE) == raw
        and name != DIRECTORY_INDEX
        and not _HASH_MARK.search(name)
    ):
        return name
    return _hashed(name, raw)


def url_path(url: str) -> PurePosixPath:
    """`host[_port]/dir/name` for a URL: distinct URLs get distinct paths (see `_path_segment`). A
    directory URL (`/tail/`) saves as `tail/index.html`, so a literal `index.html` segment is hashed;
    a query joins the last segment (`coll?x` is `coll_x~<digest>`, never `coll_x`)."""
    parts = urlsplit(url)
    hostname = (parts.hostname or "").lower()
    host = hostname + (f"_{parts.port}" if parts.port else "")
    if not _HOST_CHARS.match(hostname):
        host = _hashed(safe_filename(host, default="host"), parts.netloc.rpartition("@")[2])
    raw_segments = parts.path.split("/")[1:] if parts.path.startswith("/") else parts.path.split("/")
    directory = not raw_segments or raw_segments[-1] == ""
    if directory:
        raw_segments = raw_segments[:-1]
    segments = [_path_segment(s) for s in raw_segments if s not in (".", "..")]
    if directory:
        segments.append(DIRECTORY_INDEX)
    if parts.query:
        last = raw_segments[-1] if raw_segments and not directory else ""
        shown = safe_filename(f"{segments[-1]}_{unquote(parts.query, errors='replace')}", default="_")
        segments[-1] = _hashed(shown, f"{last}/?{parts.query}")
    return PurePosixPath(host, *segments)


# --- whose file is this -----------------------------------------------------------------------------------

# The freedesktop.org "Common Extended Attributes" name for where a file was downloaded from; curl and
# wget write it with --xattr. Our completed files carry it, so a later run knows which files are its own.
ORIGIN_XATTR = "user.xdg.origin.url"


def set_origin(fd: int, url: str) -> None:
    """Record `url` as the origin of the open file `fd`; silently nothing where xattrs are unsupported."""
    setter = getattr(os, "fsetxattr", None) or getattr(os, "setxattr", None)
    if setter is None:
        return
    with contextlib.suppress(OSError):
        setter(fd, ORIGIN_XATTR, url.encode("utf-8", "surrogateescape")[:4000])


def origin_of(path: Path) -> str | None:
    """The origin URL recorded on `path`, or None (none recorded, or no xattr support)."""
    getter = getattr(os, "getxattr", None)
    if getter is None:
        return None
    try:
        value: bytes = getter(path, ORIGIN_XATTR, follow_symlinks=False)
    except OSError:
        return None
    return value.decode("utf-8", "surrogateescape")


# --- one name allocator per run --------------------------------------------------------------------------


def probe_case_insensitive(directory: Path) -> bool:
    """Does the filesystem holding `directory` (which must exist) fold case? Creates and removes one file."""
    fd, name = tempfile.mkstemp(prefix=".CrawlerCaseProbe-", dir=directory)
    os.close(fd)
    try:
        return os.path.exists(os.path.join(directory, os.path.basename(name).lower()))
    finally:
        os.unlink(name)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A file name held for one owner for the rest of the run, with its companions (`.part`, sidecar)."""

    relative: PurePosixPath
    path: Path  # absolute, resolved (its directory is inside the root)
    owner: str

    def companion(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)


class NameAllocator:
    """Reserves file paths under `root` for the whole run, so no two owners (download entries, saved
    URLs) ever share a file, a `.part` or a sidecar.

    - A reserved name also holds its companions (`NAME.part`, `NAME.part.json`): an entry named
      `<other>.part` cannot take another entry's partial data, in either order.
    - Names compare case-insensitively when the filesystem under `root` folds case (probed once, unless
      `case_insensitive` says).
    - A file is never reserved where this run made a directory (one on disk is the caller's to see); a
      directory needed where a file is (reserved, or on disk) gets the next numbered name (`dir.1/child`)
      for the rest of the run.
    - `candidates()` yields the name, then aria2's `name.1.ext`, `name.2.ext`, ... for the caller to try.
    Memory: one dict entry of two ints per reserved file (a hash of the key and of the owner; a hash
    collision only costs a needless rename), plus one per directory.
    """

    def __init__(self, root: str | os.PathLike[str], companions: Sequence[str] = (".part", ".part.json"),
                 *, max_numbered: int = 9999, case_insensitive: bool | None = None) -> None:  # fmt: skip
        self.root = Path(root)
        self.companions = tuple(companions)
        self.max_numbered = max_numbered
        self._fold = case_insensitive  # None: probe the filesystem on first use
        self._files: dict[int, int] = {}  # key hash -> owner hash
        self._dirs: set[int] = set()
        self._aliases: dict[str, str] = {}  # a directory's key -> the key of the (numbered) one it became
        self._resolved: dict[PurePosixPath, Path] = {}
        self._made_dirs: set[Path] = set()

    @property
    def case_insensitive(self) -> bool:
        if self._fold is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._fold = probe_case_insensitive(self.root)
        return self._fold

    def _key(self, relative: str) -> str:
        key = unicodedata.normalize("NFC", relative)
        return key.casefold() if self.case_insensitive else key

    def candidates(self, wanted: PurePosixPath) -> Iterator[PurePosixPath]:
        """`wanted`, then `name.1.ext` ... `name.<max_numbered>.ext` in the same directory."""
        yield wanted
        for n in range(1, self.max_numbered + 1):
            yield wanted.with_name(numbered(wanted.name, n))

    def path_of(self, wanted: PurePosixPath) -> tuple[PurePosixPath, Path]:
        """Where `wanted` lands in this run (its directories as `_directory` maps them), relative and
        absolute, without reserving the file: for looking at the disk before deciding."""
        if not wanted.parts:
            raise UnsafePath("an empty path names no file")
        parent = wanted.parent
        relative = wanted if not parent.parts else self._directory(parent) / wanted.name
        return relative, self._absolute(relative)

    def reserve(self, wanted: PurePosixPath, owner: str) -> Reservation | None:
        """Hold `wanted` (relative to the root) for `owner`, or None when another owner of this run holds it
        or one of its companions, or this run made it a directory. The same owner gets the same
        reservation again. What is on disk there is the caller's to judge (a directory included)."""
        relative, path = self.path_of(wanted)
        key = hash(self._key(str(relative)))
        me = hash(owner)
        held = self._files.get(key)
        if held is None:
            if key in self._dirs or self._companion_taken(self._key(str(relative)), me):
                return None
            self._files[key] = me
        elif held != me:
            return None
        return Reservation(relative, path, owner)

    def release(self, reservation: Reservation) -> None:
        """Give back a name its owner will not use after all (nothing was written under it)."""
        key = hash(self._key(str(reservation.relative)))
        if self._files.get(key) == hash(reservation.owner):
            del self._files[key]

    def _companion_taken(self, key: str, me: int) -> bool:
        files = self._files
        for suffix in ("", *self.companions):
            name = key + suffix
            if suffix and files.get(hash(name), me) != me:
                return True  # our companion is someone's file
            for other in self.companions:
                if name.endswith(other) and files.get(hash(name[: -len(other)]), me) != me:
                    return True  # our name (or companion) is a companion of someone's file
        return False

    def _absolute(self, relative: PurePosixPath) -> Path:
        directory = self._resolved.get(relative.parent)
        if directory is None:
            directory = self._resolved[relative.parent] = inside(self.root, relative.parent)
        return directory / relative.name

    def _directory(self, wanted: PurePosixPath) -> PurePosixPath:
        """`wanted` as a directory path for this run: each component that is a file (reserved, or on disk)
        replaced by its first numbered name that can be a directory. Remembered for the run."""
        out = PurePosixPath()
        for part in wanted.parts:
            path = out / part
            key = self._key(str(path))
            alias = self._aliases.get(key)
            if alias is not None:
                out = PurePosixPath(alias)
                continue
            if hash(key) in self._dirs:
                out = path
                continue
            chosen = path
            for candidate in self.candidates(path):
                ckey = self._key(str(candidate))
                if hash(ckey) in self._dirs:
                    chosen = candidate
                    break
                if hash(ckey) in self._files or self._companion_taken(ckey, -1):
                    continue
                on_disk = self.root / candidate
                if os.path.lexists(on_disk) and not os.path.isdir(on_disk):
                    continue
                chosen = candidate
                break
            else:
                raise UnsafePath(f"no usable directory name for {path}")
            self._dirs.add(hash(self._key(str(chosen))))
            if chosen != path:
                self._aliases[key] = str(chosen)
            out = chosen
        return out

    def make_parent(self, reservation: Reservation) -> None:
        """Create the reservation's directory (once per run) and check it is still inside the root: a
        symlink swapped in meanwhile raises `UnsafePath`. Files are then opened with O_NOFOLLOW."""
        directory = reservation.path.parent
        if directory not in self._made_dirs:
            directory.mkdir(parents=True, exist_ok=True)
            inside(self.root, reservation.relative.parent)
            self._made_dirs.add(directory)
