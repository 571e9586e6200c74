"""Fixtures for the frontier backends: a real `redis-server` per session, and one factory per backend so the
same specification runs against memory, SQLite and Redis.

Without `redis-server` the Redis tests fail when `CRAWLER_REQUIRE_REDIS=1` (set by .ci/run) or `CI` is set,
and are skipped only on a developer machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.frontier._backends import Backend, RedisServer, start_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, no persistence, removed after the session."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


BACKENDS = ["memory", "sqlite", "redis"]


async def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    b = Backend(request.param, tmp_path, server)
    try:
        yield b
    finally:
        await b.close_all()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async for b in _backend(request, tmp_path):
        yield b


@pytest.fixture(params=[b for b in BACKENDS if b != "memory"])
async def persistent_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The backends that outlive a process (the memory frontier dies with its process)."""
    async for b in _backend(request, tmp_path):
        yield b


@pytest.fixture(params=["memory", "sqlite"])
async def bounded_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The backends that hold a bounded number of requests in memory and keep the rest on disk."""
    async for b in _backend(request, tmp_path):
        yield b


@pytest.fixture
async def redis_backend(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Backend]:
    b = Backend("redis", tmp_path, redis_server)
    try:
        yield b
    finally:
        await b.close_all()
