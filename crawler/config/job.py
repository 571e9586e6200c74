"""The job model: one validated pydantic tree describing a crawl, built in code or loaded from YAML.

Every key of the YAML contract lives here with its default; unknown keys are errors everywhere.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crawler.config.secrets import collect_secrets
from crawler.config.specs import FieldSpec, check_css, parse_field_spec, parse_key_path, writer_format
from crawler.config.units import Rate, RateValue, SizeValue
from crawler.model.url import canonicalize

__all__ = [
    "AuthConfig",
    "ConcurrencyConfig",
    "ExtractConfig",
    "FieldRule",
    "FieldValue",
    "HttpConfig",
    "Job",
    "LimitsConfig",
    "OAuth2Config",
    "OutputConfig",
    "PaginateConfig",
    "RateLimitConfig",
    "RetryConfig",
    "RobotsConfig",
    "RouteConfig",
    "SaveConfig",
    "ScopeConfig",
    "TimeoutConfig",
    "check_http_url",
    "field_spec",
    "load_job",
    "load_job_text",
]


class _Section(BaseModel):
    # No NaN or infinity anywhere: no setting means "forever" by .inf (null does, where it is allowed).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


_DAY = 86_400.0
_MAX_URL = 8192
_MAX_PATH = 4096
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP header name (RFC 9110 token)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters but tab


def _no_control(value: str, what: str) -> str:
    """A header value (or one that becomes one): no CR, LF, NUL or other control character."""
    m = _CONTROL_RE.search(value)
    if m:
        raise ValueError(f"{what} contains the control character {m.group()!r} at position {m.start() + 1}; "
                         "CR/LF in a header would split it")  # fmt: skip
    return value


def _local_path(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character")
    if len(value) > _MAX_PATH:
        raise ValueError(f"{what} is {len(value):,} characters long (at most {_MAX_PATH:,})")
    return value


def check_http_url(url: str, what: str = "URL") -> str:
    """`url` if it is an absolute http(s) URL with a host and a valid port; ValueError saying why not."""
    shown = url if len(url) <= 80 else url[:77] + "..."
    if not isinstance(url, str):
        raise ValueError(f"{what} must be a string")
    if len(url) > _MAX_URL:
        raise ValueError(f"{what} {shown!r} is {len(url):,} characters long (at most {_MAX_URL:,})")
    if url != url.strip() or re.search(r"[\x00-\x20\x7f]", url):
        raise ValueError(f"{what} {shown!r} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{what} {shown!r} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{shown!r} is not an absolute http(s) URL")
    if not parts.hostname:
        raise ValueError(f"{what} {shown!r} has no host")
    if port == 0:
        raise ValueError(f"{what} {shown!r} has port 0")
    return url


class ScopeConfig(_Section):
    allowed_domains: list[str] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    max_depth: int | None = Field(default=None, ge=0)
    max_pages: int | None = Field(default=None, ge=0)
    robots_txt: bool = True
    sitemaps: bool = False
    keep_query_order: bool = True
    # Trap defences (crawler.politeness.scope): null turns one off. Each is logged once per host when it
    # triggers and counted in the stats under its kind.
    max_url_length: int | None = Field(default=2048, ge=16, le=1_000_000)  # url_too_long
    max_repeated_segments: int | None = Field(default=3, ge=1, le=1_000)  # repeated_segments: /a/b/a/b/a/b/a
    max_query_params: int | None = Field(default=32, ge=0, le=10_000)  # too_many_params
    max_pages_per_host: int | None = Field(default=None, ge=0)  # host_budget: pages fetched per host
    max_sitemap_depth: int | None = Field(default=5, ge=0, le=1_000)  # sitemap_depth: index -> index -> ...

    @field_validator("allow", "deny")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {p!r}: {exc}") from None
        return patterns

    @field_validator("allowed_domains")
    @classmethod
    def _lower_domains(cls, domains: list[str]) -> list[str]:
        out = [d.strip().lower().lstrip(".") for d in domains if d.strip()]
        for d in out:
            if re.search(r"[\s/?#@\x00-\x1f]", d) or len(d) > 253:
                raise ValueError(f"{d[:80]!r} is not a domain name (write 'example.com', not a URL)")
        return out


class RobotsConfig(_Section):
    """robots.txt handling (RFC 9309); `scope.robots_txt` turns it on or off. See crawler.politeness.robots."""

    # A Crawl-delay above this skips the host (its URLs fail with crawl_delay_too_long).
    max_crawl_delay: float = Field(default=60.0, ge=0, le=86_400)
    # How long a host whose robots.txt answers 5xx or cannot be reached waits (retried with a backoff)
    # before its requests fail with robots_unavailable.
    unavailable_wait: float = Field(default=30.0, ge=0, le=30 * 86_400)
    # Whole-request deadline for one robots.txt fetch, redirects included.
    timeout: float = Field(default=30.0, gt=0, le=3_600)


class ConcurrencyConfig(_Section):
    workers: int = Field(default=64, ge=1, le=10_000)
    per_host: int = Field(default=16, ge=1, le=10_000)
    processes: int = Field(default=1, ge=1, le=256)


class RateLimitConfig(_Section):
    per_host: RateValue = Field(default_factory=lambda: Rate(count=20, period=1))
    hosts: dict[str, RateValue] = Field(default_factory=dict)

    @field_validator("hosts")
    @classmethod
    def _lower_hosts(cls, hosts: dict[str, Rate | None]) -> dict[str, Rate | None]:
        return {h.strip().lower(): r for h, r in hosts.items()}


class TimeoutConfig(_Section):
    connect: float | None = Field(default=5.0, gt=0, le=_DAY)
    read: float | None = Field(default=30.0, gt=0, le=_DAY)
    write: float | None = Field(default=30.0, gt=0, le=_DAY)
    pool: float | None = Field(default=30.0, gt=0, le=_DAY)
    # The whole request, body included: a server trickling one byte per read timeout still ends here.
    total: float | None = Field(default=300.0, gt=0, le=_DAY)


class LimitsConfig(_Section):
    max_connections: int | None = Field(default=100, ge=1, le=1_000_000)
    # httpcore counts all connections, not idle ones, against this: keep it equal to max_connections.
    max_keepalive_connections: int | None = Field(default=100, ge=0, le=1_000_000)
    keepalive_expiry: float | None = Field(default=30.0, ge=0, le=_DAY)


class OAuth2Config(_Section):
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, url: str) -> str:
        return check_http_url(url, "token_url")

    @field_validator("client_id", "client_secret", "scope")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else _no_control(value, "the value")


class AuthConfig(_Section):
    basic: tuple[str, str] | None = None
    bearer: str | None = None
    oauth2: OAuth2Config | None = None

    @field_validator("basic")
    @classmethod
    def _basic_printable(cls, pair: tuple[str, str] | None) -> tuple[str, str] | None:
        if pair is not None:
            for part in pair:
                _no_control(part, "basic auth")
            if ":" in pair[0]:
                raise ValueError("a basic-auth user name cannot contain ':'")
        return pair

    @field_validator("bearer")
    @classmethod
    def _bearer_printable(cls, token: str | None) -> str | None:
        return None if token is None else _no_control(token, "the bearer token")

    @model_validator(mode="after")
    def _exactly_one(self) -> AuthConfig:
        chosen = [k for k in ("basic", "bearer", "oauth2") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("auth takes exactly one of: basic, bearer, oauth2")
        return self


REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
DEFAULT_USER_AGENT = "crawler/0.1 (+https://github.com/crawler/crawler)"


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


def _check_proxy_url(url: str) -> None:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme.lower() != "http":
        raise ValueError(f"proxy {parts.scheme}:// is not supported: use an http:// proxy")
    if not parts.hostname:
        raise ValueError(f"proxy {url!r} has no host")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"proxy {url!r} has an invalid port") from None
    if any(c in url for c in "\r\n\x00 "):
        raise ValueError(f"proxy {url!r} contains a space or control character")


class HttpConfig(_Section):
    http2: bool = True
    # HTTP/2 to cleartext http:// origins without negotiation (h2c, curl's --http2-prior-knowledge).
    http2_prior_knowledge: bool = False
    verify: bool | str = True
    timeout: TimeoutConfig = Field(default_factory=TimeoutConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    headers: dict[str, str] = Field(default_factory=dict)
    user_agent: str = DEFAULT_USER_AGENT
    max_body: SizeValue = Field(default=50_000_000)
    # The response head (status line and header lines; over HTTP/2 the decoded header list): a bigger or
    # longer one fails the request as `header_too_large`.
    max_header_bytes: SizeValue = Field(default=65_536)
    max_headers: int = Field(default=200, ge=1, le=100_000)
    follow_redirects: bool = True
    max_redirects: int = Field(default=10, ge=0, le=1_000)
    # Proxies (http:// URLs, `user:password@` for Basic proxy auth): one, or a list to rotate through.
    proxy: str | None = None
    proxies: list[str] = Field(default_factory=list)
    proxy_rotation: Literal["per_host", "per_request"] = "per_host"
    # Hosts that never go through a proxy (NO_PROXY's syntax: names with their subdomains, IPs, CIDR, `*`).
    no_proxy: list[str] = Field(default_factory=list)
    # A proxy whose TCP connect fails this many times in a row rests this many seconds (with others left).
    proxy_dead_after: int = Field(default=3, ge=1)
    proxy_dead_for: float = Field(default=60.0, ge=0, le=86_400)
    auth: AuthConfig | None = None
    # Headers a cross-origin redirect may carry on (by default Authorization, Proxy-Authorization, Cookie
    # and every configured header are dropped when a redirect leaves the origin).
    forward_headers: list[str] = Field(default_factory=list)
    # Read http_proxy/https_proxy/all_proxy/no_proxy from the environment, as curl and wget do.
    trust_env: bool = True

    @field_validator("max_header_bytes")
    @classmethod
    def _head_cap_is_bounded(cls, size: int | None) -> int:
        if size is None or not 1024 <= size <= 16 * 1024 * 1024:
            raise ValueError("max_header_bytes must be between 1 KB and 16 MB")
        return size

    @field_validator("forward_headers")
    @classmethod
    def _header_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"forward_headers: {name!r} is not a header name")
        return names

    @field_validator("proxy")
    @classmethod
    def _proxy_is_http(cls, proxy: str | None) -> str | None:
        if proxy is not None:
            _check_proxy_url(proxy)
        return proxy

    @field_validator("proxies")
    @classmethod
    def _proxies_are_http(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            _check_proxy_url(proxy)
        return proxies

    def proxy_list(self) -> list[str]:
        """Every configured proxy, `proxy` first."""
        return ([self.proxy] if self.proxy else []) + [p for p in self.proxies if p != self.proxy]
    # HTTP cache directory (hishel, crawler/http/cache.py); `cache_mode: always` stores every answer
    # but 429/5xx and serves it from then on (development), `rfc9111` follows the server's caching headers.
    cache: str | None = None
    cache_mode: Literal["rfc9111", "always"] = "rfc9111"
    cache_max_size: SizeValue = Field(default=1_000_000_000)

    @field_validator("verify")
    @classmethod
    def _ca_bundle_exists(cls, verify: bool | str) -> bool | str:
        if isinstance(verify, str):
            _local_path(verify, "the CA bundle path")
            shown = verify if len(verify) <= 80 else verify[:77] + "..."
            try:
                exists = Path(verify).expanduser().is_file()
            except (OSError, RuntimeError) as exc:  # a name too long for the filesystem, a bad ~user
                raise ValueError(f"CA bundle {shown!r} cannot be read: {exc}") from None
            if not exists:
                raise ValueError(f"CA bundle {shown!r} does not exist (or is not a file)")
            import ssl

            try:
                ssl.create_default_context(cafile=str(Path(verify).expanduser()))
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise ValueError(f"CA bundle {shown!r} holds no usable certificate (PEM): {exc}") from None
        return verify

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _TOKEN_RE.match(name):
                raise ValueError(f"{name[:80]!r} is not a valid header name")
            _no_control(value, f"header {name!r}")
            if len(value) > 8192:
                raise ValueError(f"header {name!r} is {len(value):,} characters long (at most 8,192)")
        return headers

    @field_validator("user_agent")
    @classmethod
    def _valid_user_agent(cls, agent: str) -> str:
        if len(agent) > 1024:
            raise ValueError(f"the User-Agent is {len(agent):,} characters long (at most 1,024)")
        return _no_control(agent, "the User-Agent")

    @field_validator("max_body")
    @classmethod
    def _positive_max_body(cls, size: int | None) -> int | None:
        if size is not None and size < 1:
            raise ValueError("max_body must be at least 1 byte (null for no cap)")
        return size

    @field_validator("proxy")
    @classmethod
    def _valid_proxy(cls, proxy: str | None) -> str | None:
        if proxy is None:
            return None
        scheme = proxy.partition("://")[0].lower()
        if scheme not in ("http", "https", "socks5", "socks5h"):
            raise ValueError(f"proxy {proxy[:80]!r} must be an http://, https:// or socks5:// URL")
        check_http_url("http" + proxy[len(scheme) :], "proxy")
        return proxy


class BackoffConfig(_Section):
    initial: float = Field(default=0.5, ge=0, le=_DAY)
    max: float = Field(default=30.0, ge=0, le=_DAY)
    multiplier: float = Field(default=2.0, ge=1, le=100)
    jitter: float = Field(default=0.5, ge=0, le=_DAY)


class RetryConfig(_Section):
    attempts: int = Field(default=4, ge=1, le=100)
    statuses: list[int] = Field(default_factory=lambda: [429, 500, 502, 503, 504])
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    max_retry_after: float = Field(default=120.0, ge=0, le=_DAY)
    unsafe_methods: bool = False

    @field_validator("statuses")
    @classmethod
    def _valid_statuses(cls, statuses: list[int]) -> list[int]:
        for s in statuses:
            if not 100 <= s <= 599:
                raise ValueError(f"{s} is not an HTTP status code")
        return statuses


class FieldRule(_Section):
    """A field with post-processing: `{css: ".price::text", re: '([\\d.]+)'}` keeps the regex's first group
    (or the whole match) of each value, and None (a list: nothing) where it does not match."""

    css: str
    pattern: str | None = Field(default=None, alias="re")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


FieldValue = str | FieldRule


def field_spec(value: FieldValue) -> FieldSpec:
    """The parsed selector of a field, written as a string or as a `FieldRule`."""
    if isinstance(value, FieldRule):
        return parse_field_spec(value.css, value.pattern)
    return parse_field_spec(value)


def _check_fields(fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
    for name, value in fields.items():
        try:
            field_spec(value)
        except ValueError as exc:
            raise ValueError(f"field {name!r}: {exc}") from None
    return fields


class ExtractConfig(_Section):
    # CSS selector for links to follow; null turns link following off.
    links: str | None = "a[href]"
    # Links taken from one page at most (the rest are left out, logged once per host, counted in the stats as
    # `links_capped`); null for no cap. A trap page with a million links must not flood the frontier.
    max_links: int | None = Field(default=10_000, ge=1)
    # name -> selector (`h1::text`, `a::attr(href)[]`) or {css: selector, re: regex}.
    fields: dict[str, FieldValue] = Field(default_factory=dict)
    # JSON responses: field name -> key path (`data.items[0].name`, `tags[*].name`). Relative to each
    # element of `items_path` when that is set.
    json_fields: dict[str, str] = Field(default_factory=dict, alias="json")
    # JSON responses: key path of a list; each element becomes one item (e.g. `data`, `results`).
    items_path: str | None = None
    # JSON responses: key paths whose string values are URLs to follow (e.g. `results[*].url`).
    json_links: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True, allow_inf_nan=False)

    @field_validator("links")
    @classmethod
    def _links_selector_parses(cls, css: str | None) -> str | None:
        if css is not None:
            check_css(css)
        return css

    @field_validator("fields")
    @classmethod
    def _selectors_parse(cls, fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
        return _check_fields(fields)

    @field_validator("json_fields")
    @classmethod
    def _json_paths_parse(cls, fields: dict[str, str]) -> dict[str, str]:
        for name, path in fields.items():
            _check_key_path(path, f"field {name!r}: ")
        return fields

    @field_validator("items_path")
    @classmethod
    def _items_path_parses(cls, path: str | None) -> str | None:
        if path is not None:
            _check_key_path(path)
        return path

    @field_validator("json_links")
    @classmethod
    def _link_paths_parse(cls, paths: list[str]) -> list[str]:
        for path in paths:
            _check_key_path(path)
        return paths


def _check_key_path(path: str, prefix: str = "") -> None:
    try:
        parse_key_path(path)
    except ValueError as exc:
        raise ValueError(f"{prefix}{exc}") from None


class PaginateConfig(_Section):
    """Following a listing or API page to the next one. The next page keeps the depth of the page it
    came from (it is a sibling, not a child), so `scope.max_depth` does not cut a long listing short."""

    # `Link: <...>; rel="next"` response headers (GitHub-style APIs).
    link_header: bool = False
    # JSON key path holding the next page's URL, absolute or relative (`next`, `links.next`).
    next_field: str | None = None
    # HTML: CSS selector of the next-page link (`a[rel=next]`, `li.next > a`).
    next_selector: str | None = None
    # Page-number query parameter: page N is followed by N + step until a page has no items.
    param: str | None = None
    start: int = 1
    step: int = Field(default=1, ge=1)
    # Cursor style: the next cursor is read from `cursor_field` (JSON key path) into `cursor_param`.
    cursor_field: str | None = None
    cursor_param: str | None = None
    # What counts as "the items" of a page for stop_on_empty: a JSON key path (default: extract.items_path,
    # else the whole document), or for HTML a CSS selector.
    items_path: str | None = None
    items_selector: str | None = None
    stop_on_empty: bool = True
    # Pages per chain, counting the first (a guard against APIs that never say stop).
    max_pages: int | None = Field(default=None, ge=1)
    # URL regexes: paginate only pages whose URL matches one (empty: every page).
    match: list[str] = Field(default_factory=list)

    @field_validator("match")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        return ScopeConfig._regexes_compile(patterns)

    @field_validator("next_field", "cursor_field", "items_path")
    @classmethod
    def _key_paths_parse(cls, path: str | None) -> str | None:
        if path is not None:
            _check_key_path(path)
        return path

    @field_validator("next_selector", "items_selector")
    @classmethod
    def _selectors_parse(cls, css: str | None) -> str | None:
        if css is not None:
            check_css(css)
        return css

    @model_validator(mode="after")
    def _coherent(self) -> PaginateConfig:
        if (self.cursor_field is None) != (self.cursor_param is None):
            raise ValueError("cursor pagination needs both cursor_field and cursor_param")
        styles = [self.link_header, self.next_field, self.next_selector, self.param, self.cursor_field]
        if not any(styles):
            raise ValueError("paginate needs one of: link_header: true, next_field, next_selector, param, "
                             "cursor_field + cursor_param")  # fmt: skip
        if self.param and not self.stop_on_empty and self.max_pages is None:
            raise ValueError("page-number pagination without stop_on_empty needs max_pages, or it never ends")
        return self


class RouteConfig(_Section):
    """Rules for the pages whose URL matches `match` (a regex, searched): the first matching route wins.
    `fields` and `stages` replace the job's `extract.fields` and `stages` on those pages (left out: the
    job's apply); `follow: false` follows no links from them."""

    match: str
    fields: dict[str, FieldValue] | None = None
    stages: list[str] | None = None
    follow: bool = True

    @field_validator("match")
    @classmethod
    def _regex_compiles(cls, pattern: str) -> str:
        ScopeConfig._regexes_compile([pattern])
        return pattern

    @field_validator("fields")
    @classmethod
    def _selectors_parse(cls, fields: dict[str, FieldValue] | None) -> dict[str, FieldValue] | None:
        return None if fields is None else _check_fields(fields)

    @field_validator("stages")
    @classmethod
    def _import_paths(cls, stages: list[str] | None) -> list[str] | None:
        return None if stages is None else _check_import_paths(stages)


