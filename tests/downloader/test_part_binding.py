"""Part files are bound to their entry (issue 11, point 2): the sidecar records URL, validators, length and
the expected checksum; a part that does not match its entry is never resumed, and a known checksum is
verified before every rename. The poisoning cases run through the console script against the edge app,
with kill -9 between runs, and are checked at the server (Range requests) and on disk."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from crawler.fetch.sidecar import PartState, Segment, Sidecar

from .app import file_bytes, file_sha256
from .conftest import run_cli, spawn_cli
from .servers import EdgeServer

SIZE = 1_500_000


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def interrupted_run(url: str, dest: Path, workdir: Path, *args: str, min_bytes: int = 200_000) -> PartState:
    """`crawler download URL` killed with SIGKILL once its sidecar records `min_bytes`."""
    proc = spawn_cli(url, "-d", str(dest), "-q", *args, workdir=workdir)
    sidecar = dest / "data.bin.part.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = Sidecar.load(sidecar)
        if state is not None and state.written >= min_bytes:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.finish()
    state = Sidecar.load(sidecar)
    assert state is not None and state.written >= min_bytes, "the download never got far enough"
    assert not (dest / "data.bin").exists()
    return state


def test_an_entry_named_like_another_entrys_part_never_touches_it(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    victim = edge.url_for("/file/data.bin", size=SIZE, seed=key, key=key, rate=3_000_000)
    poison = edge.url_for("/file/p", size=SIZE + 1, seed=key + "p", key=key + "p")
    (tmp_path / "list.txt").write_text(
        f"{victim}\n  checksum=sha-256={file_sha256(key, 0, SIZE)}\n{poison}\n  out=data.bin.part\n"
    )
    out = tmp_path / "out"

    run = run_cli("-i", str(tmp_path / "list.txt"), "-d", str(out), "-j", "2", "--json")

    assert run.returncode == 0, run.stderr
    records = {r["url"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert records[victim]["status"] == records[poison]["status"] == "ok"
    assert records[victim]["path"] != records[poison]["path"]
    assert Path(records[victim]["path"]).read_bytes() == file_bytes(key, 0, SIZE)
    assert Path(records[poison]["path"]).read_bytes() == file_bytes(key + "p", 0, SIZE + 1)
    assert len(files_under(out)) == 2
    assert [r["range"] for r in edge.requests_for(key)] == [None]  # fetched once, never resumed


def test_a_killed_runs_part_survives_entries_named_like_it_and_then_resumes(
    edge: EdgeServer, key: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    victim = edge.url_for("/file/data.bin", size=SIZE, seed=key, key=key, rate=600_000)
    checksum = f"sha-256={file_sha256(key, 0, SIZE)}"
    state = interrupted_run(victim, tmp_path, tmp_path_factory.mktemp("p"), "--checksum", checksum)
    part_before = (tmp_path / "data.bin.part").read_bytes()
    sidecar_before = (tmp_path / "data.bin.part.json").read_bytes()

    # A later run whose entries want the part's name, and the final name, for other URLs.
    poison = edge.url_for("/file/p", size=1000, seed=key + "p", key=key + "p")
    rival = edge.url_for("/file/other/data.bin", size=2000, seed=key + "r", key=key + "r")
    (tmp_path / "list.txt").write_text(f"{poison}\n  out=data.bin.part\n{rival}\n")
    second = run_cli("-i", str(tmp_path / "list.txt"), "-d", str(tmp_path), "--json", "-j", "1")

    assert second.returncode == 0, second.stderr
    paths = {r["url"]: Path(r["path"]).name for r in map(json.loads, second.stdout.splitlines())}
    assert paths == {poison: "data.bin.1.part", rival: "data.1.bin"}
    assert (tmp_path / "data.bin.part").read_bytes() == part_before  # untouched
    assert (tmp_path / "data.bin.part.json").read_bytes() == sidecar_before

    edge.log(clear=True)
    third = run_cli(victim, "-d", str(tmp_path), "--json", "--checksum", checksum)

    assert third.returncode == 0, third.stderr
    record = json.loads(third.stdout)
    assert (record["status"], Path(record["path"]).name) == ("ok", "data.bin")
    assert record["resumed_from"] == state.written
    assert [r["range"] for r in edge.requests_for(key)] == [f"bytes={state.written}-{SIZE - 1}"]
    assert (tmp_path / "data.bin").read_bytes() == file_bytes(key, 0, SIZE)
    assert files_under(tmp_path) == ["data.1.bin", "data.bin", "data.bin.1.part", "list.txt"]


def test_a_part_of_the_same_url_expecting_another_checksum_is_restarted_not_resumed(
    edge: EdgeServer, key: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = edge.url_for("/file/data.bin", size=SIZE, seed=key, key=key, rate=600_000)
    interrupted_run(url, tmp_path, tmp_path_factory.mktemp("p"), "--checksum", "sha-256=" + "ab" * 32)
    edge.log(clear=True)

    run = run_cli(url, "-d", str(tmp_path), "--json", "--checksum", f"sha-256={file_sha256(key, 0, SIZE)}")

    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert (record["status"], record["resumed_from"], Path(record["path"]).name) == ("ok", 0, "data.bin")
    assert [r["range"] for r in edge.requests_for(key)] == [None]
    assert files_under(tmp_path) == ["data.bin"]


@pytest.mark.parametrize(
    ("flags", "name"), [([], "data.1.bin"), (["--on-collision", "overwrite"], "data.bin")]
)
def test_a_part_whose_sidecar_names_another_url_is_never_resumed(
    edge: EdgeServer, key: str, tmp_path: Path, flags: list[str], name: str
) -> None:
    url = edge.url_for("/file/data.bin", size=SIZE, seed=key, key=key)
    other = edge.url_for("/file/elsewhere/data.bin", size=SIZE, seed=key, key=key)
    (tmp_path / "data.bin.part").write_bytes(b"\xee" * 500_000)
    etag = f'"{key}-{SIZE}-v0"'  # even with this file's own validator and length
    Sidecar(tmp_path / "data.bin.part.json").save(
        PartState(other, etag, None, SIZE, [Segment(0, SIZE, 500_000)])
    )

    run = run_cli(url, "-d", str(tmp_path), "--json", *flags)

    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert (record["status"], record["resumed_from"], Path(record["path"]).name) == ("ok", 0, name)
    assert [r["range"] for r in edge.requests_for(key)] == [None]
    assert (tmp_path / name).read_bytes() == file_bytes(key, 0, SIZE)
    if name != "data.bin":
        assert (tmp_path / "data.bin.part").read_bytes() == b"\xee" * 500_000  # someone else's: kept


def test_a_resumed_part_is_verified_before_the_rename(
    edge: EdgeServer, key: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = edge.url_for("/file/data.bin", size=SIZE, seed=key, key=key, rate=600_000)
    checksum = f"sha-256={file_sha256(key, 0, SIZE)}"
    state = interrupted_run(url, tmp_path, tmp_path_factory.mktemp("p"), "--checksum", checksum)
    with open(tmp_path / "data.bin.part", "r+b") as f:  # the prefix rots on disk; its size does not change
        f.seek(1000)
        f.write(b"\x00" * 100)
    edge.log(clear=True)

    run = run_cli(url, "-d", str(tmp_path), "--checksum", checksum)

    assert run.returncode == 1
    assert f"{url}: checksum mismatch: expected {checksum}" in run.stderr
    assert [r["range"] for r in edge.requests_for(key)] == [f"bytes={state.written}-{SIZE - 1}"]
    assert files_under(tmp_path) == []  # the wrong bytes never got the name, and the part is gone
