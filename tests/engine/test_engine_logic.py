"""Engine logic against respx-mocked responses (unit level; the real-server tests live in tests/engine)."""

import gzip
import time

import httpx
import pytest
import respx

from crawler import Crawler, DropPage, Job, Page


def _job(**overrides) -> Job:
    base = {
        "start_urls": ["http://site.test/"],
        "rate_limit": {"per_host": "unlimited"},
        "scope": {"robots_txt": False},
        "retry": {"attempts": 3, "backoff": {"initial": 0.01, "max": 0.05, "jitter": 0}},
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return Job.model_validate(base)


def _html(*links: str, title: str = "t") -> str:
    return f"<html><head><title>{title}</title></head><body>" + "".join(f'<a href="{h}">x</a>' for h in links) + "</body></html>"


async def _crawl(job: Job, router: respx.Router, **kwargs) -> tuple[list[Page], Crawler]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(router.handler))
    pages = []
    async with Crawler(job, client=client, **kwargs) as crawler:
        async for page in crawler.crawl():
            pages.append(page)
    await client.aclose()
    return pages, crawler


async def test_retry_after_response_is_retried_after_the_pause() -> None:
    router = respx.Router()
    router.get("http://site.test/").mock(side_effect=[
        httpx.Response(503, headers={"Retry-After": "1"}),
        httpx.Response(200, html=_html()),
    ])
    started = time.monotonic()
    pages, crawler = await _crawl(_job(), router)
    assert [p.status for p in pages] == [200]
    assert crawler.stats.retries == 1
    assert time.monotonic() - started >= 1.0


async def test_5xx_storm_ends_as_counted_errors_not_a_crash() -> None:
    router = respx.Router()
    router.get("http://site.test/").mock(return_value=httpx.Response(200, html=_html("/a", "/b", "/c")))
    router.get(url__regex=r"http://site.test/[abc]").mock(return_value=httpx.Response(500))
    pages, crawler = await _crawl(_job(), router)
    assert len(pages) == 1
    assert crawler.stats.errors["http_500"] == 3
    assert crawler.stats.retries == 6  # 3 URLs x (3 attempts - 1)
    assert crawler.stats.requests == 1 + 9


async def test_connect_errors_are_retried_then_reported() -> None:
    router = respx.Router()
    router.get("http://site.test/").mock(side_effect=[httpx.ConnectError("refused"), httpx.Response(200, html=_html())])
    pages, crawler = await _crawl(_job(), router)
    assert len(pages) == 1 and crawler.stats.retries == 1


async def test_max_pages_is_exact() -> None:
    router = respx.Router()
    router.get(url__regex=r"http://site.test/.*").mock(
        side_effect=lambda request: httpx.Response(200, html=_html(*[f"/p{i}" for i in range(50)])))
    pages, crawler = await _crawl(_job(scope={"max_pages": 7}, concurrency={"workers": 16}), router)
    assert len(pages) == 7
    assert crawler.stats.requests == 7
    assert len(router.calls) == 7


async def test_gzip_bomb_is_cut_off_at_max_body() -> None:
    bomb = gzip.compress(b"\0" * 20_000_000)
    router = respx.Router()
    router.get("http://site.test/").mock(return_value=httpx.Response(
        200, content=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "text/html"}))
    pages, crawler = await _crawl(_job(http={"max_body": "1MB"}), router)
    assert pages == []
    assert crawler.stats.errors["body_too_large"] == 1


async def test_stages_can_edit_drop_and_follow() -> None:
    router = respx.Router()
    router.get("http://site.test/").mock(return_value=httpx.Response(200, html=_html("/keep", "/drop")))
    router.get("http://site.test/keep").mock(return_value=httpx.Response(200, html=_html()))
    router.get("http://site.test/drop").mock(return_value=httpx.Response(200, html=_html()))
    router.get("http://site.test/extra").mock(return_value=httpx.Response(200, html=_html()))

    def mark(page: Page) -> None:
        page.item["seen"] = True
        if page.url.endswith("/drop"):
            page.follow("/extra")
            raise DropPage("not wanted")

    async def async_stage(page: Page) -> None:
        page.item["async"] = True

    pages, crawler = await _crawl(_job(), router, stages=[mark, async_stage])
    assert sorted(p.url for p in pages) == ["http://site.test/", "http://site.test/extra", "http://site.test/keep"]
    assert all(p.item == {"seen": True, "async": True} for p in pages)
    assert crawler.stats.dropped == 1


async def test_offsite_links_and_404s_are_not_yielded() -> None:
    router = respx.Router()
    router.get("http://site.test/").mock(return_value=httpx.Response(200, html=_html("http://other.test/", "/missing")))
    router.get("http://site.test/missing").mock(return_value=httpx.Response(404))
    pages, crawler = await _crawl(_job(), router)
    assert [p.url for p in pages] == ["http://site.test/"]
    assert crawler.stats.errors["http_404"] == 1
    assert not any(c.request.url.host == "other.test" for c in router.calls)


@pytest.mark.parametrize("disallowed", ["/private/x"])
async def test_robots_txt_is_obeyed(disallowed: str) -> None:
    router = respx.Router()
    router.get("http://site.test/robots.txt").mock(
        return_value=httpx.Response(200, text="User-agent: *\nDisallow: /private/\n"))
    router.get("http://site.test/").mock(return_value=httpx.Response(200, html=_html(disallowed, "/public")))
    router.get("http://site.test/public").mock(return_value=httpx.Response(200, html=_html()))
    private = router.get(url__regex=r".*/private/.*").mock(return_value=httpx.Response(200, html=_html()))
    pages, crawler = await _crawl(_job(scope={"robots_txt": True}), router)
    assert sorted(p.url for p in pages) == ["http://site.test/", "http://site.test/public"]
    assert not private.called
    assert crawler.stats.robots_denied == 1


async def test_cookies_set_by_a_response_are_sent_back() -> None:
    from crawler.config.job import HttpConfig
    from crawler.http.client import build_client

    router = respx.Router()
    router.get("http://site.test/").mock(return_value=httpx.Response(
        200, html=_html("/next"), headers={"Set-Cookie": "sid=abc; Path=/"}))
    later = router.get("http://site.test/next").mock(return_value=httpx.Response(200, html=_html()))
    client = build_client(HttpConfig(), transport=httpx.MockTransport(router.handler))
    async with Crawler(_job(), client=client) as crawler:
        pages = [page async for page in crawler.crawl()]
    await client.aclose()
    assert len(pages) == 2
    assert later.calls.last.request.headers["cookie"] == "sid=abc"
