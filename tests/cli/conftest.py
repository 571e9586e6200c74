"""Running the real `crawler` console script in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def crawler_command() -> list[str]:
    """The installed console script next to this interpreter (what a user runs), else `python -m crawler`."""
    script = Path(sys.executable).with_name("crawler")
    if script.exists():
        return [str(script)]
    found = shutil.which("crawler")
    return [found] if found else [sys.executable, "-m", "crawler"]


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """`cli("check", "job.yaml")` -> CompletedProcess with text stdout/stderr; runs in tmp_path."""

    def run(
        *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*crawler_command(), *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})})  # fmt: skip

    return run


def write_job(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
