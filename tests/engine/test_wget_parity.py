"""The crawler reaches every page that `wget --mirror --no-parent` reaches from the same start page of a real
multi-hundred-page static site: Debian's python3-doc HTML (/usr/share/doc/python3/html, ~530 pages)
when installed, else a generated 600-page site with relative links, served by `python -m http.server`.

wget also fetches page resources (images, CSS, scripts) that no `<a href>` points to; those are not pages,
so the comparison is: every URL wget reached is either reached by the crawler or is such a resource.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from crawler.demo.launcher import free_port
from tests.cli.conftest import crawler_command

DOCS = Path("/usr/share/doc/python3/html")
_RESOURCE_RE = re.compile(r"\.(png|jpe?g|gif|svg|ico|css|js|woff2?|ttf|xml)(\?.*)?$", re.I)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed"),
]


def _generate_site(root: Path, sections: int = 20, per_section: int = 30) -> Path:
    """A static docs-like site: an index, section indexes, pages linking by relative paths, fragments,
    `../` and directory URLs, plus a stylesheet and an image that only wget fetches."""
    (root / "_static").mkdir(parents=True)
    (root / "_static" / "style.css").write_text("body { margin: 0 }\n")
    (root / "_static" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    head = '<head><link rel="stylesheet" href="{up}_static/style.css"><title>{title}</title></head>'
    index = [f'<li><a href="s{s}/">Section {s}</a></li>' for s in range(sections)]
    (root / "index.html").write_text(f"<!doctype html><html>{head.format(up='', title='Docs')}<body>"
                                     f'<img src="_static/logo.png"><ul>{"".join(index)}</ul></body></html>')  # fmt: skip
    for s in range(sections):
        section = root / f"s{s}"
        section.mkdir()
        first = "".join(f'<a href="p{p}.html">p{p}</a>' for p in range(0, per_section, 2))
        (section / "index.html").write_text(f"<!doctype html><html>{head.format(up='../', title=s)}<body>{first}"
                                            '<a href="../index.html#top">up</a></body></html>')  # fmt: skip
        for p in range(per_section):
            links = [f"p{(p + 1) % per_section}.html#sec", f"../s{(s + 1) % sections}/p{p}.html", "./", "../"]
            body = "".join(f'<a href="{h}">{h}</a>' for h in links)
            (section / f"p{p}.html").write_text(f"<!doctype html><html>{head.format(up='../', title=p)}"
                                                f"<body>{body}</body></html>")  # fmt: skip
    return root


def test_crawler_reaches_every_page_wget_mirror_reaches(tmp_path: Path) -> None:
    root = DOCS if (DOCS / "index.html").exists() else _generate_site(tmp_path / "site")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        start = f"{base}/index.html"

        subprocess.run(["wget", "--mirror", "--no-parent", "-e", "robots=off", "-nv", "-o", "wget.log",
                        "-P", "mirror", start], cwd=tmp_path, timeout=120, check=False)  # fmt: skip
        wget_urls = set(re.findall(r"URL:\s*(\S+) \[", (tmp_path / "wget.log").read_text()))

        (tmp_path / "job.yaml").write_text(
            f"name: parity\nstart_urls: ['{start}']\nscope: {{robots_txt: false}}\n"
            "rate_limit: {per_host: unlimited}\nconcurrency: {workers: 16, per_host: 16}\n"
            "http: {http2: false, max_body: 100MB}\nmax_error_rate: 0.1\n"
            "output: {items: crawl.jsonl, stats: stats.json}\n"
        )
        proc = subprocess.run([*crawler_command(), "run", "job.yaml", "--progress", "off"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        crawled = {json.loads(line)["url"] for line in (tmp_path / "crawl.jsonl").read_text().splitlines()}
    finally:
        server.terminate()
        server.wait(10)

    missed = wget_urls - crawled
    assert len(wget_urls) >= 300, "a multi-hundred-page site"
    assert not [u for u in missed if not _RESOURCE_RE.search(u)], (
        "every page wget reached, the crawler reached"
    )
    pages = {u for u in wget_urls if not _RESOURCE_RE.search(u)}
    print(f"\n{root}: wget reached {len(wget_urls)} URLs ({len(pages)} pages, {len(wget_urls) - len(pages)} "
          f"resources); the crawler reached {len(crawled)} URLs, {len(pages & crawled)} of wget's pages")  # fmt: skip
