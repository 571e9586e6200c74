"""The README's library example runs as written (pointed at a test server instead of the demo port)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from crawler.demo.site import SiteServer

README = Path(__file__).resolve().parents[1] / "README.md"


def _library_example() -> str:
    text = README.read_text()
    section = text[text.index("## As a library"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_library_example_runs(h2_site: SiteServer, tmp_path: Path) -> None:
    code = _library_example()
    assert "https://127.0.0.1:8443/" in code and "out/demo/tls/ca.pem" in code
    code = code.replace("https://127.0.0.1:8443/", h2_site.url + "/").replace("out/demo/tls/ca.pem", h2_site.ca_path)
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=README.parent)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(h2_site.url)]
    assert len(lines) == 100
    assert all(" 200 HTTP/2 {" in line and "'words':" in line for line in lines)
    assert "pages 100" in done.stdout
