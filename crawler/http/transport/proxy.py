"""Which proxy carries a request: `http.proxy` / `http.proxies`, or the environment as curl reads it.

- `ProxyRouter.choose(scheme, host)` answers per request: None (go direct: no proxy for that scheme, or the
  host matches NO_PROXY) or a `Proxy`. With several proxies, `per_host` keeps each host on one proxy (while
  the set of live proxies is unchanged) and `per_request` goes round robin.
- A proxy whose TCP connect fails `dead_after` times in a row rests `dead_for` seconds (one log line); it is
  skipped while another proxy is live. When every proxy rests, the one back soonest is tried anyway: a crawl
  never fails a request without trying.
- The environment (`http.trust_env`): `http_proxy`, `https_proxy`, `all_proxy`, `no_proxy`, each in lower
  case first, then upper case, as curl reads them. `HTTP_PROXY` in upper case is ignored when
  `REQUEST_METHOD` is set (a CGI environment, where a client's `Proxy:` header becomes `HTTP_PROXY`:
  "httpoxy"). Configured proxies win over the environment; NO_PROXY applies to both.
- NO_PROXY entries (curl's rules): `*` matches every host; a name matches itself and its subdomains (a
  leading dot or `*.` is ignored); an IP address or CIDR block matches addresses inside it; a `:port` suffix
  is ignored.

Proxies speak HTTP to us (`http://` URLs; `user:password@` in the URL becomes Basic Proxy-Authorization).
http:// origins go through them as absolute-form requests, https:// origins through CONNECT tunnels.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import unquote, urlsplit

import httpx

__all__ = ["Proxy", "ProxyRouter", "ProxyUnreachable", "parse_no_proxy", "proxy_from_env"]

log = logging.getLogger("crawler.http")

Rotation = Literal["per_host", "per_request"]
_DEFAULT_PROXY_PORT = 1080  # curl's


class ProxyUnreachable(httpx.ConnectError):
    """The TCP connection to the proxy itself failed (not the origin behind it): another proxy may serve."""


class Proxy:
    """One forwarding proxy: where to connect, what to send it, and whether it is resting."""

    __slots__ = (
        "authorization", "dead_after", "dead_for", "dead_until", "failures", "host", "label", "port", "rotating",
    )  # fmt: skip

    def __init__(self, url: str, *, dead_after: int = 3, dead_for: float = 60.0) -> None:
        if "://" not in url:
            url = "http://" + url  # curl's default for a bare host:port
        parts = urlsplit(url)
        if parts.scheme.lower() != "http":
            raise ValueError(f"proxy {url!r}: only http:// proxies are supported")
        if not parts.hostname:
            raise ValueError(f"proxy {url!r} has no host")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"proxy {url!r} has an invalid port") from None
        self.host = parts.hostname
        self.port = port or _DEFAULT_PROXY_PORT
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.label = f"http://{host}:{self.port}"  # never the credentials: this goes to logs and errors
        self.authorization: bytes | None = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.authorization = b"Basic " + base64.b64encode(credentials)
        self.dead_after = dead_after
        self.dead_for = dead_for
        self.failures = 0
        self.dead_until = 0.0
        self.rotating = False  # one of several for some scheme: resting it leaves another to use

    def __repr__(self) -> str:
        return f"<Proxy {self.label}>"

    def connected(self) -> None:
        """A TCP connect to the proxy worked: its failures are forgiven."""
        self.failures = 0

    def connect_failed(self, now: float) -> None:
        """A TCP connect to the proxy failed (refused, unreachable, timed out)."""
        self.failures += 1
        if self.rotating and self.failures >= self.dead_after and now >= self.dead_until:
            self.dead_until = now + self.dead_for
            self.failures = 0
            log.warning("proxy %s taken out of rotation for %.0f s after %d failed connects",
                        self.label, self.dead_for, self.dead_after)  # fmt: skip


class ProxyRouter:
    """The proxies for http:// and https:// origins, NO_PROXY, and the rotation between proxies."""

    def __init__(self, *, http: Sequence[Proxy], https: Sequence[Proxy], no_proxy: Sequence[str] = (),
                 rotation: Rotation = "per_host") -> None:  # fmt: skip
        self._lists: dict[bytes, list[Proxy]] = {b"http": list(http), b"https": list(https)}
        for proxies in self._lists.values():
            for p in proxies:
                p.rotating = p.rotating or len(proxies) > 1
        self._bypass_all, self._names, self._networks = parse_no_proxy(no_proxy)
        self._per_request = rotation == "per_request"
        self._turn = 0

    @classmethod
    def from_settings(cls, *, proxies: Sequence[str] = (), no_proxy: Sequence[str] = (),
                      rotation: Rotation = "per_host", trust_env: bool = False,
                      environ: Mapping[str, str] | None = None, dead_after: int = 3,
                      dead_for: float = 60.0) -> ProxyRouter | None:  # fmt: skip
        """The router for a configuration, or None when no request can ever use a proxy (the fast path)."""
        env = os.environ if environ is None else environ
        bypass = list(no_proxy)
        if trust_env:
            bypass += _env_list(env, "no_proxy")
        if proxies:
            made = [Proxy(p, dead_after=dead_after, dead_for=dead_for) for p in proxies]
            http, https = made, made
        elif trust_env:
            http_url, https_url = proxy_from_env(env, "http"), proxy_from_env(env, "https")
            http = [Proxy(http_url, dead_after=dead_after, dead_for=dead_for)] if http_url else []
            if https_url and https_url == http_url:
                https = http
            else:
                https = [Proxy(https_url, dead_after=dead_after, dead_for=dead_for)] if https_url else []
        else:
            return None
        if not http and not https:
            return None
        return cls(http=http, https=https, no_proxy=bypass, rotation=rotation)

    def bypasses(self, host: str) -> bool:
        """Does NO_PROXY send this host direct?"""
        if self._bypass_all:
            return True
        host = host.lower().rstrip(".")
        if self._networks:
            try:
                address = ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                pass
            else:
                return any(address in net for net in self._networks)
        for name in self._names:
            if host == name or (host.endswith(name) and host[-len(name) - 1] == "."):
                return True
        return False

    def choose(self, scheme: bytes, host: bytes, avoid: Proxy | None = None) -> Proxy | None:
        """The proxy for one request to `scheme://host`, or None to go direct. `avoid`: a proxy that just
        failed to connect for this request; another is chosen when there is one."""
        proxies = self._lists.get(scheme)
        if not proxies:
            return None
        if (self._bypass_all or self._names or self._networks) and self.bypasses(host.decode("ascii")):
            return None
        if len(proxies) == 1:
            return proxies[0]
        now = time.monotonic()
        live = [p for p in proxies if p.dead_until <= now and p is not avoid]
        if not live:
            resting = [p for p in proxies if p is not avoid] or proxies
            return min(resting, key=lambda p: p.dead_until)
        if self._per_request:
            self._turn += 1
            return live[self._turn % len(live)]
        return live[hash(host) % len(live)]


