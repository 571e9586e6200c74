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
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, overload

import httpx

from crawler.config.job import Job
from crawler.config.units import Rate
from crawler.engine.stages import ErrorHook, Stage, build_error_hooks, build_stages, is_async_stage
from crawler.fetch.fetcher import Fetcher
from crawler.fetch.saver import FileSaver
from crawler.frontier.backends import open_frontier
from crawler.frontier.base import FrontierBackend, FrontierUnavailable, KnownPage, PageMemory
from crawler.http.client import build_client
from crawler.model.errors import DropPage, FetchError, OutputError, TotalTimeout, error_kind
from crawler.model.failure import Failure
from crawler.model.page import Page
from crawler.model.request import Request
from crawler.model.url import host_key
from crawler.output.stats import Stats
from crawler.output.warc import WarcArchive
from crawler.output.writers import open_writer
from crawler.politeness.limiter import HostLimiter
from crawler.politeness.retry import HOST_PAUSE_STATUSES, RetryPolicy
from crawler.politeness.robots import RobotsCache
from crawler.politeness.scope import Scope

__all__ = ["Crawler", "ErrorHook", "Stage"]

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
                 frontier: FrontierBackend | None = None, on_error: Sequence[ErrorHook] = (),
                 recrawl: bool = False) -> None:  # fmt: skip
        self.job = job
        self.stats = Stats()
        self._user_stages = list(stages)
        # Failure reporting: hooks from output.failures, job.on_error and `on_error=`; failures found by a
        # worker wait in `_failures` until it hands them over (`_deliver_failures`).
        self._user_error_hooks = list(on_error)
        self._error_hooks: list[ErrorHook] = []
        self._failures: list[Failure] = []
        self._emit_failures = False
        # Recrawls (`recrawl=True`, `crawler run --recrawl`): a frontier with page memory (SQLite) remembers
        # each fetched page with its validators; a recrawl revisits them with conditional requests.
        self._recrawl = recrawl
        self._page_memory: PageMemory | None = None
        self._fetched: list[KnownPage] = []
        self._warc: WarcArchive | None = None
        self._client = client
        self._owns_client = client is None
        self._frontier = frontier
        self._stages: list[Stage] = []
        self._closers: list[Any] = []
        self._flushers: list[Any] = []
        self._writer: Any = None
        self._stopping = False
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
        self._last_progress = time.monotonic()  # a request finished (any outcome): the stall watchdog's clock
        self._consumer_gone = False  # crawl()'s consumer stopped reading: nobody will take _STOP
        # An output that cannot be written or a frontier that gave up ends the crawl; crawl() raises it.
        self._fatal: BaseException | None = None
        self.end_reason = ""  # why the crawl ended, in words, for the log and the summary
        self.retry_policy = RetryPolicy(job.retry)
        self.limiter = HostLimiter(job.rate_limit.per_host, job.rate_limit.hosts, job.concurrency.per_host)
        self.scope = Scope.of_job(job)
        self._total_timeout = job.http.timeout.total
        self._handle_statuses = frozenset(job.handle_statuses)

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
        self._page_memory = self._frontier if isinstance(self._frontier, PageMemory) else None
        if self._recrawl and self._page_memory is None:
            raise ValueError("a recrawl needs a frontier that remembers pages: set state: DIR")
        if self._frontier.shares_rates:
            # A shared frontier (Redis) enforces per-host rates for all processes together.
            self.limiter.share_rates()
        saver = FileSaver(job.save.dir, job.save.match, job.save.content_types, job.save.on_collision)
        self._fetcher = Fetcher.for_job(self._client, job, retry_statuses=self.retry_policy.statuses,
                                        saver=saver if saver.active else None)  # fmt: skip
        if job.scope.robots_txt:
            self._robots = RobotsCache(self._fetcher.fetch_robots, job.http.user_agent, job.robots)
        stages = build_stages(job, self._user_stages)
        self._error_hooks = build_error_hooks(job, self._user_error_hooks)
        self._writer = None
        checkpoint = await self._frontier.checkpoint()
        if job.output.items:
            items = job.output.items
            if "{worker}" in items:
                # One items file per process of a distributed crawl, named by its stable worker identity.
                items = items.replace("{worker}", self._frontier.worker or "0")
            resuming = checkpoint is not None and "items_offset" in checkpoint
            writer = open_writer(items, columns=job.item_columns,
                                 overwrite=job.output.overwrite and not resuming,
                                 flush_every=job.output.flush_every, on_closed=self.stop)  # fmt: skip
            if resuming:
                assert checkpoint is not None
                writer.truncate(int(checkpoint["items_offset"]))
            else:
                # Record where this run's output starts, so that a crash before the first ack truncates
                # back to here even when the file is appended to (output.overwrite: false).
                await self._frontier.ack([], {"items_offset": writer.offset})
            self._writer = writer
        self._stages = stages
        self._warc = self._open_warc(checkpoint is not None)
        # The item writer is not a stage: `_process` calls it right before marking the page for ack.
        extras = [w for w in (self._warc, self._writer) if w is not None]
        self._closers = [s for s in [*stages, *self._error_hooks, *extras] if callable(getattr(s, "close", None))]
        self._flushers = [s for s in [*stages, *self._error_hooks] if callable(getattr(s, "flush", None))]
        self._stage_is_async = [is_async_stage(s) for s in stages]
        self._opened = True

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        await self._stop_workers(cancel=True)
        # Every resource is released even when an output failed: the first failure is raised at the end.
        failure: BaseException | None = None
        if self._fatal is None:
            try:
                await self._commit()
            except Exception as exc:
                failure = exc
        if self._robots is not None:
            await self._robots.aclose()
        for stage in self._closers:
            try:
                result = stage.close()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                failure = failure or exc
                log.error("closing %s failed: %s", type(stage).__name__, exc)
        if self._frontier is not None:
            await self._frontier.close()
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.stats.finished is None:
            self.stats.finished = time.monotonic()
        if failure is not None and self._fatal is None:
            raise failure

    def stop(self) -> None:
        """Stop taking new work; in-flight requests get a few seconds to finish. Safe from signal handlers."""
        if not self._stopping:
            self._stopping = True
            if self._fatal is None:
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

    @overload
    def crawl(self, *, include_failures: Literal[False] = False) -> AsyncIterator[Page]: ...
    @overload
    def crawl(self, *, include_failures: bool) -> AsyncIterator[Page | Failure]: ...

    async def crawl(self, *, include_failures: bool = False) -> AsyncIterator[Any]:
        """Yield every fetched page after the stages ran, until the frontier is empty or `stop()`. With
        `include_failures=True`, also every request that failed after its retries, as a `Failure` (its
        `kind`, `status`, `referer`), in the order they happen."""
        if not self._opened:
            await self.open()
        self._emit_failures = include_failures
        self.stats = Stats()
        if self.job.start_urls:
            await self.add(self.job.start_urls)
        if self.job.start_sitemaps:
            await self.add([Request.make(u, meta={"sitemap": True}) for u in self.job.start_sitemaps])
        if self._recrawl:
            await self._push_known_pages()
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
            self._consumer_gone = True
            if not dispatcher.done():
                self.stop()
                dispatcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await dispatcher
            await self._stop_workers(cancel=True)
            self.stats.finished = time.monotonic()
            self.stats.rates = self.limiter.learnt_rates()
            if self._fatal is not None:
                raise self._fatal
            await self._commit()

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
            # The first request to a host loads its robots.txt (in a worker); the rest wait for it, and all
            # wait while an unreachable robots.txt backs off (RFC 9309: complete disallow meanwhile).
            if host in self._robots_loading or robots.retry_in(host) > 0:
                return 0
            return min(1, self.limiter.budget(host))
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
        """Run the dispatch loop; whatever way it ends (done, stopped, a failed commit, cancelled), drain the
        workers, commit what is done, and always tell `crawl()` that the crawl is over."""
        try:
            await self._dispatch_loop()
        except Exception as exc:
            self._fatal = self._fatal or exc
        finally:
            try:
                await self._drain()
                if self._fatal is None:
                    await self._commit()
            except Exception as exc:  # a commit that cannot be written: the crawl still ends
                self._fatal = self._fatal or exc
            finally:
                if self._fatal is not None:  # the error itself is the message (crawl() raises it)
                    self.end_reason = f"aborted ({type(self._fatal).__name__})"
                elif self.end_reason:
                    log.info("crawl ended: %s", self.end_reason)
                await self._deliver_stop()

    async def _deliver_stop(self) -> None:
        while not self._consumer_gone:
            try:
                self._results.put_nowait(_STOP)
                return
            except asyncio.QueueFull:  # the consumer is still reading: make room by waiting for it
                await asyncio.sleep(0.01)

    async def _dispatch_loop(self) -> None:
        """The invariant: while the crawl runs, either work is dispatched, or something in flight or
        scheduled will wake the loop (a finished request, a retry's time, a host's next token or pause
        end), or the crawl ends with `end_reason` saying why. Nothing waits without a deadline."""
        frontier = self.frontier
        job = self.job
        max_pages = job.scope.max_pages
        workers = job.concurrency.workers
        flush_every = job.output.flush_every
        stall_timeout = job.stall_timeout
        limiter = self.limiter
        while not self._stopping:
            self._wake.clear()
            now = time.monotonic()
            # Checkpoints run on the clock, however busy the dispatcher is: a kill -9 redoes at most
            # `flush_every` seconds of work.
            if now - self._last_commit >= flush_every:
                await self._commit()
            if self._fatal is not None:  # an output or the frontier failed: `_dispatch` says so
                return
            if stall_timeout is not None and now - self._last_progress >= stall_timeout:
                self.end_reason = f"stalled: no request finished for {stall_timeout:g}s"
                self.stats.stalled = True
                self._log_waits(logging.ERROR)
                return
            free = workers - self._in_flight
            dispatched = 0
            if free > 0 and (self._delayed or self._due):
                # Retries already hold their max_pages reservation: max_pages never holds them back.
                dispatched = await self._dispatch_retries(free)
                free -= dispatched
            if max_pages is not None:
                free = min(free, max_pages - self._reserved)
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
                    left = await frontier.size()
                    self.end_reason = f"scope.max_pages {max_pages} reached" + (
                        f"; {left:,} queued requests left" if left else "")  # fmt: skip
                    return
                if await frontier.size() == 0:
                    self.end_reason = "every queued request is done"
                    return
            timeout = limiter.next_wakeup()
            if (wait := frontier.next_wakeup()) is not None:
                timeout = min(timeout, max(wait, 0.001))  # a shared rate limit lets a host go again
            if self._delayed:
                timeout = min(timeout, max(0.0, self._delayed[0][0] - time.monotonic()))
            if stall_timeout is not None:
                timeout = min(timeout, max(0.001, self._last_progress + stall_timeout - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        self.end_reason = self.end_reason or "stopped"

    def _log_waits(self, level: int) -> None:
        """Say what the crawl is waiting for: requests in flight, retries and their time, and each waiting
        host's reason (a Retry-After pause, a rate, robots.txt being fetched)."""
        now = time.monotonic()
        lines = [f"{self._in_flight} requests in flight, {len(self._delayed) + len(self._due)} retries waiting"]
        for due, _, req in sorted(self._delayed)[:10]:
            lines.append(f"  retry of {req.url} in {max(0.0, due - now):.1f}s")
        for host in sorted(self._robots_loading)[:10]:
            lines.append(f"  {host}: fetching robots.txt")
        lines += [f"  {host}: {reason}" for host, reason in self.limiter.waits()[:20]]
        log.log(level, "waiting for:\n%s", "\n".join(lines))

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
                try:
                    await self._process(req)
                except asyncio.CancelledError:
                    raise
                except FrontierUnavailable as exc:  # no frontier, no crawl: end it with this one error
                    if self._fatal is None:
                        self._fatal = exc
                    self.stop()
                except OutputError as exc:  # a full disk: stop now, keep what is buffered, exit 1
                    if self._fatal is None:
                        self._fatal = exc
                        log.error("%s: stopping the crawl", exc)
                    self.stop()
                except FetchError as exc:  # a stage reading the body further (a sitemap past its cap)
                    log.warning("%s failed: %s", req.url, exc)
                    self._fail(req, exc.kind, str(exc))
                except Exception as exc:  # a bug in a stage must not kill the crawl
                    log.error("%s failed in a stage: %s: %s", req.url, type(exc).__name__, exc)
                    log.debug("traceback", exc_info=True)
                    self._fail(req, "stage_error", f"{type(exc).__name__}: {exc}")
                if self._failures:
                    # While still in flight: the crawl cannot end before its failures are handed over.
                    await self._deliver_failures()
            finally:
                # The host's slot is held through the stages: back-pressure stays per host.
                self.limiter.release(req.host)
                if req.retries == retries:  # done for good (no retry waits): the slot shared by every process too
                    self.frontier.release(req)
                self._in_flight -= 1
                self._last_progress = time.monotonic()
                self._wake.set()

    async def _process(self, req: Request) -> None:
        stats = self.stats
        robots = self._robots
        if robots is not None and not robots.known(req.host):
            await self._load_robots(req.url.split("://", 1)[0], req.host)
            if not robots.known(req.host):  # unreachable: wait (keeping the reservation) for the next try
                heapq.heappush(self._delayed, (time.monotonic() + robots.retry_in(req.host), next(self._seq), req))
                return
        if robots is not None and (refusal := robots.refusal(req.url, req.host)) is not None:
            if refusal != "robots_denied":  # the host is down, robots_unavailable, crawl_delay_too_long
                message = robots.explain(req.host, refusal)
                log.warning("%s failed: %s", req.url, message)
                stats.requests += 1  # an outcome for the error rate, as a failed fetch would be
                self._fail(req, refusal, message)
                return
            stats.robots_denied += 1
            if not _is_sitemap(req):
                self._reserved -= 1
            self._pending_acks.append(req)
            log.debug("robots.txt forbids %s", req.url)
            return
        if req.retries == 0 and not _is_sitemap(req) and not self.scope.admit(req.host):
            stats.skipped["host_budget"] += 1  # scope.max_pages_per_host
            self._reserved -= 1
            self._pending_acks.append(req)
            return
        stats.requests += 1
        total = self._total_timeout
        sent_at = time.monotonic()
        try:
            if total is None:
                page = await self._fetcher.fetch(req)
            else:
                try:
                    async with asyncio.timeout(total):
                        page = await self._fetcher.fetch(req)
                except TimeoutError:
                    raise TotalTimeout(f"no complete response within http.timeout.total {total:g}s") from None
        except FetchError as exc:
            log.warning("%s failed: %s", req.url, exc)
            self._fail(req, exc.kind, str(exc))
            return
        except httpx.HTTPError as exc:
            if self.retry_policy.retryable_error(exc):
                self._retry_or_fail(req, exc, error_kind(exc))
            else:
                log.warning("%s failed: %s: %s", req.url, type(exc).__name__, exc)
                self._fail(req, error_kind(exc), f"{type(exc).__name__}: {exc}")
            return
        status = page.status
        if page.redirect is not None:
            self.limiter.answered(req.host, sent_at)
            await self._follow_redirect(req, page)
            return
        remaining = page.headers.get("x-ratelimit-remaining")
        if remaining is not None:
            self.limiter.observe_quota(req.host, remaining, page.headers.get("x-ratelimit-reset"),
                                       self.job.retry.max_retry_after)  # fmt: skip
        if status in self.retry_policy.statuses:
            self._retry_or_fail(req, status, f"http_{status}", page.headers, sent_at)
            return
        if status < 400:
            self.limiter.answered(req.host, sent_at)
        if status == 304 and _is_conditional(req):
            stats.not_modified += 1  # unchanged since the last run: nothing to extract, no item
            self._pending_acks.append(req)
            return
        stats.pages += 1
        stats.statuses[status] += 1
        stats.hosts[req.host] += 1
        stats.http_versions[page.http_version] += 1
        stats.bytes += len(page.body) or page.saved_bytes
        if self._warc is not None:
            await self._warc.write(page)  # every response that became a page, before any stage can drop it
        if status >= 400:
            stats.error(f"http_{status}", req.url)
            log.info("%s answered HTTP %d", req.url, status)
        if status < 400 and self._page_memory is not None:
            self._fetched.append(KnownPage(req, page.headers.get("etag"), page.headers.get("last-modified")))
        handled = status < 400 or status in self._handle_statuses
        if not handled or not self.scope.host_allowed(host_key(page.url)):
            if handled:
                stats.offsite += 1
            else:
                self._report_failure(Failure.of(req, f"http_{status}", status=status, message=f"HTTP {status}"))
            self._pending_acks.append(req)
            return
        result = await self._run_stages(page)
        if page.links_capped:
            stats.links_capped += 1
        if result is not None:
            page = result
            if not self._emit_pages:
                page.drop_parsed()  # its tree is done with: not held while the push waits on the frontier
            if page.requests:
                await self._push(page.requests)
            if self._writer is not None:
                # No await between writing the item and marking the page for ack: a commit in between
                # would store an offset covering this item without acking the page, and a crash right
                # after would write the page twice.
                self._writer(page)
            stats.items += page.record_count  # with or without a writer: what the crawl produced
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
                page.drop_parsed()  # a dropped page is no one's any more
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
        kept = []
        for r in fresh:  # trap defences: logged once per host by the scope, counted here
            kind = scope.trap(r.url, r.host, r.meta)
            if kind is None:
                kept.append(r)
            else:
                self.stats.skipped[kind] += 1
        fresh = kept
        if fresh:
            await self.frontier.push_many(fresh)
            self._wake.set()

    def _retry_or_fail(self, req: Request, failure: BaseException | int, kind: str,
                       headers: Mapping[str, str] | None = None, sent_at: float = 0.0) -> None:  # fmt: skip
        """Re-schedule `req` after a retryable error or status, or fail it: the shared retry decision."""
        decision = self.retry_policy.decide(req.retries + 1, failure, headers, req.method)
        if isinstance(failure, int) and failure in HOST_PAUSE_STATUSES:
            # The host says "too fast": it pauses for its Retry-After and its rate drops to what it was
            # accepting (AIMD), so the retries do not storm it when the pause ends.
            self.limiter.throttled(req.host, sent_at, decision.pause_host_for)
            if decision.pause_host_for is not None:
                self.frontier.pause(req.host, decision.pause_host_for)  # a shared frontier pauses every process
            log.debug("%s answered %d (Retry-After %s): host rate now %s/s", req.host, failure,
                      decision.pause_host_for, self.limiter.rate_of(req.host))  # fmt: skip
        if not decision.give_up:
            req.retries += 1
            self.stats.retries += 1
            log.debug("retrying %s in %.2fs (%s, retry %d)", req.url, decision.delay, kind, req.retries)
            heapq.heappush(self._delayed, (time.monotonic() + decision.delay, next(self._seq), req))
            return
        what = f"HTTP {failure}" if isinstance(failure, int) else failure
        log.warning("%s failed after %d attempts: %s", req.url, req.retries + 1, what)
        self._fail(req, kind, str(what))

    async def _follow_redirect(self, req: Request, page: Page) -> None:
        """Queue a redirect's target as a request of its own: scope here, robots.txt and the per-host limits
        when it is dispatched, the seen set when it is pushed (a URL reached by five redirects is fetched
        once). The redirect itself is not a page: no item, no stages. After a cross-origin hop the chain
        goes on without credentials (`Fetcher`)."""
        hop = page.redirect
        assert hop is not None
        meta = {k: v for k, v in (req.meta or {}).items() if k != "headers"}  # a recrawl's validators stay
        hops = int(meta.get("hops", 0)) + 1
        if hops > self.job.http.max_redirects:
            self._fail(req, "too_many_redirects", f"more than http.max_redirects {self.job.http.max_redirects}")
            return
        meta["hops"] = hops
        chain = [*meta.get("chain", ()), req.fingerprint]  # the chain's URLs so far, for loop detection
        meta["chain"] = chain
        if hop.cross_origin:
            meta["strip_credentials"] = True
        if not hop.auth:
            meta["no_auth"] = True
        try:
            target = Request.make(hop.url, depth=req.depth, priority=req.priority, referer=req.referer, meta=meta,
                                  sort_query=not self.job.scope.keep_query_order)  # fmt: skip
        except ValueError as exc:  # a target no URL parser accepts (a port past 65535)
            self._fail(req, "redirect_bad_target", f"redirect target {hop.url!r}: {exc}")
            return
        if target.fingerprint in chain:  # A -> B -> A: the seen set would end it silently; it is a loop
            self._fail(req, "too_many_redirects", f"redirect loop back to {target.url}")
            return
        if not self.scope.allows(target.url, target.host, target.depth):
            log.info("%s redirects out of scope, to %s", req.url, target.url)
            self._fail(req, "redirect_out_of_scope", f"redirect to {target.url}")
            return
        self.stats.redirects += 1
        if not _is_sitemap(req):
            self._reserved -= 1  # not a page: the target takes its own place under max_pages
        self._pending_acks.append(req)
        if not await self.frontier.push_many([target]):
            log.debug("%s redirects to %s, already seen", req.url, target.url)
        self._wake.set()

    def _fail(self, req: Request, kind: str, message: str = "") -> None:
        self.stats.error(kind, req.url)
        if not _is_sitemap(req):
            self._reserved -= 1
        self._pending_acks.append(req)
        self._report_failure(Failure.of(req, kind, message=message))

    def _open_warc(self, resuming: bool) -> WarcArchive | None:
        """`output.warc`: the archive every fetched page is written to (`{worker}` as for items)."""
        out = self.job.output
        if not out.warc:
            return None
        path = out.warc.replace("{worker}", self.frontier.worker or "0")
        return WarcArchive(path, request_headers=dict(self.client.headers), max_size=out.warc_max_size,
                           overwrite=out.overwrite and not resuming, compression_level=out.warc_compression_level,
                           max_record_body=self.job.http.max_body)  # fmt: skip

    # -- recrawls ------------------------------------------------------------------------------------

    async def _push_known_pages(self) -> None:
        """Queue every page the frontier remembers, with If-None-Match / If-Modified-Since from its stored
        validators. A state with work still queued finishes that crawl first."""
        assert self._page_memory is not None
        queued = await self.frontier.size()
        if queued:
            log.warning("recrawl: the state still has %d requests queued; finishing that crawl first, "
                        "then rerun with --recrawl", queued)  # fmt: skip
            return
        total = conditional = 0
        batch: list[Request] = []
        for known in self._page_memory.known_pages():
            req = known.request
            meta = dict(req.meta or {})
            headers = {}
            if known.etag:
                headers["If-None-Match"] = known.etag
            if known.last_modified:
                headers["If-Modified-Since"] = known.last_modified
            if headers:
                meta["headers"] = headers
                conditional += 1
            batch.append(Request(url=req.url, depth=req.depth, host=req.host, fingerprint=req.fingerprint,
                                 meta=meta or None, dont_filter=True))  # fmt: skip
            total += 1
            if len(batch) >= 5000:
                await self.frontier.push_many(batch)
                batch = []
        if batch:
            await self.frontier.push_many(batch)
        self._wake.set()
        log.info("recrawl: revisiting %d known pages (%d with validators, asked conditionally)", total, conditional)

    # -- failures reaching user code -----------------------------------------------------------------

    def _report_failure(self, failure: Failure) -> None:
        """Queue a failure for the hooks and `crawl(include_failures=True)`; the worker delivers it."""
        if self._error_hooks or self._emit_failures:
            self._failures.append(failure)

    async def _deliver_failures(self) -> None:
        failures, self._failures = self._failures, []
        for failure in failures:
            for hook in self._error_hooks:
                try:
                    result = hook(failure)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:  # a bug in a hook must not kill the crawl
                    log.error("on_error hook %r failed on %s: %s: %s", hook, failure.url, type(exc).__name__, exc)
            if self._emit_failures:
                await self._results.put(failure)

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
        if self._fetched and self._page_memory is not None:
            # Into the open transaction: the pages' validators commit with their acks.
            fetched, self._fetched = self._fetched, []
            self._page_memory.remember_pages(fetched)
        if self._pending_acks and self._frontier is not None:
            acks, self._pending_acks = self._pending_acks, []
            checkpoint = {"items_offset": self._writer.offset} if self._writer is not None else None
            try:
                await self._frontier.ack(acks, checkpoint)
            except (OutputError, FrontierUnavailable):
                raise
            except Exception as exc:  # the state cannot be saved (a full disk, a lost Redis): end the crawl
                raise OutputError(f"cannot save the crawl state: {type(exc).__name__}: {exc}") from exc


def _is_sitemap(req: Request) -> bool:
    """Sitemaps are how a crawl finds pages, not pages: they do not count against `max_pages`."""
    return bool(req.meta and req.meta.get("sitemap"))


def _is_conditional(req: Request) -> bool:
    headers = req.meta.get("headers") if req.meta else None
    return isinstance(headers, dict) and ("If-None-Match" in headers or "If-Modified-Since" in headers)


def _fill_identity(req: Request) -> bool:
    filled = Request.make(req.url, depth=req.depth, priority=req.priority, referer=req.referer, method=req.method,
                          meta=req.meta, dont_filter=req.dont_filter)  # fmt: skip
    req.url, req.host, req.fingerprint = filled.url, filled.host, filled.fingerprint
    return True
