"""The download engine: entries in, one `DownloadResult` per entry out.

`Downloader` pulls entries lazily, runs up to `jobs` files at once through the shared client, takes a
per-host token (the crawl's `HostLimiter`) for every request, retries with the crawl's `RetryPolicy`
(Retry-After honoured and applied host-wide), and keeps partial data across retries and runs.

One file (`_FileJob`): the first response decides the name and whether ranges work; with `segments > 1`
and a known length the rest of the file is fetched in ranged segments, each stream batching its chunks
into positioned writes on a writer thread while the next batch arrives. The file is renamed into place
only once complete and verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import re
import stat
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from crawler.config.job import HttpConfig, LimitsConfig, RetryConfig
from crawler.config.units import Rate, parse_rate, parse_size
from crawler.downloader.entries import Checksum, DownloadEntry, InputError
from crawler.downloader.results import ActiveFile, DownloadProgress, DownloadResult
from crawler.fetch.disk import IncompletePart, PartFile, hash_file, plan_segments
from crawler.fetch.names import UnsafePath, choose_name, inside, numbered, safe_subpath
from crawler.fetch.sidecar import PartState, Segment, Sidecar, part_paths
from crawler.http.client import build_client
from crawler.model.url import canonicalize, host_key
from crawler.politeness.limiter import HostLimiter
from crawler.politeness.retry import RETRYABLE_ERRORS, RetryableStatus, RetryPolicy

__all__ = ["COLLISIONS", "Downloader", "download"]

log = logging.getLogger("crawler.download")

COLLISIONS = ("skip", "overwrite", "rename")
DEFAULT_BATCH = (
    4 << 20
)  # bytes gathered per write: measured best between 2 and 8 MiB (benchmarks/download_bench.py)
DEFAULT_MIN_SEGMENT = 4 << 20
# All batches in memory at once (filling + being written) stay under about this, whatever -j and -x are.
_BUFFER_BUDGET = 64 << 20
_MIN_BATCH = 256 << 10
_MAX_RESTARTS = 3
_MAX_PROGRESS_RESETS = 50  # retry rounds that each made progress, per segment
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
_RETRYABLE: tuple[type[BaseException], ...] = (*RETRYABLE_ERRORS, RetryableStatus)
_EntrySource = Iterable[str | DownloadEntry] | AsyncIterable[str | DownloadEntry]


class _Failure(Exception):
    """This entry failed for a reason retrying will not fix; `discard` drops the part (it is useless)."""

    def __init__(self, message: str, http_status: int | None = None, *, discard: bool = False) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.discard = discard


class _Restart(Exception):
    """Start the file again: `state` set means resume it (found under `final`), None means from zero."""

    def __init__(self, reason: str, state: PartState | None = None, final: Path | None = None) -> None:
        super().__init__(reason)
        self.state = state
        self.final = final


@dataclass(slots=True)
class _Response:
    """What the downloader needs from a response's headers."""

    status: int
    length: int | None  # bytes this response will carry
    total: int | None  # length of the whole file, when known
    range_start: int  # offset of the first byte carried
    etag: str | None
    last_modified: str | None
    accept_ranges: bool
    disposition: str | None

    @classmethod
    def of(cls, resp: httpx.Response) -> _Response:
        h = resp.headers
        # Bodies are stored as sent (aiter_raw), so Content-Length counts exactly the bytes we write.
        cl = h.get("content-length")
        length = int(cl) if cl and cl.strip().isdigit() else None
        start, total = 0, length
        if resp.status_code == 206:
            m = _CONTENT_RANGE.match(h.get("content-range", ""))
            if not m:
                raise _Failure(
                    f"206 response without a usable Content-Range ({h.get('content-range')!r})", 206
                )
            start, last = int(m.group(1)), int(m.group(2))
            total = None if m.group(3) == "*" else int(m.group(3))
            length = last - start + 1
        return cls(resp.status_code, length, total, start, h.get("etag"), h.get("last-modified"),
                   h.get("accept-ranges", "").strip().lower() == "bytes", h.get("content-disposition"))  # fmt: skip

    def same_file(self, state: PartState) -> bool:
        """Does this response carry the same version of the file the part came from?"""
        if state.length is not None and self.total is not None and self.total != state.length:
            return False
        if self.etag and state.etag:
            return self.etag == state.etag
        if self.last_modified and state.last_modified:
            return self.last_modified == state.last_modified
        return state.validator is None or (self.etag is None and self.last_modified is None)


class _Open:
    """An open streaming response holding one per-host slot until `aclose()`."""

    __slots__ = ("_gate", "_host", "resp")

    def __init__(self, resp: httpx.Response, gate: _HostGate, host: str) -> None:
        self.resp = resp
        self._gate: _HostGate | None = gate
        self._host = host

    async def aclose(self) -> None:
        try:
            await self.resp.aclose()
        finally:
            if self._gate is not None:
                self._gate.release(self._host)
                self._gate = None


