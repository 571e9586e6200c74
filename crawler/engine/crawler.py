"""The crawl engine: a frontier feeds a bounded pool of workers through a host-aware dispatcher.

Data flow, one page:
1. The dispatcher asks the frontier for requests whose host may start now (`HostLimiter.budget`:
   in-flight cap, token bucket, Retry-After pause, robots.txt known). A host that must wait never
   holds a worker; the dispatcher sleeps until some host can go.
2. It takes the host's token and slot and hands the request to an idle worker.
3. The worker fetches through the one shared `httpx.AsyncClient` (`Fetcher`: streamed, size-capped,
   saved to disk when claimed). Retryable failures go back to the dispatcher with a tenacity-computed
   delay (Retry-After wins and pauses the whole host); no worker sleeps through a backoff.
4. The pipeline stages run: link extraction, field extraction, user stages, the item writer.
5. New requests are pushed; the page is yielded to `crawl()`'s consumer; the request is acked
   after the item writer has flushed it (so a persistent frontier never loses or doubles a page).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import itertools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import httpx

from crawler.config.job import Job
from crawler.config.units import Rate
from crawler.engine.stages import Stage, build_stages, is_async_stage
from crawler.fetch.fetcher import Fetcher
from crawler.fetch.saver import FileSaver
from crawler.frontier.backends import open_frontier
from crawler.frontier.base import FrontierBackend, FrontierUnavailable
from crawler.http.client import build_client
from crawler.model.errors import DropPage, FetchError, error_kind
from crawler.model.page import Page
from crawler.model.request import Request
from crawler.model.url import host_key
from crawler.output.stats import Stats
from crawler.output.writers import open_writer
from crawler.politeness.limiter import HostLimiter
from crawler.politeness.retry import RetryableStatus, RetryPolicy
from crawler.politeness.robots import RobotsCache
from crawler.politeness.scope import Scope

__all__ = ["Crawler", "Stage"]

log = logging.getLogger("crawler")

_STOP = object()
_GRACE_SECONDS = 5.0


class Crawler:
    """Runs one crawl job.

    ```python
    async with Crawler(job, stages=[my_stage]) as crawler:
        async for page in crawler.crawl():
            ...
    print(crawler.stats)
    ```
    """

    def __init__(self, job: Job, *, stages: Sequence[Stage] = (), client: httpx.AsyncClient | None = None,
                 frontier: FrontierBackend | None = None) -> None:  # fmt: skip
        self.job = job
        self.stats = Stats()
        self._user_stages = list(stages)
        self._client = client
        self._owns_client = client is None
        self._frontier = frontier
        self._stages: list[Stage] = []
        self._closers: list[Any] = []
        self._flushers: list[Any] = []
        self._writer: Any = None
        self._stopping = False
        self._fatal: FrontierUnavailable | None = None  # the frontier gave up: crawl() raises it at the end
        self._opened = False
        self._emit_pages = True
        self._wake = asyncio.Event()
        self._results: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(16, job.concurrency.workers * 2))
        self._work: asyncio.Queue[Request | None] = asyncio.Queue()
        self._delayed: list[tuple[float, int, Request]] = []
        self._due: list[Request] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._reserved = 0  # pages fetched or being fetched, for the exact max_pages
        self._pending_acks: list[Request] = []
        self._robots_loading: set[str] = set()
        self._robots: RobotsCache | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._last_commit = time.monotonic()
        self.retry_policy = RetryPolicy(job.retry)
        self.limiter = HostLimiter(job.rate_limit.per_host, job.rate_limit.hosts, job.concurrency.per_host)
        self.scope = Scope.of_job(job)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Crawler:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        await self.close()

    async def open(self) -> None:
        if self._opened:
            return
        job = self.job
        if self._client is None:
            self._client = build_client(job.http)
        if self._frontier is None:
            self._frontier = await open_frontier(job)
        self._frontier.bind(self._wake.set, self.limiter.rate_of)
        if self._frontier.shares_rates:
            # A shared frontier (Redis) enforces per-host rates for all processes together.
            self.limiter.share_rates()
        saver = FileSaver(job.save.dir, job.save.match, job.save.content_types)
        self._fetcher = Fetcher(self._client, max_body=job.http.max_body,
                                retry_statuses=self.retry_policy.statuses,
                                saver=saver if saver.active else None)  # fmt: skip
        if job.scope.robots_txt:
            self._robots = RobotsCache(self._client, job.http.user_agent)
        stages = build_stages(job, self._user_stages)
        self._writer = None
        checkpoint = await self._frontier.checkpoint()
        if job.output.items:
            items = job.output.items
            if "{worker}" in items:
                # One items file per process of a distributed crawl, named by its stable worker identity.
                items = items.replace("{worker}", self._frontier.worker or "0")
            resuming = checkpoint is not None and "items_offset" in checkpoint
            writer = open_writer(items, columns=[*job.extract.fields, *job.extract.json_fields],
                                 overwrite=job.output.overwrite and not resuming,
                                 flush_every=job.output.flush_every)  # fmt: skip
            if resuming:
                assert checkpoint is not None
                writer.truncate(int(checkpoint["items_offset"]))
            else:
                # Record where this run's output starts, so that a crash before the first ack truncates
                # back to here even when the file is appended to (output.overwrite: false).
                await self._frontier.ack([], {"items_offset": writer.offset})
            self._writer = writer
        self._stages = stages
        # The item writer is not a stage: `_process` calls it right before marking the page for ack.
        extras = [self._writer] if self._writer is not None else []
        self._closers = [s for s in [*stages, *extras] if callable(getattr(s, "close", None))]
        self._flushers = [s for s in stages if callable(getattr(s, "flush", None))]
        self._stage_is_async = [is_async_stage(s) for s in stages]
        self._opened = True

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        await self._stop_workers(cancel=True)
        await self._commit()
        for stage in self._closers:
            result = stage.close()
            if inspect.isawaitable(result):
                await result
        if self._frontier is not None:
            await self._frontier.close()
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.stats.finished is None:
            self.stats.finished = time.monotonic()

    def stop(self) -> None:
        """Stop taking new work; in-flight requests get a few seconds to finish. Safe from signal handlers."""
        if not self._stopping:
            self._stopping = True
            self.stats.interrupted = True
            self._wake.set()

    def flush_now(self) -> None:
        """Write out what the stages and the item writer hold (whole lines), synchronously. For a hard
        exit (a second Ctrl-C): no acks are made, so a persistent frontier re-fetches these pages."""
        for stage in [*self._flushers, *([self._writer] if self._writer is not None else [])]:
            try:
                stage.flush()
            except Exception:
                log.debug("flush failed", exc_info=True)

    @property
    def in_flight(self) -> int:
        """Requests being fetched or processed right now."""
        return self._in_flight

    @property
    def retries_waiting(self) -> int:
        return len(self._delayed) + len(self._due)

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "the crawler is not open"
        return self._client

    @property
    def frontier(self) -> FrontierBackend:
        assert self._frontier is not None, "the crawler is not open"
        return self._frontier

    # -- public driving ----------------------------------------------------------------------------

    async def add(self, urls: Sequence[str | Request], *, depth: int = 0) -> int:
        """Queue more start URLs (canonicalised, deduplicated)."""
        reqs = [u if isinstance(u, Request) else Request.make(u, depth=depth,
                sort_query=not self.job.scope.keep_query_order) for u in urls]  # fmt: skip
        added = await self.frontier.push_many(reqs)
        self._wake.set()
        return added

    async def crawl(self) -> AsyncIterator[Page]:
        """Yield every fetched page after the stages ran, until the frontier is empty or `stop()`."""
        if not self._opened:
            await self.open()
        self.stats = Stats()
        if self.job.start_urls:
            await self.add(self.job.start_urls)
        if self.job.start_sitemaps:
            await self.add([Request.make(u, meta={"sitemap": True}) for u in self.job.start_sitemaps])
        self._workers = [asyncio.create_task(self._worker(), name=f"crawler-worker-{i}")
                         for i in range(self.job.concurrency.workers)]  # fmt: skip
        dispatcher = asyncio.create_task(self._dispatch(), name="crawler-dispatcher")
        try:
            while True:
                item = await self._results.get()
                if item is _STOP:
                    break
                yield item
        finally:
            if not dispatcher.done():
                self.stop()
                dispatcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await dispatcher
            elif not dispatcher.cancelled() and dispatcher.exception() is not None:
                raise dispatcher.exception()  # type: ignore[misc]
            await self._stop_workers(cancel=True)
            await self._commit()
            self.stats.finished = time.monotonic()
        if self._fatal is not None:
            raise self._fatal

    async def run(self) -> Stats:
        """Crawl to the end, discarding the pages (the stages and writers keep what matters)."""
        # Nobody reads the pages: the workers skip handing each one over (measured: ~5% of a crawl's CPU).
        self._emit_pages = False
        try:
            async for _ in self.crawl():
                pass
        finally:
            self._emit_pages = True
        return self.stats

    # -- dispatcher --------------------------------------------------------------------------------

    def _budget(self, host: str) -> int:
        robots = self._robots
        if robots is not None and not robots.known(host):
            # The first request to a host loads its robots.txt (in a worker); the rest wait for it.
            return 0 if host in self._robots_loading else min(1, self.limiter.budget(host))
        return self.limiter.budget(host)

    async def _load_robots(self, scheme: str, host: str) -> None:
        assert self._robots is not None
        try:
            await self._robots.load(scheme, host)
            delay = self._robots.crawl_delay(host)
            if delay:
                self.limiter.lower_rate(host, Rate(count=1, period=delay))
                log.info("%s asks for Crawl-delay %gs", host, delay)
            if self.job.scope.sitemaps:
                sitemaps = [Request.make(u, meta={"sitemap": True}) for u in self._robots.sitemaps(host)]
                if sitemaps:
                    await self.frontier.push_many(sitemaps)
        finally:
            self._robots_loading.discard(host)
            self._wake.set()

    async def _dispatch(self) -> None:
        frontier = self.frontier
        max_pages = self.job.scope.max_pages
        workers = self.job.concurrency.workers
        limiter = self.limiter
        try:
            while not self._stopping:
                self._wake.clear()
                free = workers - self._in_flight
                if max_pages is not None:
                    free = min(free, max_pages - self._reserved)
                dispatched = 0
                if free > 0 and (self._delayed or self._due):
                    dispatched += await self._dispatch_retries(free)
                    free -= dispatched
                if free > 0:
                    batch = await frontier.pop_ready(free, self._budget)
                    for req in batch:
                        await limiter.acquire(req.host)
                        self._start(req)
                    dispatched += len(batch)
                if dispatched:
                    await asyncio.sleep(0)  # let workers pick up before popping again
                    continue
                if self._in_flight == 0 and not self._delayed and not self._due:
                    await self._commit()
                    if max_pages is not None and self._reserved >= max_pages:
                        break
                    if await frontier.size() == 0:
                        break
                elif time.monotonic() - self._last_commit > self.job.output.flush_every:
                    await self._commit()
                timeout = limiter.next_wakeup()
                if (wait := frontier.next_wakeup()) is not None:
                    timeout = min(timeout, max(wait, 0.001))  # a shared rate limit lets a host go again
                if self._delayed:
                    timeout = min(timeout, max(0.0, self._delayed[0][0] - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            await self._drain()
            await self._commit()
            await self._results.put(_STOP)

    async def _dispatch_retries(self, free: int) -> int:
        now = time.monotonic()
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._due.append(heapq.heappop(delayed)[2])
        started = 0
        still: list[Request] = []
        for req in self._due:
            if started < free and self._budget(req.host) > 0:
                await self.limiter.acquire(req.host)
                self._start(req, reserve=False)
                started += 1
            else:
                still.append(req)
        self._due = still
        return started

    def _start(self, req: Request, *, reserve: bool = True) -> None:
        self._in_flight += 1
        if reserve and not _is_sitemap(req):
            self._reserved += 1
        if self._robots is not None and not self._robots.known(req.host):
            self._robots_loading.add(req.host)
        self._work.put_nowait(req)

    async def _drain(self) -> None:
        """After stop: give in-flight requests a grace period, then cancel them."""
        deadline = time.monotonic() + _GRACE_SECONDS
        while self._in_flight and time.monotonic() < deadline:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.monotonic()))
        await self._stop_workers(cancel=bool(self._in_flight))

    async def _stop_workers(self, *, cancel: bool) -> None:
        workers, self._workers = self._workers, []
        if not workers:
            return
        if cancel:
            for t in workers:
                t.cancel()
        else:
            for _ in workers:
                self._work.put_nowait(None)
        await asyncio.gather(*workers, return_exceptions=True)

    # -- workers -----------------------------------------------------------------------------------

    async def _worker(self) -> None:
        work = self._work
        while True:
            req = await work.get()
            if req is None:
                return
            retries = req.retries
            try:
                await self._process(req)
            except asyncio.CancelledError:
                raise
            except FrontierUnavailable as exc:  # no frontier, no crawl: end it with this one error
                if self._fatal is None:
                    self._fatal = exc
                    self._stopping = True
                    self._wake.set()
            except Exception as exc:  # a bug in a stage must not kill the crawl
                log.error("%s failed in a stage: %s: %s", req.url, type(exc).__name__, exc)
                log.debug("traceback", exc_info=True)
                self._fail(req, f"internal:{type(exc).__name__}")
            finally:
                # The host's slot is held through the stages: back-pressure stays per host.
                self.limiter.release(req.host)
                if req.retries == retries:  # done for good (no retry waits): the slot shared by every process too
                    self.frontier.release(req)
                self._in_flight -= 1
                self._wake.set()

    async def _process(self, req: Request) -> None:
        stats = self.stats
        robots = self._robots
        if robots is not None and not robots.known(req.host):
            await self._load_robots(req.url.split("://", 1)[0], req.host)
        if robots is not None and not robots.allowed(req.url, req.host):
            stats.robots_denied += 1
            if not _is_sitemap(req):
                self._reserved -= 1
            self._pending_acks.append(req)
            log.debug("robots.txt forbids %s", req.url)
            return
        stats.requests += 1
        try:
            page = await self._fetcher.fetch(req)
        except FetchError as exc:
            log.warning("%s failed: %s", req.url, exc)
            self._fail(req, exc.kind)
            return
        except httpx.HTTPError as exc:
            if self.retry_policy.retryable_error(exc):
                self._retry_or_fail(req, exc, error_kind(exc))
            else:
                log.warning("%s failed: %s: %s", req.url, type(exc).__name__, exc)
                self._fail(req, error_kind(exc))
            return
        except Exception as exc:
            if not _is_protocol_library_error(exc):
                raise
            # h2/h11 errors that escape httpcore unwrapped when a connection dies mid-stream.
            self._retry_or_fail(req, httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}"), "protocol_error")
            return
        status = page.status
        remaining = page.headers.get("x-ratelimit-remaining")
        if remaining is not None:
            self.limiter.observe_quota(req.host, remaining, page.headers.get("x-ratelimit-reset"),
                                       self.job.retry.max_retry_after)  # fmt: skip
        if status in self.retry_policy.statuses:
            retry_after = self.retry_policy.retry_after_of(status, page.headers)
            if retry_after is not None and status in (429, 503):
                self.limiter.pause(req.host, retry_after)
                self.frontier.pause(req.host, retry_after)  # a shared frontier holds it for every process
                log.info("%s answered %d with Retry-After %.1fs: pausing the host", req.host, status, retry_after)
            self._retry_or_fail(req, RetryableStatus(status, retry_after, req.url), f"http_{status}")
            return
        stats.pages += 1
        stats.statuses[status] += 1
        stats.hosts[req.host] += 1
        stats.http_versions[page.http_version] += 1
        stats.bytes += len(page.body) or page.saved_bytes
        if status >= 400 or not self.scope.host_allowed(host_key(page.url)):
            if status >= 400:
                stats.error(f"http_{status}", req.url)
                log.info("%s answered HTTP %d", req.url, status)
            else:
                stats.offsite += 1
            self._pending_acks.append(req)
            return
        result = await self._run_stages(page)
        if result is not None:
            page = result
            if page.requests:
                await self._push(page.requests)
            if self._writer is not None:
                # No await between writing the item and marking the page for ack: a commit in between
                # would store an offset covering this item without acking the page, and a crash right
                # after would write the page twice.
                self._writer(page)
                stats.items += page.record_count
            self._pending_acks.append(req)
            if self._emit_pages:
                await self._results.put(page)
            return
        self._pending_acks.append(req)

    async def _run_stages(self, page: Page) -> Page | None:
        for stage, is_async in zip(self._stages, self._stage_is_async, strict=True):
            try:
                result = await stage(page) if is_async else stage(page)  # type: ignore[misc]
                if inspect.isawaitable(result):
                    result = await result
            except DropPage as exc:
                self.stats.dropped += 1
                log.debug("dropped %s: %s", page.url, exc)
                if page.requests:
                    await self._push(page.requests)
                return None
            if isinstance(result, Page):
                page = result
        return page

    async def _push(self, requests: list[Request]) -> None:
        scope = self.scope
        fresh = [r for r in requests if r.fingerprint or _fill_identity(r)]
        fresh = [r for r in fresh if scope.allows(r.url, r.host, r.depth)]
        if fresh:
            await self.frontier.push_many(fresh)
            self._wake.set()

    def _retry_or_fail(self, req: Request, exc: BaseException, kind: str) -> None:
        policy = self.retry_policy
        if req.retries + 1 < policy.attempts and policy.method_retryable(req.method):
            delay = policy.backoff(req.retries, exc)
            req.retries += 1
            self.stats.retries += 1
            log.debug("retrying %s in %.2fs (%s, retry %d)", req.url, delay, kind, req.retries)
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), req))
            return
        log.warning("%s failed after %d attempts: %s", req.url, req.retries + 1, exc)
        self._fail(req, kind)

    def _fail(self, req: Request, kind: str) -> None:
        self.stats.error(kind, req.url)
        if not _is_sitemap(req):
            self._reserved -= 1
        self._pending_acks.append(req)

    async def _commit(self) -> None:
        """Flush the writers, then ack what they hold: a page is acked only once its item is on disk."""
        self._last_commit = time.monotonic()
        for stage in self._flushers:
            result = stage.flush()
            if inspect.isawaitable(result):
                await result
        # The item writer last, and no await until the acks are taken: the offset covers exactly their items.
        if self._writer is not None:
            self._writer.flush()
        if self._pending_acks and self._frontier is not None:
            acks, self._pending_acks = self._pending_acks, []
            checkpoint = {"items_offset": self._writer.offset} if self._writer is not None else None
            await self._frontier.ack(acks, checkpoint)


def _is_sitemap(req: Request) -> bool:
    """Sitemaps are how a crawl finds pages, not pages: they do not count against `max_pages`."""
    return bool(req.meta and req.meta.get("sitemap"))


def _is_protocol_library_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".", 1)[0] in ("h2", "h11", "hpack", "hyperframe")


def _fill_identity(req: Request) -> bool:
    filled = Request.make(req.url, depth=req.depth, priority=req.priority, referer=req.referer, method=req.method,
                          meta=req.meta, dont_filter=req.dont_filter)  # fmt: skip
    req.url, req.host, req.fingerprint = filled.url, filled.host, filled.fingerprint
    return True
