"""`crawler download` as users run it: real subprocesses against nginx and the edge app, kill -9 and
resume, exit codes, aria2 input files, JSON lines, and a 1 GiB file with flat memory."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from crawler.fetch.sidecar import Sidecar

from .app import file_sha256
from .conftest import GiB, NginxSite, run_cli, spawn_cli
from .servers import EdgeServer


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def test_resume_after_kill_9_sends_range_and_verifies(
    nginx: NginxSite, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # /slow/ is nginx's limit_rate (3 MB/s): the 12 MB file takes seconds, so the kill lands mid-file.
    url = nginx.url("slow/kill.bin")
    digest = nginx.sha256["kill.bin"]
    proc = spawn_cli(
        url,
        "-d",
        str(tmp_path),
        "--checksum",
        f"sha-256={digest}",
        "-q",
        workdir=tmp_path_factory.mktemp("proc"),
    )
    sidecar = tmp_path / "kill.bin.part.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = Sidecar.load(sidecar)
        if state is not None and state.written >= 2_000_000:
            break
        time.sleep(0.02)
    else:
        proc.send_signal(signal.SIGKILL)
        raise AssertionError("the download never got far enough to interrupt")
    proc.send_signal(signal.SIGKILL)
    proc.finish()
    assert not (tmp_path / "kill.bin").exists()
    kept = Sidecar.load(sidecar)
    assert kept is not None and kept.written >= 2_000_000
    assert (tmp_path / "kill.bin.part").stat().st_size >= kept.written

    second = run_cli(url, "-d", str(tmp_path), "--checksum", f"sha-256={digest}", "--json")

    assert second.returncode == 0, second.stderr
    [line] = second.stdout.splitlines()
    record = json.loads(line)
    assert record["status"] == "ok" and record["sha256"] == digest and record["resumed_from"] >= kept.written
    resumed = [r for r in nginx.server.requests() if r["uri"] == "/slow/kill.bin"][-1]
    assert resumed["range"] == f"bytes={record['resumed_from']}-11999999" and resumed["status"] == "206"
    assert resumed["if_range"].startswith('"')  # nginx's strong ETag
    assert int(resumed["bytes"]) == 12_000_000 - record["resumed_from"]
    assert files_under(tmp_path) == ["kill.bin"]


def test_one_gibibyte_file_with_flat_memory(
    nginx: NginxSite, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proc = spawn_cli(
        nginx.url("sparse-1g.bin"), "-d", str(tmp_path), "--json", workdir=tmp_path_factory.mktemp("p")
    )
    code, max_rss, out, err = proc.finish(timeout=120)

    assert code == 0, err.decode()
    record = json.loads(out)
    assert record["bytes"] == GiB and record["status"] == "ok"
    assert (
        record["sha256"] == "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14"
    )  # 1 GiB of zeros
    assert (tmp_path / "sparse-1g.bin").stat().st_size == GiB
    assert 20e6 < max_rss < 150e6, f"peak RSS {max_rss / 1e6:.0f} MB"
    (tmp_path / "sparse-1g.bin").unlink()


def test_segmented_download_from_nginx(nginx: NginxSite, tmp_path: Path) -> None:
    run = run_cli(nginx.url("seg.bin"), "-d", str(tmp_path), "-x", "4", "--json")

    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["segments"] == 4 and record["sha256"] == nginx.sha256["seg.bin"]
    ranges = sorted(r["range"] for r in nginx.server.requests() if r["uri"] == "/seg.bin")[-4:]
    assert ranges == [
        "bytes=0-",
        "bytes=12000000-17999999",
        "bytes=18000000-23999999",
        "bytes=6000000-11999999",
    ]
    assert sha256_of(tmp_path / "seg.bin") == nginx.sha256["seg.bin"]


def test_aria2_input_file_with_out_dir_and_checksums(nginx: NginxSite, tmp_path: Path) -> None:
    names = [f"many/f{i:02d}.bin" for i in range(40)]
    lines = []
    for i, name in enumerate(names):
        lines.append(nginx.url(name))
        if i % 2:
            lines += [
                f"  out=renamed-{i}.bin",
                f"  dir=odd/{i % 3}",
                f"  checksum=sha-256={nginx.sha256[name]}",
            ]
    (tmp_path / "list.txt").write_text("# downloads\n" + "\n".join(lines) + "\n")
    dest = tmp_path / "out"

    run = run_cli("-i", str(tmp_path / "list.txt"), "-d", str(dest), "-j", "16", "--json")

    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(records) == 40 and all(r["status"] == "ok" for r in records)
    for i, name in enumerate(names):
        path = dest / (f"odd/{i % 3}/renamed-{i}.bin" if i % 2 else Path(name).name)
        assert sha256_of(path) == nginx.sha256[name]

    again = run_cli("-i", str(tmp_path / "list.txt"), "-d", str(dest), "--json")  # complete files are skipped
    assert again.returncode == 0 and {json.loads(x)["status"] for x in again.stdout.splitlines()} == {
        "skipped"
    }


def test_urls_from_stdin(nginx: NginxSite, tmp_path: Path) -> None:
    run = run_cli("-i", "-", "-d", str(tmp_path), "-q", stdin=f"{nginx.url('small.bin')}\n")

    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and sha256_of(tmp_path / "small.bin") == nginx.sha256["small.bin"]


def test_failures_exit_1_and_are_listed_at_the_end(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    good = edge.url_for("/file/ok.bin", size=1000, seed=key, key=key)
    missing = edge.url_for("/status/404", key=key)
    broken = edge.url_for("/status/500", key=key)
    mismatch = edge.url_for("/file/sum.bin", size=1000, seed=key, key=key)
    (tmp_path / "list.txt").write_text(
        f"{good}\n{missing}\n{broken}\n{mismatch}\n  checksum=md5={'0' * 32}\n"
    )

    run = run_cli("-i", str(tmp_path / "list.txt"), "-d", str(tmp_path / "out"), "-m", "1", "-q")

    assert run.returncode == 1
    assert "3 failed:" in run.stderr
    assert f"{missing}: HTTP 404" in run.stderr and f"{broken}: HTTP 500" in run.stderr
    assert f"{mismatch}: checksum mismatch" in run.stderr
    assert "Traceback" not in run.stderr
    assert files_under(tmp_path / "out") == ["ok.bin"]


def test_json_lines_for_scripts(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/j.bin", size=4321, seed=key, key=key)

    run = run_cli(url, "-d", str(tmp_path), "--json", "-U", "tester/2", "-H", "X-Token: abc")

    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["path"] == str((tmp_path / "j.bin").resolve())
    assert (record["bytes"], record["sha256"], record["status"]) == (4321, file_sha256(key, 0, 4321), "ok")
    assert edge.requests_for(key)[0]["user_agent"] == "tester/2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give at least one URL or -i FILE"),
        (["ftp://example.com/x"], "not an absolute http(s) URL"),
        (["http://example.com/x", "--max-size", "lots"], "invalid size"),
        (["http://example.com/x", "--rate-limit", "fast"], "invalid rate"),
        (["http://example.com/x", "--checksum", "sha-256=xyz"], "64 hex digits"),
        (["http://example.com/x", "-j", "0"], "must be at least 1"),
        (["http://example.com/x", "-x", "65"], "at most 64"),
        (["http://example.com/x", "http://example.com/y", "-o", "name"], "single URL"),
        (["http://example.com/x", "--overwrite", "--rename"], "not allowed with"),
        (["-i", "/nonexistent/list.txt"], "No such file"),
        (["http://example.com/x", "-H", "no colon"], "Name: value"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args: list[str], message: str, tmp_path: Path) -> None:
    run = run_cli(*args, cwd=tmp_path)

    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert files_under(tmp_path) == []


def test_bad_input_file_line_is_a_usage_error_before_anything_downloads(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    good = edge.url_for("/file/early.bin", size=1000, seed=key, key=key)
    (tmp_path / "list.txt").write_text(f"{good}\n  out=x.bin\n  speed=fast\n")

    run = run_cli("-i", str(tmp_path / "list.txt"), "-d", str(tmp_path / "out"))

    assert run.returncode == 2
    assert "list.txt:3: unknown option 'speed'" in run.stderr
    assert edge.requests_for(key) == [] and not (tmp_path / "out").exists()


def test_sigterm_keeps_the_part_for_resuming(
    nginx: NginxSite, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proc = spawn_cli(nginx.url("slow/kill.bin"), "-d", str(tmp_path), workdir=tmp_path_factory.mktemp("p"))
    deadline = time.monotonic() + 20
    while Sidecar.load(tmp_path / "kill.bin.part.json") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    code, _, _, err = proc.finish(timeout=20)

    assert code == 130, err.decode()
    assert b"interrupted" in err and b"Traceback" not in err
    state = Sidecar.load(tmp_path / "kill.bin.part.json")
    assert state is not None and state.written > 0
    assert os.path.getsize(tmp_path / "kill.bin.part") >= state.written


def test_repeated_kill_9_of_a_segmented_download_still_verifies(
    nginx: NginxSite, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import random

    url = nginx.url("slow/kill.bin")
    args = (
        url,
        "-d",
        str(tmp_path),
        "-x",
        "3",
        "-k",
        "1M",
        "--limit-rate",
        "3M",
        "--checksum",
        f"sha-256={nginx.sha256['kill.bin']}",
    )
    rng = random.Random(3)
    sidecar = tmp_path / "kill.bin.part.json"
    before = 0
    for _ in range(2):
        proc = spawn_cli(*args, "-q", workdir=tmp_path_factory.mktemp("p"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # this run has made progress of its own ...
            state = Sidecar.load(sidecar)
            if state is not None and state.written >= before + 300_000:
                break
            time.sleep(0.01)
        # ... then a kill at some moment, with writes and sidecar updates in flight
        time.sleep(rng.random() * 0.15)
        proc.send_signal(signal.SIGKILL)
        proc.finish()
        state = Sidecar.load(sidecar)
        assert state is not None, "the file completed before the kill: the test needs a slower transfer"
        assert not (tmp_path / "kill.bin").exists()
        before = state.written

    final = run_cli(*args, "--json")

    assert final.returncode == 0, final.stderr
    record = json.loads(final.stdout)
    assert record["status"] == "ok" and record["resumed_from"] > 0
    assert sha256_of(tmp_path / "kill.bin") == nginx.sha256["kill.bin"]
    assert files_under(tmp_path) == ["kill.bin"]