def _env(env: Mapping[str, str], name: str) -> str | None:
    """A variable as curl reads it: lower case first, then upper case; empty means unset."""
    value = env.get(name)
    if not value:
        upper = name.upper()
        if upper == "HTTP_PROXY" and "REQUEST_METHOD" in env:
            return None  # CGI: HTTP_PROXY may come from a client's Proxy: header (httpoxy)
        value = env.get(upper)
    return value.strip() or None if value else None


def _env_list(env: Mapping[str, str], name: str) -> list[str]:
    value = _env(env, name)
    return [v for v in (p.strip() for p in value.split(",")) if v] if value else []


def proxy_from_env(env: Mapping[str, str], scheme: str) -> str | None:
    """The proxy URL the environment names for origins of `scheme` (`<scheme>_proxy`, then `all_proxy`)."""
    return _env(env, f"{scheme}_proxy") or _env(env, "all_proxy")


def parse_no_proxy(
    entries: Sequence[str],
) -> tuple[bool, tuple[str, ...], tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]]:
    """NO_PROXY entries as (bypass every host, domain names, IP networks)."""
    names: list[str] = []
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True, (), ()
        if entry.startswith("["):  # [v6]:port or [v6]
            entry = entry[1:].split("]", 1)[0]
        elif entry.count(":") == 1:
            entry = entry.split(":", 1)[0]  # host:port: curl ignores the port
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        entry = entry.removeprefix("*.").lstrip(".").rstrip(".")
        if entry:
            names.append(entry)
    return False, tuple(names), tuple(networks)
