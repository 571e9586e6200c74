"""`crawler check` and the job-file errors every command shares: key path, file and line, what is allowed,
exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import REPO_ROOT, Cli, write_job

GOOD = "name: t\nstart_urls: [https://example.com/]\n"


def _assert_clean_error(proc: object, *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)  # type: ignore[attr-defined]
    err = proc.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_valid_job_prints_the_resolved_config_as_yaml(cli: Cli, tmp_path: Path) -> None:
    write_job(tmp_path, GOOD)
    proc = cli("check", "job.yaml")
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["start_urls"] == ["https://example.com/"]
    assert resolved["concurrency"]["workers"] == 64, "defaults are filled in"
    assert resolved["rate_limit"]["per_host"] == "20/s"
    assert resolved["max_error_rate"] == 0.5
    assert "job.yaml: ok" in proc.stderr


def test_typo_names_the_key_line_and_a_suggestion(cli: Cli, tmp_path: Path) -> None:
    write_job(tmp_path, GOOD + "concurency:\n  workers: 4\n")
    _assert_clean_error(cli("check", "job.yaml"), "job.yaml:3:1", "concurency", "did you mean 'concurrency'")


def test_nested_typo_lists_the_allowed_keys(cli: Cli, tmp_path: Path) -> None:
    write_job(tmp_path, GOOD + "scope:\n  max_page: 5\n")
    _assert_clean_error(cli("check", "job.yaml"), "job.yaml:4:3", "scope.max_page", "did you mean 'max_pages'",
                        "allowed: allowed_domains")  # fmt: skip


def test_wrong_type_names_key_line_and_value(cli: Cli, tmp_path: Path) -> None:
    write_job(tmp_path, GOOD + "concurrency:\n  workers: lots\n")
    _assert_clean_error(
        cli("check", "job.yaml"), "job.yaml:4:3", "concurrency.workers", "valid integer", "'lots'"
    )


@pytest.mark.parametrize(("extra", "needles"), [
    ("rate_limit: {per_host: fast}\n", ["rate_limit.per_host", "'N/s'"]),
    ("output: {items: out.xml}\n", ["output.items", ".jsonl"]),
    ("scope: {deny: ['(']}\n", ["scope.deny", "invalid regular expression"]),
    ("extract: {fields: {t: 'a[[['}}\n", ["extract.fields", "t"]),
    ("extract: {json: {t: 'a..b'}}\n", ["extract.json", "invalid key path"]),
    ("paginate: {cursor_field: next}\n", ["paginate", "cursor_param"]),
    ("max_error_rate: 2\n", ["max_error_rate", "less than or equal to 1"]),
    ("stages: [notapath]\n", ["stages", "package.module:callable"]),
    ("concurrency: {workers: 0}\n", ["concurrency.workers", "greater than or equal to 1"]),
])  # fmt: skip
def test_bad_values_say_what_is_allowed(cli: Cli, tmp_path: Path, extra: str, needles: list[str]) -> None:
    write_job(tmp_path, GOOD + extra)
    _assert_clean_error(cli("check", "job.yaml"), "job.yaml:3:", *needles)


@pytest.mark.parametrize(("text", "needles"), [
    ("start_urls: [https://a/\n", ["job.yaml:", "YAML syntax error"]),
    ("", ["start_urls or start_sitemaps"]),
    ("- a\n- b\n", ["a YAML mapping"]),
    ("a: &a [*a]\nstart_urls: [https://a/]\n", ["recursive alias"]),
    ("start_urls: [https://a/]\nstart_urls: [https://b/]\n", ["job.yaml:2:1", "duplicate key"]),
    ("start_urls: [ftp://a/]\n", ["start_urls", "absolute http(s) URL"]),
    ("start_urls: ['${NO_SUCH_VAR_HOPEFULLY}']\n", ["NO_SUCH_VAR_HOPEFULLY is not set"]),
])  # fmt: skip
def test_broken_documents(cli: Cli, tmp_path: Path, text: str, needles: list[str]) -> None:
    write_job(tmp_path, text)
    _assert_clean_error(cli("check", "job.yaml"), *needles)


def test_unreadable_files(cli: Cli, tmp_path: Path) -> None:
    _assert_clean_error(cli("check", "missing.yaml"), "missing.yaml", "no such file")
    (tmp_path / "dir.yaml").mkdir()
    _assert_clean_error(cli("check", "dir.yaml"), "is a directory")
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    _assert_clean_error(cli("check", "latin1.yaml"), "not UTF-8")


def test_stage_that_does_not_import_is_reported(cli: Cli, tmp_path: Path) -> None:
    write_job(tmp_path, GOOD + "stages: ['no_such_module_xyz:stage']\n")
    _assert_clean_error(cli("check", "job.yaml"), "stages[0]", "no_such_module_xyz")


def test_environment_variables_are_substituted(cli: Cli, tmp_path: Path) -> None:
    write_job(tmp_path, "start_urls: ['${BASE}/start']\nname: '${NAME:-fallback}'\n")
    proc = cli("check", "job.yaml", env={"BASE": "https://example.org"})
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["start_urls"] == ["https://example.org/start"] and resolved["name"] == "fallback"


@pytest.mark.parametrize(("assignment", "key", "value"), [
    ("scope.max_pages=50", ("scope", "max_pages"), 50),
    ("rate_limit.per_host=5/s", ("rate_limit", "per_host"), "5/s"),
    ("rate_limit.per_host=unlimited", ("rate_limit", "per_host"), "unlimited"),
    ("rate_limit.hosts.api.example.com=2/s", ("rate_limit", "hosts", "api.example.com"), "2/s"),
    ("name=123", ("name",), "123"),
    ("scope.robots_txt=false", ("scope", "robots_txt"), False),
    ("retry.backoff.initial=0.25", ("retry", "backoff", "initial"), 0.25),
    ("start_urls=https://b/", ("start_urls",), ["https://b/"]),
    ("start_urls=[https://b/, https://c/]", ("start_urls",), ["https://b/", "https://c/"]),
    ("start_urls[1]=https://z/", ("start_urls",), ["https://example.com/", "https://z/"]),
    # (A header named like a credential, X-Token, would be shown as *** by check: see test_secrets.py.)
    ("http.headers.X-Trace=abc=def", ("http", "headers", "X-Trace"), "abc=def"),
    ("output.items=out/items.jsonl.gz", ("output", "items"), "out/items.jsonl.gz"),
    ("output.stats=null", ("output", "stats"), None),
    ("extract.links=null", ("extract", "links"), None),
    ("paginate.param=page", ("paginate", "param"), "page"),
    ("max_error_rate=0.1", ("max_error_rate",), 0.1),
])  # fmt: skip
def test_set_is_typed_by_the_schema(cli: Cli, tmp_path: Path, assignment: str, key: tuple[str, ...],
                                    value: object) -> None:  # fmt: skip
    write_job(tmp_path, GOOD)
    proc = cli("check", "job.yaml", "--set", assignment)
    assert proc.returncode == 0, proc.stderr
    node = yaml.safe_load(proc.stdout)
    for part in key:
        node = node[part]
    assert node == value


@pytest.mark.parametrize(("assignment", "needles"), [
    ("scope.max_pages=many", ["--set scope.max_pages=many", "valid integer"]),
    ("concurency.workers=4", ["--set concurency.workers=4", "did you mean 'concurrency'"]),
    ("scope", ["is not dotted.key=value"]),
    ("name.first=x", ["name", "not a mapping"]),
    ("start_urls[7]=https://x/", ["out of range"]),
])  # fmt: skip
def test_bad_set_is_reported_against_the_set(
    cli: Cli, tmp_path: Path, assignment: str, needles: list[str]
) -> None:
    write_job(tmp_path, GOOD)
    _assert_clean_error(cli("check", "job.yaml", "--set", assignment), *needles)


def test_every_example_job_validates(cli: Cli) -> None:
    jobs = sorted(str(p) for p in (REPO_ROOT / "configs").glob("*.yaml"))
    assert len(jobs) >= 4
    proc = cli("check", "-q", *jobs)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def test_version_and_help(cli: Cli) -> None:
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("crawler ")
    top = cli("--help")
    assert top.returncode == 0 and "run" in top.stdout and "check" in top.stdout
    run_help = cli("run", "--help")
    assert run_help.returncode == 0
    assert "--set scope.max_pages=50" in run_help.stdout and "exit codes" in run_help.stdout
    check_help = cli("check", "--help")
    assert check_help.returncode == 0 and "examples" in check_help.stdout


@pytest.mark.parametrize("args", [[], ["run"], ["check"], ["run", "job.yaml", "--no-such-flag"], ["nope"],
                                  ["run", "job.yaml", "--log-level", "LOUD"]])  # fmt: skip
def test_usage_errors_exit_2(cli: Cli, tmp_path: Path, args: list[str]) -> None:
    write_job(tmp_path, GOOD)
    proc = cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
