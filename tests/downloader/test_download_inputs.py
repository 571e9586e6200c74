"""Input files (plain lists and aria2's format), checksums, and the resume sidecar record."""

from __future__ import annotations

import itertools

import pytest

from crawler.downloader import Checksum, DownloadEntry, InputError, parse_input
from crawler.fetch.disk import plan_segments
from crawler.fetch.sidecar import PartState, Segment, Sidecar

SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_plain_url_list_skips_blank_lines_and_comments() -> None:
    lines = ["https://a.example/x.iso\n", "\n", "# a comment\n", "http://b.example/y\r\n"]
    assert [e.url for e in parse_input(lines)] == ["https://a.example/x.iso", "http://b.example/y"]


def test_aria2_input_file_options_apply_to_the_url_above() -> None:
    text = f"""https://a.example/x.iso\thttps://mirror.example/x.iso
  out=debian.iso
  dir=isos/amd64
  checksum=sha-256={SHA256_ABC.upper()}
  header=Authorization: Bearer T
  header=X-Other: 1
https://a.example/y
\tchecksum=md5=900150983cd24fb0d6963f7d28e17f72
 split=4
https://a.example/z
  checksum=sha-1=a9993e364706816aba3e25717850c26c9cd0d89d
"""
    x, y, z = parse_input(text.splitlines(keepends=True), "list.txt")
    assert x.url == "https://a.example/x.iso" and x.mirrors == ("https://mirror.example/x.iso",)
    assert (x.out, x.dir) == ("debian.iso", "isos/amd64")
    assert x.checksum == Checksum("sha256", SHA256_ABC)
    assert x.headers == (("Authorization", "Bearer T"), ("X-Other", "1"))
    assert x.line == 1
    assert y.checksum == Checksum("md5", "900150983cd24fb0d6963f7d28e17f72") and y.segments == 4
    assert z.checksum is not None and z.checksum.algo == "sha1" and z.out is None


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("  out=x\nhttps://a.example/\n", 1, "option line before any URL"),
        ("https://a.example/\n  colour=blue\n", 2, "unknown option 'colour'"),
        ("https://a.example/\n  out\n", 2, "key=value"),
        ("https://a.example/\n  checksum=sha-256=abc\n", 2, "64 hex digits"),
        ("https://a.example/\n  checksum=crc32=abcd\n", 2, "unknown checksum algorithm"),
        ("https://a.example/\nftp://b.example/f\n", 2, "not an absolute http(s) URL"),
        ("https://a.example/\n  header=no colon\n", 2, "Name: value"),
        ("https://a.example/\n  split=100\n", 2, "split must be 1..64"),
    ],
)
def test_bad_input_lines_are_errors_naming_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        list(parse_input(text.splitlines(keepends=True), "urls.txt"))
    assert info.value.line == line
    assert str(info.value).startswith(f"urls.txt:{line}: ")
    assert fragment in str(info.value)


def test_input_is_parsed_lazily() -> None:
    endless = (f"https://a.example/{i}\n" for i in itertools.count())
    first_three = list(itertools.islice(parse_input(endless), 3))
    assert [e.url for e in first_three] == [f"https://a.example/{i}" for i in range(3)]


@pytest.mark.parametrize("text", [f"sha-256={SHA256_ABC}", f"sha256={SHA256_ABC}", f"SHA256:{SHA256_ABC}"])
def test_checksum_spellings(text: str) -> None:
    assert Checksum.parse(text) == Checksum("sha256", SHA256_ABC)
    assert str(Checksum.parse(text)) == f"sha-256={SHA256_ABC}"


def test_entry_validates_url_and_accepts_checksum_text() -> None:
    e = DownloadEntry("https://a.example/f", checksum=f"sha-256={SHA256_ABC}", headers={"K": "v"})
    assert e.checksum == Checksum("sha256", SHA256_ABC) and e.headers == (("K", "v"),)
    with pytest.raises(InputError):
        DownloadEntry("/relative/path")


def test_sidecar_round_trip_and_in_place_rewrites(tmp_path) -> None:
    state = PartState("https://a.example/f", '"e1"', None, 100, plan_segments(100, 3, 10))
    sidecar = Sidecar(tmp_path / "f.part.json")
    state.segments[0].done = 34
    sidecar.save(state)
    state.etag = None  # a shorter record after a longer one: padded, still parses
    sidecar.save(state)
    sidecar.close()
    loaded = Sidecar.load(tmp_path / "f.part.json")
    assert loaded is not None
    assert [(s.start, s.end, s.done) for s in loaded.segments] == [(0, 34, 34), (34, 68, 0), (68, 100, 0)]
    assert loaded.contiguous_end() == 34 and loaded.validator is None


@pytest.mark.parametrize(
    "data",
    [
        b'{"v":1,"url":"u","etag":"\\"e\\"","length":100,"segments":[[0,50,10],[5',  # torn
        b'{"v":1,"url":"u","etag":"\\"e\\"","length":100,"segments":[[0,50,60],[50,100,0]]}',  # done > size
        b'{"v":1,"url":"u","etag":"\\"e\\"","length":100,"segments":[[0,50,0],[60,100,0]]}',  # a gap
        b'{"v":1,"url":"u","etag":"\\"e\\"","length":90,"segments":[[0,50,0],[50,100,0]]}',  # wrong length
        b'{"v":2,"url":"u","segments":[]}',
        b"not json",
    ],
)
def test_untrustworthy_sidecars_are_ignored(data: bytes) -> None:
    assert PartState.from_json(data) is None


def test_weak_etags_are_not_used_for_if_range() -> None:
    assert (
        PartState("u", 'W/"x"', "Tue, 14 Nov 2023 22:13:20 GMT").validator == "Tue, 14 Nov 2023 22:13:20 GMT"
    )
    assert PartState("u", '"x"', "Tue, 14 Nov 2023 22:13:20 GMT").validator == '"x"'


def test_plan_segments_tiles_the_file_and_respects_the_minimum() -> None:
    segs = plan_segments(1000, 4, 100)
    assert [(s.start, s.end) for s in segs] == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert len(plan_segments(1000, 8, 400)) == 2
    assert [(s.start, s.end) for s in plan_segments(5, 4, 1)] == [(0, 2), (2, 4), (4, 5)]
    assert plan_segments(0, 4, 1) == [Segment(0, 0)]
