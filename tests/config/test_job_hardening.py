"""Job files that can never work are refused with the key and its position, never a traceback: caps while
parsing (size, nodes, 64-bit integers), non-finite and out-of-range numbers, header injection, invalid
selectors and URLs. Through the loader, and through `crawler check` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crawler.config.job import load_job_text
from crawler.config.jobfile import MAX_NODES, JobError
from tests.fetch.rawserver import run_measured

pytestmark = pytest.mark.timeout(120)

HEAD = "start_urls: ['https://example.com/']\n"

# (YAML after HEAD, the key path the error names, a phrase of the message, the line:column)
CASES = [
    ("http:\n  max_body: " + "9" * 5000 + "\n", "http.max_body", "number too large", "3:13"),
    ("http:\n  max_body: " + "9" * 25 + "\n", "http.max_body", "more than 64 bits", "3:13"),
    ("scope:\n  max_pages: -" + "9" * 30 + "\n", "scope.max_pages", "more than 64 bits", "3:14"),
    ("http:\n  max_body: .inf\n", "http.max_body", "too large", "3:3"),
    ("http:\n  max_body: .nan\n", "http.max_body", "NaN", "3:3"),
    ("http:\n  max_body: -1\n", "http.max_body", "negative", "3:3"),
    ("http:\n  max_body: -1.5\n", "http.max_body", "negative", "3:3"),
    ("http:\n  max_body: 0\n", "http.max_body", "at least 1 byte", "3:3"),
    ("http:\n  verify: '" + "a" * 5000 + "'\n", "http.verify", "at most 4,096", "3:3"),
    ("http:\n  verify: '" + "a/" * 1000 + "'\n", "http.verify", "does not exist", "3:3"),
    ("http:\n  headers: {X-Evil: \"a\\r\\nSet-Cookie: x=1\"}\n", "http.headers", "control character", "3:3"),
    ("http:\n  headers: {\"Bad Name\": x}\n", "http.headers", "not a valid header name", "3:3"),
    ("http:\n  user_agent: \"bot\\nX-Injected: 1\"\n", "http.user_agent", "control character", "3:3"),
    ("http:\n  auth: {bearer: \"t\\r\\nX: y\"}\n", "http.auth.bearer", "control character", "3:10"),
    ("http:\n  timeout: {read: .inf}\n", "http.timeout.read", "finite", "3:13"),
    ("http:\n  timeout: {read: 1e308}\n", "http.timeout.read", "less than or equal to 86400", "3:13"),
    ("http:\n  proxy: 'http://'\n", "http.proxy", "no host", "3:3"),
    ("retry:\n  max_retry_after: .inf\n", "retry.max_retry_after", "finite", "3:3"),
    ("rate_limit:\n  per_host: 1.0e+308\n", "rate_limit.per_host", "out of range", "3:3"),
    ("rate_limit:\n  per_host: " + "9" * 400 + "/s\n", "rate_limit.per_host", "finite", "3:3"),
    ("rate_limit:\n  per_host: .nan\n", "rate_limit.per_host", "positive", "3:3"),
    ("extract:\n  links: 'a[[['\n", "extract.links", "invalid CSS selector", "3:3"),
    ("start_sitemaps: ['http://']\n", "start_sitemaps", "has no host", "2:1"),
    ("start_sitemaps: ['http://:80/']\n", "start_sitemaps", "has no host", "2:1"),
    ("start_sitemaps: ['http://e.com:99999/']\n", "start_sitemaps", "not a valid URL", "2:1"),
    ("start_sitemaps: ['https://e.com/a b']\n", "start_sitemaps", "whitespace", "2:1"),
    ("start_sitemaps: ['https://e.com/" + "a" * 9000 + "']\n", "start_sitemaps", "at most 8,192", "2:1"),
    ("output: {items: \"a\\0b.jsonl\"}\n", "output.items", "NUL", "2:10"),
    ("scope: {allowed_domains: ['https://example.com/']}\n", "scope.allowed_domains", "not a domain name", "2:9"),
    ("name: 'a{b}'\n", "name", "without '{'", "2:1"),
    ("frontier: 'redis://:6379'\n", "frontier", "no host", "2:1"),
]


@pytest.mark.parametrize(("extra", "key", "needle", "where"), CASES, ids=[c[1] + ":" + c[2] for c in CASES])
def test_a_value_that_can_never_work_names_its_key_and_position(extra: str, key: str, needle: str, where: str) -> None:
    with pytest.raises(JobError) as err:
        load_job_text(HEAD + extra, "job.yaml")
    text = err.value.render()
    assert f"job.yaml:{where}: {key}" in text, text
    assert needle in text, text
    assert len(text) < 600, "a long value is shortened in the message"


def test_start_urls_without_a_host_are_refused() -> None:
    with pytest.raises(JobError, match=r"job.yaml:1:1: start_urls: URL 'http://' has no host"):
        load_job_text("start_urls: ['http://']\n", "job.yaml")


def _check(path: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """`crawler check` in a subprocess: (the process, seconds, its own peak RSS in MB)."""
    exe = Path(sys.executable).with_name("crawler")
    code, out, err, peak, seconds = run_measured([str(exe), "check", str(path)], timeout=60, cwd=tmp_path)
    print(f"crawler check {path.name}: exit {code}, {seconds:.2f}s, peak RSS {peak:.0f} MB")
    return subprocess.CompletedProcess([str(exe)], code, out, err), seconds, peak


def test_a_50_mb_yaml_list_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as f:
        f.write(HEAD + "x-list:\n")
        f.write("- https://example.com/page\n" * 2_000_000)
    proc, seconds, rss = _check(path, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "big.yaml: is 5" in proc.stderr and "a job file is at most 1024 KiB" in proc.stderr
    assert seconds < 5 and rss < 100


def test_too_many_nodes_are_refused_while_parsing(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text(HEAD + "x-list: [" + "1," * (MAX_NODES + 10) + "1]\n")
    proc, seconds, rss = _check(path, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "nodes.yaml:2:" in proc.stderr and ": more than 100,000 values" in proc.stderr, proc.stderr
    assert seconds < 10 and rss < 100


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[8], CASES[10], CASES[12], CASES[21], CASES[22]],
                         ids=lambda c: c[1])  # fmt: skip
def test_crawler_check_exits_2_with_the_position_and_no_traceback(tmp_path: Path, case: tuple[str, ...]) -> None:
    extra, key, needle, where = case
    path = tmp_path / "job.yaml"
    path.write_text(HEAD + extra)
    proc, _, _ = _check(path, tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"job.yaml:{where}: {key}" in proc.stderr and needle in proc.stderr, proc.stderr


def test_a_file_that_is_no_ca_bundle_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    with pytest.raises(JobError, match=r"http\.verify: CA bundle .* holds no usable certificate"):
        load_job_text(HEAD + f"http: {{verify: '{bundle}'}}\n", "job.yaml")
