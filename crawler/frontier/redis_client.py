"""Opening the Redis client of a frontier URL: one server, or a Redis Cluster.

- `redis://[user:password@]host:port/db`, `rediss://...` (TLS), `unix:///path.sock`: one server. A `redis://`
  URL whose server turns out to be a cluster node (`INFO cluster` says `cluster_enabled:1`) opens the cluster
  it belongs to: autodetection, so the same job file works against either.
- `redis+cluster://[user:password@]host:port,host:port,.../` (`rediss+cluster://` for TLS): a Redis Cluster,
  from any of the listed nodes (the client learns the others, and follows the slots as they move).

Our own options ride in the query string and are taken out before redis-py sees the URL: `?lease=SECONDS`,
`?outage=SECONDS` (see `crawler.frontier.redis`), `?shards=N` and `?partitions=N` (see
`crawler.frontier.redis_layout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

__all__ = ["CLUSTER_SCHEMES", "OUR_OPTIONS", "Target", "open_client", "split_url"]

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
OUR_OPTIONS = ("lease", "outage", "shards", "partitions")
SOCKET_TIMEOUT, CONNECT_TIMEOUT = 10.0, 5.0


@dataclass(frozen=True)
class Target:
    """A frontier URL taken apart: what redis-py is given, whether it names a cluster, and our options."""

    url: str  # the URL without our options (for a cluster: redis[s]://first-node, with credentials)
    nodes: tuple[tuple[str, int], ...]  # a cluster's listed nodes; () for one server
    options: dict[str, str]

    @property
    def where(self) -> str:
        """Host:port (or socket path) for messages: never the credentials."""
        if self.nodes:
            return ",".join(f"{h}:{p}" for h, p in self.nodes)
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname}:{parts.port or 6379}"


def split_url(url: str) -> Target:
    """Separate our options from the URL, and a cluster's node list from its scheme."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k in OUR_OPTIONS:
            ours[k] = v
        else:
            rest.append((k, v))
    query = urlencode(rest)
    if not url.startswith(CLUSTER_SCHEMES):
        return Target(urlunsplit(parts._replace(query=query)), (), ours)
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for node in hosts.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"cluster node {node!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    scheme = "rediss" if parts.scheme.startswith("rediss") else "redis"
    first = f"{credentials}@" if credentials else ""
    first_host, first_port = nodes[0]
    bracketed = f"[{first_host}]" if ":" in first_host else first_host
    netloc = f"{first}{bracketed}:{first_port}"
    return Target(urlunsplit((scheme, netloc, parts.path, query, "")), tuple(nodes), ours)


async def open_client(target: Target) -> tuple[Any, bool]:
    """A connected client for `target` and whether it is a cluster client. Raises what redis-py raises when
    nothing answers (the caller reports it)."""
    common: dict[str, Any] = {"decode_responses": True, "socket_timeout": SOCKET_TIMEOUT,
                              "socket_connect_timeout": CONNECT_TIMEOUT}  # fmt: skip
    if target.nodes:
        return await _cluster(target, common), True
    client = aioredis.from_url(target.url, **common)
    try:
        info = await client.info("cluster")
    except BaseException:
        await client.aclose()
        raise
    if not info.get("cluster_enabled"):
        return client, False
    await client.aclose()
    return await _cluster(target, common), True


async def _cluster(target: Target, common: dict[str, Any]) -> RedisCluster:
    parts = urlsplit(target.url)
    nodes = target.nodes or ((parts.hostname or "127.0.0.1", parts.port or 6379),)
    client = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in nodes],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "rediss",
        **common,
    )
    try:
        await client.initialize()
    except BaseException:
        await client.aclose()
        raise
    return client
