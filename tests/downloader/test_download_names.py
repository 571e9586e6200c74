"""File names: Content-Disposition (RFC 6266 / RFC 5987), URL paths, sanitising, staying inside -d."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from crawler.fetch.names import (
    UnsafePath,
    choose_name,
    filename_from_content_disposition,
    inside,
    numbered,
    safe_subpath,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('attachment; filename="report.pdf"', "report.pdf"),
        ("attachment; filename=report.pdf", "report.pdf"),
        ('attachment; filename="a \\"quoted\\" name.txt"', 'a "quoted" name.txt'),
        # RFC 6266 section 5: filename* (RFC 5987) wins, whichever comes first
        ("attachment; filename=\"EURO rates\"; filename*=utf-8''%e2%82%ac%20rates", "€ rates"),
        ("attachment; filename*=UTF-8''%e2%82%ac%20rates; filename=\"EURO rates\"", "€ rates"),
        ("attachment; filename*=iso-8859-1'en'%A3%20rates", "£ rates"),
        ("ATTACHMENT; FILENAME=upper.txt", "upper.txt"),
        ("inline", None),
        ("", None),
    ],
)
def test_content_disposition_filename(header: str, expected: str | None) -> None:
    assert filename_from_content_disposition(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('attachment; filename="../../x"', "x"),
        ('attachment; filename="/etc/passwd"', "passwd"),
        ("attachment; filename*=UTF-8''..%2F..%2Fevil.sh", "evil.sh"),
        ("attachment; filename*=UTF-8''%2Fabs%2Fpath.txt", "path.txt"),
        ('attachment; filename="..\\\\..\\\\win.ini"', "win.ini"),
        ('attachment; filename="CON"', "_CON"),
        ('attachment; filename="nul.txt"', "_nul.txt"),
        ('attachment; filename=".."', "index.html"),
        ('attachment; filename="..."', "index.html"),
        ('attachment; filename=".bashrc"', "bashrc"),
        ('attachment; filename="a\x07b\x1b.txt"', "a_b_.txt"),
        ("attachment; filename*=UTF-8''evil%E2%80%AEtxt.exe", "evil_txt.exe"),
        ("attachment; filename*=UTF-8''nul%00byte", "nul_byte"),
        ('attachment; filename="' + "a" * 400 + '.txt"', "a" * 196 + ".txt"),
    ],
)
def test_hostile_content_disposition_names_are_one_safe_segment(header: str, expected: str) -> None:
    name = choose_name(None, header, "http://h.example/dir/")
    assert name == expected
    assert "/" not in name and "\\" not in name and name not in ("", ".", "..")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h.example/files/report%20final.pdf?x=1#frag", "report final.pdf"),
        ("http://h.example/a/..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("http://h.example/a/%2e%2e", "index.html"),
        ("http://h.example/dir/", "index.html"),
        ("http://h.example", "index.html"),
        ("http://h.example/caf%C3%A9.txt", "café.txt"),
        ("http://h.example/aux", "_aux"),
    ],
)
def test_names_from_url_paths(url: str, expected: str) -> None:
    assert choose_name(None, None, url) == expected


def test_out_wins_over_content_disposition_and_url() -> None:
    assert choose_name("mine.bin", 'attachment; filename="theirs.bin"', "http://h/x.bin") == "mine.bin"
    assert choose_name(None, 'attachment; filename="theirs.bin"', "http://h/x.bin") == "theirs.bin"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("isos/amd64", "isos/amd64"),
        ("/etc", "etc"),
        ("../../up", "up"),
        ("a/./b/../c", "a/b/c"),
        ("C:\\Windows\\System32", "C_/Windows/System32"),
        ("..", "."),
    ],
)
def test_subdirectories_never_leave_the_destination(given: str, expected: str) -> None:
    assert safe_subpath(given) == PurePosixPath(expected)


def test_inside_refuses_symlinks_out_of_the_destination(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "escape").symlink_to(tmp_path)
    assert inside(dest, "sub", "f.bin") == (dest / "sub" / "f.bin").resolve()
    with pytest.raises(UnsafePath):
        inside(dest, "escape", "f.bin")


def test_numbered_names_for_rename() -> None:
    assert numbered("report.pdf", 1) == "report.1.pdf"
    assert numbered("archive.tar.gz", 2) == "archive.tar.2.gz"
    assert numbered("README", 3) == "README.3"
