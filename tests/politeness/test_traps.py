"""Trap defences in the scope: URL length, repeated path segments, query parameters, a per-host page
budget and the sitemap nesting depth. Each is configurable, logged once per host, counted under its kind,
and ends a crawl of an endless site."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

from crawler.config.job import ScopeConfig
from crawler.politeness.scope import Scope
from tests.fetch.rawserver import Canned, RawServer
from tests.pipelines.conftest import run_job

pytestmark = pytest.mark.timeout(60)


def _scope(**config: object) -> Scope:
    return Scope(ScopeConfig.model_validate(config), ["http://e.com/"])


def test_each_trap_has_its_kind_and_its_setting() -> None:
    scope = _scope(max_pages_per_host=1)
    assert scope.trap("http://e.com/" + "a" * 3000, "e.com") == "url_too_long"
    assert scope.trap("http://e.com/s?" + "&".join(f"p{i}=1" for i in range(40)), "e.com") == "too_many_params"
    assert scope.trap("http://e.com/a/b/a/b/a/b/a/b", "e.com") == "repeated_segments"
    assert scope.trap("http://e.com/a/b/a/b/a/b", "e.com") is None, "three times is allowed"
    assert scope.trap("http://e.com/2020/01/01/01/x", "e.com") is None
    assert scope.trap("http://e.com/x", "e.com", {"sitemap": True, "sitemap_depth": 6}) == "sitemap_depth"
    assert scope.trap("http://e.com/x", "e.com", {"sitemap": True, "sitemap_depth": 5}) is None
    assert scope.admit("e.com") and not scope.admit("e.com"), "one page, then the budget is spent"
    assert scope.trap("http://e.com/y", "e.com") == "host_budget", "links to a spent host are not queued"
    assert scope.trap("http://other.com/y", "other.com") is None


def test_each_defence_can_be_turned_off_or_moved() -> None:
    off = _scope(max_url_length=None, max_query_params=None, max_repeated_segments=None, max_sitemap_depth=None)
    assert off.trap("http://e.com/a/a/a/a/a/a?" + "&".join(["x=1"] * 50) + "a" * 5000, "e.com") is None
    assert off.trap("http://e.com/", "e.com", {"sitemap_depth": 10_000}) is None
    assert _scope(max_url_length=20).trap("http://e.com/123456789", "e.com") == "url_too_long"
    assert _scope(max_query_params=1).trap("http://e.com/?a=1&b=2", "e.com") == "too_many_params"


def test_a_trap_is_logged_once_per_host(caplog: pytest.LogCaptureFixture) -> None:
    scope = _scope()
    with caplog.at_level(logging.WARNING, logger="crawler.scope"):
        for i in range(100):
            scope.trap(f"http://e.com/{'x' * 3000}{i}", "e.com")
            scope.trap(f"http://f.com/{'x' * 3000}{i}", "f.com")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "url_too_long on e.com: scope.max_url_length = 2048" in lines[0]


def _endless(path: str, base: str) -> Canned:
    """A site of traps: a calendar that never ends, relative links that nest forever, a growing query."""
    m = re.match(r"/cal/(\d+)", path)
    n = int(m.group(1)) if m else 0
    links = [f"/cal/{n + 1}", "loop/", f"/q?{'&'.join(f'p{i}=1' for i in range(n + 30))}", "/long/" + "x" * (n * 100)]
    return RawServer.html("<html>" + "".join(f'<a href="{h}">l</a>' for h in links) + "</html>")


async def test_an_endless_site_is_cut_by_the_defences_and_each_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RawServer() as srv:
        srv.fallback = lambda path: _endless(path, srv.url)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="crawler.scope"):
            stats, _ = await run_job({"start_urls": [srv.url + "/cal/0"], "scope": {"robots_txt": False,
                                      "max_pages_per_host": 60}}, tmp_path)  # fmt: skip
        assert time.monotonic() - started < 30
        assert stats.pages == 60, "the per-host budget ends the calendar"
        assert max(len(p) for p in srv.paths()) <= 2048 - len(srv.url)
    assert set(stats.skipped) == {"url_too_long", "too_many_params", "repeated_segments", "host_budget"}
    assert all(n >= 1 for n in stats.skipped.values())
    kinds = [re.search(r"trap defence (\w+)", r.getMessage()).group(1) for r in caplog.records]  # type: ignore[union-attr]
    assert sorted(kinds) == sorted(set(kinds)), "each kind logged once for the one host"
    assert stats.errors == {}, "a trap is not an error"


def test_the_host_budget_is_split_between_processes_like_max_pages() -> None:
    from crawler.config.job import Job
    from crawler.engine.processes import shard_job

    job = Job(start_urls=["http://e.com/"], scope={"max_pages_per_host": 7})
    shares = [shard_job(job, i, 3).scope.max_pages_per_host for i in range(3)]
    assert shares == [3, 2, 2] and sum(s or 0 for s in shares) == 7
    assert shard_job(Job(start_urls=["http://e.com/"]), 0, 2).scope.max_pages_per_host is None
