"""Fixtures for the day-one features (issue 13): nginx serving a static site the test writes, whose access
log counts requests at the server, and the real `crawler` console script in a subprocess.

nginx is a real server with real caching behaviour: `ETag` and `Last-Modified` on every file, 304 answers
to `If-None-Match` / `If-Modified-Since`, 404 for a missing file, and `.html` served as `text/html` with no
charset label.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import REPO_ROOT, crawler_command
from tests.downloader.servers import NginxServer, find_nginx

Cli = Callable[..., subprocess.CompletedProcess[str]]


class StaticSite(NginxServer):
    """nginx over `root`. Besides the files: `/cached/...` is served with `Cache-Control: max-age=3600`,
    `/gone` answers 410 and `/down` 503; `gzip=True` compresses HTML (`Content-Encoding: gzip`). The access
    log records uri, status, If-None-Match, If-Modified-Since, Referer and the request method."""

    def __init__(self, root: Path, *, gzip: bool = False) -> None:
        super().__init__(root)
        self.gzip = gzip

    def _config(self, port: int) -> str:
        conf = super()._config(port)
        conf = conf.replace(
            "log_format dl escape=none '$request_uri\\t$status\\t$http_range\\t$http_if_range\\t$body_bytes_sent';",
            "log_format dl escape=none '$request_uri\\t$status\\t$http_if_none_match\\t$http_if_modified_since"
            "\\t$http_referer\\t$request_method';",
        )
        extra = """
        gzip %s; gzip_min_length 1; gzip_types text/html;
        location /cached/ { expires 1h; }
        location = /gone { return 410; }
        location = /down { return 503; }
"""
        extra = extra % ("on" if self.gzip else "off")
        return conf.replace("        location /slow/ {", extra + "        location /slow/ {")

    def requests(self) -> list[dict[str, str]]:  # type: ignore[override]
        assert self._dir is not None
        path = self._dir / "access.log"
        out = []
        if path.exists():
            for line in path.read_text().splitlines():
                uri, status, inm, ims, referer, method = (line.split("\t") + [""] * 6)[:6]
                out.append({"uri": uri, "status": status, "if_none_match": inm.strip("-"),
                            "if_modified_since": ims.strip("-"), "referer": referer.strip("-"),
                            "method": method})  # fmt: skip
        return out

    def clear_log(self) -> None:
        assert self._dir is not None
        (self._dir / "access.log").write_text("")  # nginx appends with O_APPEND: truncating is safe

    def page_requests(self) -> list[dict[str, str]]:
        """Requests other than robots.txt."""
        return [r for r in self.requests() if r["uri"] != "/robots.txt"]


def write_page(root: Path, path: str, title: str, links: list[str] = (), body: str = "",  # type: ignore[assignment]
               encoding: str = "utf-8") -> Path:  # fmt: skip
    """Write an HTML page (no charset label anywhere) with a title, an h1 (unless `body` has one) and links."""
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    heading = "" if "<h1" in body else f"<h1>{title}</h1>"
    html = (f"<!doctype html>\n<html><head><title>{title}</title></head>\n"
            f"<body>{heading}\n{body}\n<ul>{anchors}</ul></body></html>\n")  # fmt: skip
    file = root / path.lstrip("/")
    if path.endswith("/"):
        file = file / "index.html"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(html.encode(encoding))
    return file


SiteFactory = Callable[..., StaticSite]


@pytest.fixture
def static_site() -> Iterator[SiteFactory]:
    """`static_site(root, gzip=False)` starts nginx over `root` for this test; stopped when the test ends."""
    if find_nginx() is None:
        message = "nginx is not installed (apt-get install nginx-light; .ci/run does)"
        if os.environ.get("CI") or os.environ.get("CRAWLER_REQUIRE_NGINX"):
            pytest.fail(message)
        pytest.skip(message)
    started: list[StaticSite] = []

    def start(root: Path, *, gzip: bool = False) -> StaticSite:
        site = StaticSite(root, gzip=gzip)
        site.start()
        started.append(site)
        return site

    yield start
    for site in started:
        site.stop()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """`cli("run", "job.yaml")` -> CompletedProcess (text); the console script, run in tmp_path."""

    def run(*args: str, timeout: float = 60, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        return subprocess.run([*crawler_command(), *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=timeout, input=stdin,
                              env={**os.environ, "PYTHONPATH": path, **(env or {})})  # fmt: skip

    return run


def job_yaml(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_bytes().splitlines()]
