"""One entry from one URL: name it, place it, resume or start it, stream it (in segments), verify it and
rename it into place. Every step returns an explicit outcome (`outcomes.py`); the job turns the last one
into the entry's `DownloadResult`.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import httpx

from crawler.downloader.context import RunContext
from crawler.downloader.deadlines import SpeedFloor
from crawler.downloader.entries import DownloadEntry
from crawler.downloader.outcomes import Failure, Restart, describe
from crawler.downloader.placement import Resume, Skip, find_resumable, hash_existing, place
from crawler.downloader.response import ResponseInfo, read_response
from crawler.downloader.results import ActiveFile, DownloadResult
from crawler.downloader.segments import FileProgress, SegmentFiller
from crawler.downloader.sender import FileRequest, OpenResponse, open_get
from crawler.fetch.disk import IncompletePart, PartFile, plan_segments
from crawler.fetch.names import Reservation, UnsafePath, choose_name, safe_subpath
from crawler.fetch.sidecar import PART_SUFFIX, SIDECAR_SUFFIX, PartState, Segment, Sidecar
from crawler.model.errors import OutputError

__all__ = ["FileJob"]

log = logging.getLogger("crawler.download")

_MAX_RESTARTS = 3


class FileJob:
    """Downloads `entry` from `url` (one of its mirrors) within the run `ctx`. `owner` names the entry
    to the name allocator (its mirrors share its names); `key` its line in progress snapshots;
    `deadline` (monotonic) ends waits for slots and backoffs cleanly; `floor` watches its speed."""

    def __init__(self, ctx: RunContext, entry: DownloadEntry, url: str, owner: str, key: int,
                 deadline: float | None = None, floor: SpeedFloor | None = None) -> None:  # fmt: skip
        self.ctx = ctx
        self.entry = entry
        self.url = url
        self.owner = owner
        self.key = key
        self.deadline = deadline
        settings = ctx.settings
        headers = [("Accept-Encoding", "identity"), *settings.headers, *entry.headers]
        user = settings.user_headers | {k.lower() for k, _ in entry.headers if k.lower() != "user-agent"}
        self.request = FileRequest.build(url, headers, user)
        self.segments = entry.segments or ctx.settings.segments
        self.algos = ["sha256"] + ([entry.checksum.algo] if entry.checksum else [])
        self.url_name = choose_name(None, None, url)
        self.progress = FileProgress(ActiveFile(name="", url=url), floor=floor)
        self.reservation: Reservation | None = None
        self.part: PartFile | None = None
        self.http_status: int | None = None
        self.final_url: str | None = None  # where the first response came from, after redirects
        self.redirects = 0
        self.answer: httpx.Response | None = None  # that response (closed), for the WARC records

    # --- the whole file ---------------------------------------------------------------------------------

    async def run(self) -> DownloadResult:
        """The entry's result from this URL; never raises for a failed download."""
        live = self.ctx.live
        try:
            outcome = await self._run()
        except OutputError:
            raise  # the run's output failed, not this file: the run stops
        except (OSError, UnsafePath) as exc:
            outcome = Failure(describe(exc))
        except IncompletePart as exc:  # the part does not hold what its record says
            outcome = Failure(str(exc), discard=True)
        except Exception as exc:  # a bug must fail one file, not the run
            log.exception("unexpected error downloading %s", self.url)
            outcome = Failure(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._close_part()
            live.active.pop(self.key, None)
        if isinstance(outcome, Failure):
            if outcome.discard:
                self._discard()
            log.debug("failed %s: %s", self.url, outcome.message)
            return DownloadResult(self.url, None, 0, None, "failed", outcome.message,
                                  outcome.http_status or self.http_status, self.progress.resumed_from,
                                  final_url=self.final_url, redirects=self.redirects)  # fmt: skip
        outcome.final_url, outcome.redirects = self.final_url, self.redirects
        return outcome

    async def _run(self) -> DownloadResult | Failure:
        entry = self.entry
        subdir = safe_subpath(entry.dir) if entry.dir else PurePosixPath()
        fixed: str | None = None
        if entry.out:
            out = safe_subpath(entry.out)
            if not out.parts:
                return Failure(f"out={entry.out!r} names no file")
            subdir, fixed = subdir / out.parent, out.name
        self.progress.active.name = fixed or self.url_name
        self.ctx.live.active[self.key] = self.progress.active
        if fixed:
            verified = await self._verified_without_request(subdir / fixed)
            if verified is not None:
                return verified

        plan: Resume | None = None
        if self.ctx.settings.resume:
            plan = find_resumable(self.ctx, self.owner, self.url, entry, subdir / (fixed or self.url_name))
        restarts = 0
        while True:
            if plan is not None:
                self.reservation = plan.reservation
                outcome = await self._resume(plan.state)
            else:
                outcome = await self._fresh(subdir, fixed)
            if not isinstance(outcome, Restart):
                return outcome
            restarts += 1
            if restarts > _MAX_RESTARTS:
                return Failure(f"gave up after {_MAX_RESTARTS} restarts: {outcome.reason}")
            log.debug("%s: %s", self.url, outcome.reason)
            self._close_part()
            assert self.reservation is not None
            plan = None if outcome.resume is None else Resume(self.reservation, outcome.resume)

    async def _verified_without_request(self, wanted: PurePosixPath) -> DownloadResult | None:
        """With an `out=` name and a checksum: the file already there, when it matches (no request)."""
        checksum, names = self.entry.checksum, self.ctx.names
        if checksum is None:
            return None
        reservation = names.reserve(wanted, self.owner)
        if reservation is None:
            return None
        if reservation.path.is_file():
            digests = await hash_existing(self.ctx, reservation.path, self.algos)
            if digests[checksum.algo] == checksum.hexdigest:
                size = reservation.path.stat().st_size
                return DownloadResult(self.url, reservation.path, size, digests["sha256"], "skipped", None,
                                      None, 0, 0)  # fmt: skip
        names.release(reservation)
        return None

    # --- one attempt at the file ------------------------------------------------------------------------

    async def _fresh(self, subdir: PurePosixPath, fixed: str | None) -> DownloadResult | Failure | Restart:
        """From byte 0: the first response names the file (unless it has a name already) and tells
        whether ranges work; the rest is fetched in segments when asked and possible."""
        stream = await self._open_first()
        if isinstance(stream, Failure):
            return stream
        try:
            info = read_response(stream.resp)
            if isinstance(info, Failure):
                return info
            if self.reservation is None:
                name = fixed or (
                    choose_name(None, info.disposition, self.url) if info.disposition else self.url_name
                )
                self.progress.active.name = name
                placed = await place(self.ctx, self.owner, self.url, self.entry, subdir / name, info,
                                     stream.aclose, self.algos)  # fmt: skip
                if isinstance(placed, Failure):
                    return placed
                if isinstance(placed, Skip):
                    return DownloadResult(self.url, placed.path, placed.size, placed.sha256, "skipped", None,
                                          self.http_status, 0, 0)  # fmt: skip
                self.reservation = placed.reservation
                if isinstance(placed, Resume):
                    return Restart(f"resuming {placed.reservation.path.name} from byte {placed.state.written}",
                                   placed.state)  # fmt: skip
                if stream.closed:  # an existing file was hashed meanwhile: ask again
                    return Restart(f"{placed.reservation.path.name} is not this file: downloading it again")
            state = self._fresh_state(info)
            return await self._transfer(stream, state, state.segments[0], fresh=True)
        finally:
            await stream.aclose()

    async def _open_first(self) -> OpenResponse | Failure:
        if self.segments > 1:
            # Learn from the first response whether ranges work. An empty file has no satisfiable range.
            stream = await self._get((("Range", "bytes=0-"),), ok_416=True)
            if isinstance(stream, Failure) or stream.resp.status_code != 416:
                return stream
            await stream.aclose()
        return await self._get()

    async def _resume(self, state: PartState) -> DownloadResult | Failure | Restart:
        """Continue a part: Range + If-Range for its first unfinished segment (a one-byte range when all
        is written but the rename did not happen, to confirm the validator)."""
        seg = next((s for s in state.segments if not s.complete), state.segments[-1])
        if seg.complete:
            assert seg.end is not None
            first, last = seg.end - 1, str(seg.end - 1)
        else:
            first, last = seg.pos, "" if seg.end is None else str(seg.end - 1)
        assert state.validator is not None
        stream = await self._get((("Range", f"bytes={first}-{last}"), ("If-Range", state.validator)), ok_416=True)
        if isinstance(stream, Failure):
            return stream
        try:
            info = read_response(stream.resp)
            if isinstance(info, Failure):
                return info
            assert self.reservation is not None
            name = self.reservation.path.name
            self.progress.active.name = name
            if info.status == 416 or (
                info.status == 206 and not (info.range_start == first and info.same_file(state))
            ):
                self._discard()
                return Restart(f"the part of {name} no longer matches the server's copy: starting over")
            if info.status == 206:
                self.progress.resumed_from = state.written
                return await self._transfer(stream, state, seg, fresh=False)
            # 200: the validator changed or ranges are ignored. This body is the whole file: start over
            # with it, under the name the part had.
            log.info("%s: server sent the whole file instead of a range: starting over", self.url)
            fresh = self._fresh_state(info)
            return await self._transfer(stream, fresh, fresh.segments[0], fresh=True)
        finally:
            await stream.aclose()

    def _fresh_state(self, info: ResponseInfo) -> PartState:
        if self.segments > 1 and info.total is not None and info.ranges_ok:
            segments = plan_segments(info.total, self.segments, self.ctx.settings.min_segment_size)
        else:
            segments = [Segment(0, info.total)]
        checksum = None if self.entry.checksum is None else str(self.entry.checksum)
        return PartState(self.url, info.etag, info.last_modified, info.total, segments, checksum)

    async def _get(self, extra: tuple[tuple[str, str], ...] = (), ok_416: bool = False) -> OpenResponse | Failure:
        opened = await open_get(self.ctx, self.request, extra, ok_416=ok_416, deadline=self.deadline)
        if isinstance(opened, OpenResponse):
            self.http_status = opened.resp.status_code
            self.final_url, self.redirects, self.answer = opened.url, opened.hops, opened.resp
        elif opened.http_status is not None:
            self.http_status = opened.http_status
        return opened

    # --- streaming --------------------------------------------------------------------------------------

    async def _transfer(self, stream: OpenResponse, state: PartState, first: Segment, *,
                        fresh: bool) -> DownloadResult | Failure | Restart:  # fmt: skip
        ctx, reservation = self.ctx, self.reservation
        assert reservation is not None
        max_size = ctx.settings.max_size
        if state.length is not None and max_size is not None and state.length > max_size:
            return Failure(f"size {state.length} exceeds --max-size {max_size}", self.http_status)
        ctx.names.make_parent(reservation)
        self._close_part()
        self.part = part = PartFile(reservation.companion(PART_SUFFIX), reservation.path, state,
                                    Sidecar(reservation.companion(SIDECAR_SUFFIX)), self.algos, ctx.executor,
                                    fresh=fresh, checksum=self.entry.checksum, origin=self.url)  # fmt: skip
        self.progress.reset(state.written, state.length)
        self.progress.active.segments = len(state.segments)
        filler = SegmentFiller(ctx, self.request, part, self.progress, self.deadline)
        ended = await filler.fill(first, stream)
        if isinstance(ended, Restart):
            self._discard()
            return ended
        if isinstance(ended, Failure):
            return ended
        return await self._finish(part)

    async def _finish(self, part: PartFile) -> DownloadResult | Failure:
        state = part.state
        if not state.complete:
            return Failure("transfer ended before the file was complete")
        done = await part.complete()  # usually already done by the thread that wrote the last batch
        self.part = None
        if done.error is not None:
            return Failure(done.error)  # the part is already deleted
        if self.ctx.archive is not None:
            await self._archive(part.final)
        return DownloadResult(self.url, part.final, done.size, done.digests["sha256"], "ok", None, self.http_status,
                              self.progress.resumed_from, len(state.segments))  # fmt: skip

    async def _archive(self, path: Path) -> None:
        """The file's request and response records in the run's WARC: the response that started it (its
        headers; a whole file is status 200 whatever the ranges it came in), the file as its payload. An
        archive that cannot be written stops the run (`OutputError`), as a full items file stops a crawl."""
        archive, answer = self.ctx.archive, self.answer
        assert archive is not None and answer is not None
        request = answer.request
        sent = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in ("range", "if-range")]
        try:
            await archive.write_file(str(answer.url), path, http_version=answer.http_version,
                                     headers=answer.headers.multi_items(), request_url=str(request.url),
                                     request_headers=sent)  # fmt: skip
        except OSError as exc:
            raise OutputError(f"cannot write the WARC archive {archive.path}: {exc.strerror or exc}") from exc

    def _close_part(self) -> None:
        if self.part is not None:
            self.part.close()
            self.part = None

    def _discard(self) -> None:
        """Drop the part and its sidecar: useless for any later resume."""
        self._close_part()
        if self.reservation is not None:
            self.reservation.companion(PART_SUFFIX).unlink(missing_ok=True)
            self.reservation.companion(SIDECAR_SUFFIX).unlink(missing_ok=True)
