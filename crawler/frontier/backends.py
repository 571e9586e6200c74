"""Choosing a job's frontier backend, in one place: open it, discard its saved state (`--fresh`), or read its
progress (`crawler status`). The persistent backends are imported only when a job uses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crawler.config.job import Job
from crawler.frontier.base import FrontierBackend
from crawler.frontier.memory import MemoryFrontier

__all__ = ["discard_state", "open_frontier", "read_status", "repair_state"]


async def open_frontier(job: Job) -> FrontierBackend:
    kind = job.frontier_kind
    if kind == "redis":
        from crawler.frontier.redis import RedisFrontier

        return await RedisFrontier.connect(job.frontier, job.name, items=job.output.items,
                                           per_host=job.concurrency.per_host)
    if kind == "sqlite":
        from crawler.frontier.sqlite import SqliteFrontier

        assert job.state is not None
        return await SqliteFrontier.open(Path(job.state), memory_queue=job.memory_queue)
    return MemoryFrontier(memory_queue=job.memory_queue)


async def discard_state(job: Job) -> bool:
    """Delete the job's saved frontier (its SQLite state directory or its Redis keys); False if none."""
    kind = job.frontier_kind
    if kind == "redis":
        from crawler.frontier.redis import RedisFrontier

        return bool(await RedisFrontier.discard(job.frontier, job.name))
    if kind == "sqlite":
        from crawler.frontier.sqlite import SqliteFrontier

        assert job.state is not None
        return bool(SqliteFrontier.discard(job.state))
    return False


async def read_status(job: Job, *, top_hosts: int = 10) -> dict[str, Any] | None:
    """The saved progress of the job's frontier, or None when it keeps no state (memory)."""
    kind = job.frontier_kind
    if kind == "redis":
        from crawler.frontier.redis import read_status as redis_status

        return await redis_status(job.frontier, job.name, top_hosts=top_hosts)
    if kind == "sqlite":
        from crawler.frontier.sqlite import read_status as sqlite_status

        assert job.state is not None
        return sqlite_status(job.state, top_hosts=top_hosts)
    return None


async def repair_state(job: Job) -> list[dict[str, Any]] | None:
    """Requeue the leases of the job's dead workers at once (`crawler status --repair`); None when the job's
    frontier has no workers to repair (only the Redis frontier has)."""
    if job.frontier_kind != "redis":
        return None
    from crawler.frontier.redis import repair

    return await repair(job.frontier, job.name)
