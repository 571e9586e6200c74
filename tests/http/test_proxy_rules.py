"""Which proxy a request takes (crawler/http/transport/proxy.py): the environment as curl reads it, NO_PROXY
matching, rotation and resting, as pure logic."""

from __future__ import annotations

import pytest

from crawler.http.transport.proxy import Proxy, ProxyRouter, proxy_from_env


def _router(env: dict[str, str], **kwargs: object) -> ProxyRouter:
    router = ProxyRouter.from_settings(trust_env=True, environ=env, **kwargs)  # type: ignore[arg-type]
    assert router is not None
    return router


def _label(proxy: Proxy | None) -> str | None:
    return None if proxy is None else proxy.label


def test_lower_case_wins_over_upper_case_and_all_proxy_is_the_fallback() -> None:
    env = {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2", "ALL_PROXY": "http://all:3"}
    assert proxy_from_env(env, "https") == "http://lower:1"
    assert proxy_from_env({"HTTPS_PROXY": "http://upper:2"}, "https") == "http://upper:2"
    assert proxy_from_env({"ALL_PROXY": "http://all:3"}, "http") == "http://all:3"
    assert proxy_from_env({"all_proxy": "http://all:3", "http_proxy": ""}, "http") == "http://all:3"
    assert proxy_from_env({}, "http") is None


def test_upper_case_http_proxy_is_ignored_under_cgi() -> None:
    assert proxy_from_env({"HTTP_PROXY": "http://p:1"}, "http") == "http://p:1"
    assert proxy_from_env({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "http") is None
    assert proxy_from_env({"http_proxy": "http://p:1", "REQUEST_METHOD": "GET"}, "http") == "http://p:1"


def test_per_scheme_proxies_from_the_environment() -> None:
    router = _router({"http_proxy": "http://h:1", "https_proxy": "http://s:2"})
    assert _label(router.choose(b"http", b"a.test")) == "http://h:1"
    assert _label(router.choose(b"https", b"a.test")) == "http://s:2"
    only_https = _router({"HTTPS_PROXY": "s:2"})  # a bare host:port, as curl takes it
    assert only_https.choose(b"http", b"a.test") is None
    assert _label(only_https.choose(b"https", b"a.test")) == "http://s:2"


def test_no_environment_no_router() -> None:
    assert ProxyRouter.from_settings(trust_env=True, environ={"NO_PROXY": "*"}) is None
    assert ProxyRouter.from_settings(trust_env=False, environ={"http_proxy": "http://h:1"}) is None


@pytest.mark.parametrize(
    ("no_proxy", "host", "bypass"),
    [
        ("*", "anything.test", True),
        ("example.com", "example.com", True),
        ("example.com", "www.example.com", True),
        ("example.com", "notexample.com", False),
        (".example.com", "example.com", True),
        (".example.com", "a.b.example.com", True),
        ("*.example.com", "a.example.com", True),
        ("EXAMPLE.com", "Example.COM", True),
        ("example.com:8080", "example.com", True),
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.0.0.0/8", "11.1.2.3", False),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("::1", "::1", True),
        ("[::1]:80", "::1", True),
        ("fd00::/8", "fd12::1", True),
        ("localhost, other", "other", True),
        ("", "a.test", False),
    ],
)
def test_no_proxy_matching(no_proxy: str, host: str, bypass: bool) -> None:
    router = _router({"http_proxy": "http://p:1", "no_proxy": no_proxy})
    assert (router.choose(b"http", host.lower().encode()) is None) is bypass


def test_configured_proxies_win_over_the_environment_and_no_proxy_applies() -> None:
    router = _router({"http_proxy": "http://env:1", "NO_PROXY": "internal.test"},
                     proxies=["http://conf:2"], no_proxy=["also.test"])  # fmt: skip
    assert _label(router.choose(b"http", b"a.test")) == "http://conf:2"
    assert _label(router.choose(b"https", b"a.test")) == "http://conf:2"
    assert router.choose(b"http", b"x.internal.test") is None
    assert router.choose(b"https", b"also.test") is None


def test_credentials_become_basic_auth_and_never_the_label() -> None:
    p = Proxy("http://us%40er:p%3Ass@proxy.test:3128")
    assert p.authorization == b"Basic dXNAZXI6cDpzcw=="  # base64 of "us@er:p:ss"
    assert p.label == "http://proxy.test:3128"
    assert Proxy("proxy.test").port == 1080
    with pytest.raises(ValueError):
        Proxy("socks5://proxy.test:1080")


def test_per_host_is_sticky_and_per_request_alternates() -> None:
    urls = ["http://a:1", "http://b:2", "http://c:3"]
    sticky = ProxyRouter.from_settings(proxies=urls, rotation="per_host")
    assert sticky is not None
    for host in (b"one.test", b"two.test", b"three.test"):
        assert len({_label(sticky.choose(b"http", host)) for _ in range(20)}) == 1
    round_robin = ProxyRouter.from_settings(proxies=urls, rotation="per_request")
    assert round_robin is not None
    picks = [_label(round_robin.choose(b"http", b"one.test")) for _ in range(6)]
    assert sorted(set(picks)) == sorted(urls) and picks[:3] != picks[1:4]


def test_a_resting_proxy_is_skipped_until_its_time_is_up() -> None:
    router = ProxyRouter.from_settings(proxies=["http://a:1", "http://b:2"], rotation="per_request",
                                       dead_after=2, dead_for=30.0)  # fmt: skip
    assert router is not None
    a = next(p for p in (router.choose(b"http", b"h") for _ in range(2)) if p is not None and p.port == 1)
    a.connect_failed(now=0.0)
    assert a.dead_until == 0.0  # one failure is not enough
    a.connect_failed(now=1e9)
    assert a.dead_until == 1e9 + 30.0
    b_only = {_label(router.choose(b"http", b"h")) for _ in range(10)}
    assert b_only == {"http://b:2"}
    assert _label(router.choose(b"http", b"h", avoid=a)) == "http://b:2"


def test_a_single_proxy_never_rests() -> None:
    router = ProxyRouter.from_settings(proxies=["http://only:1"], dead_after=1)
    assert router is not None
    only = router.choose(b"http", b"h")
    assert only is not None
    for _ in range(5):
        only.connect_failed(now=1e9)
    assert only.dead_until == 0.0
    assert router.choose(b"http", b"h") is only
