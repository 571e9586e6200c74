"""Retry policy: which failures are retried, and how long to wait, honouring Retry-After.

The waits come from tenacity (exponential backoff with jitter, combined with a Retry-After-aware wait).
The crawl engine asks the policy for the next delay and re-schedules the request instead of sleeping in
a worker, so a backing-off host never holds a worker; the downloader drives `policy.retrying()` directly.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx
import tenacity
from tenacity import RetryCallState

from crawler.config.job import RetryConfig

__all__ = ["RetryPolicy", "RetryableStatus", "parse_retry_after"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # idempotent per RFC 9110
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    # Remote errors, and local ones raised when a multiplexed connection died under a stream.
    httpx.ProtocolError,
)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date. None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)  # "inf" and a 5,000-digit number are infinite: the caller caps them
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN guard
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


class RetryableStatus(Exception):
    """A response whose status is configured as retryable (raised inside tenacity loops)."""

    def __init__(self, status: int, retry_after: float | None, url: str = "") -> None:
        super().__init__(f"HTTP {status}" + (f" (Retry-After {retry_after:g}s)" if retry_after is not None else ""))
        self.status = status
        self.retry_after = retry_after
        self.url = url


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Wait as long as the server asked (capped), else fall back to exponential backoff with jitter."""

    def __init__(self, fallback: tenacity.wait.wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
                return min(exc.retry_after, self.cap)
        return float(self.fallback(retry_state))


class RetryPolicy:
    def __init__(self, config: RetryConfig) -> None:
        self.config = config
        self.attempts = config.attempts
        self.statuses = frozenset(config.statuses)
        b = config.backoff
        self._backoff = tenacity.wait_exponential_jitter(multiplier=b.initial, max=b.max, exp_base=b.multiplier,
                                                         jitter=b.jitter)  # fmt: skip
        self._wait = _WaitRetryAfter(self._backoff, config.max_retry_after)

    def method_retryable(self, method: str) -> bool:
        return self.config.unsafe_methods or method.upper() in SAFE_METHODS

    def retryable_error(self, exc: BaseException) -> bool:
        return isinstance(exc, (*RETRYABLE_ERRORS, RetryableStatus))

    def retry_after_of(self, status: int, headers: Mapping[str, str]) -> float | None:
        """The capped Retry-After of a response, when it has one."""
        ra = parse_retry_after(headers.get("retry-after"))
        return None if ra is None else min(ra, self.config.max_retry_after)

    def backoff(self, retries_so_far: int, exc: BaseException | None = None) -> float:
        """Delay before retry number `retries_so_far + 1` (tenacity's wait, so Retry-After wins)."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = retries_so_far + 1
        if exc is not None:
            fut: tenacity.Future = tenacity.Future(state.attempt_number)
            fut.set_exception(exc)
            state.outcome = fut
        return float(self._wait(state))

    def retrying(self, method: str = "GET") -> tenacity.AsyncRetrying:
        """A tenacity loop for code that retries in place (the downloader)."""
        attempts = self.attempts if self.method_retryable(method) else 1
        return tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self.retryable_error),
            reraise=True,
        )
