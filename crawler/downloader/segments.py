"""Filling the segments of one part file: each segment streams its range into the part through a
`SegmentWriter`; after a failure it asks again for what is missing (Range + If-Range) until the retry
policy gives up. Rounds of retries that made progress do not count against the attempts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx

from crawler.downloader.context import RunContext
from crawler.downloader.deadlines import SpeedFloor
from crawler.downloader.outcomes import Failure, Restart
from crawler.downloader.response import read_response
from crawler.downloader.results import ActiveFile
from crawler.downloader.sender import FileRequest, OpenResponse, Retryable, send_once, wait_or_give_up
from crawler.fetch.disk import PartFile, SegmentWriter
from crawler.fetch.sidecar import PartState, Segment

__all__ = ["FileProgress", "SegmentFiller"]

log = logging.getLogger("crawler.download")

_MAX_PROGRESS_RESETS = 50  # retry rounds that each made progress, per segment


@dataclass(slots=True)
class FileProgress:
    """One file's counters: `received` is the bytes of the file on hand (a resumed prefix plus what
    arrived; for --max-size), `active` its line in progress snapshots."""

    active: ActiveFile
    received: int = 0
    resumed_from: int = 0
    floor: SpeedFloor | None = None

    def reset(self, to: int, total: int | None) -> None:
        self.received = self.active.done = to
        self.active.total = total


class SegmentFiller:
    """Fills every unfinished segment of `part`, one stream each, with ranged GETs of `request`."""

    def __init__(self, ctx: RunContext, request: FileRequest, part: PartFile, progress: FileProgress,
                 deadline: float | None = None) -> None:  # fmt: skip
        self.ctx = ctx
        self.request = request
        self.url = request.url
        self.part = part
        self.progress = progress
        self.deadline = deadline

    async def fill(self, first: Segment, stream: OpenResponse) -> Failure | Restart | None:
        """Fill `first` from the open `stream` and every other unfinished segment from its own request.
        None when all are complete; the first failure or restart ends the others."""
        others = [s for s in self.part.state.segments if s is not first and not s.complete]
        if not others:  # one stream: no tasks to spawn
            return await self._segment(first, stream)
        tasks = [asyncio.create_task(self._segment(first, stream))]
        tasks += [asyncio.create_task(self._segment(s, None)) for s in others]
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    outcome = task.result()
                    if outcome is not None:
                        return outcome
            return None
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # their writes are finished once they end

    async def _segment(self, seg: Segment, stream: OpenResponse | None) -> Failure | Restart | None:
        attempt, mark, rounds = 0, seg.done, 0
        while True:
            if stream is None:
                opened = await self._open(seg)
                if isinstance(opened, (Failure, Restart)):
                    return opened
                if isinstance(opened, Retryable):
                    failed: Retryable | None = opened
                else:
                    stream, seg = opened
                    failed = None
            if stream is not None:
                ended = await self._stream(stream, seg)
                host, stream = stream.host, None
                if ended is None or isinstance(ended, Failure):
                    return ended
                failed = Retryable(ended, host=host)
            assert failed is not None
            attempt += 1
            if seg.done > mark and rounds < _MAX_PROGRESS_RESETS:
                attempt, mark, rounds = 1, seg.done, rounds + 1  # progress since the last failure
            gave_up = await wait_or_give_up(self.ctx, attempt, failed, self.deadline)
            if gave_up is not None:
                return gave_up

    async def _open(self, seg: Segment) -> tuple[OpenResponse, Segment] | Retryable | Failure | Restart:
        """A request for what `seg` misses: the same file's range, or (single stream only) the whole file
        again when the server ignores ranges or the file changed: the part starts over with it."""
        part = self.part
        state = part.state
        last = "" if seg.end is None else str(seg.end - 1)
        extra: tuple[tuple[str, str], ...] = (("Range", f"bytes={seg.pos}-{last}"),)
        if state.validator:
            extra += (("If-Range", state.validator),)
        sent = await send_once(self.ctx, self.request, extra, deadline=self.deadline)
        if not isinstance(sent, OpenResponse):
            return sent
        info = read_response(sent.resp)
        if isinstance(info, Failure):
            await sent.aclose()
            return info
        if info.status == 206 and info.range_start == seg.pos and info.same_file(state):
            return sent, seg
        if info.status == 200 and len(state.segments) == 1:
            log.info("%s: server sent the whole file instead of a range: starting over", self.url)
            max_size = self.ctx.settings.max_size
            if info.total is not None and max_size is not None and info.total > max_size:
                await sent.aclose()
                return Failure(f"size {info.total} exceeds --max-size {max_size}", 200, discard=True)
            fresh = PartState(self.url, info.etag, info.last_modified, info.total, [Segment(0, info.total)],
                              checksum=state.checksum)  # fmt: skip
            try:
                await part.restart(fresh)
            except BaseException:
                await sent.aclose()
                raise
            self.progress.reset(0, fresh.length)
            self.progress.resumed_from = 0
            return sent, fresh.segments[0]
        await sent.aclose()
        return Restart("the server's copy changed during a segmented download: starting over")

    async def _stream(self, stream: OpenResponse, seg: Segment) -> Failure | BaseException | None:
        """Copy the body into `seg`. None when the segment (or a body of unknown length) is complete, a
        `Failure` past --max-size, or the error that cut the body short (for the retry decision). Bytes
        that arrived are written even when the stream fails."""
        ctx, part, progress = self.ctx, self.part, self.progress
        live, active = ctx.live, progress.active
        max_size = ctx.settings.max_size
        byte_rate = ctx.byte_rate
        floor = progress.floor
        remaining = seg.remaining
        error: BaseException | None = None
        try:
            writer = SegmentWriter(part, seg, target=live.batch_target, interval=ctx.settings.flush_interval)
            live.streams += 1
            if floor is not None:
                floor.stream_started()
            try:
                async for chunk in stream.resp.aiter_raw():
                    size = len(chunk)
                    if remaining is not None:
                        if size > remaining:
                            chunk, size = chunk[:remaining], remaining
                        remaining -= size
                    active.done += size
                    live.bytes_received += size
                    progress.received += size
                    if floor is not None:
                        floor.add(size)
                    if max_size is not None and progress.received > max_size:
                        return Failure(f"more than --max-size {max_size} bytes", stream.resp.status_code,
                                       discard=True)  # fmt: skip
                    if byte_rate is not None:
                        await byte_rate.consume(size)
                    if writer.add(chunk):
                        await writer.flush()
                    if remaining == 0:
                        break
            except httpx.HTTPError as exc:
                error = exc
            finally:
                live.streams -= 1
                if floor is not None:
                    floor.stream_ended()
                await writer.close()  # a write error (disk full) propagates: the entry fails
        finally:
            await stream.aclose()
        if error is not None:
            return error
        if remaining is not None and remaining > 0:
            return httpx.RemoteProtocolError(
                f"connection closed {remaining} bytes before the end of the range"
            )
        if seg.end is None:  # unknown length: the end of the body is the end of the file
            part.end_at(seg)
        return None
