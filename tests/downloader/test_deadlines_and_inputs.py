"""Issue 11, points 8, 12 and 13 for downloads, through the console script: `-i` lines that can never be
fetched are usage errors naming file:line before anything starts; `--max-time` and curl's
`--speed-limit`/`--speed-time` end trickling transfers; a segmented download killed before its last
segment wrote anything resumes without refetching a byte it had (counted at the server)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from crawler.fetch.sidecar import PartState, Sidecar

from .app import file_bytes, file_sha256
from .conftest import run_cli, spawn_cli
from .servers import EdgeServer

MiB = 1 << 20


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("http://h.example/a\x00b", "URL contains the control character U+0000 at column 19"),
        ("http://h.example/a\x1b[2Jb", "URL contains the control character U+001B"),
        ("http://h.example/a\rb", "URL contains the control character U+000D"),
        ("http://h.example/" + "a" * 10_000, "URL is 10,017 characters long, over the limit of 8,192"),
        ("http://h.example:99999/x", "Port out of range 0-65535"),
        ("http://h.example:0/x", "port 0 is not a port a server listens on"),
        ("http://:8080/x", "names no host"),
        ("http://h.example/" + "a" * 70_000, "line is longer than 65,536 characters"),
    ],
)
def test_input_lines_that_can_never_work_are_usage_errors_at_parse_time(
    edge: EdgeServer, key: str, tmp_path: Path, bad: str, message: str
) -> None:
    good = edge.url_for("/file/first.bin", size=100, seed=key, key=key)
    (tmp_path / "list.txt").write_bytes(f"{good}\n{bad}\n{good}&again=1\n".encode())

    run = run_cli("-i", str(tmp_path / "list.txt"), "-d", str(tmp_path / "out"))

    assert run.returncode == 2
    assert "list.txt:2: " in run.stderr and message in run.stderr and "Traceback" not in run.stderr
    assert edge.requests_for(key) == [] and not (tmp_path / "out").exists()


def test_max_time_ends_a_trickling_download_and_keeps_its_part(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    url = edge.url_for("/file/trickle.bin", size=MiB, seed=key, key=key, rate=40_000)

    started = time.monotonic()
    run = run_cli(url, "-d", str(tmp_path), "--max-time", "1.5")
    elapsed = time.monotonic() - started

    assert run.returncode == 1
    assert f"{url}: gave up after --max-time 1.5s (the part is kept for a later run)" in run.stderr
    assert "0 downloaded, 0 skipped, 1 failed" in run.stderr
    assert elapsed < 8
    state = Sidecar.load(tmp_path / "trickle.bin.part.json")
    assert state is not None and 0 < state.written < MiB
    assert files_under(tmp_path) == ["trickle.bin.part", "trickle.bin.part.json"]
    [request] = edge.requests_for(key)
    assert 0 < request["sent"] < MiB


def test_speed_limit_fails_a_slow_url_and_the_mirror_finishes_the_file(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    slow = edge.url_for("/file/s.bin", size=MiB, seed=key, key=key, rate=4_000)
    mirror = edge.url_for("/file/s.bin", size=MiB, seed=key, key=key + "m")
    (tmp_path / "list.txt").write_text(f"{slow}\t{mirror}\n")

    started = time.monotonic()
    run = run_cli("-i", str(tmp_path / "list.txt"), "-d", str(tmp_path / "out"), "--json",
                  "--speed-limit", "20K", "--speed-time", "1")  # fmt: skip
    elapsed = time.monotonic() - started

    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert (record["status"], record["url"], record["sha256"]) == ("ok", mirror, file_sha256(key, 0, MiB))
    assert files_under(tmp_path / "out") == ["s.bin"]
    assert len(edge.requests_for(key)) == 1 and len(edge.requests_for(key + "m")) == 1
    assert elapsed < 10


def test_speed_limit_alone_fails_the_entry(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/s.bin", size=MiB, seed=key, key=key, rate=4_000)

    run = run_cli(url, "-d", str(tmp_path), "-Y", "20K", "-y", "1")

    assert run.returncode == 1
    assert f"{url}: slower than --speed-limit 20000 B/s for --speed-time 1s" in run.stderr
    assert len(edge.requests_for(key)) == 1


def test_segmented_resume_refetches_nothing_it_had(
    edge: EdgeServer, key: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    size = 4 * MiB
    url = edge.url_for("/file/seg.bin", size=size, seed=key, key=key)
    # Segments of 1 MiB: the third trickles, the last never answers; kill -9 while the third is partial.
    edge.shape(key, slow_from=2 * MiB, slow_rate=400_000, hold_from=3 * MiB)
    args = (url, "-d", str(tmp_path), "-x", "4", "-k", "1M")
    proc = spawn_cli(*args, "-q", workdir=tmp_path_factory.mktemp("p"))
    deadline = time.monotonic() + 20
    state: PartState | None = None
    while time.monotonic() < deadline:
        state = Sidecar.load(tmp_path / "seg.bin.part.json")
        if state is not None and state.segments[0].complete and state.segments[1].complete:
            if state.segments[2].done >= 200_000:
                break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.finish()
    state = Sidecar.load(tmp_path / "seg.bin.part.json")
    assert state is not None and [s.done for s in state.segments][:2] == [MiB, MiB]
    assert 0 < state.segments[2].done < MiB and state.segments[3].done == 0  # the last wrote nothing
    edge.shape(key)
    edge.log(clear=True)

    run = run_cli(*args, "--json")

    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert (record["status"], record["resumed_from"], record["segments"]) == ("ok", state.written, 4)
    assert (tmp_path / "seg.bin").read_bytes() == file_bytes(key, 0, size)
    served = edge.requests_for(key)
    assert sorted(r["range"] for r in served) == [
        f"bytes={2 * MiB + state.segments[2].done}-{3 * MiB - 1}",
        f"bytes={3 * MiB}-{4 * MiB - 1}",
    ]
    assert sum(r["sent"] for r in served) == size - state.written  # every finished byte kept
