"""`make bench` rewrites RESULTS.md from scratch: the scale model's block (between its markers) survives it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import run as bench_run
from benchmarks.scale_model import MARK_END, MARK_START, carry_over, render


def _row(frontier: str, processes: int, **extra: float) -> dict[str, object]:
    row: dict[str, object] = {"frontier": frontier, "processes": processes, "pages": 1000, "pages_per_second": 900.0,
                              "crawler_cpu_ms": 1.0}  # fmt: skip
    if frontier != "memory":
        row.update({"commands": 20.0, "lua_calls": 0.1, "lua_usec": 50.0, "redis_cpu": 0.0001, "net_in": 300.0,
                    "net_out": 150.0, "per_master": [7.0, 6.0, 7.0]})  # fmt: skip
    row.update(extra)
    return row


def test_a_rewritten_results_file_keeps_the_last_scale_model_block() -> None:
    block = render([_row("memory", 1), _row("redis", 1, crawler_cpu_ms=1.1), _row("cluster", 2)], 999, 16)
    previous = "# Benchmark results\n\nold tables\n\n" + block + "\nafter\n"
    rewritten = carry_over(previous, "# Benchmark results\n\nnew tables\n")
    assert rewritten.startswith("# Benchmark results\n\nnew tables\n")
    assert block.strip() in rewritten and rewritten.count(MARK_START) == 1 and rewritten.count(MARK_END) == 1
    assert carry_over("no block here", "fresh\n") == "fresh\n"
    assert carry_over(previous, "fresh\n" + block) == "fresh\n" + block, "a new block wins over the old one"


def test_the_projection_sizes_the_cluster_from_the_measured_cost_per_command() -> None:
    block = render([_row("redis", 2)], 999, 16)
    # 20 commands a page at 0.1 ms of Redis CPU: 200,000 commands per CPU-second, 140,000 at 70% of a core;
    # 100,000 pages/s need 2,000,000 commands/s: 15 masters.
    assert "| redis (2 processes) | 2,000,000 | 45 | 10.0 | 140,000 | **15** | 6,667 |" in block
    assert "7.0 / 6.0 / 7.0 (1.17)" in block


def test_make_bench_rewriting_results_md_keeps_the_scale_model_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The path `make bench` ends on (`benchmarks.run` writing its report), through `--render`; no peers, no chart.
    monkeypatch.setattr(bench_run, "ensure_peers", lambda **_: bench_run.Peers(None))
    block = render([_row("memory", 1), _row("redis", 1, crawler_cpu_ms=1.1), _row("cluster", 2)], 999, 16)
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Benchmark results\n\nold tables\n\n" + block)
    run_json = tmp_path / "run.json"
    meta = {"date": "today", "args": "", "duration_min": 1, "machine": {"cores": "2"}, "problems": [],
            "nginx": "nginx/test", "versions": {"crawler": "test"}, "load_before": 0.0, "load_after": 0.0}  # fmt: skip
    run_json.write_text(json.dumps({"meta": meta}))
    assert bench_run.main(["--render", str(run_json), "--results", str(results_md),
                           "--chart", str(tmp_path / "chart.png")]) == 0  # fmt: skip
    rewritten = results_md.read_text()
    assert "old tables" not in rewritten and "**Versions**: crawler test." in rewritten
    assert block.strip() in rewritten and rewritten.count(MARK_START) == 1 and rewritten.count(MARK_END) == 1
