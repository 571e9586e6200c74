"""Nothing a server sends ends as `stage_error`, `internal_error` or a traceback: hostile rate-limit and
Retry-After headers, redirects to `javascript:`/`data:`/broken URLs, over-long and unparseable links.
Every failure is a kind from the one documented list (crawler.model.errors)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest

from crawler.model.errors import ERROR_KINDS, SKIPPED_KINDS, error_kind, is_error_kind
from crawler.politeness.limiter import HostLimiter
from crawler.politeness.retry import parse_retry_after
from tests.fetch.rawserver import Canned, RawServer
from tests.pipelines.conftest import run_job

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[2]
HUGE = "9" * 5000


@pytest.mark.parametrize("remaining", ["inf", "-inf", "nan", "1e400", HUGE, "-" + HUGE, "²", "0x10", ""])
@pytest.mark.parametrize("reset", ["inf", "nan", "1e308", "-1", HUGE, "²", None])
def test_hostile_rate_limit_headers_never_raise(remaining: str, reset: str | None) -> None:
    limiter = HostLimiter(None, per_host=4)
    limiter.observe_quota("h", remaining, reset, 120.0)
    assert 0.0 <= limiter.paused_for("h") <= 120.0
    assert limiter.next_wakeup() > 0


@pytest.mark.parametrize("value", [HUGE, "inf", "1e308", "²", "Mon, 01 Jan 99999 00:00:00 GMT", "-5", "nan", "x"])
def test_hostile_retry_after_values_parse_or_are_ignored(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or seconds >= 0


def test_error_kinds_are_one_list_and_unknown_exceptions_are_internal() -> None:
    assert error_kind(httpx.InvalidURL("x")) == "invalid_url"
    assert error_kind(httpx.ProxyError("x")) == "proxy_error"
    assert error_kind(KeyError("x")) == "internal_error"
    assert is_error_kind("http_404") and is_error_kind("process_exit_-9") and not is_error_kind("http_x")
    assert not is_error_kind("internal:KeyError")


def test_the_readme_documents_every_kind() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Error kinds", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([a-z_<>]+)`", table))
    assert ERROR_KINDS <= documented, ERROR_KINDS - documented
    assert set(SKIPPED_KINDS) <= documented
    assert {"http_<status>", "process_exit_<code>"} <= documented


def _redirect(location: str) -> Canned:
    return Canned(302, [("Location", location)], b"")


async def test_a_hostile_site_ends_every_failure_as_a_documented_kind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    links = ["/quota-inf", "/quota-nan", "/retry-huge", "/retry-date", "/r-js", "/r-data", "/r-ipv6", "/r-port",
             "/r-empty", "/r-long", "/len-huge", "http://[::1", "http://[x]/", "javascript:alert(1)",
             "data:text/html,hi", "/" + "a" * 70_000, "http://exa mple.com/"]  # fmt: skip
    with RawServer() as srv:
        srv.canned("/", ("<html>" + "".join(f'<a href="{h}">x</a>' for h in links) + "</html>").encode(),
                   content_type="text/html")  # fmt: skip
        srv.canned("/quota-inf", b"<html>q</html>", content_type="text/html", x_ratelimit_remaining="inf",
                   x_ratelimit_reset="inf")  # fmt: skip
        srv.canned("/quota-nan", b"<html>q</html>", content_type="text/html", x_ratelimit_remaining="nan",
                   x_ratelimit_reset=HUGE)  # fmt: skip
        srv.canned("/retry-huge", b"", status=503, retry_after=HUGE)
        srv.canned("/retry-date", b"", status=429, retry_after="Mon, 01 Jan 99999 00:00:00 GMT")
        srv.routes["/r-js"] = _redirect("javascript:alert(1)")
        srv.routes["/r-data"] = _redirect("data:text/html,<script>1</script>")
        srv.routes["/r-ipv6"] = _redirect("http://[::1")
        srv.routes["/r-port"] = _redirect("http://127.0.0.1:99999/")
        srv.routes["/r-empty"] = _redirect("")
        srv.routes["/r-long"] = _redirect(srv.url + "/" + "b" * 70_000)
        srv.canned("/len-huge", b"<html></html>", content_type="text/html")
        with caplog.at_level(logging.INFO):
            stats, items = await run_job({"start_urls": [srv.url + "/"], "scope": {"robots_txt": False,
                                          "max_url_length": None},
                                          "retry": {"attempts": 2, "max_retry_after": 0.2,
                                                    "backoff": {"initial": 0.05, "max": 0.1}}}, tmp_path)  # fmt: skip
    assert stats.errors, "the hostile pages fail"
    for kind in stats.errors:
        assert is_error_kind(kind), kind
        assert kind not in ("stage_error", "internal_error"), kind
    assert "failed in a stage" not in caplog.text
    assert "Traceback" not in caplog.text
    assert {"/quota-inf", "/quota-nan"} <= {i["url"].removeprefix(srv.url) for i in items}, "quota headers are ignored"
    print(dict(stats.errors))
