"""The queue table on disk, shared by the SQLite state (`crawler.frontier.sqlite`) and the memory frontier's
spill: `SpillStore` keeps the requests beyond the memory frontier's bound in a private temporary database."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from crawler.model.request import Request

__all__ = ["QUEUE_SCHEMA", "READ_HOST", "SpillStore"]

# `data` is `Request.to_dict()` as JSON; rows of a host come back in id (push) order.
QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY, host_id INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS queue_by_host ON queue (host_id, id);
"""
READ_HOST = "SELECT id, data FROM queue WHERE host_id = ? AND id > ? ORDER BY id LIMIT ?"


class SpillStore:
    """Queued requests beyond the memory frontier's bound: the queue table in a private temporary SQLite
    database (an empty file name: SQLite creates it in $SQLITE_TMPDIR, $TMPDIR or /var/tmp and unlinks it
    at once, so it is gone when the process ends, kill -9 included). Rows are read back per host, oldest first,
    and deleted as they are read."""

    def __init__(self) -> None:
        self._conn = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        # A scratch file: no journal, no fsync, a small page cache (the rows are here to leave memory).
        self._conn.execute("PRAGMA journal_mode = OFF")
        self._conn.execute("PRAGMA synchronous = OFF")
        self._conn.execute("PRAGMA cache_size = -4000")
        self._conn.execute("PRAGMA temp_store = FILE")
        self._conn.executescript(QUEUE_SCHEMA)
        self._host_ids: dict[str, int] = {}
        self._next_id = 1

    def write(self, requests: Sequence[Request]) -> None:
        host_ids = self._host_ids
        rows = []
        rid = self._next_id
        dumps = orjson.dumps
        for req in requests:
            hid = host_ids.get(req.host)
            if hid is None:
                hid = host_ids[req.host] = len(host_ids) + 1
            rows.append((rid, hid, dumps(req.to_dict()).decode()))
            rid += 1
        self._next_id = rid
        conn = self._conn
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO queue (id, host_id, data) VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")

    def read(self, host: str, count: int) -> list[Request]:
        hid = self._host_ids.get(host)
        if hid is None:
            return []
        conn = self._conn
        rows = conn.execute(READ_HOST, (hid, 0, count)).fetchall()
        if rows:
            conn.execute("DELETE FROM queue WHERE host_id = ? AND id <= ?", (hid, rows[-1][0]))
        loads, from_dict = orjson.loads, Request.from_dict
        return [from_dict(loads(data)) for _, data in rows]

    def close(self) -> None:
        self._conn.close()
