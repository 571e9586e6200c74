"""The package as users install it: the built-in stages ship inside it as `crawler.pipelines`, so a user's
own `pipelines.py` (every Scrapy project has one) beside a job file or a script never shadows them, in an
editable install (this checkout) and in a wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.demo.site import SiteServer

REPO_ROOT = Path(__file__).resolve().parents[1]
USER_PIPELINES = '''"""A Scrapy project's own pipelines module."""


class SaveToDatabase:
    def process_item(self, item, spider):
        return item
'''
SCRIPT = '''import asyncio
import sys

from crawler import Crawler, Job


async def main() -> None:
    job = Job.from_yaml("job.yaml")
    async with Crawler(job) as crawler:
        await crawler.run()
    import crawler as package
    print("pages", crawler.stats.pages, "from", package.__file__)


asyncio.run(main())
'''

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def project(http1_site: SiteServer, tmp_path: Path) -> Path:
    """A user's project folder: their pipelines.py, a job file using links and fields, and a script."""
    (tmp_path / "pipelines.py").write_text(USER_PIPELINES)
    (tmp_path / "job.yaml").write_text(
        f"start_urls: ['{http1_site.url}/']\n"
        "scope: {max_pages: 20, robots_txt: false}\n"
        "rate_limit: {per_host: unlimited}\n"
        "extract: {fields: {title: title}}\n"
        "output: {items: items.jsonl}\n"
    )
    (tmp_path / "script.py").write_text(SCRIPT)
    return tmp_path


def _titles(project: Path) -> list[str]:
    return [json.loads(line)["title"] for line in (project / "items.jsonl").read_text().splitlines()]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_a_user_pipelines_py_beside_the_job_file_does_not_shadow_the_builtin_stages(project: Path) -> None:
    run = _run([sys.executable, "-m", "crawler", "run", "job.yaml", "--progress", "off"], project)
    assert run.returncode == 0, run.stderr[-3000:]
    titles = _titles(project)
    assert len(titles) == 20 and all(titles)  # links were followed and fields extracted


def test_a_user_pipelines_py_beside_a_script_does_not_shadow_the_builtin_stages(project: Path) -> None:
    run = _run([sys.executable, "script.py"], project)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "pages 20 from" in run.stdout
    assert len(_titles(project)) == 20


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This checkout built as a wheel and unpacked into a directory (dependencies come from this venv)."""
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO_ROOT)],
                           capture_output=True, text=True, timeout=240)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = out.glob("crawler-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "crawler/pipelines/links.py" in names and not any(n.startswith("pipelines/") for n in names)
    target = out / "site"
    zipfile.ZipFile(wheel).extractall(target)
    yield target


def test_the_wheel_ships_the_stages_inside_the_package(wheel_dir: Path, project: Path) -> None:
    env = {"PYTHONPATH": str(wheel_dir)}  # before this checkout's editable install on sys.path
    run = _run([sys.executable, "script.py"], project, env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"from {wheel_dir}" in run.stdout  # the wheel's copy ran, not this checkout
    assert len(_titles(project)) == 20
    cli = _run([sys.executable, "-m", "crawler", "run", "job.yaml", "--progress", "off"], project, env)
    assert cli.returncode == 0, cli.stderr[-3000:]
