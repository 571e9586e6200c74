"""Sending one GET of a download: through the host gate (a per-host slot held until the response is
closed), following redirects hop by hop, with the run's shared retry decision between attempts.

`send_once` is one attempt; `open_get` retries it; `wait_or_give_up` is the step between attempts, also
used by the segment loop, whose attempts include reading the body.

Redirects go through `crawler.http.redirects`, the crawl's own rules: each hop takes a slot of its own
host (the previous hop's slot is released first, so a chain never holds two), at most `max_redirects`
hops, and a hop that leaves the origin drops Authorization, Cookie and the user's headers (`-H`,
`header=`, `http.headers`; never User-Agent) unless `http.forward_headers` names them. Every request of a
file starts again from the entry's URL, so a signed or rotating redirect target is asked afresh.

The adaptive per-host rate is the crawl's too: a good answer (2xx, 3xx, 416) is `answered`, a 429 or 503
is `throttled` (the host pauses for its Retry-After and its rate drops to what it was accepting), on the
host that sent it, which after a redirect is not the entry's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from crawler.downloader.context import RunContext
from crawler.downloader.outcomes import Failure, describe
from crawler.http.redirects import RedirectError, next_hop, send_hop
from crawler.model.url import canonicalize, host_key
from crawler.politeness.retry import HOST_PAUSE_STATUSES

__all__ = ["FileRequest", "OpenResponse", "Retryable", "open_get", "send_once", "wait_or_give_up"]


@dataclass(frozen=True, slots=True)
class FileRequest:
    """What every request of one file starts from: the entry URL (one of its mirrors), its host key, the
    headers sent with it, and the names (lower case) of those a cross-origin redirect hop drops."""

    url: str
    host: str
    headers: tuple[tuple[str, str], ...]
    user_headers: frozenset[str]

    @classmethod
    def build(cls, url: str, headers: list[tuple[str, str]], user_headers: frozenset[str]) -> FileRequest:
        return cls(url, host_key(canonicalize(url)), tuple(headers), user_headers)


class OpenResponse:
    """A streaming response holding one slot of `host` (the host that answered) until `aclose()`.
    `hops`: the redirects followed to reach it."""

    __slots__ = ("_ctx", "hops", "host", "resp")

    def __init__(self, resp: httpx.Response, ctx: RunContext, host: str, hops: int = 0) -> None:
        self.resp = resp
        self._ctx: RunContext | None = ctx
        self.host = host
        self.hops = hops

    @property
    def closed(self) -> bool:
        return self._ctx is None

    @property
    def url(self) -> str:
        return str(self.resp.url)

    async def aclose(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        try:
            await self.resp.aclose()
        finally:
            ctx.gate.release(self.host)


@dataclass(frozen=True, slots=True)
class Retryable:
    """An attempt failed in a way the retry policy judges: a transport error, or a status it lists.
    `host` answered it (after redirects, not necessarily the entry's host), to a request sent at `sent_at`."""

    failure: BaseException | int
    headers: httpx.Headers | None = None
    host: str | None = None
    sent_at: float = 0.0

    @property
    def http_status(self) -> int | None:
        return self.failure if isinstance(self.failure, int) else None


async def send_once(ctx: RunContext, request: FileRequest, extra: tuple[tuple[str, str], ...] = (), *,
                    ok_416: bool = False, deadline: float | None = None) -> OpenResponse | Failure | Retryable:  # fmt: skip
    """One GET of `request` (plus the `extra` headers: Range, If-Range), redirects followed: the open
    response when the last hop answers 200, 206 (or 416 when `ok_416`); else why not."""
    gate, client, settings = ctx.gate, ctx.client, ctx.settings
    host = request.host
    hop = None
    hops = 0
    auth = True
    while True:
        if not await gate.acquire(host, deadline):
            return Failure(f"gave up waiting for a slot on {host} (deadline)")
        sent_at = time.monotonic()
        try:
            if hop is None:
                built = client.build_request("GET", request.url, headers=[*request.headers, *extra])
                resp = await client.send(built, stream=True, follow_redirects=False)
            else:
                resp = await send_hop(client, hop)
        except httpx.InvalidURL as exc:  # httpx parses a 3xx's Location as it reads the response
            gate.release(host)
            return Failure(f"redirect target is not a URL ({exc})")
        except httpx.HTTPError as exc:
            gate.release(host)
            return Retryable(exc, None, host, sent_at)
        except BaseException:
            gate.release(host)
            raise
        stream = OpenResponse(resp, ctx, host, hops)
        try:
            hop = next_hop(resp, user_headers=request.user_headers, forward_headers=settings.forward_headers,
                           auth=auth, max_url_length=settings.max_url_length)  # fmt: skip
        except RedirectError as exc:
            await stream.aclose()
            return Failure(str(exc), resp.status_code)
        except BaseException:
            await stream.aclose()
            raise
        if hop is None:
            break
        await stream.aclose()  # this hop's slot goes back before the next hop's host is asked for one
        gate.answered(host, sent_at)
        hops += 1
        if hops > settings.max_redirects:
            return Failure(f"too many redirects: more than {settings.max_redirects} (http.max_redirects)",
                           resp.status_code)  # fmt: skip
        host, auth = host_key(canonicalize(str(hop.url))), hop.auth
    status = resp.status_code
    if status in (200, 206) or (status == 416 and ok_416):
        gate.answered(host, sent_at)
        return stream
    await stream.aclose()
    if status in ctx.policy.statuses:
        return Retryable(status, resp.headers, host, sent_at)
    return Failure(f"HTTP {status} {resp.reason_phrase or ''}".strip(), status)


async def wait_or_give_up(ctx: RunContext, attempt: int, failed: Retryable,
                          deadline: float | None = None) -> Failure | None:  # fmt: skip
    """After attempt number `attempt` failed: on 429/503 slow the host that said it (Retry-After pause and
    the adaptive rate, as the crawl does), then sleep the backoff and return None to try again, or return
    why the entry gives up."""
    decision = ctx.policy.decide(attempt, failed.failure, failed.headers)
    if failed.http_status in HOST_PAUSE_STATUSES and failed.host is not None:
        ctx.gate.throttled(failed.host, failed.sent_at, decision.pause_host_for)
    if not decision.give_up and deadline is not None and time.monotonic() + decision.delay > deadline:
        return Failure(f"{_reason(failed, decision.retry_after)}: no time left for retry {attempt + 1}",
                       failed.http_status)  # fmt: skip
    if decision.give_up:
        failure = failed.failure
        if isinstance(failure, BaseException) and not ctx.policy.retryable_error(failure):
            return Failure(describe(failure))
        return Failure(
            f"{_reason(failed, decision.retry_after)} after {attempt} attempts", failed.http_status
        )
    await asyncio.sleep(decision.delay)
    return None


def _reason(failed: Retryable, retry_after: float | None) -> str:
    if isinstance(failed.failure, int):
        return f"HTTP {failed.failure}" + (
            f" (Retry-After {retry_after:g}s)" if retry_after is not None else ""
        )
    return describe(failed.failure)


async def open_get(ctx: RunContext, request: FileRequest, extra: tuple[tuple[str, str], ...] = (), *,
                   ok_416: bool = False, deadline: float | None = None) -> OpenResponse | Failure:  # fmt: skip
    """`send_once`, retried per the run's policy."""
    attempt = 0
    while True:
        attempt += 1
        outcome = await send_once(ctx, request, extra, ok_416=ok_416, deadline=deadline)
        if not isinstance(outcome, Retryable):
            return outcome
        gave_up = await wait_or_give_up(ctx, attempt, outcome, deadline)
        if gave_up is not None:
            return gave_up
