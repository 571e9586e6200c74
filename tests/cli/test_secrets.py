"""Secrets stay out of everything the crawler prints or writes about a run: `crawler check`, the log, the
summary, stats.json and `crawler status` show `***` for values from ${VAR}, credentials and URL passwords."""

from __future__ import annotations

import json
from pathlib import Path

from crawler.demo.site import SiteServer
from tests.cli.conftest import Cli

TOKEN = "tok-9f8e7d6c5b4a"
API_KEY = "key-0a1b2c3d4e5f"
PROXY_PASSWORD = "pw-5566778899"


def _job(tmp_path: Path, site: SiteServer) -> Path:
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: secrets\n"
        # The token is in a start URL too: a secret from the environment is masked wherever it appears.
        f"start_urls: ['{site.url}/status/404?token=${{TOKEN}}']\n"
        "scope: {robots_txt: false}\n"
        "http:\n"
        "  auth: {bearer: '${TOKEN}'}\n"
        f"  headers: {{X-Api-Key: '{API_KEY}', X-Trace: visible-value}}\n"
        f"  proxies: ['http://user:{PROXY_PASSWORD}@127.0.0.1:9']\n"
        "  trust_env: false\n"
        f"state: {tmp_path / 'state'}\n"
        f"output: {{items: {tmp_path / 'items.jsonl'}, stats: {tmp_path / 'stats.json'}}}\n"
    )
    return job


def _assert_clean(text: str) -> None:
    for secret in (TOKEN, API_KEY, PROXY_PASSWORD):
        assert secret not in text, f"{secret} leaked"


def test_check_masks_substituted_values_credentials_and_url_passwords(cli: Cli, tmp_path: Path,
                                                                       http1_site: SiteServer) -> None:  # fmt: skip
    job = _job(tmp_path, http1_site)
    run = cli("check", str(job), env={"TOKEN": TOKEN})
    assert run.returncode == 0, run.stderr
    _assert_clean(run.stdout + run.stderr)
    assert "bearer: '***'" in run.stdout and "X-Api-Key: '***'" in run.stdout
    assert "visible-value" in run.stdout  # not a credential: shown
    assert "http://user:***@127.0.0.1:9" in run.stdout


def test_a_run_keeps_secrets_out_of_logs_summary_stats_and_status(cli: Cli, tmp_path: Path,
                                                                   http1_site: SiteServer) -> None:  # fmt: skip
    job = _job(tmp_path, http1_site)
    # The proxy list is unreachable (port 9): drop it for the run itself, the rest stays.
    run = cli("run", str(job), "--set", "http.proxies=[]", "--log-level", "DEBUG", "--progress", "off",
              env={"TOKEN": TOKEN})  # fmt: skip
    assert run.returncode == 1, run.stderr  # the one page is a 404: above max_error_rate
    _assert_clean(run.stdout + run.stderr)
    assert "token=***" in run.stderr  # the failing URL is reported, masked
    stats = (tmp_path / "stats.json").read_text()
    _assert_clean(stats)
    assert json.loads(stats)["error_examples"]["http_404"] == [f"{http1_site.url}/status/404?token=***"]
    status = cli("status", str(job), "--json", env={"TOKEN": TOKEN})
    assert status.returncode == 0, status.stderr
    _assert_clean(status.stdout + status.stderr)