class _HostGate:
    """Waits for the per-host limiter's budget (tokens, in-flight cap, Retry-After pauses) before a request."""

    def __init__(self, limiter: HostLimiter) -> None:
        self.limiter = limiter
        self._waiters: set[asyncio.Future[None]] = set()

    async def acquire(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        while self.limiter.budget(host) <= 0:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.add(fut)
            try:
                await asyncio.wait([fut], timeout=self.limiter.next_wakeup([host]))
            finally:
                self._waiters.discard(fut)
        await self.limiter.acquire(host)

    def release(self, host: str) -> None:
        self.limiter.release(host)
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)


class _ByteRate:
    """A shared bandwidth cap (`--limit-rate`): a virtual schedule with a small burst allowance."""

    _BURST = 0.05

    def __init__(self, bytes_per_second: float) -> None:
        self.rate = bytes_per_second
        self._next = 0.0

    async def consume(self, n: int) -> None:
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + n / self.rate
        delay = self._next - now - self._BURST
        if delay > 0:
            await asyncio.sleep(delay)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout ({type(exc).__name__})"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.HTTPError) and not isinstance(exc, httpx.HTTPStatusError):
        return f"{type(exc).__name__}: {text}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or text}" + (f": {exc.filename}" if exc.filename else "")
    return text


