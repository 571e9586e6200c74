"""The download run: entries in, one `DownloadResult` per entry out.

`Downloader` pulls entries lazily, runs up to `jobs` files at once (one `FileJob` per entry and mirror)
through the shared client, and reports progress. Everything the file jobs share is one `RunContext`:
the host gate and the retry policy of `crawler.politeness` (the crawl's own), one name allocator, the
writer threads, the bandwidth cap, and the WARC archive of the crawl's writer (`crawler.output.warc`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from crawler.config.job import HttpConfig, LimitsConfig, RetryConfig
from crawler.config.units import Rate, parse_rate, parse_size
from crawler.downloader.byte_rate import ByteRate
from crawler.downloader.context import COLLISIONS, Collision, LiveTransfers, RunContext, Settings
from crawler.downloader.deadlines import DEFAULT_MAX_TIME, SpeedFloor
from crawler.downloader.entries import MAX_URL_LENGTH, Checksum, DownloadEntry, InputError
from crawler.downloader.results import ActiveFile, DownloadProgress, DownloadResult
from crawler.downloader.transfer import FileJob
from crawler.fetch.names import NameAllocator
from crawler.fetch.sidecar import PART_SUFFIX, SIDECAR_SUFFIX
from crawler.http.client import build_client
from crawler.politeness.limiter import HostGate, HostLimiter
from crawler.politeness.retry import RetryPolicy

if TYPE_CHECKING:
    from crawler.output.warc import WarcArchive

__all__ = ["COLLISIONS", "Downloader", "EntrySource", "download"]

log = logging.getLogger("crawler.download")

DEFAULT_BATCH = (
    4 << 20
)  # bytes gathered per write: measured best between 2 and 8 MiB (benchmarks/download_bench.py)
DEFAULT_MIN_SEGMENT = 4 << 20
# `--skip-existing` and friends, as they were spelled before `--on-collision`.
_COLLISION_ALIASES: dict[str, Collision] = {"skip-existing": "skip"}
EntrySource = Iterable[str | DownloadEntry] | AsyncIterable[str | DownloadEntry]


def _collision(value: str) -> Collision:
    value = _COLLISION_ALIASES.get(value, value)
    for known in COLLISIONS:
        if value == known:
            return known
    raise ValueError(f"collision must be one of {', '.join(COLLISIONS)}, not {value!r}")


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
        collision: str = "rename",
        resume: bool = True,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        min_segment_size: int | str = DEFAULT_MIN_SEGMENT,
        batch_size: int | str = DEFAULT_BATCH,
        flush_interval: float = 1.0,
        max_time: float | None = DEFAULT_MAX_TIME,
        speed_limit: int | str | None = None,
        speed_time: float = 30.0,
        on_progress: Callable[[DownloadProgress], Any] | None = None,
        on_result: Callable[[DownloadResult], Any] | None = None,
        progress_interval: float = 0.25,
        warc: str | os.PathLike[str] | None = None,
    ) -> None:
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        if not 1 <= segments <= 64:
            raise ValueError("segments must be 1..64")
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        if max_time is not None and not max_time > 0:
            raise ValueError("max_time must be positive (None: no limit)")
        if not speed_time > 0:
            raise ValueError("speed_time must be positive")
        self.dest = Path(dest)
        self.jobs = jobs
        if http is None:  # proxies from the environment apply, as for curl and wget
            conns = max(100, jobs * segments)
            http = HttpConfig(limits=LimitsConfig(max_connections=conns, max_keepalive_connections=conns),
                              trust_env=True)  # fmt: skip
        pairs = list(headers.items() if isinstance(headers, Mapping) else (headers or ()))
        self.settings = Settings(
            segments=segments,
            collision=_collision(collision),
            resume=resume,
            max_size=parse_size(max_size),
            min_segment_size=max(1, parse_size(min_segment_size) or 1),
            batch_size=max(64 << 10, parse_size(batch_size) or DEFAULT_BATCH),
            flush_interval=flush_interval,
            headers=tuple((k, v) for k, v in pairs),
            max_time=max_time,
            speed_limit=parse_size(speed_limit) or None,
            speed_time=speed_time,
            max_redirects=http.max_redirects if http.follow_redirects else 0,
            forward_headers=tuple(http.forward_headers),
            max_url_length=MAX_URL_LENGTH,
            user_headers=frozenset(k.lower() for k in [*(k for k, _ in pairs), *http.headers]) - {"user-agent"},
        )
        self.on_progress = on_progress
        self.on_result = on_result
        self.progress_interval = progress_interval
        self.policy = RetryPolicy(retry or RetryConfig())
        self.limiter = HostLimiter(parse_rate(rate_limit), per_host=per_host)
        limit = parse_size(limit_rate)
        self._byte_rate = ByteRate(float(limit)) if limit else None
        self._client = client
        self._owns_client = client is None
        self._http = http
        self.warc = None if warc is None else Path(warc)
        self._archive: WarcArchive | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._ctx: RunContext | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._live = LiveTransfers(batch_size=self.settings.batch_size)
        self._started = time.monotonic()
        self.files_done = self.files_skipped = self.files_failed = 0
        self.files_total: int | None = None
        self._speed = 0.0
        self._last_tick = (self._started, 0)

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def __aenter__(self) -> Downloader:
        if self._client is None:
            self._client = build_client(self._http)
        workers = max(2, min(8, self.jobs * self.settings.segments))
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crawler-download-write")
        names = NameAllocator(self.dest, companions=(PART_SUFFIX, SIDECAR_SUFFIX))
        if self.warc is not None:
            from crawler.output.warc import WarcArchive  # only for `--warc`: start-up time

            self._archive = WarcArchive(self.warc, software="crawler download")
        self._ctx = RunContext(self.settings, self._client, self._executor, HostGate(self.limiter), self.policy,
                               names, self._byte_rate, self._live, self._archive)  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        # A run abandoned mid-way (the caller's loop raised) is not finalised until its generator is
        # collected: stop its tasks now, before the client and the writer threads go away.
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._ctx = None
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._archive is not None:
            archive, self._archive = self._archive, None
            await asyncio.to_thread(archive.close)  # waits for the records still being written

    @property
    def context(self) -> RunContext:
        if self._ctx is None:
            raise RuntimeError("use the Downloader as `async with Downloader(...) as d:`")
        return self._ctx

    @property
    def client(self) -> httpx.AsyncClient:
        return self.context.client

    @property
    def bytes_received(self) -> int:
        return self._live.bytes_received

    # --- progress ----------------------------------------------------------------------------------------

    def progress(self, finished: bool = False) -> DownloadProgress:
        now = time.monotonic()
        received = self._live.bytes_received
        last_t, last_b = self._last_tick
        if now - last_t >= 0.05:
            inst = (received - last_b) / (now - last_t)
            self._speed = inst if self._speed == 0 else 0.6 * self._speed + 0.4 * inst
            self._last_tick = (now, received)
        active = tuple(
            ActiveFile(a.name, a.url, a.done, a.total, a.segments) for a in self._live.active.values()
        )
        eta: float | None = None
        if active and all(a.total is not None for a in active) and self._speed > 0:
            eta = sum((a.total or 0) - a.done for a in active) / self._speed
        return DownloadProgress(now - self._started, received, self._speed, eta, self.files_done,
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

    async def run(self, entries: EntrySource, checksums: Mapping[str, str | Checksum] | None = None
                  ) -> AsyncIterator[DownloadResult]:  # fmt: skip
        """Download `entries` (URLs or `DownloadEntry`s, a plain or async iterable, consumed lazily) and
        yield each result as its file finishes. An `InputError` from the entries stops new files; it is
        raised once the files already started have finished."""
        self.context  # noqa: B018 - fail early outside `async with`
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
        """Download one entry, trying its mirrors in turn, within `max_time`; never raises for a failed
        download."""
        ctx = self.context
        max_time = ctx.settings.max_time
        started = time.monotonic()
        key = index if index >= 0 else id(entry)
        owner = f"entry:{key}"
        deadline = None if max_time is None else started + max_time
        result: DownloadResult | None = None
        total = asyncio.timeout(max_time)
        try:
            async with total:
                for url in entry.urls:
                    result = await self._from_url(ctx, entry, url, owner, key, deadline)
                    if result.ok:
                        break
        except TimeoutError:
            if not total.expired():
                raise
            url = entry.url if result is None else result.url
            result = DownloadResult(url, None, 0, None, "failed", f"gave up after --max-time {max_time:g}s "
                                    "(the part is kept for a later run)")  # fmt: skip
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

    async def _from_url(self, ctx: RunContext, entry: DownloadEntry, url: str, owner: str, key: int,
                        deadline: float | None) -> DownloadResult:  # fmt: skip
        limit, window = ctx.settings.speed_limit, ctx.settings.speed_time
        if limit is None:
            return await FileJob(ctx, entry, url, owner, key, deadline).run()
        slow = asyncio.timeout(None)
        try:
            async with slow:
                return await FileJob(
                    ctx, entry, url, owner, key, deadline, SpeedFloor(slow, limit, window)
                ).run()
        except TimeoutError:
            if not slow.expired():
                raise
            return DownloadResult(url, None, 0, None, "failed",
                                  f"slower than --speed-limit {limit} B/s for --speed-time {window:g}s")  # fmt: skip


async def _entries_of(entries: EntrySource, checksums: Mapping[str, str | Checksum] | None
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


async def download(
    urls_or_entries: EntrySource,
    dest: str | os.PathLike[str] = ".",
    *,
    jobs: int = 16,
    segments: int = 1,
    checksums: Mapping[str, str | Checksum] | None = None,
    on_progress: Callable[[DownloadProgress], Any] | None = None,
    on_result: Callable[[DownloadResult], Any] | None = None,
    client: httpx.AsyncClient | None = None,
    http: HttpConfig | None = None,
    retry: RetryConfig | None = None,
    rate_limit: Rate | str | float | None = None,
    per_host: int = 16,
    limit_rate: int | str | None = None,
    max_size: int | str | None = None,
    collision: str = "rename",
    resume: bool = True,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    min_segment_size: int | str = DEFAULT_MIN_SEGMENT,
    batch_size: int | str = DEFAULT_BATCH,
    flush_interval: float = 1.0,
    max_time: float | None = DEFAULT_MAX_TIME,
    speed_limit: int | str | None = None,
    speed_time: float = 30.0,
    progress_interval: float = 0.25,
    warc: str | os.PathLike[str] | None = None,
) -> list[DownloadResult]:
    """Download every URL or `DownloadEntry` into `dest`; one `DownloadResult` per entry, in input order.

    Usable inside any running event loop; pass `client` to share an `httpx.AsyncClient` (else one is built
    from `http`). `retry` is the crawl's retry config (Retry-After honoured; a 429/503 pauses the host);
    `rate_limit` requests per host (`"10/s"`), `per_host` in flight per host, `limit_rate` total bytes/s
    (`"5M"`), `max_size` per file. `collision`: `"rename"` (aria2's `name.1.ext`, the default),
    `"overwrite"`, `"fail"` or `"skip"` (keep an existing file of the right size). `resume=False` ignores
    partial files. A checksum is `"sha-256=HEX"` (also sha-1, md5, ...), per URL in `checksums` or on the
    entry. `batch_size`, `flush_interval`: bytes per write and how long a partial batch may wait.
    `max_time`: seconds per entry (default a day; None: no limit); `speed_limit` (bytes/s) and
    `speed_time` (seconds): fail a URL that streams slower than that for that long (curl's names).
    Redirects are followed up to `http.max_redirects` hops (none with `http.follow_redirects: false`); a hop
    to another origin drops `headers` and `http.headers` (not User-Agent) unless `http.forward_headers`
    names them. Each result has the `final_url` and the number of `redirects`. `warc`: a WARC file
    (`.warc.gz` compressed per record, `.warc` plain) getting a request and a response record for every
    file downloaded (the file is the response's payload); one that cannot be written raises `OutputError`.
    """
    results: list[DownloadResult] = []
    async with Downloader(dest, jobs=jobs, segments=segments, client=client, http=http, retry=retry,
                          rate_limit=rate_limit, per_host=per_host, limit_rate=limit_rate, max_size=max_size,
                          collision=collision, resume=resume, headers=headers, min_segment_size=min_segment_size,
                          batch_size=batch_size, flush_interval=flush_interval, max_time=max_time,
                          speed_limit=speed_limit, speed_time=speed_time, on_progress=on_progress,
                          on_result=on_result, progress_interval=progress_interval, warc=warc) as downloader:  # fmt: skip
        async for result in downloader.run(urls_or_entries, checksums=checksums):
            results.append(result)
    results.sort(key=lambda r: r.index)
    return results
