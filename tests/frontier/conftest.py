"""Fixtures for the frontier backends: a real `redis-server` and a real 3-master Redis Cluster per session, and
one factory per backend so the same specification runs against memory, SQLite, Redis and Redis Cluster.

Without `redis-server` the Redis tests fail when `CRAWLER_REQUIRE_REDIS=1` (set by .ci/run) or `CI` is set,
and are skipped only on a developer machine; a cluster that cannot be made fails everywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.frontier._backends import (
    Backend,
    RedisClusterServers,
    RedisServer,
    start_redis,
    start_redis_cluster,
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, no persistence, removed after the session."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """Three redis-server masters in cluster mode (no replicas), joined by `redis-cli --cluster create`."""
    cluster = start_redis_cluster(3)
    try:
        yield cluster
    finally:
        cluster.stop()


BACKENDS = ["memory", "sqlite", "redis", "redis-cluster", "redis-partitioned"]
_SERVERS = {"redis": "redis_server", "redis-cluster": "redis_cluster", "redis-partitioned": "redis_server"}


async def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    server = request.getfixturevalue(_SERVERS[request.param]) if request.param in _SERVERS else None
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
async def cluster_backend(redis_cluster: RedisClusterServers, tmp_path: Path) -> AsyncIterator[Backend]:
    b = Backend("redis-cluster", tmp_path, redis_cluster)
    try:
        yield b
    finally:
        await b.close_all()


@pytest.fixture
async def redis_backend(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Backend]:
    b = Backend("redis", tmp_path, redis_server)
    try:
        yield b
    finally:
        await b.close_all()
