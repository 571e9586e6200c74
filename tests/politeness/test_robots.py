"""robots.txt per RFC 9309 against a raw-socket server: 4xx allows, 5xx and unreachable disallow while the
host waits (retried with a backoff) until `robots.unavailable_wait`, redirects are followed up to 5 hops,
a whole-request deadline holds, a cached copy survives a failed refetch, and Crawl-delay is capped."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.config.job import RobotsConfig
from crawler.politeness.robots import RobotsCache, RobotsResponse
from tests.fetch.rawserver import RawServer, Seen
from tests.pipelines.conftest import run_job

pytestmark = pytest.mark.timeout(60)

PAGE = b'<html><title>t</title><a href="/a">a</a><a href="/private/b">b</a></html>'
RULES = b"User-agent: *\nDisallow: /private\n"


@pytest.fixture
def host() -> Iterator[RawServer]:
    with RawServer() as srv:
        srv.canned("/", PAGE, content_type="text/html")
        srv.canned("/a", b"<html>a</html>", content_type="text/html")
        srv.canned("/private/b", b"<html>b</html>", content_type="text/html")
        yield srv


def _job(srv: RawServer, **robots: float) -> dict[str, object]:
    return {"start_urls": [srv.url + "/"], "robots": robots, "retry": {"attempts": 1}}


@pytest.mark.parametrize("status", [401, 403, 404, 410])
async def test_4xx_means_everything_is_allowed(host: RawServer, tmp_path: Path, status: int) -> None:
    host.canned("/robots.txt", b"User-agent: *\nDisallow: /\n", status=status)
    stats, items = await run_job(_job(host), tmp_path)
    assert host.paths()[0] == "/robots.txt"
    assert {"/", "/a", "/private/b"} <= set(host.paths())
    assert stats.errors == {} and len(items) == 3


async def test_5xx_disallows_and_the_host_waits_until_robots_txt_answers(
    host: RawServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    answers = iter([503, 500])

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        status = next(answers, 200)
        body = RULES if status == 200 else b"down"
        writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()

    host.handle("/robots.txt", flaky)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="crawler.robots"):
        stats, items = await run_job(_job(host, unavailable_wait=30), tmp_path)
    assert host.paths()[:3] == ["/robots.txt"] * 3, "nothing else is fetched while robots.txt is unreachable"
    assert "/private/b" not in host.paths() and "/a" in host.paths(), "the rules apply once they arrive"
    assert time.monotonic() - started >= 1 + 2 - 0.2, "retried after 1 s, then 2 s (a doubling backoff)"
    assert stats.errors == {} and len(items) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("answered 503 (attempt 1)" in m and "trying again in 1.0s" in m for m in messages), messages


async def test_unreachable_past_the_deadline_fails_the_hosts_requests_as_robots_unavailable(
    host: RawServer, tmp_path: Path
) -> None:
    host.canned("/robots.txt", b"down", status=503)
    started = time.monotonic()
    stats, items = await run_job(_job(host, unavailable_wait=1.5), tmp_path)
    assert time.monotonic() - started < 10
    assert set(host.paths()) == {"/robots.txt"}, "a host without robots.txt is never crawled"
    assert 2 <= len(host.paths()) <= 4, host.paths()
    assert stats.errors == {"robots_unavailable": 1} and items == []


async def test_a_connection_that_dies_counts_as_unreachable(host: RawServer, tmp_path: Path) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        writer.transport.abort()

    host.handle("/robots.txt", reset)
    stats, _ = await run_job(_job(host, unavailable_wait=0), tmp_path)
    assert stats.errors == {"robots_unavailable": 1}
    assert "/" not in host.paths()


async def test_429_is_unreachable_not_absent(host: RawServer, tmp_path: Path) -> None:
    host.canned("/robots.txt", b"slow down", status=429)
    stats, _ = await run_job(_job(host, unavailable_wait=0), tmp_path)
    assert stats.errors == {"robots_unavailable": 1}


async def test_a_trickling_robots_txt_hits_the_whole_request_deadline(host: RawServer, tmp_path: Path) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(200):
            writer.write(b"#")
            await writer.drain()
            await asyncio.sleep(0.2)  # never slow enough for a read timeout, never done

    host.handle("/robots.txt", trickle)
    started = time.monotonic()
    stats, _ = await run_job(_job(host, timeout=1, unavailable_wait=0), tmp_path)
    assert time.monotonic() - started < 6
    assert stats.errors == {"robots_unavailable": 1}


def _redirect_chain(srv: RawServer, hops: int, final: bytes) -> None:
    srv.canned("/robots.txt", status=301, location="/r1")
    for i in range(1, hops):
        srv.canned(f"/r{i}", status=302, location=f"/r{i + 1}")
    srv.canned(f"/r{hops}", final, content_type="text/plain")


async def test_redirects_are_followed_up_to_five_hops(host: RawServer, tmp_path: Path) -> None:
    _redirect_chain(host, 5, RULES)
    stats, _items = await run_job(_job(host), tmp_path)
    assert "/r5" in host.paths()
    assert "/private/b" not in host.paths() and stats.robots_denied == 1


async def test_more_than_five_redirects_count_as_unavailable(host: RawServer, tmp_path: Path) -> None:
    _redirect_chain(host, 7, RULES)
    stats, _ = await run_job(_job(host), tmp_path)
    assert "/r6" not in host.paths(), "the sixth hop is not followed"
    assert "/private/b" in host.paths(), "unavailable robots.txt: everything allowed"
    assert stats.errors == {}


async def test_a_redirect_to_another_host_is_followed(host: RawServer, tmp_path: Path) -> None:
    with RawServer() as other:
        other.canned("/robots.txt", RULES, content_type="text/plain")
        host.canned("/robots.txt", status=301, location=other.url + "/robots.txt")
        stats, _ = await run_job(_job(host), tmp_path)
        assert other.paths() == ["/robots.txt"]
    assert "/private/b" not in host.paths() and stats.robots_denied == 1


@pytest.mark.parametrize("delay", ["86400", "1e308"])
async def test_a_crawl_delay_above_the_cap_skips_the_host_with_a_per_url_error(
    host: RawServer, tmp_path: Path, delay: str, caplog: pytest.LogCaptureFixture
) -> None:
    host.canned("/robots.txt", b"User-agent: *\nCrawl-delay: " + delay.encode() + b"\n", content_type="text/plain")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        stats, items = await run_job(_job(host), tmp_path)
    assert time.monotonic() - started < 5
    assert stats.errors == {"crawl_delay_too_long": 1} and items == []
    assert host.paths() == ["/robots.txt"]
    host_lines = [r.getMessage() for r in caplog.records if r.name == "crawler.robots"]
    assert len(host_lines) == 1 and "skipping the host" in host_lines[0], "logged once per host"
    url_lines = [r.getMessage() for r in caplog.records if r.name == "crawler" and "crawl_delay_too_long" in r.getMessage()]
    assert len(url_lines) == 1 and url_lines[0].startswith(host.url + "/ failed"), "and once per URL"


async def test_a_crawl_delay_within_the_cap_is_honoured(host: RawServer, tmp_path: Path) -> None:
    host.canned("/robots.txt", b"User-agent: *\nCrawl-delay: 0.4\n", content_type="text/plain")
    started = time.monotonic()
    _stats, items = await run_job(_job(host, max_crawl_delay=1), tmp_path)
    assert len(items) == 3
    assert time.monotonic() - started >= 2 * 0.4, "three pages, one per 0.4 s"


async def test_a_cached_copy_is_kept_when_a_refetch_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [RobotsResponse(200, RULES), RobotsResponse(503), RobotsResponse(0, error="connect_error")]
    calls: list[str] = []

    async def fetch(url: str, *, deadline: float) -> RobotsResponse:
        calls.append(url)
        return answers.pop(0)

    clock = [1000.0]
    monkeypatch.setattr("crawler.politeness.robots._now", lambda: clock[0])
    robots = RobotsCache(fetch, "bot/1.0", RobotsConfig(unavailable_wait=0))
    await robots.load("http", "h")
    assert robots.refusal("http://h/private/x", "h") == "robots_denied"
    clock[0] += 25 * 3600  # older than 24 hours: refetched in the background, the copy serves meanwhile
    assert robots.known("h")
    await asyncio.sleep(0.01)
    assert len(calls) == 2
    assert robots.known("h"), "the 503 keeps the cached copy even with unavailable_wait 0"
    assert robots.refusal("http://h/private/x", "h") == "robots_denied"
    assert robots.refusal("http://h/ok", "h") is None
    clock[0] += 2  # the backoff has passed: tried again, fails again, still cached
    robots.known("h")
    await asyncio.sleep(0.01)
    assert len(calls) == 3 and robots.refusal("http://h/private/x", "h") == "robots_denied"
    await robots.aclose()
