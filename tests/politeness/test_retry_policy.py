"""Retry-After parsing and the backoff policy (tenacity waits)."""

import email.utils
import time

import httpx
import pytest

from crawler import RetryPolicy, parse_retry_after
from crawler.config.job import RetryConfig
from crawler.politeness.retry import RetryableStatus


def test_retry_after_delta_seconds() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("1.5") == 1.5


def test_retry_after_http_date_is_relative_to_now() -> None:
    now = time.time()
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30, abs=1)


def test_retry_after_in_the_past_means_now() -> None:
    now = time.time()
    assert parse_retry_after(email.utils.formatdate(now - 100, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize("junk", [None, "", "soon", "Tue, 99 Foo 2020", "-5"])
def test_retry_after_junk_is_ignored(junk: str | None) -> None:
    value = parse_retry_after(junk)
    assert value is None or value == 0.0


def test_backoff_grows_exponentially_within_max() -> None:
    policy = RetryPolicy(RetryConfig(backoff={"initial": 0.5, "max": 4, "jitter": 0}))
    delays = [policy.backoff(n) for n in range(6)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == 4.0


def test_backoff_jitter_stays_bounded() -> None:
    policy = RetryPolicy(RetryConfig(backoff={"initial": 1, "max": 30, "jitter": 0.5}))
    samples = {policy.backoff(1) for _ in range(50)}
    assert all(2.0 <= s <= 2.5 for s in samples)
    assert len(samples) > 1


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(RetryConfig(max_retry_after=10, backoff={"initial": 0.1, "jitter": 0}))
    assert policy.backoff(0, RetryableStatus(429, 3.0)) == 3.0
    assert policy.backoff(0, RetryableStatus(503, 500.0)) == 10.0
    assert policy.backoff(0, RetryableStatus(500, None)) == pytest.approx(0.1)


def test_unsafe_methods_are_not_retried_unless_configured() -> None:
    assert not RetryPolicy(RetryConfig()).method_retryable("POST")
    assert RetryPolicy(RetryConfig()).method_retryable("GET")
    assert RetryPolicy(RetryConfig(unsafe_methods=True)).method_retryable("POST")


def test_transport_errors_are_retryable_but_not_protocol_misuse() -> None:
    policy = RetryPolicy(RetryConfig())
    assert policy.retryable_error(httpx.ConnectError("x"))
    assert policy.retryable_error(httpx.ReadTimeout("x"))
    assert policy.retryable_error(httpx.RemoteProtocolError("x"))
    assert not policy.retryable_error(httpx.UnsupportedProtocol("x"))
    assert not policy.retryable_error(ValueError())


async def test_tenacity_loop_honours_retry_after() -> None:
    policy = RetryPolicy(RetryConfig(attempts=3, backoff={"initial": 0, "jitter": 0}))
    calls: list[float] = []
    started = time.monotonic()
    async for attempt in policy.retrying():
        with attempt:
            calls.append(time.monotonic() - started)
            if len(calls) < 2:
                raise RetryableStatus(503, 0.3)
    assert len(calls) == 2
    assert calls[1] >= 0.3
