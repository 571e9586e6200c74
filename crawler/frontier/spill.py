"""Where the memory frontier keeps the requests beyond its bound: packed blocks (`crawler.frontier.records`) in a
private temporary SQLite database, read back per host in push order. The queue table of the SQLite state
(`QUEUE_SCHEMA`, one JSON row per request) is defined here too, beside it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from crawler.frontier.records import Block, pack_blocks
from crawler.model.request import Request

__all__ = ["QUEUE_SCHEMA", "READ_HOST", "SpillStore"]

# The state's queue: `data` is `Request.to_dict()` as JSON; rows of a host come back in id (push) order.
QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY, host_id INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS queue_by_host ON queue (host_id, id);
"""
READ_HOST = "SELECT id, data FROM queue WHERE host_id = ? AND id > ? ORDER BY id LIMIT ?"

# The spill: one row per block (the new requests of one push for one host and priority), packed and front-coded.
_SPILL_SCHEMA = """
CREATE TABLE spill (id INTEGER PRIMARY KEY, host_id INTEGER NOT NULL, priority INTEGER NOT NULL,
                    count INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX spill_by_host ON spill (host_id, id);
"""


class SpillStore:
    """Queued requests beyond the memory frontier's bound, in a private temporary SQLite database.

    An empty file name makes SQLite create the file in $SQLITE_TMPDIR, $TMPDIR or /var/tmp and unlink it at
    once: it is gone when the process ends, kill -9 included, and nothing else can open it.
    """

    def __init__(self) -> None:
        self._conn = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        # A scratch file: no journal, no fsync, a small page cache (the rows are here to leave memory).
        self._conn.execute("PRAGMA journal_mode = OFF")
        self._conn.execute("PRAGMA synchronous = OFF")
        self._conn.execute("PRAGMA cache_size = -4000")
        self._conn.executescript(_SPILL_SCHEMA)
        self._host_ids: dict[str, int] = {}

    def write(self, requests: Sequence[Request]) -> None:
        """Store requests (of any hosts), in order: one packed block per host and priority."""
        by_host: dict[str, list[Request]] = {}
        for req in requests:
            batch = by_host.get(req.host)
            if batch is None:
                batch = by_host[req.host] = []
            batch.append(req)
        host_ids = self._host_ids
        rows = []
        for host, batch in by_host.items():
            hid = host_ids.get(host)
            if hid is None:
                hid = host_ids[host] = len(host_ids) + 1
            rows += [(hid, priority, count, data) for priority, count, data in pack_blocks(batch)]
        conn = self._conn
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO spill (host_id, priority, count, data) VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")

    def read(self, host: str, count: int) -> list[Block]:
        """Take the host's oldest blocks, at least `count` requests while there are; they leave the store."""
        hid = self._host_ids.get(host)
        if hid is None:
            return []
        conn = self._conn
        blocks: list[Block] = []
        taken = 0
        last = 0
        for rid, priority, size, data in conn.execute(
            "SELECT id, priority, count, data FROM spill WHERE host_id = ? ORDER BY id", (hid,)
        ):
            blocks.append((priority, size, data))
            taken += size
            last = rid
            if taken >= count:
                break
        if blocks:
            conn.execute("DELETE FROM spill WHERE host_id = ? AND id <= ?", (hid, last))
        return blocks

    def close(self) -> None:
        self._conn.close()
