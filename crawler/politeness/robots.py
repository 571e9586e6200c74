"""robots.txt per RFC 9309: fetched once per host (through the fetcher, so the decoding caps hold), parsed
with protego, cached, and turned into one verdict per URL.

What each answer means (RFC 9309 §2.3.1):
- 2xx: the rules apply (the first 500 KiB of the file; §2.5).
- 3xx: followed up to 5 hops by the fetcher (§2.3.1.2); more hops, or a redirect that cannot be followed
  (no Location, not http(s)), count as "unavailable".
- 4xx ("unavailable", §2.3.1.3): no rules, everything is allowed. Except 429, which says "too fast", not
  "absent": it is treated like a 5xx, as Google does.
- A host that cannot be connected to at all (connection refused, DNS failure, connect timeout) is down, not
  a server without its robots.txt: its requests fail at once with that kind (`connect_error`,
  `connect_timeout`), as fetching them would; waiting would only delay a dead link's report.
- 5xx, a network failure, a timeout or an undecodable body ("unreachable", §2.3.1.4): complete disallow.
  The host's requests wait, they do not fail: robots.txt is tried again after 1 s, then with a doubling
  backoff (at most 60 s), each failure logged. When `robots.unavailable_wait` seconds pass without an
  answer, the host's requests fail with kind `robots_unavailable`.
- A copy older than 24 hours is fetched again (§2.4) in the background while the old copy keeps serving;
  when the refetch is unreachable the cached copy stays in use, and the refetch is retried with the same
  backoff.

Crawl-delay: a delay up to `robots.max_crawl_delay` (default 60 s) slows the host to one request per delay.
A larger one (`Crawl-delay: 86400`, `1e308`) is a site asking not to be crawled at any useful pace: the host
is skipped, every one of its URLs failing with kind `crawl_delay_too_long` (logged once per host). Skipping
is chosen over clamping because a clamped delay would crawl the host faster than it asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

from protego import Protego

from crawler.config.job import RobotsConfig

__all__ = ["RobotsCache", "RobotsFetch", "RobotsResponse"]

log = logging.getLogger("crawler.robots")

_REFRESH_SECONDS = 24 * 3600.0  # RFC 9309 §2.4
_RETRY_FIRST = 1.0
_RETRY_MAX = 60.0
_now = time.monotonic  # one name for the clock, so tests can move it without moving the event loop's


# Error kinds that mean the host itself is unreachable, not just its robots.txt.
_HOST_DOWN = frozenset({"connect_error", "connect_timeout"})


@dataclass(frozen=True, slots=True)
class RobotsResponse:
    """What fetching a robots.txt came to: the final status (0 when unreachable, `error` then names the
    kind), the decoded body (capped), the URL it was read from and the redirects taken."""

    status: int
    body: bytes = b""
    url: str = ""
    hops: int = 0
    error: str | None = None


class RobotsFetch(Protocol):
    """Fetches one robots.txt within `deadline` seconds; never raises for what a server does."""

    def __call__(self, url: str, *, deadline: float) -> Awaitable[RobotsResponse]: ...


@dataclass(slots=True)
class _Host:
    scheme: str
    rules: Protego | None = None  # None: everything allowed
    loaded: bool = False  # rules (or allow-all) are known: fresh or a cached copy
    fetched_at: float = 0.0
    next_try: float = 0.0  # when robots.txt may be fetched again after a failure
    failures: int = 0
    unreachable_since: float | None = None
    given_up: bool = False
    down: str | None = None  # the host cannot be connected to: its requests fail with this kind
    last_failure: str = ""  # "answered 503", "failed (connect_error)"
    delay: float | None = None  # an accepted Crawl-delay
    delay_too_long: float | None = None  # a Crawl-delay above the cap: the host is skipped
    refreshing: asyncio.Task[None] | None = field(default=None, repr=False)


class RobotsCache:
    """The robots.txt verdicts of one crawl. `fetch` is the fetcher's `fetch_robots`."""

    def __init__(self, fetch: RobotsFetch, user_agent: str, config: RobotsConfig | None = None) -> None:
        self._fetch = fetch
        self._agent = user_agent.split("/", 1)[0].split(" ", 1)[0] or "*"
        self.config = config or RobotsConfig()
        self._hosts: dict[str, _Host] = {}

    def known(self, host: str) -> bool:
        """A verdict is ready for `host` without fetching: rules (fresh or cached), or given up."""
        st = self._hosts.get(host)
        if st is None:
            return False
        if st.loaded and _now() - st.fetched_at > _REFRESH_SECONDS:
            self._refresh(host, st)
        return st.loaded or st.given_up

    def retry_in(self, host: str) -> float:
        """Seconds until robots.txt of `host` may be fetched (again); 0 when it may be now."""
        st = self._hosts.get(host)
        return 0.0 if st is None else max(0.0, st.next_try - _now())

    async def load(self, scheme: str, host: str) -> Protego | None:
        """Fetch and parse robots.txt for `host` (see the module docstring for what each answer means).
        Returns the rules; None means everything is allowed or nothing is known yet (`known()` tells)."""
        st = self._hosts.get(host)
        if st is None:
            st = self._hosts[host] = _Host(scheme)
        url = f"{scheme}://{host}/robots.txt"
        resp = await self._fetch(url, deadline=self.config.timeout)
        now = _now()
        status = resp.status
        if 200 <= status < 300:
            text = resp.body.decode("utf-8", "replace").lstrip("\ufeff")
            self._accept(host, st, Protego.parse(text), now)
        elif (400 <= status < 500 and status != 429) or 300 <= status < 400:  # a 3xx: a redirect not followed
            if st.failures:
                log.info("robots.txt for %s answered %d after %d failed attempts: crawling it as allowed",
                         host, status, st.failures)  # fmt: skip
            self._accept(host, st, None, now)  # "unavailable": no rules
        else:
            self._unreachable(host, st, status, resp.error, now)
        return st.rules

    def _accept(self, host: str, st: _Host, rules: Protego | None, now: float) -> None:
        st.rules, st.loaded, st.fetched_at = rules, True, now
        st.failures, st.unreachable_since, st.given_up, st.next_try = 0, None, False, 0.0
        st.delay = st.delay_too_long = None
        if rules is None:
            return
        delay = rules.crawl_delay(self._agent)
        if delay is None or not delay > 0:
            return
        delay = float(delay)
        if math.isfinite(delay) and delay <= self.config.max_crawl_delay:
            st.delay = delay
            return
        st.delay_too_long = delay
        log.warning("%s asks for Crawl-delay %gs, above robots.max_crawl_delay %gs: skipping the host (its URLs "
                    "fail with crawl_delay_too_long; raise robots.max_crawl_delay to crawl it)",
                    host, delay, self.config.max_crawl_delay)  # fmt: skip

    def _unreachable(self, host: str, st: _Host, status: int, error: str | None, now: float) -> None:
        why = f"answered {status}" if status else f"failed ({error or 'unreachable'})"
        st.last_failure = why
        if not status and error in _HOST_DOWN and not st.loaded:
            st.down, st.given_up = error, True
            log.warning("robots.txt for %s %s: the host is down, its requests fail with %s", host, why, error)
            return
        st.failures += 1
        if st.unreachable_since is None:
            st.unreachable_since = now
        backoff = min(_RETRY_MAX, _RETRY_FIRST * 2 ** (st.failures - 1))
        if st.loaded:
            # A cached copy exists (a refetch after 24 hours): keep using it, try again later.
            st.next_try = now + backoff
            st.fetched_at = now + backoff - _REFRESH_SECONDS
            log.warning("robots.txt for %s %s; keeping the cached copy, trying again in %.0fs", host, why, backoff)
            return
        waited = now - st.unreachable_since
        left = self.config.unavailable_wait - waited
        if left <= 0:
            st.given_up = True
            log.warning("robots.txt for %s %s; unreachable for %.0fs (robots.unavailable_wait): its requests fail "
                        "with robots_unavailable", host, why, waited)  # fmt: skip
            return
        st.next_try = now + min(backoff, left)
        log.warning("robots.txt for %s %s (attempt %d): the host is disallowed until it answers; trying again in "
                    "%.1fs, giving up after %.0fs more", host, why, st.failures, min(backoff, left), left)  # fmt: skip

    def _refresh(self, host: str, st: _Host) -> None:
        """Refetch a copy older than 24 hours in the background; the cached copy serves meanwhile."""
        if st.refreshing is not None and not st.refreshing.done():
            return
        if _now() < st.next_try:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: refreshed on the next call from one
            st.refreshing = asyncio.get_running_loop().create_task(self._refetch(st.scheme, host))

    async def _refetch(self, scheme: str, host: str) -> None:
        try:
            await self.load(scheme, host)
        except Exception:  # a refresh must never take the crawl down; the cached copy stays
            log.warning("refreshing robots.txt for %s failed", host, exc_info=True)

    def refusal(self, url: str, host: str) -> str | None:
        """None when robots.txt lets `url` be fetched now; else the kind: `robots_denied` (the rules say no),
        `robots_unavailable` (unreachable past `robots.unavailable_wait`), `crawl_delay_too_long`."""
        st = self._hosts.get(host)
        if st is None:
            return None
        if st.given_up and not st.loaded:
            return st.down or "robots_unavailable"
        if st.delay_too_long is not None:
            return "crawl_delay_too_long"
        if st.rules is not None and not st.rules.can_fetch(url, self._agent):
            return "robots_denied"
        return None

    def explain(self, host: str, refusal: str) -> str:
        """A sentence for the log line of a URL refused with `refusal`."""
        st = self._hosts.get(host)
        if st is None:
            return refusal
        if st.down is not None and refusal == st.down:
            return f"{host} cannot be connected to (its robots.txt {st.last_failure or 'failed'}): the host is down ({refusal})"
        if refusal == "robots_unavailable":
            return (f"robots.txt of {host} {st.last_failure} and stayed unreachable for robots.unavailable_wait "
                    f"{self.config.unavailable_wait:g}s ({refusal})")
        if refusal == "crawl_delay_too_long":
            return (f"{host} asks for Crawl-delay {st.delay_too_long:g}s, above robots.max_crawl_delay "
                    f"{self.config.max_crawl_delay:g}s ({refusal})")
        return f"robots.txt of {host} forbids it ({refusal})"

    def allowed(self, url: str, host: str) -> bool:
        return self.refusal(url, host) is None

    def crawl_delay(self, host: str) -> float | None:
        """The Crawl-delay to honour for `host` (at most `robots.max_crawl_delay`), or None."""
        st = self._hosts.get(host)
        return None if st is None else st.delay

    def sitemaps(self, host: str) -> list[str]:
        st = self._hosts.get(host)
        return list(st.rules.sitemaps) if st is not None and st.rules is not None else []

    async def aclose(self) -> None:
        """Cancel background refreshes."""
        tasks = [st.refreshing for st in self._hosts.values() if st.refreshing is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
