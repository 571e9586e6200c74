"""Start-up stays lean: the package root, the stage package and the CLI load only what a command uses, and the
CA bundle is read by the first TLS connection. (The time itself is measured by `python -m benchmarks.startup`.)"""

from __future__ import annotations

import ssl
import subprocess
import sys

from crawler.config.job import HttpConfig
from crawler.http.client import build_ssl_context


def _modules_after(code: str) -> set[str]:
    listing = "\nimport sys\nprint('\\n'.join(k for k, v in sys.modules.items() if v is not None))"
    out = subprocess.run([sys.executable, "-c", code + listing], capture_output=True, text=True, check=True,
                         timeout=60)  # fmt: skip
    return set(out.stdout.split())


def test_importing_the_package_root_loads_nothing_heavy() -> None:
    mods = _modules_after("import crawler\nfrom crawler import canonicalize")
    assert not {"httpx", "pydantic", "selectolax", "yaml", "crawler.engine.crawler"} & mods


def test_a_public_name_still_resolves_on_first_use() -> None:
    mods = _modules_after("from crawler import Crawler, download\nassert Crawler.__name__ == 'Crawler'")
    assert "crawler.engine.crawler" in mods and "crawler.downloader.driver" in mods


def test_one_stage_does_not_import_the_others() -> None:
    mods = _modules_after("import crawler.pipelines.links")
    assert not {"crawler.pipelines.paginate", "crawler.pipelines.sitemaps", "crawler.pipelines.json_items"} & mods


def test_the_cli_skips_httpx_own_command_line() -> None:
    mods = _modules_after("import crawler.cli\nimport httpx")
    assert "httpx" in mods and "httpx._main" not in mods and "pygments" not in mods


def test_certifi_bundle_is_read_by_the_first_tls_connection() -> None:
    context = build_ssl_context(HttpConfig())
    assert isinstance(context, ssl.SSLContext)
    assert context.cert_store_stats()["x509_ca"] == 0
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.com")
    assert context.cert_store_stats()["x509_ca"] > 50
