"""`crawler demo`: the packaged demo job, the whole demo site crawled over HTTP/2, and a clear message when
the demo extra (hypercorn, trustme) is missing."""

from __future__ import annotations

import importlib.util

import pytest


def test_demo_job_file_is_valid() -> None:
    from crawler import Job

    job = Job.from_yaml("configs/demo.yaml")
    assert job.start_urls == ["https://127.0.0.1:8443/"]
    assert job.http.http2 and job.output.items == "out/demo/items.jsonl"


def test_demo_crawls_the_whole_site_over_http2(tmp_path, monkeypatch, capsys) -> None:
    from crawler.cli import main

    monkeypatch.chdir(tmp_path)  # the demo writes out/demo/tls (the site's CA) under the current directory
    items, stats = tmp_path / "items.jsonl", tmp_path / "stats.json"
    argv = ["--pages", "120", "--port", "0", "--progress-every", "0",
            "--set", f"output.items={items}", "--set", f"output.stats={stats}"]  # fmt: skip
    assert main(["demo", *argv]) == 0
    out = capsys.readouterr().out
    assert "by the server {'HTTP/2': 122}" in out  # 121 pages and robots.txt, all over HTTP/2
    assert len(items.read_text().splitlines()) == 121
    assert f"items      121 lines in {items}" in out


def test_demo_without_the_demo_extra_says_how_to_install_it(monkeypatch, capsys) -> None:
    from crawler.cli import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "hypercorn" else real_find_spec(name, *a))  # fmt: skip
    assert main(["demo", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "hypercorn not installed" in err
    assert "pip install 'crawler[demo]'" in err


def test_launcher_without_the_demo_extra_raises_a_clear_error(monkeypatch) -> None:
    from crawler.demo.extra import MissingDemoExtra
    from crawler.demo.launcher import AsgiServer

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "hypercorn" else real_find_spec(name, *a))  # fmt: skip
    with pytest.raises(MissingDemoExtra, match=r"pip install 'crawler\[demo\]'"):
        AsgiServer("crawler.demo.site:app").start()


def test_configs_demo_yaml_is_the_packaged_demo_job() -> None:
    from pathlib import Path

    from crawler.demo.site import DEMO_JOB

    assert DEMO_JOB.is_file()
    assert Path("configs/demo.yaml").resolve() == DEMO_JOB.resolve()
