"""One redirect hop (crawler/http/redirects.py): target resolution, method and body per status, and which
headers and auth may follow a hop; then a real two-origin check that credentials stay home."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from crawler.config.job import HttpConfig
from crawler.demo.site import SiteServer
from crawler.http.client import build_client
from crawler.http.redirects import Redirect, RedirectError, next_hop, send_hop
from crawler.model.errors import error_kind

BASE = "http://a.test/b/c/d;p?q"


def _hop(status: int = 302, location: str | None = "/next", *, url: str = BASE, method: str = "GET",
         headers: dict[str, str] | None = None, content: bytes | None = None,
         **kwargs: object) -> Redirect | None:  # fmt: skip
    request = httpx.Request(method, url, headers=headers, content=content)
    response = httpx.Response(status, headers={"location": location} if location is not None else {},
                              request=request)  # fmt: skip
    return next_hop(response, **kwargs)  # type: ignore[arg-type]


def _must(hop: Redirect | None) -> Redirect:
    assert hop is not None
    return hop


# -- which responses are redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 204, 300, 304, 305, 306, 399, 404])
def test_other_statuses_are_final(status: int) -> None:
    assert _hop(status) is None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_without_location_is_final(status: int) -> None:
    assert _hop(status, None) is None
    assert _hop(status, "  ") is None


# -- method and body (RFC 9110 section 15.4) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "method", "expected", "keep_body"),
    [
        (301, "GET", "GET", True),
        (301, "POST", "GET", False),
        (301, "PUT", "PUT", True),
        (302, "POST", "GET", False),
        (302, "DELETE", "DELETE", True),
        (302, "HEAD", "HEAD", True),
        (303, "POST", "GET", False),
        (303, "PUT", "GET", False),
        (303, "GET", "GET", True),
        (303, "HEAD", "HEAD", True),
        (307, "POST", "POST", True),
        (307, "PUT", "PUT", True),
        (308, "POST", "POST", True),
        (308, "PATCH", "PATCH", True),
    ],
)
def test_method_and_body_per_status(status: int, method: str, expected: str, keep_body: bool) -> None:
    hop = _must(_hop(status, method=method, content=b"x=1", headers={"Content-Type": "text/plain"}))
    assert (hop.method, hop.keep_body, hop.status) == (expected, keep_body, status)
    body_headers = {"content-length", "content-type"} & set(hop.headers.keys())
    assert body_headers == (set() if not keep_body else {"content-length", "content-type"})


# -- the target (RFC 3986 section 5.4, RFC 9110 section 10.2.2) ------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("g", "http://a.test/b/c/g"),
        ("./g", "http://a.test/b/c/g"),
        ("g/", "http://a.test/b/c/g/"),
        ("/g", "http://a.test/g"),
        ("//g.test/x", "http://g.test/x"),
        ("?y", "http://a.test/b/c/d;p?y"),
        ("g?y", "http://a.test/b/c/g?y"),
        ("g#s", "http://a.test/b/c/g#s"),
        ("../g", "http://a.test/b/g"),
        ("../../../g", "http://a.test/g"),
        ("/./g", "http://a.test/g"),
        ("g;x=1/../y", "http://a.test/b/c/y"),
        ("HTTPS://Other.TEST:443/Path", "https://other.test/Path"),
        ("  /padded  ", "http://a.test/padded"),
    ],
)
def test_location_is_resolved_against_the_request_url(location: str, expected: str) -> None:
    assert str(_must(_hop(location=location)).url) == expected


def test_the_fragment_carries_over_unless_the_location_has_one() -> None:
    assert str(_must(_hop(url="http://a.test/x#frag", location="/y")).url) == "http://a.test/y#frag"
    assert str(_must(_hop(url="http://a.test/x#frag", location="/y#own")).url) == "http://a.test/y#own"


@pytest.mark.parametrize(
    "location",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "mailto:someone@example.com",
        "ftp://files.test/x",
        "file:///etc/passwd",
        "http://",
        "http:///nohost",
        "/a\x00b",
        "/a\x7fb",
        "http://a.test/" + "x" * 3000,
        "http://[::1",
    ],
)
def test_targets_that_can_never_be_fetched_are_rejected(location: str) -> None:
    with pytest.raises(RedirectError) as info:
        _hop(location=location)
    assert error_kind(info.value) == "redirect_bad_target"
    assert isinstance(info.value, httpx.HTTPError)


async def test_the_shared_client_fails_an_unparseable_location_as_a_bad_target_not_a_protocol_error() -> None:
    # httpx prepares the next request of a redirect inside send(), even with follow_redirects=False, and a
    # Location its URL parser refuses would surface there as a (retried) RemoteProtocolError.
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://[::1"})

    client = build_client(HttpConfig(), transport=httpx.MockTransport(answer))
    async with client:
        with pytest.raises(RedirectError) as info:
            await client.get("http://a.test/")
    assert error_kind(info.value) == "redirect_bad_target"


def test_the_url_length_cap_is_a_parameter() -> None:
    assert _hop(location="/" + "x" * 100, max_url_length=200) is not None
    with pytest.raises(RedirectError):
        _hop(location="/" + "x" * 300, max_url_length=200)


# -- headers and auth ------------------------------------------------------------------------------------------

_SENT = {
    "Authorization": "Basic dTpw",
    "Proxy-Authorization": "Basic cHg6cHc=",
    "Cookie": "session=1",
    "X-Api-Key": "secret",
    "User-Agent": "crawler-test",
    "Accept": "text/html",
}


def _names(hop: Redirect) -> set[str]:
    return set(hop.headers.keys())


def test_same_origin_keeps_credentials_but_cookies_come_from_the_jar() -> None:
    hop = _must(_hop(location="/other", headers=_SENT, user_headers=["X-Api-Key"]))
    assert not hop.cross_origin and hop.auth
    assert _names(hop) == {"authorization", "proxy-authorization", "x-api-key", "user-agent", "accept"}
    assert "host" not in _names(hop)


@pytest.mark.parametrize(
    "location",
    ["http://other.test/x", "https://a.test:8443/x", "http://a.test:8080/x", "//other.test/x"],
)
def test_cross_origin_drops_credentials_and_user_headers(location: str) -> None:
    hop = _must(_hop(location=location, headers=_SENT, user_headers=["x-api-key"]))
    assert hop.cross_origin and not hop.auth
    assert _names(hop) == {"user-agent", "accept"}


def test_https_to_http_is_cross_origin() -> None:
    hop = _must(_hop(url="https://a.test/x", location="http://a.test/y", headers=_SENT))
    assert hop.cross_origin and "authorization" not in _names(hop)


def test_an_http_to_https_upgrade_of_the_same_host_keeps_credentials() -> None:
    hop = _must(_hop(url="http://a.test/x", location="https://a.test/y", headers=_SENT, user_headers=["X-Api-Key"]))
    assert not hop.cross_origin and hop.auth and {"authorization", "x-api-key"} <= _names(hop)


def test_forward_headers_names_what_may_cross_case_insensitively() -> None:
    hop = _must(_hop(location="http://other.test/", headers=_SENT, user_headers=["X-Api-Key", "Cookie"],
                     forward_headers=["x-API-key", "COOKIE", "authorization"]))  # fmt: skip
    assert _names(hop) == {"authorization", "cookie", "x-api-key", "user-agent", "accept"}
    assert hop.auth  # forwarding Authorization lets the client's auth flow run on the new origin too


def test_a_user_configured_cookie_stays_on_the_origin() -> None:
    hop = _must(_hop(location="/same", headers=_SENT, user_headers=["Cookie"]))
    assert hop.headers["cookie"] == "session=1"
    hop = _must(_hop(location="http://other.test/", headers=_SENT, user_headers=["Cookie"]))
    assert "cookie" not in _names(hop)


def test_once_off_the_origin_auth_stays_off_for_the_rest_of_the_chain() -> None:
    first = _must(_hop(location="http://other.test/x", headers=_SENT))
    assert not first.auth
    back = _must(_hop(url="http://other.test/x", location="http://a.test/y", auth=first.auth))
    again = _must(_hop(url="http://a.test/y", location="/z", auth=back.auth))
    assert (back.auth, again.auth) == (False, False)


# -- against real servers: two origins (two hypercorn ports on two loopback hosts) ----------------------------


@pytest.fixture(scope="module")
def origin_b() -> Iterator[SiteServer]:
    with SiteServer(tls=False, host="127.0.0.2") as site:
        yield site


@pytest.mark.timeout(30)
async def test_credentials_never_reach_another_origin(http1_site: SiteServer, origin_b: SiteServer) -> None:
    tag = uuid.uuid4().hex[:10]
    config = HttpConfig(headers={"X-Api-Key": "k-123"}, auth={"basic": ("user", "pass")}, trust_env=False,
                        follow_redirects=False)  # fmt: skip
    user_headers = list(config.headers)

    async def follow(start: str, forward: list[str]) -> httpx.Response:
        async with build_client(config) as client:
            response = await client.get(start)
            auth = True
            while (hop := next_hop(response, user_headers=user_headers, forward_headers=forward,
                                   auth=auth)) is not None:  # fmt: skip
                await response.aclose()
                response = await send_hop(client, hop, stream=False)
                auth = hop.auth
            return response

    # A -> A -> B: the same-origin hop keeps the credentials, the cross-origin one drops them.
    to_b = f"{origin_b.url}/page/7?t={tag}"
    final = await follow(f"{http1_site.url}/redirect/2?to={to_b}&t={tag}", [])
    assert final.status_code == 200 and str(final.url) == to_b
    at_a = [e["headers"] for e in http1_site.log("/redirect/") if tag in e["query"]]
    assert len(at_a) == 2
    for headers in at_a:
        assert headers["authorization"] == "Basic dXNlcjpwYXNz" and headers["x-api-key"] == "k-123"
    at_b = [e["headers"] for e in origin_b.log("/page/7") if tag in e["query"]]
    assert len(at_b) == 1
    assert "authorization" not in at_b[0] and "x-api-key" not in at_b[0]
    assert at_b[0]["user-agent"].startswith("crawler")

    # Named in http.forward_headers, the API key may cross; Authorization still may not.
    tag2 = uuid.uuid4().hex[:10]
    to_b = f"{origin_b.url}/page/8?t={tag2}"
    await follow(f"{http1_site.url}/redirect/1?to={to_b}", ["X-Api-Key"])
    at_b = [e["headers"] for e in origin_b.log("/page/8") if tag2 in e["query"]]
    assert len(at_b) == 1
    assert at_b[0]["x-api-key"] == "k-123" and "authorization" not in at_b[0]
