"""`crawler.download()` against the edge-case app: resume, validator changes, servers without ranges,
checksums, hostile names, failures among good entries, Retry-After, size caps, collisions."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import crawler
from crawler import RetryConfig
from crawler.downloader import DownloadEntry, DownloadProgress, DownloadResult, download
from crawler.fetch.sidecar import Sidecar

from .app import file_bytes, file_sha256
from .servers import EdgeServer


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def sidecars_under(root: Path) -> list[Path]:
    return list(root.rglob("*.part.json"))


def real(path: Path) -> Path:
    return path.resolve()


async def interrupt_after(url: str, dest: Path, min_bytes: int, **options: Any) -> None:
    """Start a download and cancel it once its sidecar records `min_bytes`: a partial from an 'earlier run'."""
    task = asyncio.create_task(download([url], dest, batch_size=64 << 10, **options))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        assert not task.done(), f"finished before it could be interrupted: {task.result()}"
        for sidecar in sidecars_under(dest):
            state = Sidecar.load(sidecar)
            if state is not None and state.written >= min_bytes:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return
    raise AssertionError("the download never got far enough")


async def test_library_api_is_exported_from_the_package_root() -> None:
    assert crawler.download is download
    assert crawler.DownloadResult is DownloadResult and crawler.DownloadEntry is DownloadEntry


async def test_resume_continues_with_range_and_if_range(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/resume.bin", size=1_500_000, seed=key, key=key, rate=1_500_000)
    await interrupt_after(url, tmp_path, 300_000)
    state = Sidecar.load(tmp_path / "resume.bin.part.json")
    assert state is not None and (tmp_path / "resume.bin.part").exists()
    assert not (tmp_path / "resume.bin").exists()

    [result] = await download([url], tmp_path, checksums={url: f"sha-256={file_sha256(key, 0, 1_500_000)}"})

    assert result.status == "ok", result.error
    assert result.resumed_from >= state.written > 0
    second = edge.requests_for(key)[-1]
    assert second["range"] == f"bytes={result.resumed_from}-1499999"
    assert second["if_range"] == f'"{key}-1500000-v0"' and second["status"] == 206
    assert result.sha256 == file_sha256(key, 0, 1_500_000)
    assert files_under(tmp_path) == ["resume.bin"]


async def test_validator_change_restarts_from_zero(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/changing.bin", size=1_000_000, seed=key, key=key, rate=1_000_000)
    await interrupt_after(url, tmp_path, 200_000)
    edge.bump(key)  # the server's copy changes: new bytes, new ETag

    [result] = await download([url], tmp_path)

    assert result.status == "ok" and result.resumed_from == 0
    retry = edge.requests_for(key)[-1]
    assert (
        retry["if_range"] == f'"{key}-1000000-v0"' and retry["status"] == 200
    )  # If-Range failed: whole file
    assert (tmp_path / "changing.bin").read_bytes() == file_bytes(key, 1, 1_000_000)
    assert files_under(tmp_path) == ["changing.bin"]


async def test_a_206_with_a_different_etag_starts_over(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    # A server that ignores If-Range and sends the range of a changed file: the ETag gives it away.
    url = edge.url_for("/file/liar.bin", size=1_000_000, seed=key, key=key, rate=1_000_000, ignore_if_range=1)
    await interrupt_after(url, tmp_path, 200_000)
    edge.bump(key)

    [result] = await download([url], tmp_path)

    assert result.status == "ok", result.error
    ranges = [r["range"] for r in edge.requests_for(key)]
    assert ranges[-2].startswith("bytes=") and ranges[-1] is None  # the mismatching 206, then from zero
    assert result.sha256 == file_sha256(key, 1, 1_000_000)


async def test_server_without_range_support_starts_over_cleanly(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    url = edge.url_for("/file/norange.bin", size=1_000_000, seed=key, key=key, rate=1_000_000, norange=1)
    await interrupt_after(url, tmp_path, 200_000)

    [result] = await download([url], tmp_path)

    assert result.status == "ok" and result.resumed_from == 0
    last = edge.requests_for(key)[-1]
    assert last["range"] is not None and last["status"] == 200
    assert result.sha256 == file_sha256(key, 0, 1_000_000)
    assert files_under(tmp_path) == ["norange.bin"]


async def test_a_dropped_connection_continues_from_the_bytes_received(
    edge: EdgeServer, key: str, tmp_path: Path, fast_retry: RetryConfig
) -> None:
    url = edge.url_for("/cut/cut.bin", size=2_000_000, seed=key, key=key, cut_at=700_000)

    [result] = await download([url], tmp_path, retry=fast_retry)

    assert result.status == "ok", result.error
    first, second = edge.requests_for(key)
    assert first["range"] is None
    start = int(second["range"].removeprefix("bytes=").split("-")[0])
    assert 0 < start <= 700_000  # partial data is kept across retries, not thrown away
    assert second["if_range"] == f'"{key}-2000000-v0"'
    assert result.sha256 == file_sha256(key, 0, 2_000_000)


async def test_checksum_mismatch_fails_and_leaves_nothing(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/bad.bin", size=300_000, seed=key, key=key)
    wrong = "sha-256=" + "0" * 64

    [result] = await download([DownloadEntry(url, checksum=wrong)], tmp_path)

    assert result.status == "failed" and result.path is None
    assert result.error is not None and "checksum mismatch" in result.error
    assert files_under(tmp_path) == []  # no final file, no part, no sidecar


@pytest.mark.parametrize("algo", ["md5", "sha1", "sha512"])
async def test_checksums_of_other_algorithms_verify(
    edge: EdgeServer, key: str, tmp_path: Path, algo: str
) -> None:
    url = edge.url_for("/file/sum.bin", size=200_000, seed=key, key=key)
    digest = hashlib.new(algo, file_bytes(key, 0, 200_000)).hexdigest()
    label = "md5" if algo == "md5" else f"sha-{algo[3:]}"

    [result] = await download([url], tmp_path, checksums={url: f"{label}={digest}"})

    assert result.status == "ok", result.error
    assert result.sha256 == file_sha256(key, 0, 200_000)


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ('attachment; filename="../../x"', "x"),
        ('attachment; filename="/etc/passwd"', "passwd"),
        ("attachment; filename=CON", "_CON"),
        ("attachment; filename*=UTF-8''..%2F..%2Fescape.txt", "escape.txt"),
        ("attachment; filename*=UTF-8''%E2%82%AC%20rates.txt", "€ rates.txt"),
        ('attachment; filename=".."', "index.html"),
    ],
)
async def test_hostile_content_disposition_names_stay_inside_dest(
    edge: EdgeServer, key: str, tmp_path: Path, disposition: str, expected: str
) -> None:
    dest = tmp_path / "dest"
    url = edge.url_for("/file/", size=1000, seed=key, key=key, cd=quote(disposition))

    [result] = await download([url], dest)

    assert result.status == "ok", result.error
    assert result.path == real(dest) / expected
    assert files_under(tmp_path) == [f"dest/{expected}"]


async def test_out_and_dir_cannot_escape_dest(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    url = edge.url_for("/file/f.bin", size=1000, seed=key, key=key)

    [result] = await download([DownloadEntry(url, out="../../../x.bin", dir="/abs/../sub")], dest)

    assert result.status == "ok", result.error
    assert files_under(tmp_path) == ["dest/abs/sub/x.bin"]


async def test_failures_among_good_entries_are_reported_in_order(
    edge: EdgeServer, key: str, tmp_path: Path, fast_retry: RetryConfig
) -> None:
    good1 = edge.url_for("/file/good1.bin", size=5000, seed=key, key=key + "1")
    good2 = edge.url_for("/file/good2.bin", size=7000, seed=key, key=key + "2")
    missing = edge.url_for("/status/404", key=key + "404")
    broken = edge.url_for("/status/500", key=key + "500")

    results = await download([good1, missing, broken, good2], tmp_path, retry=fast_retry)

    assert [r.status for r in results] == ["ok", "failed", "failed", "ok"]
    assert [r.url for r in results] == [good1, missing, broken, good2]
    assert results[1].http_status == 404 and "404" in (results[1].error or "")
    assert results[2].http_status == 500 and "after 3 attempts" in (results[2].error or "")
    assert len(edge.requests_for(key + "500")) == 3 and len(edge.requests_for(key + "404")) == 1
    assert files_under(tmp_path) == ["good1.bin", "good2.bin"]


async def test_retry_after_is_honoured(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/flaky/later.bin", size=5000, seed=key, key=key, fail=1, code=503, retry_after=1)

    [result] = await download([url], tmp_path)

    assert result.status == "ok", result.error
    first, second = edge.requests_for(key)
    assert first["status"] == 503 and second["status"] == 200
    assert second["t"] - first["t"] >= 0.95


async def test_max_size_fails_early_from_content_length(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/huge.bin", size=5_000_000, seed=key, key=key)

    [result] = await download([url], tmp_path, max_size="1MB")

    assert result.status == "failed" and "max-size" in (result.error or "")
    assert files_under(tmp_path) == []


async def test_max_size_fails_as_bytes_arrive_without_content_length(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    url = edge.url_for("/file/stream.bin", size=3_000_000, seed=key, key=key, nolength=1)

    [result] = await download([url], tmp_path, max_size=1_000_000)

    assert result.status == "failed" and "max-size" in (result.error or "")
    assert files_under(tmp_path) == []


async def test_unknown_length_downloads_completely(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/chunked.bin", size=1_234_567, seed=key, key=key, nolength=1)

    [result] = await download([url], tmp_path, segments=4)  # no length: one stream whatever -x says

    assert result.status == "ok" and result.bytes == 1_234_567 and result.segments == 1
    assert result.sha256 == file_sha256(key, 0, 1_234_567)


async def test_segments_fetch_ranges_in_parallel_and_verify(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    url = edge.url_for("/file/split.bin", size=3_000_000, seed=key, key=key)

    [result] = await download([url], tmp_path, segments=4, min_segment_size="256KiB")

    assert result.status == "ok" and result.segments == 4
    ranges = sorted(r["range"] for r in edge.requests_for(key))
    assert ranges == ["bytes=0-", "bytes=1500000-2249999", "bytes=2250000-2999999", "bytes=750000-1499999"]
    assert result.sha256 == file_sha256(key, 0, 3_000_000)


async def test_segmented_resume_after_the_file_changed(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/segchange.bin", size=2_000_000, seed=key, key=key, rate=1_500_000)
    await interrupt_after(url, tmp_path, 400_000, segments=4, min_segment_size="256KiB")
    edge.bump(key)

    [result] = await download([url], tmp_path, segments=4, min_segment_size="256KiB")

    assert result.status == "ok", result.error
    assert result.sha256 == file_sha256(key, 1, 2_000_000)


async def test_collision_policies(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/same.bin", size=10_000, seed=key, key=key)
    foreign = b"x" * 10_000  # a file of the same size that this URL did not write
    (tmp_path / "same.bin").write_bytes(foreign)

    [renamed] = await download([url], tmp_path)  # the default: never over someone else's file
    assert renamed.status == "ok" and renamed.path == real(tmp_path) / "same.1.bin"
    assert (tmp_path / "same.bin").read_bytes() == foreign

    [again] = await download([url], tmp_path)  # same.1.bin records this URL as its origin: complete
    assert again.status == "skipped" and again.path == real(tmp_path) / "same.1.bin"

    [kept] = await download([url], tmp_path, collision="skip")  # trusts any file of the right size
    assert kept.status == "skipped" and kept.path == real(tmp_path) / "same.bin"

    [refused] = await download([url], tmp_path, collision="fail")
    assert refused.status == "failed" and "exists and is not this URL's file" in (refused.error or "")
    assert (tmp_path / "same.bin").read_bytes() == foreign

    [overwritten] = await download([url], tmp_path, collision="overwrite")
    assert overwritten.status == "ok" and overwritten.path == real(tmp_path) / "same.bin"
    assert (tmp_path / "same.bin").read_bytes() == file_bytes(key, 0, 10_000)

    (tmp_path / "same.bin").write_bytes(b"short")  # still this URL's (its origin), but not complete
    [replaced] = await download([url], tmp_path)
    assert replaced.status == "ok" and replaced.path == real(tmp_path) / "same.bin"
    assert (tmp_path / "same.bin").read_bytes() == file_bytes(key, 0, 10_000)
    assert files_under(tmp_path) == ["same.1.bin", "same.bin"]


async def test_existing_file_matching_its_checksum_needs_no_request(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    url = edge.url_for("/file/known.bin", size=10_000, seed=key, key=key)
    (tmp_path / "known.bin").write_bytes(file_bytes(key, 0, 10_000))
    entry = DownloadEntry(url, out="known.bin", checksum=f"sha-256={file_sha256(key, 0, 10_000)}")

    [result] = await download([entry], tmp_path)

    assert result.status == "skipped" and result.sha256 == file_sha256(key, 0, 10_000)
    assert edge.requests_for(key) == []


async def test_same_name_twice_in_one_run_renames_the_second(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    a = edge.url_for("/file/dup.bin", size=10_000, seed=key + "a", key=key + "a")
    b = edge.url_for("/file/dup.bin", size=20_000, seed=key + "b", key=key + "b")

    results = await download([a, b], tmp_path, collision="rename")

    assert sorted(r.bytes for r in results) == [10_000, 20_000]
    assert files_under(tmp_path) == ["dup.1.bin", "dup.bin"]


async def test_shared_client_is_used_and_left_open(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/shared.bin", size=10_000, seed=key, key=key)
    async with httpx.AsyncClient(headers={"User-Agent": "shared-client/1"}) as client:
        [result] = await download([url], tmp_path, client=client)
        assert not client.is_closed
        assert (await client.get(edge.url_for("/__health"))).status_code == 200
    assert result.status == "ok"
    [request] = edge.requests_for(key)
    assert request["user_agent"] == "shared-client/1" and request["accept_encoding"] == "identity"


async def test_progress_and_result_callbacks(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    urls = [
        edge.url_for(f"/file/p{i}.bin", size=400_000, seed=key, key=f"{key}{i}", rate=2_000_000)
        for i in range(3)
    ]
    snapshots: list[DownloadProgress] = []
    finished: list[DownloadResult] = []

    async def on_result(result: DownloadResult) -> None:
        finished.append(result)

    results = await download(
        urls, tmp_path, on_progress=snapshots.append, on_result=on_result, progress_interval=0.05
    )

    assert all(r.status == "ok" for r in results) and len(finished) == 3
    assert any(s.active for s in snapshots)
    last = snapshots[-1]
    assert (
        last.finished and last.files_done == 3 and last.bytes_received == 1_200_000 and last.files_total == 3
    )


async def test_mirror_is_tried_when_the_first_url_fails(
    edge: EdgeServer, key: str, tmp_path: Path, fast_retry: RetryConfig
) -> None:
    dead = edge.url_for("/status/404", key=key)
    mirror = edge.url_for("/file/m.bin", size=1000, seed=key, key=key)

    [result] = await download([DownloadEntry(dead, mirrors=(mirror,))], tmp_path, retry=fast_retry)

    assert result.status == "ok" and result.url == mirror


async def test_limit_rate_caps_the_speed(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/capped.bin", size=1_000_000, seed=key, key=key)
    started = time.monotonic()

    [result] = await download([url], tmp_path, limit_rate="2MB")

    assert result.status == "ok"
    assert time.monotonic() - started >= 0.4


async def test_async_iterable_of_entries(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    async def entries():  # type: ignore[no-untyped-def]
        for i in range(3):
            yield edge.url_for(f"/file/a{i}.bin", size=1000 + i, seed=key, key=key)

    results = await download(entries(), tmp_path, jobs=2)

    assert [r.bytes for r in results] == [1000, 1001, 1002]


async def test_a_planted_symlink_part_is_not_followed(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (dest / "f.bin.part").symlink_to(victim)
    url = edge.url_for("/file/f.bin", size=1000, seed=key, key=key)

    [renamed] = await download([url], dest, resume=False)  # not this entry's part: left alone
    [refused] = await download([url], dest, resume=False, collision="overwrite")  # O_NOFOLLOW

    assert renamed.status == "ok" and renamed.path == real(dest) / "f.1.bin"
    assert refused.status == "failed" and "f.bin.part" in (refused.error or "")
    assert victim.read_text() == "precious"
    assert not (dest / "f.bin").exists()


async def test_rate_limit_spaces_requests_to_a_host(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    urls = [edge.url_for(f"/file/r{i}.bin", size=1000, seed=key, key=key) for i in range(5)]

    results = await download(urls, tmp_path, rate_limit="10/s")

    assert all(r.status == "ok" for r in results)
    starts = sorted(r["t"] for r in edge.requests_for(key))
    assert starts[-1] - starts[0] >= 0.3  # 5 requests at 10/s, whatever -j says


async def test_leaving_a_run_early_stops_its_downloads(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    from crawler.downloader import Downloader

    urls = [
        edge.url_for(f"/file/e{i}.bin", size=300_000, seed=key, key=key, rate=1_000_000) for i in range(12)
    ]
    async with Downloader(tmp_path, jobs=3) as downloader:
        async for _first in downloader.run(urls):
            break
    await asyncio.sleep(0.3)
    count = len(edge.requests_for(key))
    await asyncio.sleep(0.5)
    assert len(edge.requests_for(key)) == count < 12  # nothing new started after the run was left


async def test_same_size_file_failing_its_checksum_is_kept_unless_overwriting(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    disposition = quote('attachment; filename="named.bin"')
    url = edge.url_for("/file/x", size=10_000, seed=key, key=key, cd=disposition)
    (tmp_path / "named.bin").write_bytes(b"\0" * 10_000)  # same size, wrong bytes: someone else's
    checksums = {url: f"sha-256={file_sha256(key, 0, 10_000)}"}

    [beside] = await download([url], tmp_path, checksums=checksums)
    assert beside.status == "ok" and beside.path == real(tmp_path) / "named.1.bin"
    assert (tmp_path / "named.bin").read_bytes() == b"\0" * 10_000

    [replaced] = await download([url], tmp_path, checksums=checksums, collision="overwrite")
    assert replaced.status == "ok" and replaced.path == real(tmp_path) / "named.bin"
    assert (tmp_path / "named.bin").read_bytes() == file_bytes(key, 0, 10_000)


async def test_empty_files_download(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/empty.bin", size=0, seed=key, key=key)

    [result] = await download([url], tmp_path, segments=4)

    assert result.status == "ok" and result.bytes == 0
    assert result.sha256 == hashlib.sha256(b"").hexdigest()
    assert files_under(tmp_path) == ["empty.bin"]


async def test_rename_leaves_another_downloads_part_alone(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    (tmp_path / "p.bin.part").write_bytes(b"someone else's bytes")
    url = edge.url_for("/file/p.bin", size=1000, seed=key, key=key)

    [result] = await download([url], tmp_path, collision="rename")

    assert result.status == "ok" and result.path == real(tmp_path) / "p.1.bin"
    assert (tmp_path / "p.bin.part").read_bytes() == b"someone else's bytes"


async def test_http2_over_tls_through_the_shared_client_config(h2_site: Any, tmp_path: Path) -> None:
    from crawler import HttpConfig
    from crawler.demo.site import big_body

    h2_site.clear_log()
    url = h2_site.url_for("/big/3000000")

    [result] = await download([url], tmp_path, http=HttpConfig(verify=h2_site.ca_path))

    assert result.status == "ok", result.error
    assert result.sha256 == hashlib.sha256(big_body(3_000_000)).hexdigest()
    [request] = h2_site.log(prefix="/big/")
    assert request["http_version"] == "2"


async def test_segmented_partial_resumes_every_unfinished_segment(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    url = edge.url_for("/file/segres.bin", size=2_000_000, seed=key, key=key, rate=1_500_000)
    await interrupt_after(url, tmp_path, 400_000, segments=4, min_segment_size="256KiB")
    state = Sidecar.load(tmp_path / "segres.bin.part.json")
    assert state is not None and len(state.segments) == 4
    unfinished = [s for s in state.segments if not s.complete]
    edge.log(clear=True)

    [result] = await download([url], tmp_path, segments=4, min_segment_size="256KiB")

    assert result.status == "ok" and result.segments == 4 and result.resumed_from >= state.written
    resumed = edge.requests_for(key)
    assert sorted(r["range"] for r in resumed) == sorted(f"bytes={s.pos}-{s.end - 1}" for s in unfinished)
    assert all(r["if_range"] == f'"{key}-2000000-v0"' and r["status"] == 206 for r in resumed)
    assert result.sha256 == file_sha256(key, 0, 2_000_000)


async def test_no_continue_starts_over(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/again.bin", size=1_000_000, seed=key, key=key, rate=1_000_000)
    await interrupt_after(url, tmp_path, 200_000)

    [result] = await download([url], tmp_path, resume=False)

    assert result.status == "ok" and result.resumed_from == 0
    assert edge.requests_for(key)[-1]["range"] is None
    assert files_under(tmp_path) == ["again.bin"]
