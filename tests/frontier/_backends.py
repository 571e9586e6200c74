"""Test helpers for the frontier backends: starting a private redis-server, and `Backend`, which opens
frontiers of one kind on one crawl's state (a second `open()` is a restart for SQLite, another worker for
Redis) and can drop one the way kill -9 would."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from crawler.demo.launcher import free_port
from crawler.frontier.base import FrontierBackend
from crawler.frontier.memory import MemoryFrontier


@dataclass
class RedisServer:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes]
    appendonly: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill9(self) -> None:
        """Kill the server the hard way (its data survives only in the AOF, when there is one)."""
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        """Start the server again on the same port and directory (it reloads its AOF)."""
        server = start_redis(appendonly=self.appendonly, port=self.port, directory=self.directory)
        self.proc = server.proc

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, decode_responses=True)


def redis_required() -> bool:
    return os.environ.get("CRAWLER_REQUIRE_REDIS") == "1" or bool(os.environ.get("CI"))


def _missing(message: str) -> NoReturn:
    """A Redis program is not installed: fail where Redis is required (CI), skip elsewhere."""
    if redis_required():
        pytest.fail(message + " [CRAWLER_REQUIRE_REDIS/CI is set, so this fails instead of skipping]",
                    pytrace=False)  # fmt: skip
    pytest.skip(message)


def start_redis(*, appendonly: bool = False, port: int | None = None, directory: Path | None = None,
                extra: list[str] | None = None) -> RedisServer:
    """A private redis-server on a free loopback port. `appendonly`: an AOF fsynced on every write, so that a
    kill -9 loses nothing acknowledged (what a crawl needs to come through a Redis crash exactly once).
    `extra`: more server options (cluster mode)."""
    exe = shutil.which("redis-server")
    if exe is None:
        _missing("redis-server is not installed: the Redis frontier tests need a real server "
                 "(Debian: apt-get install redis-server; .ci/run installs it)")  # fmt: skip
    directory = directory or Path(tempfile.mkdtemp(prefix="crawler-redis-"))
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else ["--appendonly", "no"]
    last_error = ""
    fixed_port = port
    for _ in range(1 if fixed_port else 5):  # another process may grab the free port between probe and bind
        port = fixed_port or free_port()
        log = open(directory / "redis.log", "ab")
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(directory), "--protected-mode", "no", "--daemonize", "no", *(extra or [])],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.5) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return RedisServer(port, directory, proc, appendonly)
            time.sleep(0.05)
        last_error = (directory / "redis.log").read_text(errors="replace")[-2000:]
        proc.kill()
        proc.wait()
    shutil.rmtree(directory, ignore_errors=True)
    pytest.fail(f"redis-server did not start:\n{last_error}", pytrace=False)


@dataclass
class RedisClusterServers:
    """A real Redis Cluster on loopback: `masters` redis-server processes with cluster mode on, no replicas."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def clients(self) -> list[Any]:
        """A plain client per master (for INFO, CONFIG RESETSTAT): the cluster's own view of each node."""
        return [n.client() for n in self.nodes]


def start_redis_cluster(masters: int = 3) -> RedisClusterServers:
    """`masters` redis-server processes with `--cluster-enabled yes`, joined by `redis-cli --cluster create
    ... --cluster-replicas 0 --cluster-yes`, waited for until every node says `cluster_state:ok`. Fails (never
    skips) when redis-server is there but the cluster cannot be made; without redis-server it fails or skips
    as `start_redis` does."""
    if shutil.which("redis-server") is None:
        start_redis()  # fails in CI, skips elsewhere, with the message saying what to install
    cli = shutil.which("redis-cli")
    if cli is None:
        _missing("redis-cli is not installed: the Redis Cluster tests make their cluster with it "
                 "(Debian: apt-get install redis-tools; .ci/run installs it)")  # fmt: skip
    nodes: list[RedisServer] = []
    try:
        for _ in range(masters):
            bus = free_port()
            nodes.append(start_redis(extra=["--cluster-enabled", "yes", "--cluster-port", str(bus),
                                            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"]))  # fmt: skip
        create = subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
                                 "--cluster-replicas", "0", "--cluster-yes"],
                                capture_output=True, timeout=60, check=False)  # fmt: skip
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{create.stdout.decode(errors='replace')[-2000:]}"
                               f"{create.stderr.decode(errors='replace')[-2000:]}")  # fmt: skip
        deadline = time.monotonic() + 30
        for node in nodes:
            client = node.client()
            try:
                while "cluster_state:ok" not in (state := str(client.execute_command("CLUSTER", "INFO"))):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"node {node.port} never reached cluster_state:ok: {state}")
                    time.sleep(0.1)
            finally:
                client.close()
    except Exception as exc:
        for node in nodes:
            node.stop()
        pytest.fail(f"the Redis Cluster fixture could not start: {exc}", pytrace=False)
    return RedisClusterServers(nodes)


@dataclass
class Backend:
    """Opens frontiers on one crawl's state. `open()` twice = two processes (Redis) or a restart (SQLite)."""

    name: str
    tmp: Path
    redis: RedisServer | RedisClusterServers | None = None
    job: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:10]}")
    opened: list[Any] = field(default_factory=list)
    _memory: MemoryFrontier | None = None

    @property
    def persistent(self) -> bool:
        return self.name != "memory"

    @property
    def shared(self) -> bool:
        """Several live instances may work on the same crawl at once."""
        return self.name.startswith("redis")

    @property
    def shares_rates(self) -> bool:
        """The backend holds per-host rates for every process (host-partitioned workers hold their own)."""
        return self.shared and self.name != "redis-partitioned"

    async def open(self, *, worker: str | None = None, lease: float = 30.0, **kwargs: Any) -> FrontierBackend:
        frontier: Any
        if self.name == "memory":
            if self._memory is None:
                self._memory = MemoryFrontier(**kwargs)
                self.opened.append(self._memory)
            return self._memory
        if self.name == "sqlite":
            from crawler.frontier.sqlite import SqliteFrontier

            frontier = await SqliteFrontier.open(self.tmp / "state", **kwargs)
        else:
            from crawler.frontier.redis import RedisFrontier

            assert self.redis is not None
            options = f"?lease={lease}" + ("&partitions=8" if self.name == "redis-partitioned" else "")
            frontier = await RedisFrontier.connect(f"{self.redis.url}{options}", self.job,
                                                   worker=worker or f"w-{uuid.uuid4().hex[:6]}", **kwargs)  # fmt: skip
        self.opened.append(frontier)
        return frontier  # type: ignore[no-any-return]

    async def crash(self, frontier: Any) -> None:
        """Drop a frontier the way kill -9 would: nothing flushed, nothing released."""
        self.opened.remove(frontier)
        if self.name == "sqlite":
            frontier._conn.close()  # an open transaction is rolled back, as after a kill
            frontier._lock.release()
        elif self.shared:
            frontier._closed = True
            assert frontier._keepalive is not None
            for task in (frontier._keepalive, frontier._pusher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            await frontier._r.aclose()

    async def close_all(self) -> None:
        for frontier in reversed(self.opened):
            await frontier.close()
        self.opened.clear()
        if self.shared:
            from crawler.frontier.redis import RedisFrontier

            assert self.redis is not None
            await RedisFrontier.discard(self.redis.url, self.job, force=True)
