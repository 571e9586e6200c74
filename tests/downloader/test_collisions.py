"""One name per file for the whole run (issue 11, point 1): collisions between entries of one run and with
files already on disk, through the real console script; the allocator's rules; and the crawl's `save:`,
which maps every URL to its own path through the same allocator and part-file writer."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pytest

from crawler.fetch.names import NameAllocator, origin_of, url_path
from tests.cli.conftest import crawler_command

from .app import file_bytes, file_sha256
from .conftest import run_cli
from .servers import EdgeServer


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_two_entries_ending_in_the_same_name_get_name_and_name_1(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    x = edge.url_for("/file/x/report.pdf", size=3000, seed=key + "x", key=key)
    y = edge.url_for("/file/y/report.pdf", size=3000, seed=key + "y", key=key)  # same size, other bytes
    cd = quote('attachment; filename="same.pdf"')
    a = edge.url_for("/file/a", size=100, seed=key + "a", key=key, cd=cd)
    b = edge.url_for("/file/b", size=200, seed=key + "b", key=key, cd=cd)
    (tmp_path / "list.txt").write_text(f"{x}\n{y}\n{a}\n{b}\n")
    out = tmp_path / "out"

    run = run_cli("-i", str(tmp_path / "list.txt"), "-d", str(out), "--json", "-j", "4")

    assert run.returncode == 0, run.stderr
    records = {r["url"]: r for r in json_lines(run.stdout)}
    assert {r["status"] for r in records.values()} == {"ok"}
    assert {records[x]["path"], records[y]["path"]} == {str(out / "report.pdf"), str(out / "report.1.pdf")}
    assert {records[a]["path"], records[b]["path"]} == {str(out / "same.pdf"), str(out / "same.1.pdf")}
    for url, seed, size in (
        (x, key + "x", 3000),
        (y, key + "y", 3000),
        (a, key + "a", 100),
        (b, key + "b", 200),
    ):
        path = Path(str(records[url]["path"]))
        assert path.read_bytes() == file_bytes(seed, 0, size)  # each file holds its own URL's bytes
        assert records[url]["sha256"] == file_sha256(seed, 0, size) and origin_of(path) == url
    assert files_under(out) == ["report.1.pdf", "report.pdf", "same.1.pdf", "same.pdf"]
    assert sorted(r["path"].split("?")[0] for r in edge.requests_for(key)) == sorted(
        ["/file/x/report.pdf", "/file/y/report.pdf", "/file/a", "/file/b"]
    )  # one request each: nothing was skipped as "already there" or fetched twice


def test_on_collision_fail_fails_the_later_entry_and_keeps_the_first(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    x = edge.url_for("/file/x/report.pdf", size=3000, seed=key + "x", key=key)
    y = edge.url_for("/file/y/report.pdf", size=3000, seed=key + "y", key=key)
    out = tmp_path / "out"

    run = run_cli(x, y, "-d", str(out), "-j", "1", "--on-collision", "fail")

    assert run.returncode == 1
    assert "1 downloaded, 0 skipped, 1 failed" in run.stderr
    assert f"{y}: report.pdf is taken by another entry of this run (--on-collision fail)" in run.stderr
    assert files_under(out) == ["report.pdf"] and (out / "report.pdf").read_bytes() == file_bytes(
        key + "x", 0, 3000
    )
    assert [r["path"] for r in edge.requests_for(key)] == ["/file/x/report.pdf", "/file/y/report.pdf"]


@pytest.mark.parametrize(
    ("flags", "status", "name"),
    [
        ([], "ok", "old.1.bin"),
        (["--rename"], "ok", "old.1.bin"),
        (["--on-collision", "overwrite"], "ok", "old.bin"),
        (["--overwrite"], "ok", "old.bin"),
        (["--on-collision", "skip"], "skipped", "old.bin"),
        (["--skip-existing"], "skipped", "old.bin"),
    ],
)
def test_a_file_on_disk_that_is_not_this_urls_is_never_replaced_silently(
    edge: EdgeServer, key: str, tmp_path: Path, flags: list[str], status: str, name: str
) -> None:
    url = edge.url_for("/file/old.bin", size=500, seed=key, key=key)
    (tmp_path / "old.bin").write_bytes(b"mine" * 125)  # same size, not written by this URL

    run = run_cli(url, "-d", str(tmp_path), "--json", *flags)

    assert run.returncode == 0, run.stderr
    [record] = json_lines(run.stdout)
    assert (record["status"], record["path"]) == (status, str(tmp_path / name))
    expected = b"mine" * 125 if status == "skipped" else file_bytes(key, 0, 500)
    assert (tmp_path / name).read_bytes() == expected
    if name != "old.bin":
        assert (tmp_path / "old.bin").read_bytes() == b"mine" * 125
    assert len(edge.requests_for(key)) == 1


def test_on_collision_fail_refuses_a_foreign_file_on_disk(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/file/old.bin", size=500, seed=key, key=key)
    (tmp_path / "old.bin").write_bytes(b"theirs")

    run = run_cli(url, "-d", str(tmp_path), "--on-collision", "fail")

    assert run.returncode == 1
    assert "exists and is not this URL's file (--on-collision fail)" in run.stderr
    assert files_under(tmp_path) == ["old.bin"] and (tmp_path / "old.bin").read_bytes() == b"theirs"


def test_a_rerun_skips_the_files_it_wrote_and_renames_nothing(
    edge: EdgeServer, key: str, tmp_path: Path
) -> None:
    urls = [edge.url_for(f"/file/{d}/same.bin", size=700, seed=key + d, key=key) for d in "abc"]

    first = run_cli(*urls, "-d", str(tmp_path), "--json", "-j", "1")
    second = run_cli(*urls, "-d", str(tmp_path), "--json", "-j", "1")

    assert first.returncode == second.returncode == 0, second.stderr
    assert [r["status"] for r in json_lines(second.stdout)] == ["skipped"] * 3
    assert {r["path"] for r in json_lines(second.stdout)} == {r["path"] for r in json_lines(first.stdout)}
    assert files_under(tmp_path) == ["same.1.bin", "same.2.bin", "same.bin"]


# --- the allocator ------------------------------------------------------------------------------------------


def test_names_are_held_with_their_part_and_sidecar_in_either_order(tmp_path: Path) -> None:
    names = NameAllocator(tmp_path)
    a = names.reserve(PurePosixPath("data.bin"), "A")
    assert a is not None and names.reserve(PurePosixPath("data.bin"), "A") == a  # the owner's own again
    assert names.reserve(PurePosixPath("data.bin.part"), "B") is None  # A's partial data
    assert names.reserve(PurePosixPath("data.bin.part.json"), "B") is None  # A's sidecar
    assert names.reserve(PurePosixPath("data.bin.1.part"), "B") is not None
    assert names.reserve(PurePosixPath("log.part"), "C") is not None
    assert names.reserve(PurePosixPath("log"), "D") is None  # its part would be C's file


def test_names_fold_case_where_the_filesystem_does(tmp_path: Path) -> None:
    assert NameAllocator(tmp_path).case_insensitive is False  # ext4/tmpfs here: probed, not assumed
    folding = NameAllocator(tmp_path, case_insensitive=True)
    assert folding.reserve(PurePosixPath("Report.PDF"), "A") is not None
    assert folding.reserve(PurePosixPath("report.pdf"), "B") is None
    assert folding.reserve(PurePosixPath("REPORT.PDF.PART"), "B") is None
    sensitive = NameAllocator(tmp_path, case_insensitive=False)
    assert sensitive.reserve(PurePosixPath("Report.PDF"), "A") is not None
    assert sensitive.reserve(PurePosixPath("report.pdf"), "B") is not None


def test_a_directory_needed_where_a_file_is_gets_the_next_name(tmp_path: Path) -> None:
    names = NameAllocator(tmp_path)
    (tmp_path / "on-disk").write_bytes(b"a file")
    file_first = names.reserve(PurePosixPath("dir"), "A")
    child = names.reserve(PurePosixPath("dir/child"), "B")
    sibling = names.reserve(PurePosixPath("dir/other"), "C")
    below_disk = names.reserve(PurePosixPath("on-disk/x"), "D")
    dir_first = names.reserve(PurePosixPath("tail/index.html"), "E")
    tail = names.reserve(PurePosixPath("tail"), "F")
    assert file_first is not None and child is not None and sibling is not None and below_disk is not None
    assert (child.relative, sibling.relative) == (PurePosixPath("dir.1/child"), PurePosixPath("dir.1/other"))
    assert below_disk.relative == PurePosixPath("on-disk.1/x")
    assert dir_first is not None and tail is None  # a directory is there: the caller tries tail.1
    assert names.reserve(PurePosixPath("tail.1"), "F") is not None


@pytest.mark.parametrize(
    "group",
    [
        ["/a%00b", "/a:b", "/a%3Ab", "/a_b", "/a%5Fb"],
        ["/coll?x", "/coll_x", "/coll?x=", "/coll_x~0123456789"],
        ["/tail", "/tail/", "/tail/index.html", "/tail/index.html/"],
        ["/con", "/_con", "/x%2Fy", "/x/y", "/x%5Cy", "/%2E%2E", "/%2e%2e/x"],
    ],
)
def test_url_paths_are_distinct_where_sanitising_would_merge_them(group: list[str]) -> None:
    paths = [url_path("http://h" + p) for p in group]
    assert len(set(paths)) == len(paths), paths
    assert all(".." not in p.parts and p.parts[0] == "h" for p in paths)


def test_faithful_url_paths_read_as_the_url() -> None:
    assert url_path("http://Example.com:8080/docs/a%20b.pdf") == PurePosixPath(
        "example.com_8080/docs/a b.pdf"
    )
    assert url_path("http://h/caf%C3%A9/") == PurePosixPath("h/café/index.html")


# --- the crawl's save: --------------------------------------------------------------------------------------


def test_crawl_save_maps_every_url_to_its_own_file(edge: EdgeServer, tmp_path: Path) -> None:
    import subprocess

    targets = ["/echo/a%00b", "/echo/a:b", "/echo/a%3Ab", "/echo/coll?x", "/echo/coll_x", "/echo/dir",
               "/echo/dir/child", "/echo/tail", "/echo/tail/", "/echo/CaSe", "/echo/case"]  # fmt: skip
    urls = [edge.url + t for t in targets]
    (tmp_path / "other-owner").mkdir()
    job = {
        "name": "save-names",
        "start_urls": urls,
        "http": {"http2": False},
        "scope": {"robots_txt": False, "max_depth": 0},
        "rate_limit": {"per_host": "unlimited"},
        "save": {"match": ["/echo/"], "dir": "files"},
        "output": {"items": "items.jsonl"},
    }
    (tmp_path / "job.yaml").write_text(json.dumps(job))

    done = subprocess.run([*crawler_command(), "run", "job.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)  # fmt: skip

    assert done.returncode == 0, done.stderr
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    files = {item["url"]: Path(item["file"]) for item in items}
    assert sorted(files) == sorted(urls) and len(set(files.values())) == len(urls)
    for url, path in files.items():
        assert path.read_bytes() == url.removeprefix(edge.url).encode()  # its own body, nobody else's
        assert path.is_relative_to((tmp_path / "files").resolve()) and origin_of(path) == url
    saved = sorted(p for p in (tmp_path / "files").rglob("*") if p.is_file())
    assert len(saved) == len(urls) and not list((tmp_path / "files").rglob("*.part"))
    host = f"127.0.0.1_{edge.port}"
    assert files[edge.url + "/echo/coll_x"] == (tmp_path / "files" / host / "echo" / "coll_x").resolve()
    assert f"pages {len(urls)}  items {len(urls)}" in done.stderr and "errors 0" in done.stderr


def test_crawl_save_replaces_its_own_earlier_copy_but_not_a_stranger(
    edge: EdgeServer, tmp_path: Path
) -> None:
    import subprocess

    url = edge.url + "/echo/keep.bin"
    host = f"127.0.0.1_{edge.port}"
    job = {"name": "save-again", "start_urls": [url], "http": {"http2": False},
           "scope": {"robots_txt": False}, "save": {"match": ["/echo/"], "dir": "files"}}  # fmt: skip
    (tmp_path / "job.yaml").write_text(json.dumps(job))
    stranger = tmp_path / "files" / host / "echo" / "keep.bin"
    stranger.parent.mkdir(parents=True)
    stranger.write_bytes(b"not from the crawl")

    for _ in range(2):
        done = subprocess.run([*crawler_command(), "run", "job.yaml"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr

    assert stranger.read_bytes() == b"not from the crawl"
    ours = stranger.with_name("keep.1.bin")
    assert ours.read_bytes() == b"/echo/keep.bin" and origin_of(ours) == url
    assert sorted(p.name for p in stranger.parent.iterdir()) == [
        "keep.1.bin",
        "keep.bin",
    ]  # the rerun replaced ours
