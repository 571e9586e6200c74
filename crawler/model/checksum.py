"""An expected digest of a file, as aria2 and download lists write it (`sha-256=HEX`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from crawler.model.errors import InputError

__all__ = ["Checksum"]

# aria2 spells algorithms `sha-256`; hashlib spells them `sha256`.
_ALGORITHMS = {"md5": 16, "sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}


@dataclass(frozen=True, slots=True)
class Checksum:
    """An expected digest: `algo` is a hashlib name (`sha256`), `hexdigest` lower-case hex."""

    algo: str
    hexdigest: str

    @classmethod
    def parse(cls, text: str) -> Checksum:
        """`sha-256=HEX` (aria2), also `sha256=HEX`, `sha256:HEX`, `SHA-256=HEX`; md5, sha-1, sha-2 family."""
        sep = "=" if "=" in text else ":"
        algo, found, digest = text.strip().partition(sep)
        if not found:
            raise InputError(f"checksum {text!r} must look like 'sha-256=HEX'")
        return cls.of(algo, digest)

    @classmethod
    def of(cls, algo: str, hexdigest: str) -> Checksum:
        name = algo.strip().lower().replace("-", "").replace("_", "")
        if name not in _ALGORITHMS:
            known = ", ".join(sorted(a if a == "md5" else f"sha-{a[3:]}" for a in _ALGORITHMS))
            raise InputError(f"unknown checksum algorithm {algo!r} (use one of: {known})")
        digest = hexdigest.strip().lower()
        if len(digest) != 2 * _ALGORITHMS[name] or any(c not in "0123456789abcdef" for c in digest):
            raise InputError(f"{algo} checksum must be {2 * _ALGORITHMS[name]} hex digits, got {hexdigest!r}")
        return cls(name, digest)

    def new_hasher(self) -> Any:
        return hashlib.new(self.algo)

    def __str__(self) -> str:
        label = self.algo if self.algo == "md5" else f"sha-{self.algo[3:]}"
        return f"{label}={self.hexdigest}"