class Downloader:
    """Downloads entries into `dest`. Use as an async context manager; `run()` yields results as files
    finish. A passed `client` is shared and left open; otherwise one is built from `http`."""

    def __init__(
        self,
        dest: str | os.PathLike[str] = ".",
        *,
        jobs: int = 16,
        segments: int = 1,
        client: httpx.AsyncClient | None = None,
        http: HttpConfig | None = None,
        retry: RetryConfig | None = None,
        rate_limit: Rate | str | float | None = None,
        per_host: int = 16,
        limit_rate: int | str | None = None,
        max_size: int | str | None = None,
        collision: str = "skip",
        resume: bool = True,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        min_segment_size: int | str = DEFAULT_MIN_SEGMENT,
        batch_size: int | str = DEFAULT_BATCH,
        flush_interval: float = 1.0,
        on_progress: Callable[[DownloadProgress], Any] | None = None,
        on_result: Callable[[DownloadResult], Any] | None = None,
        progress_interval: float = 0.25,
    ) -> None:
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        if not 1 <= segments <= 64:
            raise ValueError("segments must be 1..64")
        if collision not in COLLISIONS:
            raise ValueError(f"collision must be one of {', '.join(COLLISIONS)}")
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.dest = Path(dest)
        self.jobs = jobs
        self.segments = segments
        self.collision = collision
        self.resume = resume
        self.max_size = parse_size(max_size)
        self.min_segment_size = max(1, parse_size(min_segment_size) or 1)
        self.batch_size = max(64 << 10, parse_size(batch_size) or DEFAULT_BATCH)
        self.flush_interval = flush_interval
        pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
        self.headers: list[tuple[str, str]] = [(k, v) for k, v in pairs]
        self.on_progress = on_progress
        self.on_result = on_result
        self.progress_interval = progress_interval
        self.policy = RetryPolicy(retry or RetryConfig())
        self.limiter = HostLimiter(parse_rate(rate_limit), per_host=per_host)
        self._gate = _HostGate(self.limiter)
        limit = parse_size(limit_rate)
        self._byte_rate = _ByteRate(float(limit)) if limit else None
        self._client = client
        self._owns_client = client is None
        if http is None:
            conns = max(100, jobs * segments)
            http = HttpConfig(limits=LimitsConfig(max_connections=conns, max_keepalive_connections=conns))
        self._http = http
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._dirs: dict[PurePosixPath, Path] = {}
        self._made: set[Path] = set()
        self._claimed: dict[Path, asyncio.Event] = {}
        self._active: dict[int, ActiveFile] = {}
        self._streams = 0
        self._started = time.monotonic()
        self.bytes_received = 0
        self.files_done = self.files_skipped = self.files_failed = 0
        self.files_total: int | None = None
        self._speed = 0.0
        self._last_tick = (self._started, 0)

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def __aenter__(self) -> Downloader:
        if self._client is None:
            self._client = build_client(self._http)
        workers = max(2, min(8, self.jobs * self.segments))
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crawler-download-write")
        return self

    async def __aexit__(self, *exc: object) -> None:
        # A run abandoned mid-way (the caller's loop raised) is not finalised until its generator is
        # collected: stop its tasks now, before the client and the writer threads go away.
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("use the Downloader as `async with Downloader(...) as d:`")
        return self._client

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise RuntimeError("use the Downloader as `async with Downloader(...) as d:`")
        return self._executor

    # --- progress ----------------------------------------------------------------------------------------

    def progress(self, finished: bool = False) -> DownloadProgress:
        now = time.monotonic()
        last_t, last_b = self._last_tick
        if now - last_t >= 0.05:
            inst = (self.bytes_received - last_b) / (now - last_t)
            self._speed = inst if self._speed == 0 else 0.6 * self._speed + 0.4 * inst
            self._last_tick = (now, self.bytes_received)
        active = tuple(ActiveFile(a.name, a.url, a.done, a.total, a.segments) for a in self._active.values())
        eta: float | None = None
        if active and all(a.total is not None for a in active) and self._speed > 0:
            eta = sum((a.total or 0) - a.done for a in active) / self._speed
        return DownloadProgress(now - self._started, self.bytes_received, self._speed, eta, self.files_done,
                                self.files_skipped, self.files_failed, self.files_total, active, finished)  # fmt: skip

    async def _report(self, finished: bool = False) -> None:
        if self.on_progress is None:
            return
        out = self.on_progress(self.progress(finished))
        if inspect.isawaitable(out):
            await out

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            await self._report()

    # --- running -----------------------------------------------------------------------------------------

    def batch_target(self) -> int:
        """Bytes per write batch: the configured size, shrunk when many streams share the buffer budget."""
        per_stream = _BUFFER_BUDGET // (2 * max(1, self._streams))
        return max(_MIN_BATCH, min(self.batch_size, per_stream))

    async def run(self, entries: _EntrySource, checksums: Mapping[str, str | Checksum] | None = None
                  ) -> AsyncIterator[DownloadResult]:  # fmt: skip
        """Download `entries` (URLs or `DownloadEntry`s, a plain or async iterable, consumed lazily) and
        yield each result as its file finishes. An `InputError` from the entries stops new files; it is
        raised once the files already started have finished."""
        source = _entries_of(entries, checksums)
        if isinstance(entries, list | tuple):
            self.files_total = len(entries)
        lock = asyncio.Lock()
        counter = iter(range(1 << 62))
        input_error: list[BaseException] = []
        results: asyncio.Queue[DownloadResult | None] = asyncio.Queue()

        async def next_entry() -> tuple[int, DownloadEntry] | None:
            async with lock:
                if input_error:
                    return None
                try:
                    entry = await anext(source)
                except StopAsyncIteration:
                    return None
                except InputError as exc:
                    input_error.append(exc)
                    return None
                return next(counter), entry

        async def worker() -> None:
            while (item := await next_entry()) is not None:
                index, entry = item
                result = await self.download_entry(entry, index)
                await results.put(result)

        async def supervise(tasks: list[asyncio.Task[None]]) -> None:
            try:
                await asyncio.gather(*tasks)
            finally:
                await results.put(None)

        ticker = asyncio.create_task(self._ticker()) if self.on_progress else None
        tasks = [asyncio.create_task(worker(), name=f"download-worker-{i}") for i in range(self.jobs)]
        supervisor = asyncio.create_task(supervise(tasks))
        owned = [*tasks, supervisor, *([ticker] if ticker else [])]
        self._tasks.update(owned)
        try:
            while (result := await results.get()) is not None:
                yield result
            await supervisor  # re-raises a worker's unexpected error
        finally:
            for t in tasks:
                t.cancel()
            if ticker is not None:
                ticker.cancel()
            await asyncio.gather(*owned, return_exceptions=True)
            self._tasks.difference_update(owned)
            await self._report(finished=True)
        if input_error:
            raise input_error[0]

    async def download_entry(self, entry: DownloadEntry, index: int = -1) -> DownloadResult:
        """Download one entry, trying its mirrors in turn; never raises for a failed download."""
        started = time.monotonic()
        result: DownloadResult | None = None
        for url in entry.urls:
            job = _FileJob(self, entry, url, index)
            result = await job.run()
            if result.ok:
                break
        assert result is not None
        result.elapsed = time.monotonic() - started
        result.entry, result.index = entry, index
        if result.status == "ok":
            self.files_done += 1
        elif result.status == "skipped":
            self.files_skipped += 1
        else:
            self.files_failed += 1
        if self.on_result is not None:
            out = self.on_result(result)
            if inspect.isawaitable(out):
                await out
        return result

    # --- shared by file jobs -----------------------------------------------------------------------------

    def directory(self, subdir: PurePosixPath) -> Path:
        """The resolved directory for a sanitised subdirectory of `dest` (cached: resolving costs a
        syscall per path component). File names joined to it are single safe segments, and part files
        are opened with O_NOFOLLOW, so nothing is written outside `dest`."""
        found = self._dirs.get(subdir)
        if found is None:
            found = self._dirs[subdir] = inside(self.dest, subdir)
        return found

    def make_directory(self, path: Path) -> None:
        if path not in self._made:
            path.mkdir(parents=True, exist_ok=True)
            inside(self.dest, path.relative_to(self.dest.resolve()))  # a symlink swapped in meanwhile
            self._made.add(path)

    def claim(self, path: Path) -> asyncio.Event | None:
        """Reserve `path` for one job of this run; returns the owner's done-event if already taken."""
        owner = self._claimed.get(path)
        if owner is not None:
            return owner
        self._claimed[path] = asyncio.Event()
        return None

    def unclaim(self, path: Path) -> None:
        event = self._claimed.pop(path, None)
        if event is not None:
            event.set()

    def claimed(self, path: Path) -> bool:
        return path in self._claimed


