"""Sending one GET of a download: through the host gate (a per-host slot held until the response is
closed), with the run's shared retry decision between attempts.

`send_once` is one attempt; `open_get` retries it; `wait_or_give_up` is the step between attempts, also
used by the segment loop, whose attempts include reading the body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from crawler.downloader.context import RunContext
from crawler.downloader.outcomes import Failure, describe

__all__ = ["OpenResponse", "Retryable", "open_get", "send_once", "wait_or_give_up"]


class OpenResponse:
    """A streaming response holding one per-host slot until `aclose()`."""

    __slots__ = ("_ctx", "_host", "resp")

    def __init__(self, resp: httpx.Response, ctx: RunContext, host: str) -> None:
        self.resp = resp
        self._ctx: RunContext | None = ctx
        self._host = host

    @property
    def closed(self) -> bool:
        return self._ctx is None

    async def aclose(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        try:
            await self.resp.aclose()
        finally:
            ctx.gate.release(self._host)


@dataclass(frozen=True, slots=True)
class Retryable:
    """An attempt failed in a way the retry policy judges: a transport error, or a status it lists."""

    failure: BaseException | int
    headers: httpx.Headers | None = None

    @property
    def http_status(self) -> int | None:
        return self.failure if isinstance(self.failure, int) else None


async def send_once(ctx: RunContext, url: str, host: str, headers: list[tuple[str, str]], *,
                    ok_416: bool = False, deadline: float | None = None) -> OpenResponse | Failure | Retryable:  # fmt: skip
    """One GET: the open response when it is 200, 206 (or 416 when `ok_416`); else why not."""
    if not await ctx.gate.acquire(host, deadline):
        return Failure(f"gave up waiting for a slot on {host} (deadline)")
    try:
        request = ctx.client.build_request("GET", url, headers=headers)
        resp = await ctx.client.send(request, stream=True)
    except httpx.HTTPError as exc:
        ctx.gate.release(host)
        return Retryable(exc)
    except BaseException:
        ctx.gate.release(host)
        raise
    stream = OpenResponse(resp, ctx, host)
    status = resp.status_code
    if status in (200, 206) or (status == 416 and ok_416):
        return stream
    await stream.aclose()
    if status in ctx.policy.statuses:
        return Retryable(status, resp.headers)
    return Failure(f"HTTP {status} {resp.reason_phrase or ''}".strip(), status)


async def wait_or_give_up(ctx: RunContext, host: str, attempt: int, failed: Retryable,
                          deadline: float | None = None) -> Failure | None:  # fmt: skip
    """After attempt number `attempt` failed: pause the host if the server asked (429/503 Retry-After),
    then sleep the backoff and return None to try again, or return why the entry gives up."""
    decision = ctx.policy.decide(attempt, failed.failure, failed.headers)
    if decision.pause_host_for is not None:
        ctx.gate.pause(host, decision.pause_host_for)
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


async def open_get(ctx: RunContext, url: str, host: str, headers: list[tuple[str, str]], *,
                   ok_416: bool = False, deadline: float | None = None) -> OpenResponse | Failure:  # fmt: skip
    """`send_once`, retried per the run's policy."""
    attempt = 0
    while True:
        attempt += 1
        outcome = await send_once(ctx, url, host, headers, ok_416=ok_416, deadline=deadline)
        if not isinstance(outcome, Retryable):
            return outcome
        gave_up = await wait_or_give_up(ctx, host, attempt, outcome, deadline)
        if gave_up is not None:
            return gave_up
