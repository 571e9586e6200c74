"""Where a downloaded file goes: a name reserved for the run (aria2's `name.1.ext` on collisions) and what
to do with what is already on disk there, by the collision policy.

`find_resumable` looks, before any request, for this entry's part from an earlier run; `place` decides,
once the first response named the file, between a fresh download, resuming a part found under that
name, skipping a file that is already this one, or failing. A file on disk is this entry's when it records
one of the entry's URLs as its origin (`user.xdg.origin.url`) or matches the entry's checksum.

| on disk at the name                | rename (default)  | overwrite | skip            | fail   |
|------------------------------------|-------------------|-----------|-----------------|--------|
| this entry's file (origin/checksum)| skip if complete, else replace (every policy)                  |
| another's file, or origin unknown  | next name         | replace   | skip if same size, else next name | fail |
| another URL's part (or no sidecar) | next name         | restart it| next name       | fail   |
| this entry's part (URL or mirror)  | resume when bound to this URL and checksum, and it still       |
|                                    | matches the server's copy (validator, length); else restart it |
A name another entry of this run holds is never used: the next name, or a failure under `fail`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from crawler.downloader.context import RunContext
from crawler.downloader.entries import DownloadEntry
from crawler.downloader.outcomes import Failure
from crawler.downloader.response import ResponseInfo
from crawler.fetch.disk import hash_file
from crawler.fetch.names import Reservation, origin_of
from crawler.fetch.sidecar import PART_SUFFIX, SIDECAR_SUFFIX, PartState, Sidecar

__all__ = ["Fresh", "Resume", "Skip", "find_resumable", "hash_existing", "place", "resumable"]

log = logging.getLogger("crawler.download")


@dataclass(frozen=True, slots=True)
class Fresh:
    """Download from byte 0 into `reservation` (an existing file there is replaced on completion)."""

    reservation: Reservation


@dataclass(frozen=True, slots=True)
class Resume:
    """Continue the part of `reservation`, described by `state`."""

    reservation: Reservation
    state: PartState


@dataclass(frozen=True, slots=True)
class Skip:
    """The file is already there, complete: nothing to download."""

    path: Path
    size: int
    sha256: str | None


def resumable(state: PartState, part_size: int | None) -> bool:
    """Worth a ranged request: a validator for If-Range, bytes recorded, and a part file that holds
    every byte the record claims (each segment's written range) and nothing past the file's length."""
    if not (state.validator and state.segments and state.written > 0 and state.length != 0):
        return False
    if part_size is None or (state.length is not None and part_size > state.length):
        return False
    return part_size >= max((s.pos for s in state.segments if s.done), default=0)


def _size_of(path: Path) -> int | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else -1


async def hash_existing(ctx: RunContext, path: Path, algos: list[str]) -> dict[str, str]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(ctx.executor, hash_file, path, algos)


def _checksum_text(entry: DownloadEntry) -> str | None:
    return None if entry.checksum is None else str(entry.checksum)


def find_resumable(ctx: RunContext, owner: str, url: str, entry: DownloadEntry,
                   wanted: PurePosixPath) -> Resume | None:  # fmt: skip
    """This entry's part from an earlier run, under the name it would get or a numbered one, reserved."""
    names = ctx.names
    for candidate in names.candidates(wanted):
        _, path = names.path_of(candidate)
        size = _size_of(path.with_name(path.name + PART_SUFFIX))
        if size is not None:
            state = Sidecar.load(path.with_name(path.name + SIDECAR_SUFFIX))
            if state is not None and state.bound_to(url, _checksum_text(entry)) and resumable(state, size):
                reservation = names.reserve(candidate, owner)
                if reservation is not None:  # (else another entry of this run holds it)
                    return Resume(reservation, state)
        elif not os.path.lexists(path):
            return None  # the first free name: an earlier run went no further
    return None


async def place(ctx: RunContext, owner: str, url: str, entry: DownloadEntry, wanted: PurePosixPath,
                info: ResponseInfo, release_connection: Callable[[], Awaitable[None]],
                algos: list[str]) -> Fresh | Resume | Skip | Failure:  # fmt: skip
    """The name for a response that starts at byte 0 (see the module docstring). It may hash a file on
    disk; it calls `release_connection` first, so the caller must then send its request again."""
    names, policy = ctx.names, ctx.settings.collision
    checksum = entry.checksum
    for candidate in names.candidates(wanted):
        reservation = names.reserve(candidate, owner)
        if reservation is None:
            if policy == "fail":
                return Failure(f"{candidate} is taken by another entry of this run (--on-collision fail)")
            continue
        part_size = _size_of(reservation.companion(PART_SUFFIX))
        if part_size is not None:
            state = Sidecar.load(reservation.companion(SIDECAR_SUFFIX))
            if state is not None and state.url in entry.urls:  # this entry's part (from this URL or a mirror)
                if (ctx.settings.resume and state.bound_to(url, _checksum_text(entry))
                        and resumable(state, part_size) and info.same_file(state)):  # fmt: skip
                    return Resume(reservation, state)
                # another version, another expected checksum, or unsound: it starts over below
            elif policy == "fail":
                return Failure(
                    f"{reservation.path}{PART_SUFFIX} belongs to another download (--on-collision fail)"
                )
            elif policy != "overwrite":
                names.release(reservation)
                continue  # another download's partial data: leave it alone
        try:
            existing = os.lstat(reservation.path)
        except FileNotFoundError:
            return Fresh(reservation)
        if stat.S_ISDIR(existing.st_mode):
            names.release(reservation)
            continue
        ours = origin_of(reservation.path) in entry.urls
        if checksum is not None and stat.S_ISREG(existing.st_mode):
            await release_connection()  # hashing may take a while: do not hold the connection
            digests = await hash_existing(ctx, reservation.path, algos)
            if digests[checksum.algo] == checksum.hexdigest:
                return Skip(reservation.path, existing.st_size, digests.get("sha256"))
        elif ours and existing.st_size == info.total:
            return Skip(reservation.path, existing.st_size, None)
        if ours or policy == "overwrite":
            log.info("%s: replacing %s", url, reservation.path)
            return Fresh(reservation)
        if policy == "fail":
            return Failure(f"{reservation.path} exists and is not this URL's file (--on-collision fail)")
        if policy == "skip" and checksum is None and existing.st_size == info.total:
            return Skip(reservation.path, existing.st_size, None)
        names.release(reservation)
    return Failure(f"no free name for {wanted}")