async def _entries_of(entries: _EntrySource, checksums: Mapping[str, str | Checksum] | None
                      ) -> AsyncIterator[DownloadEntry]:  # fmt: skip
    sums = {u: (c if isinstance(c, Checksum) else Checksum.parse(c)) for u, c in (checksums or {}).items()}

    def convert(item: str | DownloadEntry) -> DownloadEntry:
        entry = item if isinstance(item, DownloadEntry) else DownloadEntry(str(item))
        if entry.checksum is None and entry.url in sums:
            entry = replace(entry, checksum=sums[entry.url])
        return entry

    if isinstance(entries, AsyncIterable):
        async for item in entries:
            yield convert(item)
    else:
        for item in entries:
            yield convert(item)


class _FileJob:
    """One entry from one URL: request, name, place, stream (in segments), verify, rename."""

    def __init__(self, dl: Downloader, entry: DownloadEntry, url: str, index: int) -> None:
        self.dl = dl
        self.entry = entry
        self.url = url
        self.key = index if index >= 0 else id(self)
        self.host = host_key(canonicalize(url))
        self.headers = [("Accept-Encoding", "identity"), *dl.headers, *entry.headers]
        self.segments = entry.segments or dl.segments
        self.algos = ["sha256"] + ([entry.checksum.algo] if entry.checksum else [])
        self.active = ActiveFile(name="", url=url)
        self.url_name = choose_name(None, None, url)
        self._probed: tuple[Path, int | None] | None = (
            None  # (final path, its part's size) before the request
        )
        self.http_status: int | None = None
        self.resumed_from = 0
        self.received = 0  # bytes of the file on hand: a resumed prefix plus what arrived (for --max-size)
        self.claimed: Path | None = None
        self.part: PartFile | None = None
        self.replace_existing = False  # the file there has the right size but fails the checksum

    # --- the whole file ---------------------------------------------------------------------------------

    async def run(self) -> DownloadResult:
        try:
            return await self._run()
        except _Failure as exc:
            if exc.discard and self.claimed is not None:
                self._close_part()
                _discard(self.claimed)
            return self._failed(str(exc), exc.http_status or self.http_status)
        except RetryableStatus as exc:
            after = f" (Retry-After {exc.retry_after:g}s)" if exc.retry_after is not None else ""
            return self._failed(
                f"HTTP {exc.status} after {self.dl.policy.attempts} attempts{after}", exc.status
            )
        except RETRYABLE_ERRORS as exc:
            return self._failed(f"{_describe(exc)} (after {self.dl.policy.attempts} attempts)")
        except (httpx.HTTPError, httpx.InvalidURL, OSError, UnsafePath) as exc:
            return self._failed(_describe(exc))
        except Exception as exc:  # a bug must fail one file, not the run
            log.exception("unexpected error downloading %s", self.url)
            return self._failed(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._close_part()
            self._unclaim()
            self.dl._active.pop(self.key, None)

    def _failed(self, error: str, http_status: int | None = None) -> DownloadResult:
        log.debug("failed %s: %s", self.url, error)
        return DownloadResult(self.url, None, 0, None, "failed", error, http_status, self.resumed_from)

    def _skipped(self, final: Path, sha256: str | None, size: int | None = None) -> DownloadResult:
        if size is None:
            size = final.stat().st_size
        return DownloadResult(self.url, final, size, sha256, "skipped", None, self.http_status, 0, 0)

    def _close_part(self) -> None:
        if self.part is not None:
            self.part.close()
            self.part = None

    def _unclaim(self) -> None:
        if self.claimed is not None:
            self.dl.unclaim(self.claimed)
            self.claimed = None

    def _claim(self, final: Path) -> asyncio.Event | None:
        """Claim `final` for this job; returns the owner's done-event when another job has it."""
        if self.claimed == final:
            return None
        owner = self.dl.claim(final)
        if owner is None:
            self._unclaim()
            self.claimed = final
        return owner

    async def _run(self) -> DownloadResult:
        dl, entry = self.dl, self.entry
        subdir = safe_subpath(entry.dir) if entry.dir else PurePosixPath()
        fixed: str | None = None
        if entry.out:
            out = safe_subpath(entry.out)
            if not out.parts:
                raise _Failure(f"out={entry.out!r} names no file")
            subdir, fixed = subdir / out.parent, out.name
        directory = dl.directory(subdir)
        self.active.name = fixed or self.url_name
        dl._active[self.key] = self.active

        if fixed and dl.collision == "skip" and entry.checksum is not None:
            final = directory / fixed
            if final.is_file() and not dl.claimed(final):
                digests = await self._hash_existing(final)
                if digests[entry.checksum.algo] == entry.checksum.hexdigest:
                    return self._skipped(final, digests["sha256"])

        state, final_hint = self._find_resumable(directory, fixed) if dl.resume else (None, None)
        restarts = 0
        while True:
            try:
                return await self._attempt(directory, fixed, state, final_hint)
            except _Restart as restart:
                restarts += 1
                if restarts > _MAX_RESTARTS:
                    raise _Failure(f"gave up after {_MAX_RESTARTS} restarts: {restart}") from None
                log.debug("%s: %s", self.url, restart)
                self._close_part()
                self._unclaim()
                self._probed = None
                state, final_hint = restart.state, restart.final

    async def _hash_existing(self, path: Path) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.dl.executor, hash_file, path, self.algos)

    def _find_resumable(self, directory: Path, fixed: str | None) -> tuple[PartState | None, Path | None]:
        """A part of this URL left by an earlier run under the name we would guess (or a `--rename`d one)."""
        guess = fixed or self.url_name
        candidates = [guess]
        if self.dl.collision == "rename":
            candidates += [numbered(guess, n) for n in range(1, 100)]
        for name in candidates:
            final = directory / name
            part, sidecar = part_paths(final)
            if self.dl.claimed(final):
                continue
            size = _size_of(part)
            self._probed = (final, size)
            has_part = size is not None
            state = Sidecar.load(sidecar) if has_part else None
            if state is not None and state.url == self.url and _resumable(state, size):
                return state, final
            if len(candidates) == 1 or not (has_part or final.exists()):
                break
        return None, None

    # --- one attempt at the file ----------------------------------------------------------------------

    async def _attempt(self, directory: Path, fixed: str | None, state: PartState | None,
                       final: Path | None) -> DownloadResult:  # fmt: skip
        if state is not None and final is not None:
            return await self._resume(directory, fixed, state, final)
        headers = list(self.headers)
        if self.segments > 1:
            # Learn from the first response whether ranges work. An empty file has no satisfiable range.
            stream = await self._open([*headers, ("Range", "bytes=0-")], ok_416=True)
            if stream.resp.status_code == 416:
                await stream.aclose()
                stream = await self._open(headers)
        else:
            stream = await self._open(headers)
        try:
            info = _Response.of(stream.resp)
            placed = await self._place(directory, fixed, info, stream)
            if isinstance(placed, DownloadResult):
                return placed
            fresh = self._fresh_state(info)
            return await self._transfer(stream, placed, fresh, fresh.segments[0], fresh=True)
        finally:
            await stream.aclose()

    async def _resume(
        self, directory: Path, fixed: str | None, state: PartState, final: Path
    ) -> DownloadResult:
        """Continue a part from an earlier run: Range + If-Range for its first unfinished segment."""
        seg = next((s for s in state.segments if not s.complete), state.segments[-1])
        if seg.complete:  # all written, not yet renamed: confirm the validator with a one-byte range
            assert seg.end is not None
            first, last = seg.end - 1, str(seg.end - 1)
        else:
            first, last = seg.pos, "" if seg.end is None else str(seg.end - 1)
        assert state.validator is not None
        headers = [*self.headers, ("Range", f"bytes={first}-{last}"), ("If-Range", state.validator)]
        stream = await self._open(headers, ok_416=True)
        try:
            info = _Response.of(stream.resp)
            if info.status == 416 or (
                info.status == 206 and not (info.range_start == first and info.same_file(state))
            ):
                _discard(final)
                raise _Restart(f"the part of {final.name} no longer matches the server's copy: starting over")
            owner = self._claim(final)
            if owner is not None:
                raise _Failure(f"{final.name} is being downloaded by another entry of this run")
            if info.status == 206:
                self.resumed_from = state.written
                return await self._transfer(stream, final, state, seg, fresh=False)
            # 200: the validator changed or ranges are ignored. This body is the whole file: start over
            # with it, under the name the part had.
            log.info("%s: server sent the whole file instead of a range: starting over", self.url)
            fresh = self._fresh_state(info)
            return await self._transfer(stream, final, fresh, fresh.segments[0], fresh=True)
        finally:
            await stream.aclose()

    async def _place(self, directory: Path, fixed: str | None, info: _Response,
                     stream: _Open) -> Path | DownloadResult:  # fmt: skip
        """The final path for a fresh download (collision policy applied), or a skipped result.
        Raises `_Restart` to resume a part found under a name only the response told us."""
        dl = self.dl
        name = fixed or (choose_name(None, info.disposition, self.url) if info.disposition else self.url_name)
        self.active.name = name
        candidates = [name] + (
            [numbered(name, n) for n in range(1, 10_000)] if dl.collision == "rename" else []
        )
        for candidate in candidates:
            final = directory / candidate
            owner = self._claim(final)
            if owner is not None:
                if dl.collision == "rename":
                    continue
                await stream.aclose()
                await owner.wait()  # the same file from another entry: decide once it is there
                raise _Restart(f"{final.name} was being downloaded by another entry")
            part, sidecar = part_paths(final)
            if self._probed is not None and self._probed[0] == final and dl.collision != "rename":
                size = self._probed[1]  # looked at just before the request; claims keep others away
            else:
                size = _size_of(part)
            has_part = size is not None
            if dl.resume and has_part and info.range_start == 0:
                prior = Sidecar.load(sidecar)
                if (
                    prior is not None
                    and prior.url == self.url
                    and _resumable(prior, size)
                    and info.same_file(prior)
                ):
                    raise _Restart(f"resuming {final.name} from byte {prior.written}", prior, final)
            if has_part and dl.collision == "rename":
                continue  # another download's partial file: leave it alone
            try:
                existing = final.stat()
            except FileNotFoundError:
                return final
            if stat.S_ISDIR(existing.st_mode):
                raise _Failure(f"{final} is a directory")
            if dl.collision == "overwrite" or self.replace_existing:
                return final
            if dl.collision == "skip":
                if info.total is None or existing.st_size != info.total:
                    return final  # not the same size: not a complete copy, replace it
                checksum = self.entry.checksum
                if checksum is None:
                    return self._skipped(final, None, existing.st_size)
                await stream.aclose()  # hashing may take a while: do not hold the connection
                digests = await self._hash_existing(final)
                if digests[checksum.algo] == checksum.hexdigest:
                    return self._skipped(final, digests["sha256"], existing.st_size)
                self.replace_existing = True
                raise _Restart(f"{final.name} has the right size but not the checksum: downloading it again",
                               None, None)  # fmt: skip
        raise _Failure(f"no free name for {name}")

    def _fresh_state(self, info: _Response) -> PartState:
        ranges_ok = info.status == 206 or info.accept_ranges
        if self.segments > 1 and info.total is not None and ranges_ok:
            segments = plan_segments(info.total, self.segments, self.dl.min_segment_size)
        else:
            segments = [Segment(0, info.total)]
        return PartState(self.url, info.etag, info.last_modified, info.total, segments)

    # --- requests ---------------------------------------------------------------------------------------

    async def _open(self, headers: list[tuple[str, str]], ok_416: bool = False) -> _Open:
        """Send a GET (retrying per policy) and return the open streaming response: 200, 206 (or 416
        when asked for). It holds a per-host slot until closed."""
        try:  # the first attempt outside tenacity: most requests need no retry machinery at all
            return await self._send(headers, ok_416)
        except _RETRYABLE as exc:
            failed: BaseException | None = exc
        async for attempt in self.dl.policy.retrying():
            with attempt:
                if failed is not None:  # counts as attempt 1, and its wait (Retry-After) applies
                    first, failed = failed, None
                    raise first
                return await self._send(headers, ok_416)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, headers: list[tuple[str, str]], ok_416: bool) -> _Open:
        dl = self.dl
        await dl._gate.acquire(self.host)
        try:
            request = dl.client.build_request("GET", self.url, headers=headers)
            resp = await dl.client.send(request, stream=True)
        except BaseException:
            dl._gate.release(self.host)
            raise
        stream = _Open(resp, dl._gate, self.host)
        status = resp.status_code
        self.http_status = status
        if status in (200, 206) or (status == 416 and ok_416):
            return stream
        await stream.aclose()
        if status in dl.policy.statuses:
            retry_after = dl.policy.retry_after_of(status, resp.headers)
            if retry_after:
                dl.limiter.pause(self.host, retry_after)
            raise RetryableStatus(status, retry_after, self.url)
        raise _Failure(f"HTTP {status} {resp.reason_phrase or ''}".strip(), status)

    # --- streaming --------------------------------------------------------------------------------------

    async def _transfer(self, stream: _Open, final: Path, state: PartState, first: Segment, *,
                        fresh: bool) -> DownloadResult:  # fmt: skip
        dl = self.dl
        if state.length is not None and dl.max_size is not None and state.length > dl.max_size:
            raise _Failure(f"size {state.length} exceeds --max-size {dl.max_size}", self.http_status)
        dl.make_directory(final.parent)
        part_path, sidecar_path = part_paths(final)
        self._close_part()
        self.part = PartFile(part_path, final, state, Sidecar(sidecar_path), self.algos, dl.executor, fresh=fresh,
                             checksum=self.entry.checksum)  # fmt: skip
        part = self.part
        self.active.name = final.name
        self.active.total = state.length
        self.active.done = self.received = state.written
        self.active.segments = len(state.segments)

        others = [s for s in state.segments if s is not first and not s.complete]
        try:
            try:
                if others:
                    await self._segments(first, stream, others)
                else:  # one stream: no tasks to spawn
                    await self._segment(first, stream)
            except _Restart:
                self._close_part()
                _discard(final)
                raise
            return await self._finish(final, part)
        except IncompletePart as exc:  # from the thread that completed the file, or from _finish
            raise _Failure(str(exc), discard=True) from None

    async def _segments(self, first: Segment, stream: _Open, others: list[Segment]) -> None:
        tasks = [asyncio.create_task(self._segment(first, stream))]
        tasks += [asyncio.create_task(self._segment(s, None)) for s in others]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # their writes are finished once they end
            raise

    async def _finish(self, final: Path, part: PartFile) -> DownloadResult:
        state = part.state
        if not state.complete:
            raise _Failure("transfer ended before the file was complete")
        done = await part.complete()  # usually already done by the thread that wrote the last batch
        self.part = None
        if done.error is not None:
            raise _Failure(done.error)  # the part is already deleted
        return DownloadResult(self.url, final, done.size, done.digests["sha256"], "ok", None, self.http_status,
                              self.resumed_from, len(state.segments))  # fmt: skip

    async def _segment(self, seg: Segment, stream: _Open | None) -> None:
        """Fill one segment, re-requesting its remaining range (If-Range) after failures; rounds of
        retries that made progress do not count against the attempts."""
        cell = [seg]  # the segment being filled: an in-place restart replaces it
        failed: BaseException | None = None
        try:  # the first attempt outside tenacity, as in _open
            await self._fill(cell, stream)
            return
        except _RETRYABLE as exc:
            failed = exc
        mark = 0
        rounds = 0
        while True:
            try:
                async for attempt in self.dl.policy.retrying():
                    with attempt:
                        if failed is not None:
                            first, failed = failed, None
                            raise first
                        await self._fill(cell, None)
                return
            except _RETRYABLE:
                if cell[0].done > mark and rounds < _MAX_PROGRESS_RESETS:
                    mark, rounds = cell[0].done, rounds + 1
                    continue
                raise

    async def _fill(self, cell: list[Segment], stream: _Open | None) -> None:
        if stream is None:
            stream, cell[0] = await self._open_segment(cell[0])
        try:
            await self._stream(stream.resp, cell[0])
        finally:
            await stream.aclose()

    async def _open_segment(self, seg: Segment) -> tuple[_Open, Segment]:
        part = self.part
        assert part is not None
        state = part.state
        last = "" if seg.end is None else str(seg.end - 1)
        headers = [*self.headers, ("Range", f"bytes={seg.pos}-{last}")]
        if state.validator:
            headers.append(("If-Range", state.validator))
        stream = await self._send(headers, ok_416=False)
        try:
            info = _Response.of(stream.resp)
            if info.status == 206 and info.range_start == seg.pos and info.same_file(state):
                return stream, seg
            if info.status == 200 and len(state.segments) == 1:
                # Ranges ignored or the file changed: this body is the whole file, start over with it.
                log.info("%s: server sent the whole file instead of a range: starting over", self.url)
                fresh = PartState(
                    self.url, info.etag, info.last_modified, info.total, [Segment(0, info.total)]
                )
                if (
                    fresh.length is not None
                    and self.dl.max_size is not None
                    and fresh.length > self.dl.max_size
                ):
                    raise _Failure(
                        f"size {fresh.length} exceeds --max-size {self.dl.max_size}", 200, discard=True
                    )
                await part.restart(fresh)
                self.received = self.active.done = self.resumed_from = 0
                self.active.total = fresh.length
                return stream, fresh.segments[0]
        except BaseException:
            await stream.aclose()
            raise
        await stream.aclose()
        raise _Restart("the server's copy changed during a segmented download: starting over")

    async def _stream(self, resp: httpx.Response, seg: Segment) -> None:
        """Copy the body into `seg`: chunks batched, each batch written (positioned) by a writer thread
        while the next one arrives. Bytes that arrived are written even if the stream then fails."""
        dl, part, active = self.dl, self.part, self.active
        assert part is not None
        loop = asyncio.get_running_loop()
        write = part.write_batch
        executor = dl.executor
        max_size = dl.max_size
        byte_rate = dl._byte_rate
        remaining = seg.remaining
        target = dl.batch_target()
        interval = dl.flush_interval
        flush_at = 0.0
        chunks: list[bytes] = []
        pending_bytes = 0
        writing: asyncio.Future[None] | None = None
        dl._streams += 1
        try:
            async for chunk in resp.aiter_raw():
                size = len(chunk)
                if remaining is not None:
                    if size > remaining:
                        chunk, size = chunk[:remaining], remaining
                    remaining -= size
                if not chunks:
                    flush_at = loop.time() + interval
                chunks.append(chunk)
                pending_bytes += size
                active.done += size
                dl.bytes_received += size
                self.received += size
                if max_size is not None and self.received > max_size:
                    raise _Failure(f"more than --max-size {max_size} bytes", self.http_status, discard=True)
                if byte_rate is not None:
                    await byte_rate.consume(size)
                # A batch goes to disk when full, or after `interval` on a slow link, so a kill -9
                # never loses more than the bytes of one batch or of the last second.
                if pending_bytes >= target or loop.time() >= flush_at:
                    if writing is not None:
                        await writing
                    writing = loop.run_in_executor(executor, write, seg, chunks, pending_bytes)
                    chunks, pending_bytes = [], 0
                    target = dl.batch_target()
                if remaining == 0:
                    break
        finally:
            dl._streams -= 1
            # Always finish writing what arrived (also on errors and cancellation): a resume skips it.
            if writing is not None:
                try:
                    await _uncancellable(writing)
                except BaseException:
                    pending_bytes = 0  # never write past a batch that failed: it would leave a hole
                    raise
            if pending_bytes:
                await _uncancellable(loop.run_in_executor(executor, write, seg, chunks, pending_bytes))
        if remaining is not None and remaining > 0:
            raise httpx.RemoteProtocolError(
                f"connection closed {remaining} bytes before the end of the range"
            )
        if seg.end is None:  # unknown length: the end of the body is the end of the file
            seg.end = seg.pos
            part.state.length = seg.pos
            part.sidecar.save(part.state)


