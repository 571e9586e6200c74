"""Property tests for the job loader: whatever mapping, text or `--set` a user writes, the loader either
returns a Job or raises JobError naming the key; it never raises anything else."""

from __future__ import annotations

import math
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from crawler import Job, JobError
from crawler.config.job import load_job_text
from crawler.config.jobfile import _submodel


def _schema_keys(model: type[BaseModel] = Job, seen: set[type[BaseModel]] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    seen.add(model)
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name)
        sub = _submodel(field.annotation)
        if sub is not None and sub not in seen:
            keys |= _schema_keys(sub, seen)
    return keys


KEYS = sorted(_schema_keys())
VALID = Job(start_urls=["https://example.com/"]).model_dump(mode="json", by_alias=True)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["5/s", "unlimited", "20MB", "https://example.com/", "a[href]", "data.items[*].id", "-1", ""]),
)  # fmt: skip
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=12))
values = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=4),
                                                          st.dictionaries(keys, children, max_size=4)),
                      max_leaves=20)  # fmt: skip


def _load(data: Any, overrides: list[str] | None = None) -> Job | JobError:
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        return load_job_text(text, "job.yaml", overrides)
    except JobError as exc:
        assert exc.problems, "a JobError names at least one problem"
        assert all(p.message for p in exc.problems)
        assert exc.render().strip()
        return exc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=6))
def test_any_mapping_loads_or_is_a_clean_error(data: dict[str, Any]) -> None:
    _load(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_loads_or_is_a_clean_error(text: str) -> None:
    try:
        load_job_text(text, "job.yaml")
    except JobError as exc:
        assert exc.render().strip()


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _leaf_paths(v, (*path, k))
    return out


PATHS = _leaf_paths(VALID)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PATHS), values)
def test_one_bad_value_is_reported_at_its_key(path: tuple[str, ...], value: Any) -> None:
    data = yaml.safe_load(yaml.safe_dump(VALID))
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    result = _load(data)
    if isinstance(result, JobError):
        dotted = ".".join(path)
        for problem in result.problems:
            # The problem is at the changed key, inside it, or at a section (or the job) that holds it.
            assert problem.path.startswith(dotted) or dotted.startswith(problem.path), (dotted, problem)
            assert problem.line is not None or problem.path == "", problem


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from([*KEYS, "0", "[0]", "x.y"]), min_size=0, max_size=4),
                          st.text(max_size=20)), max_size=3))  # fmt: skip
def test_any_set_loads_or_is_a_clean_error(assignments: list[tuple[list[str], str]]) -> None:
    overrides = [".".join(parts) + "=" + value for parts, value in assignments]
    _load({"start_urls": ["https://example.com/"]}, overrides)


def test_nan_and_huge_numbers_are_errors_not_crashes() -> None:
    for value in (math.nan, math.inf, 2**80, -(2**80)):
        assert isinstance(_load({**VALID, "concurrency": {"workers": value}}), JobError)


# Raw YAML for values a hostile or careless job file holds: numbers past every range, non-finite floats,
# huge strings, header injection, selectors and URLs that cannot work.
HOSTILE = [
    "9" * 5000, "-" + "9" * 5000, "9" * 25, ".inf", "-.inf", ".nan", "-1", "-1.5", "1.0e+308", "0",
    "'" + "a" * 5000 + "'", "'" + "a/" * 3000 + "'", "\"a\\r\\nX-Injected: 1\"", "\"\\0\"", "'a[[['",
    "'http://'", "'http://:99999/'", "'9999999999999/s'", "'1/0.000001ms'", "'" + "9" * 400 + "/s'",
    "[" + "1," * 2000 + "1]", "{a: {b: {c: {d: {e: 1}}}}}", "'${NOPE:-}'", "'\\t'",
]  # fmt: skip


def _with_raw_value(path: tuple[str, ...], raw: str) -> str:
    data = yaml.safe_load(yaml.safe_dump(VALID))
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = "__HOSTILE__"
    return yaml.safe_dump(data, sort_keys=False).replace("__HOSTILE__", raw.replace("\n", " "), 1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), st.sampled_from(HOSTILE))
def test_hostile_values_at_any_key_are_clean_errors_at_that_key(path: tuple[str, ...], raw: str) -> None:
    text = _with_raw_value(path, raw)
    try:
        job = load_job_text(text, "job.yaml")
    except JobError as exc:
        dotted = ".".join(path)
        assert exc.problems and exc.render().strip()
        for problem in exc.problems:
            assert problem.path.startswith(dotted) or dotted.startswith(problem.path), (dotted, problem)
            assert problem.line is not None, problem
            assert len(problem.message) < 500, "a hostile value is shortened, not echoed whole"
        return
    # Accepted: then every number is finite and every header value is free of CR/LF.
    dumped = job.model_dump(mode="json", by_alias=True)
    _assert_sane(dumped)


def _assert_sane(node: Any) -> None:
    if isinstance(node, dict):
        for v in node.values():
            _assert_sane(v)
    elif isinstance(node, list):
        for v in node:
            _assert_sane(v)
    elif isinstance(node, float):
        assert math.isfinite(node)
    elif isinstance(node, int) and not isinstance(node, bool):
        assert -(2**63) <= node < 2**63


def test_the_hostile_values_of_the_issue_are_each_refused() -> None:
    for path, raw in [(("http", "max_body"), "9" * 5000), (("http", "max_body"), ".inf"),
                      (("http", "verify"), "'" + "a" * 5000 + "'"), (("http", "max_body"), "-1.5"),
                      (("http", "user_agent"), "\"a\\r\\nX: 1\""), (("extract", "links"), "'a[[['"),
                      (("start_urls",), "['http://']")]:  # fmt: skip
        text = _with_raw_value(path, raw)
        result = None
        try:
            result = load_job_text(text, "job.yaml")
        except JobError as exc:
            assert exc.problems[0].path.startswith(".".join(path)), exc.render()
        assert result is None, f"{'.'.join(path)} = {raw[:40]} was accepted"
