"""The resumable frontier: queue, seen set, per-host counters and the output checkpoint in one SQLite file.

Layout of `DIR/frontier.sqlite3` (WAL, one writer: this process, guarded by a lock on `DIR/lock`):

- `queue(id, host_id, data)`: every request pushed and not yet acked; `data` is `Request.to_dict()` as
  JSON. Leases are not stored: a request popped but not acked stays in `queue`, so after a crash it is
  simply queued again when the frontier reopens.
- `seen(fp)`: every fingerprint ever queued, as a signed 64-bit INTEGER PRIMARY KEY (the rowid itself).
  The whole set is mirrored in memory by a `CompactSeenSet`, so dedup never reads the database.
- `hosts(id, host, pushed, done)`: per-host counters; `meta(key, value)`: the checkpoint and totals.
- `pages(fp, data, etag, last_modified)`: every page fetched (its request as JSON and the validators it
  answered with), written with the ack: what `crawler run --recrawl` revisits with conditional requests.

Commit protocol: pushes are written as they come, inside the open transaction; `ack()` deletes the acked
rows, stores the checkpoint and commits, all in one transaction. Links pushed by a page therefore commit
no later than the page's ack, and the checkpoint commits atomically with the acks it describes.

Memory stays flat: at most `memory_queue` requests wait in memory (packed, in `HostQueues`, the round-robin
loop the memory frontier uses too); past that, a host's new requests stay on disk only and are read back in id
order when the host's in-memory queue runs dry.

The queue table is shared with the memory frontier's spill (`crawler.frontier.spill`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from crawler.config.job import DEFAULT_MEMORY_QUEUE
from crawler.frontier.base import FrontierBase, KnownPage
from crawler.frontier.queues import HostQueues
from crawler.frontier.records import Block, pack_blocks
from crawler.frontier.spill import QUEUE_SCHEMA, READ_HOST
from crawler.model.errors import OutputError
from crawler.model.request import Request
from crawler.model.seen import CompactSeenSet

__all__ = ["SqliteFrontier", "StateCorrupt", "StateLocked", "verify_state"]

log = logging.getLogger("crawler.frontier")

DB_NAME = "frontier.sqlite3"
LOCK_NAME = "lock"
_SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (fp INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS hosts (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL UNIQUE,
    pushed INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pages (fp INTEGER PRIMARY KEY, data TEXT NOT NULL, etag TEXT, last_modified TEXT);
"""
# What `open` verifies before trusting a state: each table with its columns.
_TABLES = {"meta": ["key", "value"], "seen": ["fp"], "hosts": ["id", "host", "pushed", "done"],
           "queue": ["id", "host_id", "data"]}  # fmt: skip
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def _signed(fp: int) -> int:
    return fp - _U64 if fp > _I64_MAX else fp


class StateLocked(RuntimeError):
    """Another live process holds the state directory."""


