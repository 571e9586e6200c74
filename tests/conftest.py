"""Shared fixtures: real loopback servers running the demo site (crawler/demo/site.py), one per variant,
all started by the one launcher (crawler/demo/launcher.py).

The session servers are shared by every test: assert on a path only your test requests, or call
`site.clear_log()` first. Tests that need their own variant (robots, page count, host) use `site_factory`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# `tests.*` must import whether pytest was started as `python -m pytest` or as `pytest`.
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from crawler.demo.site import SiteServer  # noqa: E402
from crawler.demo.tls import tls_files  # noqa: E402
from tests.pipelines.apisite import ApiServer  # noqa: E402

SiteFactory = Callable[..., SiteServer]


@pytest.fixture(scope="session")
def http1_site() -> Iterator[SiteServer]:
    """Cleartext HTTP/1.1 site with 200 pages, robots.txt allowing everything."""
    with SiteServer(tls=False) as site:
        yield site


@pytest.fixture(scope="session")
def h2_site() -> Iterator[SiteServer]:
    """HTTP/2 over TLS (ALPN h2, http/1.1) with 200 pages; trust it with `h2_site.ca_path`."""
    with SiteServer(tls=True) as site:
        yield site


@pytest.fixture(scope="session")
def api() -> Iterator[ApiServer]:
    """The API and sitemap site (tests/pipelines/apisite.py): paginated JSON in every style, sitemaps."""
    with ApiServer() as server:
        yield server


@pytest.fixture(scope="session")
def site_ca() -> str:
    """The CA bundle path every TLS test server's certificate chains to (a valid `http.verify`)."""
    return str(tls_files().ca_path)


@pytest.fixture
def site_factory() -> Iterator[SiteFactory]:
    """Start extra servers for one test: `site_factory(tls=False, host="127.0.0.1", pages=200,
    robots="allow", env={...})`, any `SiteServer` keyword. All are stopped when the test ends."""
    started: list[SiteServer] = []

    def start(**kwargs: Any) -> SiteServer:
        site = SiteServer(**kwargs).start()
        started.append(site)
        return site

    yield start
    for site in started:
        site.stop()