def _check_import_paths(stages: list[str]) -> list[str]:
    for s in stages:
        mod, sep, attr = s.partition(":")
        if not sep or not mod or not attr:
            raise ValueError(f"stage {s!r} must be an import path like 'package.module:callable'")
    return stages


class SaveConfig(_Section):
    # URL regexes; a response whose URL matches one streams to disk under `dir`.
    match: list[str] = Field(default_factory=list)
    content_types: list[str] = Field(default_factory=list)
    dir: str = "out/files"
    # A name taken by a file that is not this URL's (not an earlier crawl's copy): the allocator's policy,
    # as `crawler download --on-collision` (rename: `name.1.ext`; overwrite: replace it; fail: the URL
    # fails as `file_exists`).
    on_collision: Literal["rename", "overwrite", "fail"] = "rename"

    @field_validator("match")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        return ScopeConfig._regexes_compile(patterns)

    @field_validator("dir")
    @classmethod
    def _dir_is_a_path(cls, path: str) -> str:
        return _local_path(path, "save.dir")


class OutputConfig(_Section):
    items: str | None = None
    # JSON lines, one per failed request (url, kind, status, referer, ...): a broken-link report.
    failures: str | None = None
    # WARC archive of every fetched page (request + response records, WARC/1.1); `.warc.gz` compresses
    # each record; a new numbered file (`NAME-00001.warc.gz`) starts once a file reaches warc_max_size.
    warc: str | None = None
    warc_max_size: SizeValue = Field(default=None)
    warc_compression_level: int = Field(default=6, ge=1, le=9)
    overwrite: bool = True
    stats: str | None = None
    flush_every: float = Field(default=0.5, gt=0, le=3_600)

    @field_validator("warc")
    @classmethod
    def _warc_name(cls, warc: str | None) -> str | None:
        if warc is not None and not warc.endswith((".warc", ".warc.gz")):
            raise ValueError(f"{warc!r}: a WARC file name ends in .warc.gz (compressed) or .warc")
        return warc

    @field_validator("items")
    @classmethod
    def _known_format(cls, items: str | None) -> str | None:
        if items is not None:
            _local_path(items, "the items path")
            writer_format(items)  # raises ValueError naming the allowed extensions
        return items

    @field_validator("stats")
    @classmethod
    def _stats_is_a_path(cls, path: str | None) -> str | None:
        return None if path is None else _local_path(path, "the stats path")


