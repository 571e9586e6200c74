"""Retry policy: one decision, shared by the crawl engine and the downloader, for what to do after a
failed attempt: wait how long, pause the whole host or not, or give up.

`RetryPolicy.decide(attempt, failure, headers)` answers with a `RetryDecision`. The waits come from
tenacity's public strategies (exponential backoff with jitter, `stop_after_attempt`, `retry_if_*`), driven
through a `RetryCallState` of a real `tenacity.Retrying`, so neither caller sleeps inside tenacity: the
engine re-schedules the request (no worker sleeps through a backoff) and the downloader waits between
its own attempts.

Retry-After (RFC 9110 section 10.2.3) is honoured, capped by `retry.max_retry_after`:
- on any retryable status it sets the delay before this request's next attempt (the server said when a
  follow-up request is welcome);
- on 429 (RFC 6585: this client sent too many requests) and 503 (the service is unavailable) it also
  pauses every request to the host for that long: both describe the server, not the one resource. A
  Retry-After on a 500/502/504 delays only the request that received it; the host's other requests go on.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import tenacity
from tenacity import RetryCallState

from crawler.config.job import RetryConfig
from crawler.model.request import IDEMPOTENT_METHODS

__all__ = [
    "HOST_PAUSE_STATUSES",
    "RETRYABLE_ERRORS",
    "RetryDecision",
    "RetryPolicy",
    "parse_retry_after",
]

RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    # Remote errors, and local ones raised when a multiplexed connection died under a stream.
    httpx.ProtocolError,
)
# Statuses whose Retry-After speaks for the whole host (see the module docstring).
HOST_PAUSE_STATUSES = frozenset({429, 503})


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


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt.

    `give_up`: no further attempt (not retryable, unsafe method, or attempts used up). Otherwise wait
    `delay` seconds before the next attempt. `pause_host_for`, when set, holds every request to the
    host that long (a 429/503 Retry-After), whether or not this request is retried. `retry_after` is
    the server's capped Retry-After, for messages."""

    give_up: bool
    delay: float = 0.0
    pause_host_for: float | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class _Status:
    """A response's status as a tenacity outcome (a result, not an exception)."""

    code: int
    retry_after: float | None


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Wait as long as the server asked (already capped), else exponential backoff with jitter."""

    def __init__(self, fallback: tenacity.wait.wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            status = outcome.result()
            if isinstance(status, _Status) and status.retry_after is not None:
                return status.retry_after
        return float(self.fallback(retry_state))


class RetryPolicy:
    """`decide()` after each failed attempt; the rest are the questions it is built from."""

    def __init__(self, config: RetryConfig) -> None:
        self.config = config
        self.attempts = config.attempts
        self.statuses = frozenset(config.statuses)
        b = config.backoff
        backoff = tenacity.wait_exponential_jitter(multiplier=b.initial, max=b.max, exp_base=b.multiplier,
                                                   jitter=b.jitter)  # fmt: skip
        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(config.attempts),
            wait=_WaitRetryAfter(backoff),
            retry=tenacity.retry_if_exception(self.retryable_error) | tenacity.retry_if_result(self._retryable),
        )

    def _retryable(self, outcome: object) -> bool:
        return isinstance(outcome, _Status) and outcome.code in self.statuses

    def method_retryable(self, method: str) -> bool:
        return self.config.unsafe_methods or method.upper() in IDEMPOTENT_METHODS

    def retryable_error(self, exc: BaseException) -> bool:
        return isinstance(exc, RETRYABLE_ERRORS)

    def retry_after_of(self, headers: Mapping[str, str] | None) -> float | None:
        """The Retry-After of a response, capped by `retry.max_retry_after`; None when absent."""
        if headers is None:
            return None
        value = headers.get("retry-after")
        if value is None and not isinstance(headers, httpx.Headers):  # a plain mapping: any spelling
            value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        ra = parse_retry_after(value)
        return None if ra is None else min(ra, self.config.max_retry_after)

    def decide(self, attempt: int, failure: BaseException | int, headers: Mapping[str, str] | None = None,
               method: str = "GET") -> RetryDecision:  # fmt: skip
        """After attempt number `attempt` (1-based) failed with an exception or answered the status
        `failure` (with response `headers`): retry after how long, pause the host, or give up."""
        state = RetryCallState(self._retrying, None, (), {})
        state.attempt_number = attempt
        retry_after: float | None = None
        pause: float | None = None
        if isinstance(failure, BaseException):
            state.set_exception((type(failure), failure, failure.__traceback__))
        else:
            retry_after = self.retry_after_of(headers)
            if retry_after is not None and failure in HOST_PAUSE_STATUSES:
                pause = retry_after
            state.set_result(_Status(failure, retry_after))
        retrying = self._retrying
        if not self.method_retryable(method) or not retrying.retry(state) or retrying.stop(state):
            return RetryDecision(True, 0.0, pause, retry_after)
        return RetryDecision(False, float(retrying.wait(state)), pause, retry_after)
