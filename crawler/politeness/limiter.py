"""Per-host politeness: an aiolimiter token bucket per host, an in-flight cap, and host-wide pauses.

`budget(host)` answers "how many requests may this host start right now" without waiting, so the
dispatcher only hands a worker a request that can go out at once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from crawler.config.units import Rate

__all__ = ["HostLimiter"]

# Small buckets: a host at 20/s sees requests spread over the second, not a burst of 20 at once.
_BUCKET_SECONDS = 0.1


@dataclass(slots=True)
class _HostState:
    limiter: AsyncLimiter | None
    rate: float | None  # requests per second; None = unlimited
    in_flight: int = 0
    paused_until: float = 0.0


def _make_limiter(rate: Rate | None) -> tuple[AsyncLimiter | None, float | None]:
    if rate is None:
        return None, None
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
            st = self._hosts[host] = _HostState(limiter, per_second)
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
        """Lower a host's rate (robots.txt Crawl-delay); never raises it."""
        st = self._state(host)
        if st.rate is not None and st.rate <= rate.per_second:
            return
        st.limiter, st.rate = _make_limiter(rate)
        # A new bucket starts full; the host was just visited, so the first token must wait one interval.
        self.pause(host, 1.0 / rate.per_second)

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