def _resumable(state: PartState, part_size: int | None) -> bool:
    """Worth a ranged request: bytes on disk (the part holds all the record claims), a validator for
    If-Range, and a non-empty file."""
    if not (state.validator and state.segments and state.written > 0 and state.length != 0):
        return False
    return part_size is not None and part_size >= max(s.pos for s in state.segments)


def _size_of(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _discard(final: Path) -> None:
    part, sidecar = part_paths(final)
    part.unlink(missing_ok=True)
    sidecar.unlink(missing_ok=True)


async def _uncancellable(fut: asyncio.Future[None]) -> None:
    """Wait for a write already handed to a thread, even if cancelled meanwhile (the thread cannot be)."""
    try:
        await asyncio.shield(fut)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait([fut])
        raise


async def download(
    urls_or_entries: _EntrySource,
    dest: str | os.PathLike[str] = ".",
    *,
    jobs: int = 16,
    segments: int = 1,
    checksums: Mapping[str, str | Checksum] | None = None,
    on_progress: Callable[[DownloadProgress], Any] | None = None,
    on_result: Callable[[DownloadResult], Any] | None = None,
    client: httpx.AsyncClient | None = None,
    **options: Any,
) -> list[DownloadResult]:
    """Download every URL or `DownloadEntry` into `dest`; one `DownloadResult` per entry, in input order.

    Usable inside any running event loop; pass `client` to share an `httpx.AsyncClient`. Other options
    are `Downloader`'s: `http`, `retry`, `rate_limit`, `per_host`, `limit_rate`, `max_size`,
    `collision` ("skip" | "overwrite" | "rename"), `resume`, `headers`, `min_segment_size`, `batch_size`,
    `flush_interval` (seconds a partly filled batch may wait before it is written).
    A checksum is `"sha-256=HEX"` (also sha-1, md5, ...), per URL in `checksums` or on the entry.
    """
    results: list[DownloadResult] = []
    async with Downloader(dest, jobs=jobs, segments=segments, client=client, on_progress=on_progress,
                          on_result=on_result, **options) as downloader:  # fmt: skip
        async for result in downloader.run(urls_or_entries, checksums=checksums):
            results.append(result)
    results.sort(key=lambda r: r.index)
    return results