class StateCorrupt(RuntimeError):
    """The state directory's database fails its checks; nothing was changed. `--fresh` discards it."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"crawl state {path} is damaged: {problem}. It was left as it is: rerun with --fresh to "
                         "discard it and start the crawl over, or restore a copy")  # fmt: skip
        self.path = path
        self.problem = problem


class _DirLock:
    """An exclusive `flock` on DIR/lock, released by the OS when the process dies (kill -9 included)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            self._fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateLocked(
                f"crawl state {self.path.parent} is in use by another process (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SqliteFrontier(FrontierBase):
    """Frontier persisted in SQLite under a state directory; reopening it resumes the crawl.

    Open with `await SqliteFrontier.open(Path("state/"))`. Requests popped and not acked when the process
    died are queued again on the next open (their output past the checkpoint is truncated by the engine).
    """

    def __init__(self, directory: Path, conn: sqlite3.Connection, lock: _DirLock, *,
                 memory_queue: int) -> None:  # fmt: skip
        self.directory = directory
        self._conn = conn
        self._lock = lock
        self._memory_queue = memory_queue
        self._seen = CompactSeenSet()
        self._host_ids: dict[str, int] = {}
        self._queues = HostQueues(memory_queue, self._refill)
        self._cursor: dict[str, int] = {}  # highest row id of a host read into memory
        self._leased = 0
        self._next_id = 1
        self._in_tx = False
        self._closed = False
        self._checkpoint: dict[str, Any] | None = None
        self._pushed_delta: Counter[int] = Counter()
        self._counters = {"pushed": 0, "acked": 0}

    # -- lifecycle ---------------------------------------------------------------------------------

    @classmethod
    async def open(cls, directory: Path | str, *, memory_queue: int = DEFAULT_MEMORY_QUEUE) -> SqliteFrontier:
        """Open the state in `directory`, or create it when the directory holds none.

        Raises `StateLocked` if another process has it, and `StateCorrupt` if an existing state fails its
        checks (see `verify_state`): a damaged state is never silently restarted or recreated.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lock = _DirLock(directory)
        lock.acquire()
        try:
            path = directory / DB_NAME
            if not path.exists():
                _create(path)
            conn, meta = _open_verified(path)
            try:
                self = cls(directory, conn, lock, memory_queue=memory_queue)
                self._load(meta)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            lock.release()
            raise
        return self

    def _load(self, meta: dict[str, str]) -> None:
        conn = self._conn
        if "checkpoint" in meta:
            self._checkpoint = orjson.loads(meta["checkpoint"])
        for key in self._counters:
            self._counters[key] = int(meta.get(key, 0))
        seen_count = int(meta.get("seen", 0))
        seen = self._seen = CompactSeenSet(expected=seen_count)
        add = seen.add
        for (fp,) in conn.execute("SELECT fp FROM seen"):
            add(fp % _U64)
        self._host_ids = dict(conn.execute("SELECT host, id FROM hosts"))
        names = {hid: host for host, hid in self._host_ids.items()}
        # Every row still in `queue` is work not acked: queued or leased when the last run stopped.
        for hid, count in conn.execute("SELECT host_id, count(*) FROM queue GROUP BY host_id"):
            self._queues.add_on_disk(names[hid], count)
        (max_id,) = conn.execute("SELECT coalesce(max(id), 0) FROM queue").fetchone()
        self._next_id = max_id + 1
        if self._queues.on_disk:
            log.info("resuming %s: %d requests queued, %d seen, %d done", self.directory, self._queues.on_disk,
                     len(seen), self._counters["acked"])  # fmt: skip

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with contextlib.suppress(sqlite3.OperationalError):  # a full disk: the last commit stands
                self._commit_tx()
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
        finally:
            self._lock.release()

    @staticmethod
    def discard(directory: Path | str) -> bool:
        """Delete the saved state in `directory` (`crawler run --fresh`). True when there was some."""
        directory = Path(directory)
        if not directory.exists():
            return False
        lock = _DirLock(directory)
        lock.acquire()  # refuses while a crawl is using it
        try:
            found = False
            for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    (directory / name).unlink()
                    found = True
        finally:
            lock.release()
        with contextlib.suppress(FileNotFoundError):
            (directory / LOCK_NAME).unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if nothing else lives there
        return found

    # -- the four verbs ----------------------------------------------------------------------------

    async def push_many(self, requests: Iterable[Request]) -> int:
        with self._writing():
            return self._push_many(requests)

    def _push_many(self, requests: Iterable[Request]) -> int:
        seen_add = self._seen.add
        host_ids = self._host_ids
        seen_rows: list[tuple[int]] = []
        rows: list[tuple[int, int, str]] = []
        dumps = orjson.dumps
        for req in requests:
            if not req.dont_filter:
                if not seen_add(req.fingerprint):
                    continue
                seen_rows.append((_signed(req.fingerprint),))
            host = req.host
            hid = host_ids.get(host)
            if hid is None:
                hid = self._new_host(host)
            rid = self._next_id
            self._next_id = rid + 1
            req.token = rid
            # As str: an orjson bytes object keeps a ~4 KB buffer, and a batch of them would bloat the heap.
            rows.append((rid, hid, dumps(req.to_dict()).decode()))
            if self._queues.add(req):
                self._cursor[host] = rid
        if not rows:
            return 0
        self._begin()
        conn = self._conn
        if seen_rows:
            conn.executemany("INSERT OR IGNORE INTO seen (fp) VALUES (?)", seen_rows)
        conn.executemany("INSERT INTO queue (id, host_id, data) VALUES (?, ?, ?)", rows)
        for row in rows:
            self._pushed_delta[row[1]] += 1
        return len(rows)

    def _new_host(self, host: str) -> int:
        self._begin()
        cur = self._conn.execute("INSERT INTO hosts (host) VALUES (?)", (host,))
        hid = int(cur.lastrowid or 0)
        self._host_ids[host] = hid
        return hid

    async def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        out = self._queues.pop_ready(limit, budget)
        self._leased += len(out)
        return out

    def _refill(self, host: str, count: int) -> list[Block]:
        """The refill hook of `HostQueues`: the host's oldest rows not yet read into memory."""
        rows = self._conn.execute(READ_HOST, (self._host_ids[host], self._cursor.get(host, 0), count)).fetchall()
        requests = []
        for rid, data in rows:
            req = Request.from_dict(orjson.loads(data))
            req.token = rid
            requests.append(req)
        if rows:
            self._cursor[host] = rows[-1][0]
        if len(rows) < count:  # cannot happen unless the file was edited: trust the file
            log.warning("%s: expected %d queued requests on disk for %s, found %d", self.directory, count, host,
                        len(rows))  # fmt: skip
        return pack_blocks(requests)

    async def ack(self, requests: Sequence[Request], checkpoint: dict[str, Any] | None = None) -> None:
        """Delete the finished requests and store `checkpoint`, in the transaction that holds their pushes."""
        with self._writing():
            self._ack(requests, checkpoint)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A write the state cannot take (a full disk, a read-only directory) is an output failure: the
        crawl stops cleanly and the last committed state stays as it was."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise OutputError(f"cannot save the crawl state in {self.directory}: {exc}") from exc

    def _ack(self, requests: Sequence[Request], checkpoint: dict[str, Any] | None) -> None:
        self._begin()
        conn = self._conn
        finished = [r for r in requests if r.token is not None]
        if finished:
            conn.executemany("DELETE FROM queue WHERE id = ?", [(r.token,) for r in finished])
            done = Counter(r.host for r in finished)
            conn.executemany("UPDATE hosts SET done = done + ? WHERE host = ?", [(n, h) for h, n in done.items()])
        self._counters["acked"] += len(finished)
        self._commit_tx(checkpoint)
        if checkpoint is not None:
            self._checkpoint = checkpoint
        self._leased = max(0, self._leased - len(finished))

    async def size(self) -> int:
        return len(self._queues) + self._leased

    async def checkpoint(self) -> dict[str, Any] | None:
        return self._checkpoint

    # -- page memory (recrawls) ----------------------------------------------------------------------

    def remember_pages(self, pages: Sequence[KnownPage]) -> None:
        """Store the pages' requests and validators in the open transaction (committed by the next ack)."""
        if not pages:
            return
        with self._writing():
            self._remember_pages(pages)

    def _remember_pages(self, pages: Sequence[KnownPage]) -> None:
        self._begin()
        rows = []
        for page in pages:
            req = page.request
            data = {"url": req.url, "depth": req.depth}
            if req.meta and req.meta.get("sitemap"):
                data["meta"] = {"sitemap": True}
            rows.append((_signed(req.fingerprint), orjson.dumps(data).decode(), page.etag, page.last_modified))
        self._conn.executemany("INSERT OR REPLACE INTO pages (fp, data, etag, last_modified) VALUES (?, ?, ?, ?)",
                               rows)  # fmt: skip

    def known_pages(self) -> Iterator[KnownPage]:
        """Every remembered page, in fingerprint order (hosts come interleaved), read 1,000 at a time."""
        query = "SELECT fp, data, etag, last_modified FROM pages {} ORDER BY fp LIMIT 1000"
        rows = self._conn.execute(query.format("")).fetchall()
        while rows:
            for _, data, etag, last_modified in rows:
                yield KnownPage(Request.from_dict(orjson.loads(data)), etag, last_modified)
            rows = self._conn.execute(query.format("WHERE fp > ?"), (rows[-1][0],)).fetchall()

    # -- introspection -----------------------------------------------------------------------------

    @property
    def seen_count(self) -> int:
        return len(self._seen)

    @property
    def queued_in_memory(self) -> int:
        return self._queues.in_memory

    @property
    def queued_on_disk(self) -> int:
        return self._queues.on_disk

    # -- transactions ------------------------------------------------------------------------------

    def _begin(self) -> None:
        if not self._in_tx:
            self._conn.execute("BEGIN")
            self._in_tx = True

    def _commit_tx(self, checkpoint: dict[str, Any] | None = None) -> None:
        """Commit, with the counters that describe the rows committed: every commit keeps each host's
        `pushed - done` equal to its rows in `queue` (what `verify_state` checks on the next open)."""
        if not self._in_tx:
            return
        conn = self._conn
        if self._pushed_delta:
            conn.executemany("UPDATE hosts SET pushed = pushed + ? WHERE id = ?",
                             [(n, hid) for hid, n in self._pushed_delta.items()])  # fmt: skip
            self._counters["pushed"] += sum(self._pushed_delta.values())
            self._pushed_delta.clear()
        meta = [(k, str(v)) for k, v in self._counters.items()]
        meta.append(("seen", str(len(self._seen))))
        if checkpoint is not None:
            meta.append(("checkpoint", orjson.dumps(checkpoint).decode()))
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", meta)  # fmt: skip
        conn.execute("COMMIT")
        self._in_tx = False


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA query_only = ON")
        return conn
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode: a commit survives the process being killed (the WAL is in the OS page cache);
    # only a power loss can drop the last commits, and then the database still opens consistent.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -16000")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def _create(path: Path) -> None:
    """A new state: built under a temporary name and renamed into place once its schema is committed, so a
    crash while creating leaves no half-made database for the next run to mistake for a damaged one."""
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.executescript(_SCHEMA + QUEUE_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
    finally:
        conn.close()
    os.replace(tmp, path)


def _open_verified(path: Path, *, readonly: bool = False) -> tuple[sqlite3.Connection, dict[str, str]]:
    """Connect to an existing state and check it (`verify_state`) before anything is written to it."""
    if path.stat().st_size == 0:
        # Checked before connecting: SQLite would happily turn an empty file into a new, empty database.
        raise StateCorrupt(path, "the database file is empty (0 bytes)")
    try:
        conn = _connect(path, readonly=readonly)
    except sqlite3.DatabaseError as exc:
        raise StateCorrupt(path, f"SQLite cannot read it ({exc})") from None
    try:
        return conn, verify_state(conn, path)
    except BaseException:
        conn.close()
        raise


def verify_state(conn: sqlite3.Connection, path: Path) -> dict[str, str]:
    """Check an existing state before trusting it; returns its `meta` table. Raises `StateCorrupt` naming the
    first problem: an empty or foreign file, a missing table or column, an unknown schema version, queue rows
    that are not requests (no URL, not JSON, an unknown host), or a host whose `pushed - done` differs from
    its rows in `queue` (rows lost or added behind the crawler's back)."""
    try:
        for table, columns in _TABLES.items():
            found = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            if not found:
                raise StateCorrupt(path, f"the {table!r} table is missing")
            missing = [c for c in columns if c not in found]
            if missing:
                raise StateCorrupt(path, f"the {table!r} table has no column {', '.join(missing)}")
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        version = meta.get("schema")
        if version != _SCHEMA_VERSION:
            what = "no schema version" if version is None else f"schema version {version!r}"
            raise StateCorrupt(path, f"it has {what}; this crawler reads version {_SCHEMA_VERSION}")
        bad = conn.execute(
            "SELECT id, CASE WHEN NOT json_valid(data) THEN 'is not JSON' "
            "WHEN json_type(data, '$.url') IS NOT 'text' THEN 'has no url' ELSE 'names an unknown host' END "
            "FROM queue WHERE CASE WHEN json_valid(data) THEN json_type(data, '$.url') IS NOT 'text' ELSE 1 END "
            "OR host_id NOT IN (SELECT id FROM hosts) LIMIT 1"
        ).fetchone()  # fmt: skip
        if bad is not None:
            (count,) = conn.execute(
                "SELECT count(*) FROM queue WHERE CASE WHEN json_valid(data) THEN json_type(data, '$.url') "
                "IS NOT 'text' ELSE 1 END OR host_id NOT IN (SELECT id FROM hosts)"
            ).fetchone()  # fmt: skip
            raise StateCorrupt(path, f"{count} queued request row(s) are not requests (row {bad[0]} {bad[1]})")
        off = conn.execute(
            "SELECT h.host, h.pushed, h.done, coalesce(q.n, 0) FROM hosts h LEFT JOIN "
            "(SELECT host_id, count(*) AS n FROM queue GROUP BY host_id) q ON q.host_id = h.id "
            "WHERE h.pushed - h.done != coalesce(q.n, 0)"
        ).fetchall()  # fmt: skip
        if off:
            host, pushed, done, rows = off[0]
            more = f" (and {len(off) - 1} more hosts)" if len(off) > 1 else ""
            raise StateCorrupt(path, f"host {host} has {pushed - done:,} requests pushed and not done ({pushed:,} "
                                     f"- {done:,}) but {rows:,} rows in the queue table{more}")  # fmt: skip
    except sqlite3.DatabaseError as exc:
        raise StateCorrupt(path, f"SQLite cannot read it ({exc})") from None
    return meta



def read_status(directory: Path | str, *, top_hosts: int = 10) -> dict[str, Any] | None:
    """Progress of a saved crawl, read without taking the lock (works while a crawl runs). None: no state."""
    path = Path(directory) / DB_NAME
    if not path.exists():
        return None
    conn, meta = _open_verified(path, readonly=True)
    try:
        try:
            (known,) = conn.execute("SELECT count(*) FROM pages").fetchone()
        except sqlite3.OperationalError:  # a state written before the pages table existed
            known = 0
        queued_by_host = dict(conn.execute("SELECT host_id, count(*) FROM queue GROUP BY host_id"))
        hosts = [{"host": host, "queued": queued_by_host.get(hid, 0), "pushed": pushed, "done": done}
                 for hid, host, pushed, done in conn.execute("SELECT id, host, pushed, done FROM hosts")]  # fmt: skip
    finally:
        conn.close()
    hosts.sort(key=lambda h: (-h["queued"], -h["done"]))
    running = True
    lock = _DirLock(Path(directory))
    try:
        lock.acquire()
    except StateLocked:
        pass
    else:
        running = False
        lock.release()
    return {
        "backend": "sqlite",
        "state": str(directory),
        "running": running,
        "queued": sum(queued_by_host.values()),  # a running crawl's in-flight requests too (acked later)
        "done": int(meta.get("acked", 0)),
        "pushed": int(meta.get("pushed", 0)),
        "seen": int(meta.get("seen", 0)),
        "known_pages": known,
        "checkpoint": orjson.loads(meta["checkpoint"]) if "checkpoint" in meta else None,
        "hosts": hosts[:top_hosts],
    }
