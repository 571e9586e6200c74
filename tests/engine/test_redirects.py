"""Redirects in a crawl: every hop is a request of its own, so scope, robots.txt, the seen set and
`http.max_redirects` hold on each hop, and credentials never follow a redirect to another origin."""

from __future__ import annotations

from typing import Any

import pytest

from crawler.demo.site import SiteServer
from tests.engine._helpers import crawl_all, make_job

pytestmark = pytest.mark.timeout(60)


def _paths(site: SiteServer, path: str) -> list[str]:
    return [p for p in site.paths(path) if p.split("?")[0] == path]


async def test_five_redirects_to_one_url_fetch_it_once(http1_site: SiteServer) -> None:
    http1_site.clear_log()
    starts = [http1_site.url + f"/redirect/{1 + i % 2}?to=/page/17&i=five{i}" for i in range(5)]
    job = make_job(starts, http1_site.ca_path, extract={"links": None})
    pages, crawler = await crawl_all(job)
    assert [p.url for p in pages] == [http1_site.url + "/page/17"]
    assert len(_paths(http1_site, "/page/17")) == 1  # the target, fetched once
    assert crawler.stats.redirects == 5 + 2  # five first hops, two of them through a second one
    assert crawler.stats.error_count == 0


async def test_a_redirect_out_of_scope_is_not_followed(http1_site: SiteServer) -> None:
    # 127.0.0.2 is another host: outside the scope the start URL sets. Nothing listens there either.
    start = http1_site.url + "/redirect/1?to=http://127.0.0.2:9/page/1&i=offsite"
    pages, crawler = await crawl_all(make_job([start], http1_site.ca_path, extract={"links": None}))
    assert pages == []
    assert dict(crawler.stats.errors) == {"redirect_out_of_scope": 1}


async def test_a_redirect_to_a_non_http_target_fails_with_its_kind(http1_site: SiteServer) -> None:
    start = http1_site.url + "/redirect/1?to=javascript:alert(1)&i=js"
    pages, crawler = await crawl_all(make_job([start], http1_site.ca_path, extract={"links": None}))
    assert pages == []
    assert dict(crawler.stats.errors) == {"redirect_bad_target": 1}


async def test_a_redirect_into_a_robots_disallowed_path_is_not_fetched(site_factory: Any) -> None:
    site = site_factory(tls=False, robots="private")
    start = site.url + "/redirect/1?to=/private/secret&i=robots"
    job = make_job([start], site.ca_path, scope={"robots_txt": True}, extract={"links": None})
    pages, crawler = await crawl_all(job)
    assert pages == []
    assert crawler.stats.robots_denied == 1
    assert site.paths("/private/") == []


async def test_redirect_hops_are_capped(http1_site: SiteServer) -> None:
    start = http1_site.url + "/redirect/6?i=capped"
    job = make_job([start], http1_site.ca_path, http={"max_redirects": 3}, extract={"links": None})
    pages, crawler = await crawl_all(job)
    assert pages == []
    assert dict(crawler.stats.errors) == {"too_many_redirects": 1}
    assert len(http1_site.paths("/redirect/")) >= 4


async def test_credentials_never_follow_a_redirect_to_another_origin(site_factory: Any) -> None:
    first = site_factory(tls=False)
    second = site_factory(tls=False)  # another port: another origin, in the same scope (127.0.0.1)
    start = first.url + f"/redirect/1?to={second.url}/page/3&absolute=1&i=creds"
    job = make_job([start], first.ca_path, extract={"links": None},
                   http={"headers": {"X-Api-Key": "s3cret", "X-Trace": "t"}, "auth": {"bearer": "tok"},
                         "forward_headers": ["X-Trace"]})  # fmt: skip
    pages, _ = await crawl_all(job)
    assert [p.url for p in pages] == [second.url + "/page/3"]
    (sent_first,) = [e["headers"] for e in first.log() if e["path"].startswith("/redirect/")]
    assert sent_first["x-api-key"] == "s3cret" and sent_first["authorization"] == "Bearer tok"
    (sent_second,) = [e["headers"] for e in second.log() if e["path"] == "/page/3"]
    assert "x-api-key" not in sent_second and "authorization" not in sent_second
    assert sent_second["x-trace"] == "t"  # named in http.forward_headers
    assert "user-agent" in sent_second
