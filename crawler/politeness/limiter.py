"""Per-host politeness: an aiolimiter token bucket per host, an in-flight cap, host-wide pauses, and an
adaptive rate.

`budget(host)` answers "how many requests may this host start right now" without waiting, so the
dispatcher only hands a worker a request that can go out at once. `HostGate` is the waiting side of the
same limiter, for code that sends requests itself (the downloader).

The adaptive rate is AIMD, as TCP and Scrapy's AutoThrottle do it: when a host answers 429 or 503
(`throttled`), its rate drops to what it was accepting just before (the successful answers of the last few
seconds), at most half the current rate, and the host pauses for its Retry-After; while answers are good
(`answered`), the rate climbs back by a small step each interval, up to the configured rate. One decrease per
congestion event: answers to requests sent before the decrease do not lower it again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crawler.config.units import Rate

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

__all__ = ["HostGate", "HostLimiter"]

# Small buckets: a host at 20/s sees requests spread over the second, not a burst of 20 at once.
_BUCKET_SECONDS = 0.1
# AIMD: the window over which a host's accepted rate is measured, the floor a decrease never goes under,
# and the additive step: +10% of the configured rate (at least 0.25/s) per interval of good answers.
_ACCEPTED_WINDOW = 2.0
_MIN_RATE = 0.1
_INCREASE_EVERY = 1.0
_INCREASE_FRACTION = 0.1
_UNLIMITED_PROBE = 100.0  # an unlimited host that says 429 starts adapting from this many requests per second


@dataclass(slots=True)
class _HostState:
    limiter: AsyncLimiter | None
    rate: float | None  # requests per second now; None = unlimited
    ceiling: float | None = None  # the configured (or Crawl-delay) rate the adaptive rate climbs back to
    in_flight: int = 0
    paused_until: float = 0.0
    adapted: bool = False  # the rate was lowered by a 429/503 at least once
    decreased_at: float = 0.0  # last decrease: answers to requests sent before it do not count
    increased_at: float = 0.0
    answers: deque[float] = field(default_factory=deque)  # times of the good answers of the last window
    first_answer: float = 0.0


def _make_limiter(rate: Rate | None) -> tuple[AsyncLimiter | None, float | None]:
    if rate is None:
        return None, None
    # Imported with the first rate: aiolimiter's package reads its own version from the installed metadata
    # (importlib.metadata, a scan of sys.path), start-up time a run without a rate limit never needs.
    from aiolimiter import AsyncLimiter

    per_second = rate.per_second
    burst = max(1.0, per_second * _BUCKET_SECONDS)
    return AsyncLimiter(burst, burst / per_second), per_second


class HostLimiter:
    def __init__(self, default: Rate | None, overrides: dict[str, Rate | None] | None = None,
                 per_host: int = 16) -> None:  # fmt: skip
        self._default = default
        self._overrides = dict(overrides or {})
        self._per_host = per_host
        self._hosts: dict[str, _HostState] = {}
        self._rates_shared = False

    def _state(self, host: str) -> _HostState:
        st = self._hosts.get(host)
        if st is None:
            bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if host in self._overrides:
                rate = self._overrides[host]
            elif bare in self._overrides:
                rate = self._overrides[bare]
            else:
                rate = self._default
            limiter, per_second = _make_limiter(rate)
            st = self._hosts[host] = _HostState(limiter, per_second, per_second)
        return st

    def budget(self, host: str) -> int:
        """How many requests `host` may start now (0 when it must wait)."""
        st = self._hosts.get(host) or self._state(host)
        slots = self._per_host - st.in_flight
        if slots <= 0:
            return 0
        if st.paused_until and st.paused_until > time.monotonic():
            return 0
        if st.limiter is None or self._rates_shared:
            return slots
        return 1 if st.limiter.has_capacity() else 0

    async def acquire(self, host: str) -> None:
        """Take a token and an in-flight slot. Called only after `budget(host) > 0`, so it does not wait."""
        st = self._hosts.get(host) or self._state(host)
        st.in_flight += 1
        if st.limiter is not None and not self._rates_shared:
            await st.limiter.acquire()

    def release(self, host: str) -> None:
        st = self._hosts.get(host)
        if st is not None:
            st.in_flight -= 1

    def share_rates(self) -> None:
        """The frontier enforces per-host rates across processes (Redis): keep only the in-flight caps and
        pauses here, and let `rate_of` tell the frontier each host's rate (Crawl-delay included)."""
        self._rates_shared = True

    def pause(self, host: str, seconds: float) -> None:
        """Hold every request to `host` for `seconds` (Retry-After on 429/503)."""
        st = self._state(host)
        st.paused_until = max(st.paused_until, time.monotonic() + seconds)

    def paused_for(self, host: str) -> float:
        st = self._hosts.get(host)
        if st is None:
            return 0.0
        return max(0.0, st.paused_until - time.monotonic())

    def observe_quota(self, host: str, remaining: str, reset: str | None, cap: float) -> None:
        """Slow a host from its X-RateLimit-Remaining / -Reset headers before it answers 429.

        With no requests left, hold the host until the reset; with few left, spread them over the
        time to the reset. Reset is delta-seconds or, when larger than a day, a Unix timestamp.
        """
        try:
            remaining_value = float(remaining)
        except ValueError:
            return
        if not math.isfinite(remaining_value):  # "inf", "nan", "1e400": a header a server may send, no quota
            return
        left = int(remaining_value)
        seconds: float | None = None
        if reset:
            try:
                value = float(reset)
            except ValueError:
                value = -1.0
            if value >= 0 and math.isfinite(value):
                seconds = value - time.time() if value > 86_400 else value
        if seconds is None or not seconds > 0:
            return
        seconds = min(seconds, cap)
        if left <= 0:
            self.pause(host, seconds)
        elif left < self._per_host:
            self.lower_rate(host, Rate(count=left, period=seconds))

    def lower_rate(self, host: str, rate: Rate) -> None:
        """Lower a host's rate for good (robots.txt Crawl-delay, X-RateLimit quotas); never raises it."""
        st = self._state(host)
        if st.rate is not None and st.rate <= rate.per_second:
            return
        st.ceiling = rate.per_second if st.ceiling is None else min(st.ceiling, rate.per_second)
        self._set_rate(st, rate.per_second)

    def _set_rate(self, st: _HostState, per_second: float) -> None:
        st.limiter, st.rate = _make_limiter(Rate(count=per_second, period=1.0))
        # A new bucket starts full; the host was just visited, so the first token must wait one interval.
        st.paused_until = max(st.paused_until, time.monotonic() + 1.0 / per_second)

    # -- the adaptive rate ---------------------------------------------------------------------------

    def answered(self, host: str, sent_at: float) -> None:
        """A good answer from `host` to a request sent at `sent_at` (monotonic): it measures what the host
        accepts, and after an interval of good answers raises an adapted rate by one step."""
        st = self._hosts.get(host)
        if st is None:
            return
        now = time.monotonic()
        answers = st.answers
        if not st.first_answer:
            st.first_answer = now
        answers.append(now)
        while answers[0] < now - _ACCEPTED_WINDOW:
            answers.popleft()
        if not st.adapted or sent_at < st.decreased_at or st.rate is None:
            return
        ceiling = st.ceiling if st.ceiling is not None else _UNLIMITED_PROBE
        if st.rate < ceiling and now - max(st.increased_at, st.decreased_at) >= _INCREASE_EVERY:
            st.increased_at = now
            self._set_rate(st, min(ceiling, st.rate + max(0.25, ceiling * _INCREASE_FRACTION)))
            st.paused_until = min(st.paused_until, now)  # an increase never delays the next request

    def throttled(self, host: str, sent_at: float, retry_after: float | None) -> None:
        """`host` answered 429/503 to a request sent at `sent_at`: pause it for `retry_after` (when given)
        and, once per congestion event, drop its rate to what it was accepting."""
        st = self._state(host)
        now = time.monotonic()
        if retry_after is not None:
            st.paused_until = max(st.paused_until, now + retry_after)
        if sent_at < st.decreased_at:
            return  # sent before the last decrease: the same congestion event
        current = st.rate if st.rate is not None else _UNLIMITED_PROBE
        answers = st.answers
        while answers and answers[0] < now - _ACCEPTED_WINDOW:
            answers.popleft()
        # What the host accepted lately; over the time it has been answering when that is shorter.
        span = max(1.0, min(_ACCEPTED_WINDOW, now - st.first_answer)) if st.first_answer else _ACCEPTED_WINDOW
        accepted = len(answers) / span
        new_rate = max(_MIN_RATE, min(current / 2, accepted) if accepted > 0 else current / 2)
        st.adapted = True
        st.decreased_at = now
        paused_until = st.paused_until
        self._set_rate(st, new_rate)
        st.paused_until = max(paused_until, st.paused_until)

    def learnt_rates(self) -> dict[str, float]:
        """Requests per second of every host whose rate was adapted (for the stats)."""
        return {h: round(st.rate, 2) for h, st in self._hosts.items() if st.adapted and st.rate is not None}

    def waits(self) -> list[tuple[str, str]]:
        """Each host that may not start a request now, and why (for the stall watchdog)."""
        now = time.monotonic()
        out: list[tuple[str, str]] = []
        for host, st in self._hosts.items():
            if st.paused_until > now:
                out.append((host, f"paused for {st.paused_until - now:.1f}s more (Retry-After or rate)"))
            elif st.in_flight >= self._per_host:
                out.append((host, f"{st.in_flight} requests in flight (concurrency.per_host)"))
            elif st.limiter is not None and not self._rates_shared and not st.limiter.has_capacity():
                out.append((host, f"rate {st.rate:g}/s: waiting for the next token"))
        return out

    def next_wakeup(self, hosts: list[str] | None = None) -> float:
        """Seconds until some waiting host could have capacity again (an upper bound for sleeping)."""
        now = time.monotonic()
        best = 1.0
        states = self._hosts.values() if hosts is None else [self._state(h) for h in hosts]
        for st in states:
            if st.paused_until > now:
                best = min(best, st.paused_until - now)
            elif st.limiter is not None and st.rate:
                best = min(best, 1.0 / st.rate)
        return max(best, 0.001)

    def rate_of(self, host: str) -> float | None:
        return self._state(host).rate


