"""Proxies through our own transport (issue 13 point 6), against a real forwarding proxy (tinyproxy): http://
origins as absolute-form requests, https:// origins through CONNECT tunnels (with ALPN h2), Basic proxy auth,
the environment as curl reads it with NO_PROXY, rotation between proxies and a dead proxy taken out.
Every test asserts at the proxy, from its log, which requests went through it.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crawler.config.job import HttpConfig, Job
from crawler.demo.launcher import free_port
from crawler.demo.site import SiteServer
from crawler.http.client import build_client
from crawler.http.transport.transport import CrawlerTransport
from tests.cli.conftest import crawler_command
from tests.engine._helpers import crawl_all, make_job
from tests.http.tinyproxy import TinyProxy

pytestmark = pytest.mark.timeout(60)


def _config(site_ca: str, **http: object) -> HttpConfig:
    return HttpConfig.model_validate({"verify": site_ca, "trust_env": False, **http})


def _tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def other_host_site() -> Iterator[SiteServer]:
    """A cleartext site on 127.0.0.2: a second host for NO_PROXY and per-host rotation."""
    with SiteServer(tls=False, host="127.0.0.2") as site:
        yield site


async def test_http_origin_goes_through_the_proxy_in_absolute_form(proxy: TinyProxy, http1_site: SiteServer,
                                                                     site_ca: str) -> None:  # fmt: skip
    tag = _tag()
    async with build_client(_config(site_ca, proxy=proxy.url)) as c:
        assert isinstance(c._transport, CrawlerTransport)  # never httpx's own transport
        r = await c.get(f"{http1_site.url}/page/1?t={tag}")
    assert r.status_code == 200 and b"<title>" in r.content
    assert ("GET", f"{http1_site.url}/page/1?t={tag}") in proxy.requests()
    assert [e["query"] for e in http1_site.log("/page/1") if tag in e["query"]] == [f"t={tag}"]


async def test_https_origin_goes_through_a_connect_tunnel_and_negotiates_h2(
    proxy: TinyProxy, h2_site: SiteServer, site_ca: str
) -> None:
    tag = _tag()
    async with build_client(_config(site_ca, proxy=proxy.url)) as c:
        responses = [await c.get(f"{h2_site.url}/page/{n}?t={tag}") for n in range(3)]
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert {r.status_code for r in responses} == {200}
    connects = [t for m, t in proxy.requests() if m == "CONNECT" and t == h2_site.host_key]
    assert len(connects) >= 1
    # The origin saw the requests over HTTP/2 inside the tunnel; one tunnel carried them all.
    seen = [e for e in h2_site.log("/page/") if tag in e["query"]]
    assert len(seen) == 3 and {e["http_version"] for e in seen} == {"2"}
    assert len({e["client"] for e in seen}) == 1


async def test_proxy_auth_from_the_url(auth_proxy: TinyProxy, http1_site: SiteServer, h2_site: SiteServer,
                                       site_ca: str) -> None:  # fmt: skip
    tag = _tag()
    async with build_client(_config(site_ca, proxy=auth_proxy.url)) as c:
        plain = await c.get(f"{http1_site.url}/page/2?t={tag}")
        tunnelled = await c.get(f"{h2_site.url}/page/2?t={tag}")
    assert (plain.status_code, tunnelled.status_code) == (200, 200)
    requests = auth_proxy.requests()
    assert ("GET", f"{http1_site.url}/page/2?t={tag}") in requests
    assert ("CONNECT", h2_site.host_key) in requests
    # Without credentials the proxy refuses: its 407 for http://, a ProxyError for a tunnel.
    async with build_client(_config(site_ca, proxy=auth_proxy.bare_url)) as c:
        refused = await c.get(f"{http1_site.url}/page/3?t={tag}")
        assert refused.status_code == 407
        with pytest.raises(httpx.ProxyError, match="407"):
            await c.get(f"{h2_site.url}/page/3?t={tag}")
    assert not [e for e in http1_site.log("/page/3") if tag in e["query"]]


async def test_environment_proxies_and_no_proxy_as_curl_reads_them(
    proxy: TinyProxy, http1_site: SiteServer, h2_site: SiteServer, other_host_site: SiteServer, site_ca: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                 "no_proxy", "NO_PROXY", "REQUEST_METHOD"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy.url)  # lower case
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)  # upper case
    monkeypatch.setenv("NO_PROXY", "localhost, .example.com,127.0.0.2")
    tag = _tag()
    async with build_client(HttpConfig(verify=site_ca)) as c:  # trust_env is on by default
        assert (await c.get(f"{http1_site.url}/page/4?t={tag}")).status_code == 200
        assert (await c.get(f"{h2_site.url}/page/4?t={tag}")).http_version == "HTTP/2"
        assert (await c.get(f"{other_host_site.url}/page/4?t={tag}")).status_code == 200
    requests = proxy.requests()
    assert ("GET", f"{http1_site.url}/page/4?t={tag}") in requests
    assert ("CONNECT", h2_site.host_key) in requests
    assert not [t for _, t in requests if other_host_site.host_key in t]  # NO_PROXY: straight to the host
    assert len([e for e in other_host_site.log("/page/4") if tag in e["query"]]) == 1


async def test_trust_env_off_ignores_the_environment(proxy: TinyProxy, http1_site: SiteServer, site_ca: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    tag = _tag()
    async with build_client(_config(site_ca)) as c:
        assert (await c.get(f"{http1_site.url}/page/5?t={tag}")).status_code == 200
    assert not [t for _, t in proxy.requests() if tag in t]


async def test_rotation_per_request_and_per_host(proxy: TinyProxy, second_proxy: TinyProxy,
                                                 http1_site: SiteServer, other_host_site: SiteServer,
                                                 site_ca: str) -> None:  # fmt: skip
    tag = _tag()
    both = [proxy.url, second_proxy.url]
    async with build_client(_config(site_ca, proxies=both, proxy_rotation="per_request")) as c:
        for n in range(6):
            assert (await c.get(f"{http1_site.url}/page/{n}?r={tag}")).status_code == 200
    first = [t for _, t in proxy.requests() if f"r={tag}" in t]
    second = [t for _, t in second_proxy.requests(settle=0) if f"r={tag}" in t]
    assert (len(first), len(second)) == (3, 3)

    tag = _tag()
    async with build_client(_config(site_ca, proxies=both, proxy_rotation="per_host")) as c:
        for site in (http1_site, other_host_site):
            for n in range(4):
                assert (await c.get(f"{site.url}/page/{n}?h={tag}")).status_code == 200
    for site in (http1_site, other_host_site):
        counts = [len([t for _, t in p.requests(settle=0.15) if site.host_key in t and f"h={tag}" in t])
                  for p in (proxy, second_proxy)]  # fmt: skip
        assert sorted(counts) == [0, 4]  # every request of a host through the same proxy


async def test_a_dead_proxy_leaves_the_rotation_with_one_log_line(
    proxy: TinyProxy, http1_site: SiteServer, site_ca: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every connect is refused
    tag = _tag()
    config = _config(site_ca, proxies=[dead, proxy.url], proxy_rotation="per_request", proxy_dead_after=2)
    with caplog.at_level(logging.WARNING, logger="crawler.http"):
        async with build_client(config) as c:
            transport = c._transport
            assert isinstance(transport, CrawlerTransport) and transport.proxies is not None
            for n in range(10):
                assert (await c.get(f"{http1_site.url}/page/{n}?d={tag}")).status_code == 200
    # Every request succeeded through the live proxy, the refused ones after one more try.
    assert len([t for _, t in proxy.requests() if f"d={tag}" in t]) == 10
    lines = [r.getMessage() for r in caplog.records if "out of rotation" in r.getMessage()]
    assert lines == [f"proxy {dead} taken out of rotation for 60 s after 2 failed connects"]


async def test_a_crawl_through_the_proxy(proxy: TinyProxy, h2_site: SiteServer, site_ca: str) -> None:
    job = make_job([h2_site.url + "/"], site_ca, http={"verify": site_ca, "proxy": proxy.url, "trust_env": False},
                   scope={"max_pages": 15})  # fmt: skip
    before = len([1 for m, t in proxy.requests(settle=0) if m == "CONNECT" and t == h2_site.host_key])
    pages, crawler = await crawl_all(job)
    assert len(pages) == 15
    assert crawler.stats.http_versions == {"HTTP/2": 15}
    after = len([1 for m, t in proxy.requests() if m == "CONNECT" and t == h2_site.host_key])
    assert after == before + 1  # one tunnel, one multiplexed connection, for the whole crawl


def test_only_http_proxies_are_accepted() -> None:
    for bad in ("socks5://127.0.0.1:1080", "https://proxy:443", "http://:3128", "http://h:99999"):
        with pytest.raises(ValueError, match="proxy"):
            Job.model_validate({"start_urls": ["http://a.test/"], "http": {"proxy": bad}})
        with pytest.raises(ValueError, match="proxy"):
            Job.model_validate({"start_urls": ["http://a.test/"], "http": {"proxies": [bad]}})


def test_crawler_run_proxy_flag(proxy: TinyProxy, http1_site: SiteServer, tmp_path: Path) -> None:
    tag = _tag()
    job = tmp_path / "job.yaml"
    job.write_text(f"start_urls: ['{http1_site.url}/page/1?d={tag}']\nextract: {{links: null}}\n"
                   "scope: {robots_txt: false}\nhttp: {trust_env: false}\n")  # fmt: skip
    run = subprocess.run([*crawler_command(), "run", str(job), "--proxy", proxy.url, "--progress", "off"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert [t for _, t in proxy.requests() if f"d={tag}" in t] == [f"{http1_site.url}/page/1?d={tag}"]
