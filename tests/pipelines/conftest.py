"""Helpers for the crawl-feature tests (the `api` site fixture is in tests/conftest.py): run a job through
the library the way `crawler run` does, and read the items it wrote."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from crawler import Crawler, Job, Stats


def read_items(path: Path) -> list[dict[str, Any]]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [json.loads(line) for line in data.splitlines()]


async def run_job(config: dict[str, Any], tmp_path: Path) -> tuple[Stats, list[dict[str, Any]]]:
    """Crawl `config` (a job mapping) into tmp_path/items.jsonl; returns the stats and the items written."""
    items = tmp_path / "items.jsonl"
    config = {"output": {"items": str(items)}, **config}
    config.setdefault("http", {}).setdefault("http2", False)
    job = Job.model_validate(config)
    crawler = Crawler(job)
    async with crawler:
        stats = await crawler.run()
    return stats, read_items(items) if items.exists() else []