class HostGate:
    """Waits until a host may start a request under its `HostLimiter` (token bucket, in-flight cap,
    pauses), then takes the token and the slot. Event-driven: a waiter wakes when a slot of its host is
    released or the host's pause changes, and otherwise only when the limiter says capacity could be
    back (the next token, the end of a pause; at most a second). Every wait has a deadline."""

    def __init__(self, limiter: HostLimiter) -> None:
        self.limiter = limiter
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    async def acquire(self, host: str, deadline: float | None = None) -> bool:
        """Take a token and an in-flight slot for `host`. Returns False, holding nothing, when
        `deadline` (a `time.monotonic()` value) passes first."""
        limiter = self.limiter
        if limiter.budget(host) <= 0:
            loop = asyncio.get_running_loop()
            waiters = self._waiters.setdefault(host, [])
            while limiter.budget(host) <= 0:
                timeout = limiter.next_wakeup([host])
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    timeout = min(timeout, left)
                fut: asyncio.Future[None] = loop.create_future()
                waiters.append(fut)
                try:
                    await asyncio.wait([fut], timeout=timeout)
                finally:
                    waiters.remove(fut)
            if not waiters:
                self._waiters.pop(host, None)
        await limiter.acquire(host)  # budget > 0 and no await since: takes the token without waiting
        return True

    def release(self, host: str) -> None:
        """Give back the slot taken by `acquire` and wake the host's waiters."""
        self.limiter.release(host)
        self._wake(host)

    def pause(self, host: str, seconds: float) -> None:
        """Hold every request to `host` for `seconds` (see `HostLimiter.pause`); waiters re-plan."""
        self.limiter.pause(host, seconds)
        self._wake(host)

    def throttled(self, host: str, sent_at: float, retry_after: float | None) -> None:
        """`host` answered 429/503 (see `HostLimiter.throttled`: Retry-After pause, lower rate); waiters
        re-plan."""
        self.limiter.throttled(host, sent_at, retry_after)
        self._wake(host)

    def answered(self, host: str, sent_at: float) -> None:
        """A good answer from `host` (see `HostLimiter.answered`: an adapted rate climbs back)."""
        self.limiter.answered(host, sent_at)

    def _wake(self, host: str) -> None:
        for fut in self._waiters.get(host, ()):
            if not fut.done():
                fut.set_result(None)
