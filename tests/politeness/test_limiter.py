"""Per-host budgets: token buckets, in-flight caps, pauses, Crawl-delay; the waiting side, `HostGate`."""

import asyncio
import time

from crawler import HostLimiter, Rate
from crawler.politeness.limiter import HostGate


async def test_unlimited_host_budget_is_the_in_flight_cap() -> None:
    lim = HostLimiter(None, per_host=4)
    assert lim.budget("a") == 4
    for _ in range(4):
        await lim.acquire("a")
    assert lim.budget("a") == 0
    lim.release("a")
    assert lim.budget("a") == 1


async def test_token_bucket_spaces_requests() -> None:
    lim = HostLimiter(Rate(count=10, period=1), per_host=100)
    started = time.monotonic()
    taken = 0
    while time.monotonic() - started < 1.0:
        if lim.budget("h") > 0:
            await lim.acquire("h")
            lim.release("h")
            taken += 1
        else:
            await asyncio.sleep(0.001)
    # 10/s with a one-token bucket: about 10 in one second, never a burst of many more.
    assert 9 <= taken <= 12


async def test_per_host_overrides_and_isolation() -> None:
    lim = HostLimiter(Rate(count=1, period=10), {"fast.example": None}, per_host=2)
    await lim.acquire("slow.example")
    lim.release("slow.example")
    assert lim.budget("slow.example") == 0
    assert lim.budget("fast.example") == 2
    assert lim.budget("fast.example:8080") == 2  # an override without port covers every port


def test_pause_blocks_the_whole_host_until_it_expires() -> None:
    lim = HostLimiter(None, per_host=8)
    lim.pause("h", 0.2)
    assert lim.budget("h") == 0
    assert lim.budget("other") == 8
    assert 0.1 < lim.paused_for("h") <= 0.2
    time.sleep(0.21)
    assert lim.budget("h") == 8


def test_crawl_delay_only_lowers_the_rate() -> None:
    lim = HostLimiter(Rate(count=20, period=1), per_host=8)
    lim.lower_rate("h", Rate(count=1, period=2))
    assert lim.rate_of("h") == 0.5
    lim.lower_rate("h", Rate(count=100, period=1))
    assert lim.rate_of("h") == 0.5


def test_exhausted_quota_pauses_until_reset() -> None:
    lim = HostLimiter(None, per_host=8)
    lim.observe_quota("api", "0", "2", cap=120)
    assert lim.budget("api") == 0
    assert 1.5 < lim.paused_for("api") <= 2


def test_low_quota_spreads_the_rest_until_reset() -> None:
    lim = HostLimiter(None, per_host=8)
    lim.observe_quota("api", "5", "10", cap=120)
    assert lim.rate_of("api") == 0.5
    lim.observe_quota("other", "500", "10", cap=120)
    assert lim.rate_of("other") is None


async def test_gate_wakes_a_waiter_when_a_slot_is_released() -> None:
    gate = HostGate(HostLimiter(None, per_host=1))
    assert await gate.acquire("h")
    waiter = asyncio.create_task(gate.acquire("h"))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    released = time.monotonic()
    gate.release("h")
    assert await asyncio.wait_for(waiter, 1.0)
    assert time.monotonic() - released < 0.1  # woken by the release, not by a polling timer


async def test_gate_gives_up_at_its_deadline_holding_nothing() -> None:
    limiter = HostLimiter(None, per_host=1)
    gate = HostGate(limiter)
    assert await gate.acquire("h")
    started = time.monotonic()
    assert not await gate.acquire("h", deadline=started + 0.2)
    assert 0.15 <= time.monotonic() - started < 0.6
    gate.release("h")
    assert limiter.budget("h") == 1  # the failed wait took no slot


async def test_gate_holds_a_paused_host_until_the_pause_ends() -> None:
    gate = HostGate(HostLimiter(None, per_host=4))
    gate.pause("h", 0.3)
    started = time.monotonic()
    assert await gate.acquire("h")
    assert 0.25 <= time.monotonic() - started < 0.8
    assert await gate.acquire("other")  # other hosts never waited
