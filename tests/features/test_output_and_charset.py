"""Output and content handling (issue 13, points 7a and 8): `-o -`, `.json` arrays, the warning for a crawl
that writes no items, items counted without a writer, the README's typed library example, and unlabelled
Cyrillic and Shift-JIS pages decoded by charset-normalizer. Against nginx, through the console script and
the library."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crawler import Crawler, ExtractConfig, HttpConfig, Job, OutputConfig, ScopeConfig
from tests.cli.conftest import crawler_command
from tests.features.conftest import Cli, SiteFactory, job_yaml, jsonl, write_page

pytestmark = pytest.mark.timeout(90)

RUSSIAN = ("Москва - столица России, крупнейший по численности населения город страны. Город расположен на "
           "реке Москве в центре Восточно-Европейской равнины. Исторический центр города включает Кремль и "
           "Красную площадь.")  # fmt: skip
JAPANESE = ("東京都は日本の首都であり、関東地方に位置する。人口は約千四百万人で、日本で最も人口の多い都道府県"
            "である。江戸時代には江戸と呼ばれ、徳川幕府が置かれた。")  # fmt: skip


def _small_site(root: Path, pages: int = 5) -> None:
    write_page(root, "/", "Home", [f"/p{i}.html" for i in range(pages - 1)])
    for i in range(pages - 1):
        write_page(root, f"/p{i}.html", f"Page {i}", ["/"])


def _job(url: str, extra: str = "") -> str:
    return (f"start_urls: ['{url}/']\nhttp: {{http2: false}}\nrate_limit: {{per_host: unlimited}}\n"
            f"extract: {{fields: {{title: title}}}}\n{extra}")  # fmt: skip


def test_dash_output_writes_items_to_stdout_and_logs_to_stderr(cli: Cli, tmp_path: Path,
                                                               static_site: SiteFactory) -> None:  # fmt: skip
    _small_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, _job(site.url))
    proc = cli("run", "job.yaml", "-o", "-", "--progress", "plain")
    assert proc.returncode == 0, proc.stderr
    items = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(i["title"] for i in items) == ["Home", "Page 0", "Page 1", "Page 2", "Page 3"]
    assert "pages 5  items 5" in proc.stderr
    assert "no output.items" not in proc.stderr


@pytest.mark.parametrize("name", ["items.json", "items.json.gz"])
def test_json_output_is_one_array_and_appending_keeps_it_one(cli: Cli, tmp_path: Path, static_site: SiteFactory,
                                                             name: str) -> None:  # fmt: skip
    _small_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, _job(site.url, f"output: {{items: out/{name}, overwrite: false}}\n"))
    out = tmp_path / "out" / name

    def read() -> list[dict[str, object]]:
        data = out.read_bytes()
        return json.loads(gzip.decompress(data) if name.endswith(".gz") else data)  # type: ignore[no-any-return]

    assert cli("run", "job.yaml").returncode == 0
    first = read()
    assert len(first) == 5 and {i["title"] for i in first} >= {"Home", "Page 3"}
    if not name.endswith(".gz"):
        assert out.read_text().startswith("[\n{") and out.read_text().endswith("}\n]\n")
    assert cli("run", "job.yaml").returncode == 0  # overwrite: false appends into the same array
    assert len(read()) == 10


def test_a_crawl_without_item_output_warns_and_still_counts_items(cli: Cli, tmp_path: Path,
                                                                  static_site: SiteFactory) -> None:  # fmt: skip
    _small_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, _job(site.url))
    checked = cli("check", "-q", "job.yaml")
    assert checked.returncode == 0 and "warning: the job has no output.items" in checked.stderr
    proc = cli("run", "job.yaml", "--progress", "off")
    assert proc.returncode == 0, proc.stderr
    assert "the job has no output.items" in proc.stderr
    assert "pages 5  items 5" in proc.stderr


async def test_stats_count_items_without_a_writer(tmp_path: Path, static_site: SiteFactory) -> None:
    _small_site(tmp_path / "www", pages=7)
    site = static_site(tmp_path / "www")
    job = Job(start_urls=[site.url + "/"], http=HttpConfig(http2=False),
              extract=ExtractConfig(fields={"title": "title"}))  # fmt: skip
    async with Crawler(job) as crawler:
        stats = await crawler.run()
    assert stats.pages == 7 and stats.items == 7
    assert "items 7" in str(stats)


async def test_library_json_output_in_code(tmp_path: Path, static_site: SiteFactory) -> None:
    _small_site(tmp_path / "www", pages=3)
    site = static_site(tmp_path / "www")
    out = tmp_path / "items.json"
    job = Job(start_urls=[site.url + "/"], http=HttpConfig(http2=False), output=OutputConfig(items=str(out)),
              scope=ScopeConfig(max_pages=3), extract=ExtractConfig(fields={"title": "title"}))  # fmt: skip
    async with Crawler(job) as crawler:
        await crawler.run()
    assert sorted(i["title"] for i in json.loads(out.read_text())) == ["Home", "Page 0", "Page 1"]


def test_readme_library_example_passes_mypy_strict(tmp_path: Path) -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text()
    section = text[text.index("## As a library") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(script)],
                          capture_output=True, text=True, timeout=80, cwd=readme.parent)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


# --- charsets -----------------------------------------------------------------------------------------


def _charset_site(root: Path) -> None:
    write_page(root, "/", "Home", ["/ru.html", "/ja.html"])
    write_page(root, "/ru.html", "Москва", body=f"<p>{RUSSIAN}</p><p>{RUSSIAN}</p>", encoding="windows-1251")
    write_page(root, "/ja.html", "東京都", body=f"<p>{JAPANESE}</p><p>{JAPANESE}</p>", encoding="shift_jis")


def test_unlabelled_cyrillic_and_shift_jis_pages_decode(cli: Cli, tmp_path: Path, static_site: SiteFactory) -> None:
    _charset_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, _job(site.url, "output: {items: items.jsonl}\n")
             .replace("{title: title}", "{title: title, text: p}"))  # fmt: skip
    proc = cli("run", "job.yaml", "--progress", "off")
    assert proc.returncode == 0, proc.stderr
    by_url = {i["url"].rsplit("/", 1)[1]: i for i in jsonl(tmp_path / "items.jsonl")}
    assert by_url["ru.html"]["title"] == "Москва" and by_url["ru.html"]["text"] == RUSSIAN
    assert by_url["ja.html"]["title"] == "東京都" and by_url["ja.html"]["text"] == JAPANESE


async def test_unlabelled_pages_decode_in_the_library(tmp_path: Path, static_site: SiteFactory) -> None:
    _charset_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job = Job(start_urls=[site.url + "/"], http=HttpConfig(http2=False))
    seen = {}
    async with Crawler(job) as crawler:
        async for page in crawler.crawl():
            assert "charset" not in page.headers.get("content-type", "")
            seen[page.url.rsplit("/", 1)[1]] = (page.encoding, page.text)
    assert seen["ru.html"][0] == "cp1251" and RUSSIAN in seen["ru.html"][1]
    assert seen["ja.html"][0] == "cp932" and JAPANESE in seen["ja.html"][1]


def test_dash_output_stops_the_crawl_quietly_when_the_reader_goes_away(tmp_path: Path,
                                                                        static_site: SiteFactory) -> None:  # fmt: skip
    _small_site(tmp_path / "www", pages=200)
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, _job(site.url).replace("per_host: unlimited", "per_host: 40/s"))
    command = " ".join([*crawler_command(), "run", "job.yaml", "-o", "-", "--progress", "off"])
    proc = subprocess.run(["bash", "-c", f"{command} 2>err.txt | head -n 2; echo ${{PIPESTATUS[0]}} > code.txt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert len(proc.stdout.splitlines()) == 2
    err = (tmp_path / "err.txt").read_text()
    assert "standard output was closed by its reader" in err
    assert "crawl aborted" not in err and "Traceback" not in err
    pages = int(re.search(r"^pages (\d+)", err, re.M).group(1))  # type: ignore[union-attr]
    assert pages < 200  # it stopped instead of crawling the rest for nobody
    assert (tmp_path / "code.txt").read_text().strip() == "130"  # stopped early, as with Ctrl-C
