"""`make bench` rewrites RESULTS.md from scratch: the scale model's block (between its markers) survives it."""

from __future__ import annotations

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
