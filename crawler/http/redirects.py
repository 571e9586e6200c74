"""Following a redirect, one hop at a time, without leaking credentials: the one implementation the engine
and the downloader share (both send with `follow_redirects=False` and check every hop themselves).

    response = await client.send(request, stream=True, follow_redirects=False)
    auth, hops = True, 0
    while (hop := next_hop(response, user_headers=..., forward_headers=job.http.forward_headers,
                           auth=auth)) is not None:
        hops += 1                                   # the caller caps hops (http.max_redirects) and checks
        check_scope(hop.url)                        # scope, robots.txt and the seen set on each hop
        await response.aclose()
        response = await send_hop(client, hop, content=body if hop.keep_body else None)
        auth = hop.auth

`next_hop(response, ...)` returns None when the response is final (not 301/302/303/307/308, or no
Location), else a `Redirect`:

- `url`: the Location resolved against the request URL per RFC 3986 section 5 (httpx's `URL.join`); the
  request's fragment carries over when the Location has none (RFC 9110 section 10.2.2).
- `method`, `keep_body` (RFC 9110 section 15.4): 301 and 302 turn POST into GET (what every client does),
  303 turns every method but HEAD into GET, 307 and 308 keep the method and the body. When the method
  changes the body is dropped along with its Content-* and Transfer-Encoding headers.
- `headers`: what to send. Host always goes (httpx sets it from the URL), and so does Cookie unless the user
  configured it: the client's jar adds the cookies that belong to the target. On a cross-origin hop
  (scheme, host or port differ; an http -> https upgrade of the same host on default ports is not one, as in
  httpx) Authorization, Proxy-Authorization, Cookie and every header named in `user_headers` (`http.headers`,
  `-H`, `header=` lines) are dropped, unless `forward_headers` (`http.forward_headers`) names them. Names
  are case-insensitive. Once dropped, a header stays dropped for the rest of the chain, even back on the
  first origin.
- `auth`: whether the client's `httpx.Auth` (basic, bearer, OAuth2 from `crawler/http/auth.py`) may run for
  this hop: False from the first cross-origin hop on, unless `forward_headers` names Authorization. Pass the
  previous hop's `auth` in (True for the first request). `send_hop` honours it (`auth=None` switches the
  client's auth off for one send).
- `cross_origin`: whether the hop left the previous request's origin.

A Location that is not an http(s) URL (`javascript:`, `data:`, `mailto:`, ...), has no host, holds control
characters, or is longer than `max_url_length` raises `RedirectError` (kind `redirect_bad_target`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import httpx

__all__ = ["REDIRECT_STATUSES", "Redirect", "RedirectError", "build_hop_request", "credential_names", "next_hop",
           "refuse_unparseable_location", "send_hop"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CREDENTIALS = frozenset({"authorization", "proxy-authorization", "cookie"})
# Headers describing the request body: they go with it when a redirect drops it.
_BODY_HEADERS = frozenset({"content-length", "content-type", "content-encoding", "content-language",
                           "content-location", "transfer-encoding", "digest", "content-digest"})  # fmt: skip
_DEFAULT_PORTS = {"http": 80, "https": 443}


class RedirectError(httpx.HTTPError):
    """A redirect whose target can never be fetched. Not retried; `kind` names it in the stats."""

    kind = "redirect_bad_target"


@dataclass(frozen=True, slots=True)
class Redirect:
    """The next hop of a redirect chain (see the module docstring for each field's rule)."""

    url: httpx.URL
    method: str
    headers: httpx.Headers
    keep_body: bool
    auth: bool
    cross_origin: bool
    status: int


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _same_origin_for_credentials(old: httpx.URL, new: httpx.URL) -> bool:
    if _origin(old) == _origin(new):
        return True
    # http -> https on the same host and default ports: an upgrade, not a new party (httpx's rule too).
    return (old.scheme, new.scheme) == ("http", "https") and old.host == new.host and \
        old.port in (None, 80) and new.port in (None, 443)  # fmt: skip


def _target(base: httpx.URL, location: str, max_url_length: int) -> httpx.URL:
    location = location.strip(" \t")
    shown = location[:80] + ("..." if len(location) > 80 else "")
    if len(location) > max_url_length:
        raise RedirectError(f"redirect target is {len(location)} characters long, over {max_url_length}: {shown!r}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in location):
        raise RedirectError(f"redirect target holds a control character: {shown!r}")
    scheme, sep, rest = location.partition("://")
    if sep and scheme.lower() in ("http", "https") and (not rest or rest[0] in "/?#"):
        # An absolute URL with an empty authority: httpx's lenient join would send it to the current host.
        raise RedirectError(f"redirect target has no host: {shown!r}")
    try:
        url = base.join(location)
    except httpx.InvalidURL as exc:
        raise RedirectError(f"redirect target is not a URL: {shown!r} ({exc})") from None
    if url.scheme not in ("http", "https"):
        raise RedirectError(f"redirect to a non-http(s) target: {shown!r}")
    if not url.host:
        raise RedirectError(f"redirect target has no host: {shown!r}")
    if len(str(url)) > max_url_length:
        raise RedirectError(f"resolved redirect target is over {max_url_length} characters: {shown!r}")
    if not url.fragment and base.fragment:
        url = url.copy_with(fragment=base.fragment)
    return url


def credential_names(user_headers: Collection[str] = (), forward_headers: Collection[str] = ()) -> frozenset[str]:
    """The header names (lower case) a request must not carry once its redirect chain left the origin:
    Authorization, Proxy-Authorization, Cookie and every user-configured header, minus `forward_headers`.
    The crawl, which follows a redirect by queueing its target, strips these from the target's request."""
    forward = {name.lower() for name in forward_headers}
    return frozenset((_CREDENTIALS | {name.lower() for name in user_headers}) - forward)


def _method(status: int, method: str) -> str:
    if status == 303 and method != "HEAD":
        return "GET"
    if status in (301, 302) and method == "POST":
        return "GET"
    return method


def next_hop(response: httpx.Response, *, user_headers: Collection[str] = (),
             forward_headers: Collection[str] = (), auth: bool = True,
             max_url_length: int = 2048) -> Redirect | None:  # fmt: skip
    """The next hop after `response` (sent as `response.request`), or None when it is final. Raises
    `RedirectError` for a Location that can never be fetched. See the module docstring for the rules."""
    status = response.status_code
    if status not in REDIRECT_STATUSES:
        return None
    location = response.headers.get("location")
    if location is None or not location.strip():
        return None
    request = response.request
    url = _target(request.url, location, max_url_length)
    method = _method(status, request.method)
    keep_body = method == request.method
    forward = {name.lower() for name in forward_headers}
    user = {name.lower() for name in user_headers}
    cross = not _same_origin_for_credentials(request.url, url)
    dropped = credential_names(user, forward) if cross else frozenset()
    kept: list[tuple[bytes, bytes]] = []
    for name, value in request.headers.raw:  # bytes as sent: no re-encoding of odd values
        lname = name.lower().decode("latin-1")
        if lname == "host" or (not keep_body and lname in _BODY_HEADERS):
            continue
        if lname == "cookie" and lname not in user and lname not in forward:
            continue  # the jar adds the target's own cookies
        if lname in dropped:
            continue
        kept.append((name, value))
    return Redirect(url=url, method=method, headers=httpx.Headers(kept), keep_body=keep_body,
                    auth=auth and (not cross or "authorization" in forward), cross_origin=cross,
                    status=status)  # fmt: skip


async def refuse_unparseable_location(response: httpx.Response) -> None:
    """A response event hook of the shared client. httpx prepares the next request of every redirect, even one
    it is not to follow, and turns a Location it cannot use into an error of its own before the caller sees
    the response: a RemoteProtocolError for `http://[::1` (kind `protocol_error`, retried), an InvalidURL for
    `javascript:...`. This hook runs first and applies `next_hop`'s rule for targets (length aside: the
    caller's `max_url_length` applies in `next_hop`), raising `RedirectError` (kind `redirect_bad_target`,
    not retried)."""
    if response.has_redirect_location:
        _target(response.request.url, response.headers["location"], max_url_length=1 << 30)


def build_hop_request(client: httpx.AsyncClient, hop: Redirect, content: bytes | None = None) -> httpx.Request:
    """The request for `hop`: exactly its headers (never the client's defaults again: they hold the user's
    configured headers), the client's cookies that belong to the target, and the client's timeouts."""
    return httpx.Request(hop.method, hop.url, headers=hop.headers,
                         content=content if hop.keep_body else None, cookies=client.cookies,
                         extensions={"timeout": client.timeout.as_dict()})  # fmt: skip


async def send_hop(client: httpx.AsyncClient, hop: Redirect, content: bytes | None = None, *,
                   stream: bool = True) -> httpx.Response:  # fmt: skip
    """Send `hop` through the shared client, its auth flow only where `hop.auth` allows, never following
    redirects itself. `content`: the original body, resent only when `hop.keep_body`."""
    request = build_hop_request(client, hop, content)
    if hop.auth:
        return await client.send(request, stream=stream, follow_redirects=False)
    return await client.send(request, stream=stream, follow_redirects=False, auth=None)