# Queued requests a frontier holds in memory unless the job says otherwise (`memory_queue`).
DEFAULT_MEMORY_QUEUE = 100_000


class Job(_Section):
    """A crawl job. Build it in code (`Job(start_urls=[...])`) or load it with `Job.from_yaml(path)`."""

    name: str = "crawl"
    start_urls: list[str] = Field(default_factory=list)
    # URLs, or {url: U, since: DATE} to follow only entries whose <lastmod> is on or after DATE (the
    # dates land in `sitemap_since`).
    start_sitemaps: list[str] = Field(default_factory=list)
    # Start sitemap URL -> date: entries (pages, and sitemaps of an index) last modified before it are
    # skipped; entries without <lastmod> are kept.
    sitemap_since: dict[str, date] = Field(default_factory=dict)
    scope: ScopeConfig = Field(default_factory=ScopeConfig)
    robots: RobotsConfig = Field(default_factory=RobotsConfig)
    concurrency: ConcurrencyConfig = Field(default_factory=ConcurrencyConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    save: SaveConfig = Field(default_factory=SaveConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    stages: list[str] = Field(default_factory=list)
    # Statuses >= 400 whose pages still go through the stages (and to `crawl()`), e.g. [404, 410].
    handle_statuses: list[int] = Field(default_factory=list)
    # Import paths of callables given each failed request (`crawler.Failure`), sync or async.
    on_error: list[str] = Field(default_factory=list)
    # Per-page rules (Scrapy's CrawlSpider rules, Crawlee's router labels): the first matching route wins.
    routes: list[RouteConfig] = Field(default_factory=list)
    paginate: PaginateConfig | None = None
    frontier: str = "memory"
    state: str | None = None
    # Queued requests held in memory (packed, 20-60 bytes each) by the memory frontier and `state:`; the rest
    # wait on disk: in a temporary file that disappears with the process, or in the state database.
    memory_queue: int = Field(default=DEFAULT_MEMORY_QUEUE, ge=1)
    # Seconds between progress lines when stderr is not a terminal.
    log_every: float = Field(default=5.0, gt=0, le=_DAY)
    # `crawler run` exits 1 when failed URLs / fetched URLs is above this (0.5 = more than half failed);
    # null never fails on errors.
    max_error_rate: float | None = Field(default=0.5, ge=0, le=1)
    # No request finishes for this many seconds: the crawl logs what each host waits for and stops, exit 1.
    stall_timeout: float | None = Field(default=600.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _sitemap_entries(cls, data: Any) -> Any:
        """`start_sitemaps: [{url: U, since: D}]` -> `start_sitemaps: [U]` and `sitemap_since: {U: D}`."""
        if not isinstance(data, dict) or not isinstance(data.get("start_sitemaps"), list):
            return data
        entries = data["start_sitemaps"]
        if not any(isinstance(e, dict) for e in entries):
            return data
        since = dict(data.get("sitemap_since") or {})
        urls = []
        for entry in entries:
            if isinstance(entry, dict):
                unknown = set(entry) - {"url", "since"}
                if unknown or "url" not in entry:
                    raise ValueError(f"a start_sitemaps entry is a URL or {{url: URL, since: DATE}}, not {entry!r}")
                if entry.get("since") is not None:
                    since[str(entry["url"])] = entry["since"]
                entry = entry["url"]
            urls.append(entry)
        return {**data, "start_sitemaps": urls, "sitemap_since": since}

    @field_validator("start_urls", "start_sitemaps")
    @classmethod
    def _absolute_http_urls(cls, urls: list[str]) -> list[str]:
        for u in urls:
            check_http_url(u)
            canonicalize(u)  # ValueError naming the URL when the WHATWG parser rejects it
        return urls

    @field_validator("name")
    @classmethod
    def _usable_name(cls, name: str) -> str:
        # The name keys a Redis crawl (`crawler:{NAME}:`, a hash tag) and appears in file names and logs.
        if not name or len(name) > 200 or re.search(r"[{}\x00-\x1f\x7f]", name):
            raise ValueError("a job name is 1 to 200 printable characters, without '{' or '}'")
        return name

    @field_validator("state")
    @classmethod
    def _state_is_a_path(cls, path: str | None) -> str | None:
        return None if path is None else _local_path(path, "the state directory")

    @field_validator("stages", "on_error")
    @classmethod
    def _import_paths(cls, stages: list[str]) -> list[str]:
        return _check_import_paths(stages)

    @field_validator("on_error", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("handle_statuses")
    @classmethod
    def _error_statuses(cls, statuses: list[int]) -> list[int]:
        for s in statuses:
            if not 400 <= s <= 599:
                raise ValueError(f"{s} is not an error status (400-599): pages below 400 always reach the stages")
        return statuses

    @field_validator("frontier")
    @classmethod
    def _known_frontier(cls, frontier: str) -> str:
        if frontier != "memory" and not frontier.startswith(REDIS_SCHEMES):
            raise ValueError("frontier is 'memory', a redis:// URL or a redis+cluster://host:port,... URL")
        if frontier.startswith(("redis://", "rediss://")):
            try:
                urlsplit(frontier).port  # noqa: B018  (parsing the port validates it)
            except ValueError as exc:
                raise ValueError(f"frontier {frontier[:80]!r} is not a valid URL: {exc}") from None
            if not urlsplit(frontier).hostname:
                raise ValueError(f"frontier {frontier[:80]!r} has no host")
        return _no_control(frontier, "frontier")

    @property
    def item_columns(self) -> list[str]:
        """The fields an item can have, in order (a CSV's columns): `extract.fields`, then the routes' own
        fields, then `extract.json`."""
        names = [*self.extract.fields]
        for route in self.routes:
            names += [n for n in route.fields or {} if n not in names]
        return [*names, *(n for n in self.extract.json_fields if n not in names)]

    @property
    def frontier_kind(self) -> Literal["memory", "sqlite", "redis"]:
        """Where the frontier lives: a `redis://` URL, else `state:` (SQLite), else memory."""
        if self.frontier.startswith(REDIS_SCHEMES):
            return "redis"
        return "sqlite" if self.state else "memory"

    @model_validator(mode="after")
    def _has_start(self) -> Job:
        if not self.start_urls and not self.start_sitemaps:
            raise ValueError("a job needs at least one of start_urls or start_sitemaps")
        return self

    @model_validator(mode="after")
    def _one_writer_per_array(self) -> Job:
        items = self.output.items
        if items and self.concurrency.processes > 1 and writer_format(items) == "json" and "{worker}" not in items:
            raise ValueError("a .json array cannot be shared by several processes: use .jsonl, or put "
                             "{worker} in output.items")  # fmt: skip
        if self.output.warc and self.concurrency.processes > 1:
            raise ValueError("output.warc is written by one process: run it with concurrency.processes: 1")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> Job:
        """Load and validate a YAML job file; raises `JobError` naming each bad key and its line."""
        return load_job(path, overrides=overrides)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Job:
        return cls.model_validate(data)

    def secrets(self) -> frozenset[str]:
        """The strings never to print: credentials and URL passwords (see `crawler.config.secrets`)."""
        return collect_secrets(self.model_dump(mode="json", by_alias=True))


def load_job(path: str | Path, overrides: list[str] | None = None) -> Job:
    """Load and validate a YAML job file; raises `JobError` naming each bad key and its line."""
    from crawler.config.jobfile import load_model  # yaml loads with the first job file, not at start-up

    return load_model(path, Job, overrides)


def load_job_text(text: str, source: str = "<job>", overrides: list[str] | None = None) -> Job:
    from crawler.config.jobfile import load_model_text

    return load_model_text(text, Job, source, overrides)
