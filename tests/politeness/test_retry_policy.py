"""Retry-After parsing and the one retry decision (tenacity waits) the engine and the downloader share."""

import email.utils
import time

import httpx
import pytest

from crawler import RetryPolicy, parse_retry_after
from crawler.config.job import RetryConfig


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
    policy = RetryPolicy(RetryConfig(attempts=10, backoff={"initial": 0.5, "max": 4, "jitter": 0}))
    delays = [policy.decide(n, httpx.ConnectError("x")).delay for n in range(1, 7)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == 4.0


def test_backoff_jitter_stays_bounded() -> None:
    policy = RetryPolicy(RetryConfig(backoff={"initial": 1, "max": 30, "jitter": 0.5}))
    samples = {policy.decide(2, httpx.ReadTimeout("x")).delay for _ in range(50)}
    assert all(2.0 <= s <= 2.5 for s in samples)
    assert len(samples) > 1


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(RetryConfig(max_retry_after=10, backoff={"initial": 0.1, "jitter": 0}))
    assert policy.decide(1, 429, {"retry-after": "3"}).delay == 3.0
    assert policy.decide(1, 503, {"retry-after": "500"}).delay == 10.0
    assert policy.decide(1, 500, {}).delay == pytest.approx(0.1)


def test_retry_after_pauses_the_host_only_on_429_and_503() -> None:
    policy = RetryPolicy(RetryConfig(max_retry_after=60, backoff={"initial": 0.1, "jitter": 0}))
    for status in (429, 503):
        decision = policy.decide(1, status, {"Retry-After": "7"})
        assert (decision.give_up, decision.delay, decision.pause_host_for) == (False, 7.0, 7.0)
    for status in (500, 502, 504):
        decision = policy.decide(1, status, {"Retry-After": "7"})
        assert (decision.give_up, decision.delay, decision.pause_host_for) == (False, 7.0, None)
    assert policy.decide(1, 503, {}).pause_host_for is None
    assert policy.decide(1, httpx.ConnectError("x")).pause_host_for is None


def test_the_last_attempt_gives_up_but_still_pauses_the_host() -> None:
    policy = RetryPolicy(RetryConfig(attempts=3, backoff={"initial": 0, "jitter": 0}))
    assert not policy.decide(2, 429, {"retry-after": "2"}).give_up
    last = policy.decide(3, 429, {"retry-after": "2"})
    assert last.give_up and last.pause_host_for == 2.0 and last.retry_after == 2.0


def test_statuses_and_errors_outside_the_policy_give_up_at_once() -> None:
    policy = RetryPolicy(RetryConfig(statuses=[503]))
    assert policy.decide(1, 500, {}).give_up
    assert not policy.decide(1, 503, {}).give_up
    assert policy.decide(1, httpx.UnsupportedProtocol("x")).give_up
    assert policy.decide(1, ValueError("bug")).give_up


def test_unsafe_methods_are_not_retried_unless_configured() -> None:
    assert not RetryPolicy(RetryConfig()).method_retryable("POST")
    assert RetryPolicy(RetryConfig()).method_retryable("GET")
    assert RetryPolicy(RetryConfig(unsafe_methods=True)).method_retryable("POST")
    assert RetryPolicy(RetryConfig()).decide(1, httpx.ConnectError("x"), method="POST").give_up


def test_transport_errors_are_retryable_but_not_protocol_misuse() -> None:
    policy = RetryPolicy(RetryConfig())
    assert policy.retryable_error(httpx.ConnectError("x"))
    assert policy.retryable_error(httpx.ReadTimeout("x"))
    assert policy.retryable_error(httpx.RemoteProtocolError("x"))
    assert not policy.retryable_error(httpx.UnsupportedProtocol("x"))
    assert not policy.retryable_error(ValueError())
