"""Start-up stays lean: the package root, the stage package and the CLI load only what a command uses, and the
CA bundle is read by the first TLS connection. (The time itself is measured by `python -m benchmarks.startup`.)"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# What a plain HTTP/1.1 download never needs: HTTP/2 (h2, hpack, hyperframe and our HTTP/2 connection), the
# live display (rich), job files (yaml), a rate limiter (aiolimiter, which reads installed metadata), pydantic's
# plugin scan (importlib.metadata) and the other subcommands.
_NOT_FOR_A_PLAIN_DOWNLOAD = {"h2", "hpack", "hyperframe", "crawler.http.transport.http2", "rich", "yaml",
                             "aiolimiter", "importlib.metadata", "crawler.cli.run", "crawler.cli.check",
                             "crawler.engine.crawler", "crawler.config.jobfile"}  # fmt: skip


def test_a_plain_http1_download_loads_no_http2_rich_yaml_or_other_commands(http1_site: Any, tmp_path: Path) -> None:
    out = tmp_path / "dl"
    code = (f"import crawler.cli\ncode = crawler.cli.main(['download', {http1_site.url + '/robots.txt'!r}, "
            f"'-d', {str(out)!r}, '--progress', 'auto'])\nassert code == 0, code")  # fmt: skip
    mods = _modules_after(code)
    assert (out / "robots.txt").read_bytes().startswith(b"User-agent")  # the download did happen
    assert {"crawler.downloader.driver", "crawler.http.transport.http11", "crawler.cli.download"} <= mods
    assert not _NOT_FOR_A_PLAIN_DOWNLOAD & mods, sorted(_NOT_FOR_A_PLAIN_DOWNLOAD & mods)


def test_http2_and_its_errors_load_with_the_first_http2_connection(h2_site: Any, tmp_path: Path) -> None:
    out = tmp_path / "dl"
    code = (f"import crawler.cli\ncode = crawler.cli.main(['download', {h2_site.url + '/robots.txt'!r}, "
            f"'-d', {str(out)!r}, '-q', '--ca-bundle', {str(h2_site.ca_path)!r}])\nassert code == 0, code\n"
            "from crawler.http.transport import errors\nimport h2.exceptions\n"
            "assert errors.library_errors() == errors.LIBRARY_ERRORS\n"
            "assert h2.exceptions.H2Error in errors.LIBRARY_ERRORS")  # fmt: skip
    mods = _modules_after(code)
    assert (out / "robots.txt").read_bytes().startswith(b"User-agent")
    assert {"h2", "crawler.http.transport.http2"} <= mods


def test_a_subcommand_parses_without_importing_the_others() -> None:
    mods = _modules_after("import crawler.cli\nparser = crawler.cli.build_parser('download')\n"
                          "assert parser.parse_args(['download', 'http://x/']).urls == ['http://x/']")  # fmt: skip
    assert "crawler.cli.download" in mods
    assert not {"crawler.cli.run", "crawler.cli.check", "crawler.cli.shell", "yaml", "pydantic"} & mods


def test_the_pydantic_loader_stand_in_hands_anything_else_to_the_real_loader() -> None:
    # A later pydantic asking the loader for more than get_plugins gets the real module, never an ImportError.
    code = ("import sys, crawler.cli\n"
            "stub = sys.modules['pydantic.plugin._loader']\n"
            "assert stub.get_plugins() == ()\n"
            "from pydantic.plugin._loader import _plugins\n"
            "real = sys.modules['pydantic.plugin._loader']\n"
            "assert real is not stub and hasattr(real, 'get_plugins')\n"
            "print('ok')\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
